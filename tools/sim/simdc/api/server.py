"""The API service's HTTP side: one restify-like server per API, each on its
own address (common.API_IPS), all in one process; every request logged."""
import base64
import email.utils
import hashlib
import json
import os
import signal
import tempfile
import threading
import time
import urllib.parse
import uuid as uuidlib
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .. import common
from . import cnapi, imgapi, napi, papi, sapi, vmapi
from .base import ApiError, Request, Response, new_uuid, not_found, now_iso, parse_body, parse_query
from .imgapi import _load_image, image_out
from .store import STORE


SERVER_NAMES = {
    "vmapi": "VMAPI",
    "cnapi": "Compute Node API",          # restify name in sdc-cnapi lib/server.js
    "napi": "SmartDataCenter Networking API",
    "imgapi": "IMGAPI/1.0.0",
    "sapi": "SAPI",
    "papi": "restify",                   # sdc-papi sets no server name
}

# Handlers that wait (for a job, a ticket): they take the store lock
# themselves, for short moments, so that others can use the store meanwhile.
UNLOCKED = sapi.UNLOCKED + cnapi.UNLOCKED + vmapi.UNLOCKED

ROUTES = {
    "vmapi": vmapi.ROUTES,
    "cnapi": cnapi.ROUTES,
    "napi": napi.ROUTES,
    "imgapi": imgapi.ROUTES,
    "sapi": sapi.ROUTES,
    "papi": papi.ROUTES,
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        self._handle("GET")

    def do_HEAD(self):
        self._handle("HEAD")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_DELETE(self):
        self._handle("DELETE")

    # -- body reading

    def _iter_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            while True:
                line = self.rfile.readline()
                if not line:
                    return
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = size
                while left:
                    chunk = self.rfile.read(min(left, 1 << 20))
                    if not chunk:
                        return
                    left -= len(chunk)
                    yield chunk
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk

    def _upload(self, api, match):
        """PUT /images/:uuid/file: stream the body to the image file."""
        uuid = match["uuid"]
        with STORE:
            _load_image(uuid)
        os.makedirs(common.path("imgapi"), exist_ok=True)
        sha1 = hashlib.sha1()
        md5 = hashlib.md5()
        size = 0
        fd, tmp = tempfile.mkstemp(dir=common.path("imgapi"), prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in self._iter_body():
                    f.write(chunk)
                    sha1.update(chunk)
                    md5.update(chunk)
                    size += len(chunk)
            with STORE:
                img = _load_image(uuid)
                os.replace(tmp, common.path("imgapi", uuid + ".zfs"))
                q = parse_query(urllib.parse.urlsplit(self.path).query)
                img["files"] = [{"sha1": sha1.hexdigest(), "size": size,
                                 "compression": q.get("compression") or "none",
                                 "_md5": base64.b64encode(md5.digest()).decode()}]
                img["state"] = "active"
                img.setdefault("published_at", now_iso())
                STORE.put("image", uuid, img)
                return Response(200, image_out(img))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    # -- dispatch

    def _handle(self, method):
        start = time.time()
        api = self.server.api_name
        split = urllib.parse.urlsplit(self.path)
        path = split.path
        body_read = False
        req = None
        try:
            route_method = "GET" if method == "HEAD" else method
            handler = None
            match = None
            allowed = []
            for m, rx, h in ROUTES[api]:
                mo = rx.match(path)
                if mo:
                    allowed.append(m)
                    if m == route_method:
                        handler, match = h, {k: urllib.parse.unquote(v)
                                             for k, v in mo.groupdict().items()}
                        break
            if handler is None:
                if allowed:
                    raise ApiError(405, "MethodNotAllowedError", "%s is not allowed" % method,
                                   extra=None)
                raise not_found("Route does not exist")
            if handler == "upload":
                body_read = True
                resp = self._upload(api, match)
            else:
                raw = b"".join(self._iter_body())
                body_read = True
                body = parse_body(raw, self.headers.get("Content-Type"))
                params = parse_query(split.query)
                req = Request(method, path, split.query, self.headers, body, params, match)
                if handler in UNLOCKED:
                    resp = handler(req)
                else:
                    with STORE:
                        resp = handler(req)
        except ApiError as e:
            resp = Response(e.status, e.body())
            if e.status == 405:
                resp.headers.append(("Allow", ", ".join(sorted(set(allowed)))))
        except Exception as e:  # noqa: BLE001 - report as InternalError
            import traceback
            traceback.print_exc()
            resp = Response(500, {"code": "InternalError", "message": str(e)})
        if not body_read:
            self.close_connection = True
        try:
            self._send(method, api, resp, start)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            end = time.time()
            target = path + ("?" + split.query if split.query else "")
            try:
                extra = dict(req.log) if req is not None else {}
                agent = self.headers.get("User-Agent") or ""
                if agent.startswith(("vm-agent/", "net-agent/")):
                    extra["agent"] = agent.split("/")[0]   # a CN agent's, not a tool's
                common.log_call(api, [method, target], 0 if resp.status < 400 else resp.status,
                                start, end, status=resp.status, **extra)
            except OSError:
                pass

    def _send(self, method, api, resp, start):
        data = None
        length = None
        if resp.file is None and resp.status != 204:
            if resp.raw is not None:
                data = resp.raw
            elif resp.body is not None:
                data = json.dumps(resp.body, separators=(",", ":"),
                                  ensure_ascii=False).encode("utf-8")
            else:
                data = b""
            length = len(data)
        elif resp.file is not None:
            length = os.path.getsize(resp.file)
        phrase = HTTPStatus(resp.status).phrase if resp.status in HTTPStatus._value2member_map_ \
            else "Unknown"
        self.send_response_only(resp.status, phrase)
        headers = []
        if resp.status != 204:
            headers.append(("Content-Type", resp.content_type))
            headers.append(("Content-Length", str(length)))
            if data is not None and length:
                headers.append(("Content-MD5", base64.b64encode(
                    hashlib.md5(data).digest()).decode()))
        headers.extend(h for h in resp.headers if h[1])
        headers.append(("Date", email.utils.formatdate(usegmt=True)))
        headers.append(("Server", SERVER_NAMES[api]))
        headers.append(("x-request-id", self.headers.get("x-request-id") or new_uuid()))
        headers.append(("x-response-time", str(int((time.time() - start) * 1000))))
        headers.append(("x-server-name", str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS,
                                                          api + "." + common.DATACENTER))))
        conn = (self.headers.get("Connection") or "").lower()
        if conn == "close" or self.close_connection:
            self.close_connection = True
            headers.append(("Connection", "close"))
        else:
            headers.append(("Connection", "keep-alive"))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if method == "HEAD":
            return
        if data:
            self.wfile.write(data)
        elif resp.file is not None:
            with open(resp.file, "rb") as f:
                while True:
                    chunk = f.read(1 << 20)
                    if not chunk:
                        break
                    self.wfile.write(chunk)
        self.wfile.flush()


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, api_name, addr):
        self.api_name = api_name
        ThreadingHTTPServer.__init__(self, addr, Handler)


def main():
    os.makedirs(common.sim_dir(), exist_ok=True)
    STORE.open(common.path("api.db"))
    servers = []
    for name in ("vmapi", "cnapi", "napi", "imgapi", "sapi", "papi"):
        servers.append(ApiServer(name, (common.API_IPS[name], common.API_PORT)))
    common.record_pid("api", os.getpid())
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threads = [threading.Thread(target=cnapi.waitlist_director, args=(stop,), daemon=True)]
    threads[0].start()
    for s in servers:
        t = threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2},
                             daemon=True)
        t.start()
        threads.append(t)
    while not stop.wait(0.5):
        pass
    stoppers = [threading.Thread(target=s.shutdown) for s in servers]
    for t in stoppers:
        t.start()
    for t in stoppers:
        t.join()
    for s in servers:
        s.server_close()
    with STORE.lock:
        STORE.db.close()
    return 0
