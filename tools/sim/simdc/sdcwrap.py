"""sdc-vmapi, sdc-cnapi, sdc-napi, sdc-imgapi, sdc-sapi: the head node's API
wrappers.

Triton's are bash scripts (sdc-sdc bin/sdc-vmapi, lib/libdc.sh) that run
`curl --connect-timeout 10 -sS -i -H accept:application/json
 -H content-type:application/json --url URL "$@"; echo ""` and pipe the
result through `json -q`: the HTTP status line and headers pass through
unchanged (CRLF line ends, blank CRLF line), the JSON body comes out indented
by two spaces. The exit status is curl's (pipefail): 0 for any HTTP status,
7 when the API cannot be reached. This module does the same without curl.
"""
import http.client
import os
import socket
import subprocess
import sys
import time
import urllib.parse

from . import common

# The `json` the wrapper pipes into: the head node's /opt/smartdc/bin/sdc-vmapi
# (sdc-headnode tools/lib/wrap.sh) execs the sdc zone's script in the global
# zone, whose bare `json` is the first on root's PATH, the platform's
# /usr/bin/json (tools/sim/cnbin/json).
JSON = os.path.join(common.SIM_ROOT, "cnbin", "json")

USAGE = """error: no PATH argument given

Usage:
        %s [--no-headers] PATH [EXTRA-CURL-ARGS]

"""

# curl options that take a value and that we accept but ignore
_IGNORED_WITH_VALUE = {"-m", "--max-time", "--connect-timeout", "-u", "--user", "-A",
                       "--user-agent", "-e", "--referer", "-w", "--write-out",
                       "--retry", "-b", "--cookie", "-c", "--cookie-jar", "--url"}


class CurlArgs:
    def __init__(self):
        self.method = None
        self.data = []
        self.data_binary_seen = False
        self.upload = None
        self.headers = []
        self.output = None
        self.get = False
        self.url_override = None
        self.timeout = None


def _read_data(value, binary):
    """-d @file / @- as curl reads it (-d strips CR and LF, --data-binary not)."""
    if value.startswith("@"):
        name = value[1:]
        if name == "-":
            raw = sys.stdin.buffer.read()
        else:
            try:
                with open(name, "rb") as f:
                    raw = f.read()
            except OSError:
                sys.stderr.write('Warning: Couldn\'t read data from file "%s", this makes '
                                 'an empty POST.\n' % name)
                raw = b""
        if not binary:
            raw = raw.replace(b"\r", b"").replace(b"\n", b"")
        return raw
    return value.encode("utf-8")


def parse_curl_args(args):
    c = CurlArgs()
    i = 0

    def value():
        nonlocal i
        i += 1
        if i >= len(args):
            raise SystemExit("curl: option %s: requires parameter" % args[i - 1])
        return args[i]

    while i < len(args):
        a = args[i]
        if a.startswith("--") and "=" in a:
            name, _, val = a.partition("=")
            args = args[:i] + [name, val] + args[i + 1:]
            a = name
        if a in ("-X", "--request"):
            c.method = value()
        elif a.startswith("-X") and len(a) > 2:
            c.method = a[2:]
        elif a in ("-d", "--data", "--data-ascii", "--data-raw"):
            v = value()
            c.data.append(v.encode() if a == "--data-raw" else _read_data(v, False))
        elif a.startswith("-d") and len(a) > 2:
            c.data.append(_read_data(a[2:], False))
        elif a == "--data-binary":
            c.data.append(_read_data(value(), True))
        elif a == "--data-urlencode":
            v = value()
            name, eq, content = v.partition("=")
            c.data.append((name + "=" + urllib.parse.quote(content, safe="")).encode()
                          if eq else urllib.parse.quote(v, safe="").encode())
        elif a in ("-T", "--upload-file"):
            c.upload = value()
        elif a.startswith("-T") and len(a) > 2:
            c.upload = a[2:]
        elif a in ("-H", "--header"):
            c.headers.append(value())
        elif a.startswith("-H") and len(a) > 2:
            c.headers.append(a[2:])
        elif a in ("-o", "--output"):
            c.output = value()
        elif a in ("-G", "--get"):
            c.get = True
        elif a in ("-m", "--max-time"):
            try:
                c.timeout = float(value())
            except ValueError:
                pass
        elif a in _IGNORED_WITH_VALUE:
            value()
        elif a.startswith("-") and not a.startswith("--") and len(a) > 1:
            # clusters of flag letters such as -sS, -i, -k, -v, -f, -L, -g
            pass
        elif a.startswith("--"):
            pass
        else:
            # a bare URL-ish word: curl would fetch it too; ignore.
            pass
        i += 1
    return c


