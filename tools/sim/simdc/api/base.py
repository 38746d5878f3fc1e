"""What the simulated APIs share: restify-shaped errors and responses, the
request, parameter helpers."""
import datetime
import json
import re
import urllib.parse
import uuid as uuidlib


# The UFDS admin user of the simulated datacenter (coal's well-known one, as
# in the samples): owner of reserved gateway/resolver IPs and default owner.
ADMIN_UUID = "930896af-bf8c-48d4-885c-6573a94b1853"

UUID_RE = re.compile(r"^[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$")


def now_iso():
    t = datetime.datetime.now(datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)


def norm_ts(v):
    """A timestamp as JS `new Date(v).toISOString()` would print it."""
    if v is None or v == "":
        return v
    try:
        if isinstance(v, (int, float)) or (isinstance(v, str) and re.match(r"^\d+$", v)):
            t = datetime.datetime.fromtimestamp(int(v) / 1000.0, datetime.timezone.utc)
        else:
            s = str(v).replace("Z", "+00:00")
            t = datetime.datetime.fromisoformat(s)
            if t.tzinfo is None:
                t = t.replace(tzinfo=datetime.timezone.utc)
            t = t.astimezone(datetime.timezone.utc)
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)
    except (ValueError, OverflowError, OSError):
        return v


def valid_uuid(s):
    return isinstance(s, str) and bool(UUID_RE.match(s))


def to_bool(v):
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        if v.lower() == "true":
            return True
        if v.lower() == "false":
            return False
    return None


def js_str(v):
    """String form of a value as JS would print it (for query comparisons)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, float) and v == int(v):
        return str(int(v))
    return str(v)


def new_uuid():
    return str(uuidlib.uuid4())


class ApiError(Exception):
    def __init__(self, status, code, message, errors=None, extra=None):
        Exception.__init__(self, message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.extra = extra

    def body(self):
        b = {"code": self.code, "message": self.message}
        if self.errors is not None:
            b["errors"] = self.errors
        if self.extra:
            b.update(self.extra)
        return b


def not_found(message):
    return ApiError(404, "ResourceNotFound", message)


def vmapi_validation(errors, message="Invalid Parameters"):
    return ApiError(409, "ValidationFailed", message, errors)


def napi_invalid(errors, message="Invalid parameters"):
    return ApiError(422, "InvalidParameters", message, errors)


def missing_param(field):
    return {"field": field, "code": "MissingParameter", "message": "Missing parameter"}


def invalid_param(field, message="Invalid parameter"):
    return {"field": field, "code": "Invalid", "message": message}


class Response:
    def __init__(self, status=200, body=None, headers=None, raw=None, file=None,
                 content_type="application/json"):
        self.status = status
        self.body = body
        self.headers = headers or []
        self.raw = raw          # bytes to send as is
        self.file = file        # path of a file to stream
        self.content_type = content_type


class Request:
    def __init__(self, method, path, query, headers, body, params, match):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.params = params
        self.match = match
        self.log = {}       # what the request log records besides method and path

    def p(self, name, default=None):
        return self.params.get(name, default)


def parse_query(qs):
    out = {}
    for k, v in urllib.parse.parse_qsl(qs, keep_blank_values=True):
        out[k] = v
    return out


def parse_body(raw, ctype):
    if not raw:
        return None
    ctype = (ctype or "").lower()
    text = raw.decode("utf-8", errors="replace")
    if "json" in ctype or text.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError as e:
            raise ApiError(400, "InvalidContent", "Invalid JSON: %s" % e)
    if "x-www-form-urlencoded" in ctype or "=" in text:
        return dict(urllib.parse.parse_qsl(text, keep_blank_values=True))
    return None


def route(pattern):
    """A route's path ("/vms/:uuid") as a regular expression."""
    rx = re.sub(r":(\w+)", r"(?P<\1>[^/]+)", pattern)
    return re.compile("^" + rx + "/?$")