def _status_block(resp):
    lines = ["HTTP/%s %d %s" % ("1.1" if resp.version == 11 else "1.0", resp.status,
                                resp.reason)]
    for k, v in resp.getheaders():
        lines.append("%s: %s" % (k, v))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def run(api, argv, prog):
    no_headers = False
    if argv and argv[0] == "--no-headers":
        no_headers = True
        argv = argv[1:]
    if not argv or not argv[0]:
        sys.stdout.write(USAGE % prog)
        return 1
    path = argv[0]
    try:
        c = parse_curl_args(argv[1:])
    except SystemExit as e:
        sys.stderr.write("%s\n" % e.code)
        return 2
    headers = {"accept": "application/json"}
    if not no_headers:
        headers["content-type"] = "application/json"
    for h in c.headers:
        name, _, val = h.partition(":")
        name = name.strip()
        val = val.strip()
        for k in list(headers):
            if k.lower() == name.lower():
                del headers[k]
        if val or not h.rstrip().endswith(":"):
            headers[name] = val
    body = None
    method = c.method
    if c.data:
        data = b"&".join(c.data)
        if c.get:
            path += ("&" if "?" in path else "?") + data.decode("utf-8", "replace")
        else:
            body = data
            method = method or "POST"
            if not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = "application/x-www-form-urlencoded"
    upload = None
    if c.upload is not None:
        method = method or "PUT"
        if c.upload == "-":
            upload = sys.stdin.buffer
        else:
            try:
                upload = open(c.upload, "rb")
            except OSError:
                sys.stderr.write("curl: (26) Failed to open/read local data from "
                                 "file/application\n")
                return 26
            headers["Content-Length"] = str(os.fstat(upload.fileno()).st_size)
    method = method or "GET"
    if not path.startswith("/"):
        path = "/" + path
    host = common.API_IPS[api]
    port = common.API_PORT
    timeout = c.timeout or 3600
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        try:
            conn.connect()
        except OSError:
            sys.stderr.write("curl: (7) Failed to connect to %s port %d after 0 ms: "
                             "Couldn't connect to server\n" % (host, port))
            return 7
        conn.sock.settimeout(timeout)
        if upload is not None:
            if "Content-Length" in headers:
                conn.request(method, path, body=upload, headers=headers)
            else:
                conn.request(method, path, body=iter(lambda: upload.read(1 << 20), b""),
                             headers=headers, encode_chunked=True)
        else:
            conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        block = b"" if no_headers else _status_block(resp)
        ctype = (resp.getheader("Content-Type") or "").lower()
        if "octet-stream" in ctype and method != "HEAD":
            # Raw bodies (image files) are streamed untouched.
            dest = open(c.output, "wb") if c.output else sys.stdout.buffer
            try:
                dest.write(block)
                while True:
                    chunk = resp.read(1 << 20)
                    if not chunk:
                        break
                    dest.write(chunk)
                dest.flush()
            finally:
                if c.output:
                    dest.close()
            return 0
        raw = resp.read()
        if c.output:
            # curl -o writes the response into the file; `echo ""` and json
            # see only the newline.
            with open(c.output, "wb") as f:
                f.write(block + raw)
            sys.stdout.write("\n")
            return 0
    except socket.timeout:
        sys.stderr.write("curl: (28) Operation timed out\n")
        return 28
    except (ConnectionError, http.client.HTTPException):
        sys.stderr.write("curl: (52) Empty reply from server\n")
        return 52
    finally:
        conn.close()
        if upload is not None and upload is not sys.stdin.buffer:
            upload.close()
    # `| (json -q || true)`: headers through, body pretty-printed.
    sys.stdout.flush()
    subprocess.run([JSON, "-q"], input=block + raw + b"\n")
    return 0


def wrapper_cost():
    """Seconds each call spends before its request, as Triton's wrapper does
    (sdc-sdc bin/sdc-vmapi sourcing lib/libdc.sh: bash, `json -f` of the sdc
    zone's config.json for the API's domain, then curl; about a second on a
    head node). `simdc wrapcost SECONDS` sets it for a datacenter; 0 (the
    default) leaves only this emulation's own start."""
    try:
        with open(common.path("sdc-wrapper-cost")) as f:
            return max(0.0, float(f.read().strip() or 0))
    except (OSError, ValueError):
        return 0.0


def main_for(api):
    def main(argv):
        prog = os.path.join("/opt/smartdc/bin", "sdc-" + api)
        cost = wrapper_cost()
        if cost:
            time.sleep(cost)
        return run(api, argv, prog)
    return main
