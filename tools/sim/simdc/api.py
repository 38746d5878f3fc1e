#!/usr/bin/python3
"""The simulated datacenter's API service: VMAPI, CNAPI, NAPI, IMGAPI, SAPI.

One process, five HTTP servers (one per API, each on its own address as in
Triton where each API is its own zone), state in SQLite at $SIMDC_DIR/api.db.
Run as `cd tools/sim && /usr/bin/python3 -m simdc.api`.

Responses are shaped after the Triton samples (restify headers, JSON bodies,
`{"code": ..., "message": ...}` errors). Only the subsets the migration tool,
the operator scripts and the simulator use are implemented.
"""
import base64
import datetime
import email.utils
import hashlib
import ipaddress
import json
import os
import random
import re
import signal
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid as uuidlib
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
    from simdc import common  # noqa: E402
else:
    from . import common

# The UFDS admin user of the simulated datacenter (coal's well-known one, as
# in the samples): owner of reserved gateway/resolver IPs and default owner.
ADMIN_UUID = "930896af-bf8c-48d4-885c-6573a94b1853"

SERVER_NAMES = {
    "vmapi": "VMAPI",
    "cnapi": "Compute Node API",          # restify name in sdc-cnapi lib/server.js
    "napi": "SmartDataCenter Networking API",
    "imgapi": "IMGAPI/1.0.0",
    "sapi": "SAPI",
}

UUID_RE = re.compile(r"^[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$")
STORE = None


# ---- helpers -----------------------------------------------------------------

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


# ---- storage -----------------------------------------------------------------

class Store:
    """JSON objects by (kind, id) in SQLite; one lock serializes all access."""

    def __init__(self, path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS objects (kind TEXT NOT NULL, "
                        "id TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (kind, id))")
        self.lock = threading.RLock()
        self.depth = 0

    def __enter__(self):
        self.lock.acquire()
        self.depth += 1
        if self.depth == 1:
            self.db.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if self.depth == 1:
                self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.depth -= 1
            self.lock.release()
        return False

    def get(self, kind, oid):
        row = self.db.execute("SELECT data FROM objects WHERE kind=? AND id=?",
                              (kind, oid)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, kind, oid, obj):
        self.db.execute("INSERT INTO objects (kind, id, data) VALUES (?, ?, ?) "
                        "ON CONFLICT(kind, id) DO UPDATE SET data=excluded.data",
                        (kind, oid, json.dumps(obj)))

    def delete(self, kind, oid):
        self.db.execute("DELETE FROM objects WHERE kind=? AND id=?", (kind, oid))

    def list(self, kind, prefix=None):
        if prefix is None:
            rows = self.db.execute("SELECT data FROM objects WHERE kind=? ORDER BY rowid",
                                   (kind,))
        else:
            rows = self.db.execute("SELECT data FROM objects WHERE kind=? AND "
                                   "substr(id, 1, ?)=? ORDER BY rowid",
                                   (kind, len(prefix), prefix))
        return [json.loads(r[0]) for r in rows]


# ---- request plumbing --------------------------------------------------------

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


# ---- VMAPI -------------------------------------------------------------------

VM_BASE_FIELDS = [
    "uuid", "alias", "autoboot", "brand", "billing_id", "cpu_cap", "cpu_shares",
    "create_timestamp", "customer_metadata", "datasets", "destroyed",
    "firewall_enabled", "internal_metadata", "last_modified", "limit_priv",
    "max_locked_memory", "max_lwps", "max_physical_memory", "max_swap", "nics",
    "owner_uuid", "platform_buildstamp", "quota", "ram", "resolvers", "server_uuid",
    "snapshots", "state", "tags", "zfs_filesystem", "zfs_io_priority", "zone_state",
    "zonepath", "zpool",
]
VM_OPTIONAL_FIELDS = [
    "boot_timestamp", "docker", "dns_domain", "hostname", "delegate_dataset",
    "exit_status", "exit_timestamp", "filesystems", "fs_allowed",
    "indestructible_delegated", "indestructible_zoneroot", "init_name",
    "internal_metadata_namespaces", "kernel_version", "limit_priv",
    "maintain_resolvers", "mdata_exec_timeout", "package_name", "package_version",
    "pid", "tmpfs", "zfs_data_compression", "flexible_disk_size",
]
HW_BRANDS = ("kvm", "bhyve")


def translate_vm(obj):
    """A stored VM as VMAPI returns it (sdc-vmapi translateVm, fullObject)."""
    vm = {}
    for k in VM_BASE_FIELDS:
        vm[k] = obj.get(k)
    for k in ("create_timestamp", "last_modified", "destroyed"):
        if vm[k]:
            vm[k] = norm_ts(vm[k])
    for k in VM_OPTIONAL_FIELDS:
        v = obj.get(k)
        if v or v == 0 or v is False:
            vm[k] = v
    if obj.get("brand") in HW_BRANDS:
        vm["vcpus"] = obj.get("vcpus")
        vm["cpu_type"] = obj.get("cpu_type")
        vm["disks"] = obj.get("disks")
        if obj.get("hostname"):
            vm["hostname"] = obj["hostname"]
        # The docs' KVM sample carries the boot disk's image at top level too.
        img = obj.get("image_uuid")
        if not img:
            for d in obj.get("disks") or []:
                if d.get("image_uuid"):
                    img = d["image_uuid"]
                    break
        vm["image_uuid"] = img
    else:
        vm["image_uuid"] = obj.get("image_uuid")
    if vm.get("ram") is None and vm.get("max_physical_memory") is not None:
        vm["ram"] = vm["max_physical_memory"]
    if vm.get("firewall_enabled") is None:
        vm["firewall_enabled"] = False
    for k in list(vm):
        if vm[k] is None:
            if k in ("customer_metadata", "internal_metadata", "tags"):
                vm[k] = {}
            elif k in ("nics", "snapshots", "datasets"):
                vm[k] = []
    return vm


def vm_fields(vm, fields):
    if not fields or fields == "*" or "*" in fields.split(","):
        return vm
    want = [f for f in fields.split(",") if f]
    return {k: vm[k] for k in want if k in vm}


VMS_LIST_PARAMS = {
    "alias", "billing_id", "brand", "create_timestamp", "docker", "fields",
    "image_uuid", "owner_uuid", "package_name", "package_version", "uuid", "ram",
    "server_uuid", "state", "uuids", "limit", "offset", "sort", "marker",
    "predicate", "query", "sync",
}


def _glob_match(pattern, value):
    if value is None:
        return False
    if "*" in pattern:
        rx = "^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "$"
        return re.match(rx, js_str(value)) is not None
    return js_str(value) == pattern


def _vm_value(vm, field):
    if field.startswith("tag."):
        return (vm.get("tags") or {}).get(field[4:])
    if field.startswith("tags."):
        return (vm.get("tags") or {}).get(field[5:])
    if field.startswith("internal_metadata."):
        return (vm.get("internal_metadata") or {}).get(field[len("internal_metadata."):])
    return vm.get(field)


def _state_match(want, vm):
    state = vm.get("state")
    if want == "active":
        return state not in ("destroyed", "failed")
    return state == want


def _eval_predicate(pred, vm):
    if not isinstance(pred, dict) or len(pred) != 1:
        raise vmapi_validation([invalid_param("predicate", "Invalid predicate")])
    op, arg = next(iter(pred.items()))
    if op in ("and", "or"):
        results = [_eval_predicate(p, vm) for p in arg]
        return all(results) if op == "and" else any(results)
    if op in ("eq", "ne", "le", "ge") and isinstance(arg, list) and len(arg) == 2:
        field, value = arg
        if field == "state" and op in ("eq", "ne"):
            r = _state_match(value, vm)
            return r if op == "eq" else not r
        have = _vm_value(vm, field)
        if op in ("eq", "ne"):
            r = _glob_match(js_str(value), have) if isinstance(value, str) else have == value
            return r if op == "eq" else not r
        try:
            a, b = float(have), float(value)
        except (TypeError, ValueError):
            a, b = js_str(have), js_str(value)
        return a <= b if op == "le" else a >= b
    raise vmapi_validation([invalid_param("predicate", "Invalid predicate")])


def vmapi_list_vms(req):
    params = req.params
    bad = [k for k in params if k not in VMS_LIST_PARAMS and not k.startswith("tag.")
           and not k.startswith("internal_metadata.")]
    if bad:
        raise vmapi_validation([invalid_param(k) for k in sorted(bad)])
    for k in ("uuid", "owner_uuid", "server_uuid", "image_uuid", "billing_id"):
        if params.get(k) and not valid_uuid(params[k]):
            raise vmapi_validation([invalid_param(k, "Invalid UUID")])
    vms = [translate_vm(v) for v in STORE.list("vm")]
    out = []
    uuids = set(params["uuids"].split(",")) if params.get("uuids") else None
    pred = None
    if params.get("predicate"):
        try:
            pred = json.loads(params["predicate"])
        except ValueError:
            raise vmapi_validation([invalid_param("predicate", "Invalid JSON")])
    for vm in vms:
        ok = True
        for k in ("uuid", "owner_uuid", "server_uuid", "brand", "image_uuid", "billing_id",
                  "package_name", "package_version"):
            if params.get(k) and js_str(vm.get(k)) != params[k]:
                ok = False
        if params.get("alias") and not _glob_match(params["alias"], vm.get("alias")):
            ok = False
        if params.get("ram") and js_str(vm.get("ram")) != params["ram"]:
            ok = False
        if params.get("state") and not _state_match(params["state"], vm):
            ok = False
        if uuids is not None and vm["uuid"] not in uuids:
            ok = False
        for k, v in params.items():
            if k.startswith("tag."):
                have = (vm.get("tags") or {}).get(k[4:])
                if have is None or (v != "*" and js_str(have) != v):
                    ok = False
            elif k.startswith("internal_metadata."):
                have = (vm.get("internal_metadata") or {}).get(k[len("internal_metadata."):])
                if have is None or js_str(have) != v:
                    ok = False
        if ok and pred is not None:
            ok = _eval_predicate(pred, vm)
        if ok:
            out.append(vm)
    sort = params.get("sort") or "uuid.desc"
    field, _, order = sort.partition(".")
    order = (order or "desc").lower()
    out.sort(key=lambda v: (v.get(field) is None, js_str(v.get(field))),
             reverse=(order == "desc"))
    try:
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 1000)
    except ValueError:
        raise vmapi_validation([invalid_param("limit")])
    out = out[offset:offset + min(limit, 1000)]
    return Response(200, [vm_fields(v, params.get("fields")) for v in out])


def _load_vm(req):
    vid = req.match["uuid"]
    if not valid_uuid(vid):
        raise vmapi_validation([invalid_param("uuid", "Invalid UUID")])
    raw = STORE.get("vm", vid)
    if raw is None:
        raise not_found("VM not found")
    if req.params.get("owner_uuid") and raw.get("owner_uuid") != req.params["owner_uuid"]:
        raise not_found("VM not found")
    return raw


def vmapi_get_vm(req):
    raw = _load_vm(req)
    return Response(200, vm_fields(translate_vm(raw), req.params.get("fields")))


def _heartbeat_vm(vm):
    t = translate_vm(vm)
    return {k: t.get(k) for k in ("uuid", "owner_uuid", "quota", "max_physical_memory",
                                   "zone_state", "state", "brand", "cpu_cap",
                                   "last_modified")}


def _mark_destroyed(raw):
    ts = now_iso()
    raw["state"] = "destroyed"
    raw["zone_state"] = "destroyed"
    raw["destroyed"] = ts
    raw["last_modified"] = ts
    STORE.put("vm", raw["uuid"], raw)


def vmapi_put_vms(req):
    server_uuid = req.params.get("server_uuid")
    if not server_uuid:
        raise vmapi_validation([missing_param("server_uuid")])
    if not valid_uuid(server_uuid):
        raise vmapi_validation([invalid_param("server_uuid", "Invalid UUID")])
    vms = req.body.get("vms") if isinstance(req.body, dict) else None
    if vms is None or not isinstance(vms, dict):
        raise vmapi_validation([missing_param("vms")])
    # the log says which VMs a CN reported: a test sees where VMAPI placed them
    req.log["vms"] = sorted(vms)
    for vid, obj in vms.items():
        if not isinstance(obj, dict):
            raise vmapi_validation([invalid_param("vms")])
        old = STORE.get("vm", vid)
        new = dict(obj)
        new["uuid"] = vid
        new["server_uuid"] = server_uuid
        new.pop("destroyed", None)
        if old:
            if not new.get("create_timestamp") and old.get("create_timestamp"):
                new["create_timestamp"] = old["create_timestamp"]
        if not new.get("last_modified"):
            new["last_modified"] = now_iso()
        STORE.put("vm", vid, new)
    # VMs this server held that it no longer reports are gone. VMAPI records
    # it and leaves NAPI alone: the NICs are net-agent's (simdc/netagent.py).
    for raw in STORE.list("vm"):
        if raw.get("server_uuid") == server_uuid and raw["uuid"] not in vms \
                and raw.get("state") not in ("destroyed", "provisioning", "failed"):
            _mark_destroyed(raw)
    server = STORE.get("server", server_uuid)
    if server is not None:
        server["vms"] = {vid: _heartbeat_vm(STORE.get("vm", vid)) for vid in vms}
        STORE.put("server", server_uuid, server)
    return Response(200, None)


def _sim_workflow():
    """simdc.workflow, imported late: the API also runs alone (tests/sim) without it."""
    if __package__ in (None, ""):
        from simdc import workflow
    else:
        from . import workflow
    return workflow


def _new_job(name, vm_uuid, params, execution="running"):
    ts = now_iso()
    job = {"name": name, "uuid": new_uuid(), "execution": execution,
           "params": dict(params, vm_uuid=vm_uuid), "exec_after": ts, "created_at": ts,
           "timeout": 3600 if name.startswith("provision") else 180,
           "chain_results": [], "vm_uuid": vm_uuid}
    STORE.put("job", job["uuid"], job)
    return job


def _run_job(job_uuid, steps, on_failure=None):
    """Run a job's steps in a thread, as the workflow runner does, without the
    store lock (the CN's vm-agent reports to VMAPI in the middle of it).

    steps: [(name, fn)]; each fn returns the step's result text.
    """
    def record(name, result, error, started):
        with STORE:
            job = STORE.get("job", job_uuid)
            job["chain_results"].append({"name": name, "result": result, "error": error,
                                         "started_at": started, "finished_at": now_iso()})
            if error:
                job["execution"] = "failed"
            STORE.put("job", job_uuid, job)

    def run():
        for name, fn in steps:
            started = now_iso()
            try:
                result = fn()
            except Exception as e:  # noqa: BLE001 - a failed task fails the job
                record(name, "", "%s" % e, started)
                if on_failure:
                    try:
                        on_failure()
                    except Exception:  # noqa: BLE001
                        pass
                return
            record(name, result or "OK", "", started)
        with STORE:
            job = STORE.get("job", job_uuid)
            job["execution"] = "succeeded"
            STORE.put("job", job_uuid, job)
    threading.Thread(target=run, daemon=True).start()


def wait_job(job_uuid, timeout=300.0):
    """The job once it ended (succeeded or failed), polled without the lock."""
    deadline = time.time() + timeout
    while True:
        with STORE:
            job = STORE.get("job", job_uuid)
        if job is None or job["execution"] in ("succeeded", "failed", "canceled"):
            return job
        if time.time() > deadline:
            return job
        time.sleep(0.1)


def _simulated_cn(server_uuid):
    """The simulated CN holding server_uuid when it is up, else None (the API alone)."""
    host = common.host_by_uuid(server_uuid) if server_uuid else None
    if host is None:
        return None
    return host if _sim_workflow().host_up(host) else None


def destroy_vm(raw):
    """DeleteVm's work: a job that destroys the VM on its CN (then VMAPI marks it
    destroyed and frees its NICs), or, with no CN to run it on, at once."""
    host = _simulated_cn(raw.get("server_uuid")) if raw.get("state") != "destroyed" else None
    params = {"owner_uuid": raw.get("owner_uuid"), "uuid": raw["uuid"],
              "server_uuid": raw.get("server_uuid"), "task": "destroy"}
    if host is None:
        if raw.get("state") != "destroyed":
            _mark_destroyed(raw)
        napi_delete_nics_of(raw["uuid"])
        job = _new_job("destroy-%s" % raw["uuid"], raw["uuid"], params, "succeeded")
        ts = now_iso()
        job["chain_results"] = [{"result": "Machine destroyed", "error": "",
                                 "started_at": ts, "finished_at": ts}]
        STORE.put("job", job["uuid"], job)
        return job
    job = _new_job("destroy-%s" % raw["uuid"], raw["uuid"], params)
    wf = _sim_workflow()

    def mark():
        with STORE:
            vm = STORE.get("vm", raw["uuid"])
            if vm and vm.get("state") != "destroyed":
                _mark_destroyed(vm)
        return "Machine destroyed"

    def nics():
        # sdc-vmapi lib/workflows/destroy.js: the job deletes the VM's NICs in NAPI
        with STORE:
            napi_delete_nics_of(raw["uuid"])
        return "NICs removed"
    _run_job(job["uuid"], [("cnapi.machine_destroy",
                            lambda: wf.destroy_on_cn(host, raw["uuid"]) or "vmadm delete"),
                           ("vmapi.mark_destroyed", mark), ("napi.remove_nics", nics)])
    return job


def vmapi_delete_vm(req):
    raw = _load_vm(req)
    job = destroy_vm(raw)
    return Response(202, {"vm_uuid": raw["uuid"], "job_uuid": job["uuid"]},
                    headers=[("workflow-api", "http://workflow.%s.sim" % common.DATACENTER)])


def _placement(params):
    """DAPI, in short: the named server, else the setup, running, unreserved
    compute node (never the head node) with the most unreserved RAM."""
    ram = int(params.get("ram") or 0)
    if params.get("server_uuid"):
        s = STORE.get("server", params["server_uuid"])
        if s is None:
            raise vmapi_validation([invalid_param("server_uuid", "Server not found")])
        return s
    fits = []
    for s in STORE.list("server"):
        out = server_out(s)
        if out.get("headnode") or out.get("reserved") or not out.get("setup") \
                or out.get("status") != "running" or out["unreserved_ram"] < ram:
            continue
        fits.append((-out["unreserved_ram"], s["uuid"], s))
    if not fits:
        raise ApiError(409, "NoAllocatableServersError", "No compute resources available")
    return min(fits)[2]


def vmapi_create_vm(req):
    """CreateVm (POST /vms): validate, place, then a provision job that asks NAPI
    for the NICs and creates the VM on its CN; 202 with the job at once."""
    body = dict(req.body) if isinstance(req.body, dict) else {}
    errs = [missing_param(f) for f in ("owner_uuid", "networks", "brand")
            if not body.get(f)]
    if body.get("brand") not in (None, "") and body["brand"] not in \
            ("joyent", "joyent-minimal", "lx"):
        errs.append(invalid_param("brand", "Only zone brands are provisioned here"))
    if not body.get("image_uuid"):
        errs.append(missing_param("image_uuid"))
    if body.get("networks") and (not isinstance(body["networks"], list) or not all(
            isinstance(n, dict) and valid_uuid(n.get("uuid")) for n in body["networks"])):
        errs.append(invalid_param("networks", "Invalid networks"))
    for k in ("uuid", "owner_uuid", "server_uuid", "image_uuid"):
        if body.get(k) and not valid_uuid(body[k]):
            errs.append(invalid_param(k, "Invalid UUID"))
    if errs:
        raise vmapi_validation(errs)
    vm_uuid = body.get("uuid") or new_uuid()
    if STORE.get("vm", vm_uuid):
        raise vmapi_validation([invalid_param("uuid", "Already exists")])
    for n in body["networks"]:
        if STORE.get("network", n["uuid"]) is None:
            raise vmapi_validation([invalid_param("networks", "Network %s not found"
                                                  % n["uuid"])])
    if STORE.get("image", body["image_uuid"]) is None:
        raise vmapi_validation([invalid_param("image_uuid", "Image not found")])
    server = _placement(body)
    host = _simulated_cn(server["uuid"])
    if host is None:
        raise ApiError(409, "NoAllocatableServersError",
                       "Server %s cannot be reached" % server["uuid"])
    ts = now_iso()
    # The placeholder VMAPI shows until the CN's vm-agent reports the real one.
    STORE.put("vm", vm_uuid, {"uuid": vm_uuid, "alias": body.get("alias"),
                              "brand": body["brand"], "owner_uuid": body["owner_uuid"],
                              "image_uuid": body["image_uuid"], "server_uuid": server["uuid"],
                              "state": "provisioning", "zone_state": "provisioning",
                              "ram": body.get("ram"), "tags": body.get("tags") or {},
                              "create_timestamp": ts, "last_modified": ts})
    job = _new_job("provision-%s" % vm_uuid, vm_uuid,
                   {"owner_uuid": body["owner_uuid"], "server_uuid": server["uuid"],
                    "task": "provision"})
    wf = _sim_workflow()
    made = {}

    def nics():
        made["nics"] = wf.nics_for(body["networks"], vm_uuid, body["owner_uuid"])
        return "NICs " + ", ".join(n["ip"] for n in made["nics"])

    def create():
        payload = wf.payload(vm_uuid, body["brand"], body.get("alias"), body["owner_uuid"],
                             body["image_uuid"], made["nics"], ram=int(body.get("ram") or 256),
                             tags=body.get("tags"),
                             customer_metadata=body.get("customer_metadata"),
                             internal_metadata=body.get("internal_metadata"),
                             quota=int(body.get("quota") or 10))
        wf.create_on_cn(host, payload, body["image_uuid"])
        return "vmadm create on " + host

    def boot():
        wf.boot_and_report(host, vm_uuid, body.get("autoboot", True) is not False)
        return "VM provisioned"

    def failed():
        wf.delete_nics(made.get("nics") or [])
        with STORE:
            vm = STORE.get("vm", vm_uuid)
            if vm and vm.get("state") == "provisioning":
                vm["state"] = vm["zone_state"] = "failed"
                STORE.put("vm", vm_uuid, vm)
    _run_job(job["uuid"], [("napi.provision_nics", nics), ("cnapi.machine_create", create),
                           ("cnapi.machine_boot", boot)], on_failure=failed)
    return Response(202, {"vm_uuid": vm_uuid, "job_uuid": job["uuid"]},
                    headers=[("workflow-api", "http://workflow.%s.sim" % common.DATACENTER)])


def _job_out(job):
    return {k: v for k, v in job.items() if k != "vm_uuid"}


def vmapi_get_job(req):
    job = STORE.get("job", req.match["uuid"])
    if job is None:
        raise not_found("Job not found")
    return Response(200, _job_out(job))


def vmapi_list_jobs(req):
    jobs = STORE.list("job")
    vm = req.params.get("vm_uuid")
    if vm:
        jobs = [j for j in jobs if j.get("vm_uuid") == vm]
    return Response(200, [_job_out(j) for j in jobs])


# ---- VMAPI migrations (RFD 34) ---------------------------------------------
# sdc-vmapi lib/endpoints/vms.js routes ListMigrations (GET /migrations),
# GetMigration (GET /migrations/:uuid, the record of the VM's current server)
# and StoreMigrationRecord (POST /migrations/:uuid/store, which the migration
# workflow calls); lib/vm-migration/migrate.js translateVmMigration shows these
# fields, and a stored successful abort or rollback deletes the record.
MIGRATION_FIELDS = ("automatic", "created_timestamp", "duration_ms", "error",
                    "finished_timestamp", "phase", "started_timestamp", "state", "vm_uuid")
PROGRESS_FIELDS = ("current_progress", "duration_ms", "finished_timestamp", "error", "message",
                   "phase", "state", "started_timestamp", "total_progress", "type")


def _ms_between(start, end=None):
    def t(v):
        return datetime.datetime.fromisoformat(str(v).replace("Z", "+00:00"))
    try:
        b = t(end) if end else datetime.datetime.now(datetime.timezone.utc)
        return int((b - t(start)).total_seconds() * 1000)
    except (TypeError, ValueError):
        return 0


def migration_out(rec, raw=False):
    history = []
    for e in rec.get("progress_history") or []:
        e = dict(e) if raw else dict({"type": "progress"}, **{k: e[k] for k in PROGRESS_FIELDS
                                                               if k in e})
        e.setdefault("duration_ms", _ms_between(e.get("started_timestamp"),
                                                e.get("finished_timestamp")))
        history.append(e)
    out = dict(rec) if raw else {k: rec[k] for k in MIGRATION_FIELDS if k in rec}
    out["progress_history"] = history
    out.setdefault("duration_ms", sum(e["duration_ms"] for e in history))
    return out


def vmapi_list_migrations(req):
    p = req.params
    recs = sorted(STORE.list("migration"), key=lambda r: r.get("created_timestamp") or "")
    for k in ("vm_uuid", "state", "phase", "source_server_uuid"):
        if p.get(k):
            recs = [r for r in recs if r.get(k) == p[k]]
    return Response(200, [migration_out(r, p.get("format") == "raw") for r in recs])


def vmapi_get_migration(req):
    vm = _load_vm(req)
    for r in STORE.list("migration"):
        if r.get("vm_uuid") == vm["uuid"] and r.get("source_server_uuid") == vm.get("server_uuid"):
            return Response(200, migration_out(r, req.params.get("format") == "raw"))
    raise not_found("migration not found")


def vmapi_store_migration(req):
    rec = dict(req.body) if isinstance(req.body, dict) else {}
    rec.setdefault("vm_uuid", req.match["uuid"])
    rec.setdefault("id", new_uuid())
    rec.setdefault("created_timestamp", now_iso())
    if rec.get("state") == "successful" and rec.get("phase") in ("abort", "rollback"):
        STORE.delete("migration", rec["id"])
    else:
        STORE.put("migration", rec["id"], rec)
    return Response(200, None)


def vmapi_ping(req):
    return Response(200, {"pingErrors": {}, "pid": os.getpid(), "status": "OK",
                          "healthy": True,
                          "services": {"wfapi": "online", "moray": "online"},
                          "initialization": {"moray": {"status": "BUCKETS_REINDEX_DONE"}}})


# ---- CNAPI -------------------------------------------------------------------

MEMORY_KEYS = ["memory_available_bytes", "memory_arc_bytes", "memory_total_bytes",
               "memory_provisionable_bytes"]
DISK_KEYS = ["disk_cores_quota_bytes", "disk_cores_quota_used_bytes",
             "disk_installed_images_used_bytes", "disk_kvm_quota_bytes",
             "disk_kvm_quota_used_bytes", "disk_kvm_zvol_used_bytes",
             "disk_kvm_zvol_volsize_bytes", "disk_pool_alloc_bytes", "disk_pool_size_bytes",
             "disk_system_used_bytes", "disk_zone_quota_bytes", "disk_zone_quota_used_bytes"]
SERVER_UPDATABLE = {
    "agents", "boot_platform", "default_console", "rack_identifier", "comments",
    "next_reboot", "reserved", "reservoir", "reservation_ratio", "overprovision_ratios",
    "serial", "setup", "setting_up", "transitional_status", "traits", "status",
    "last_heartbeat", "boot_params", "kernel_flags",
} | set(MEMORY_KEYS) | set(DISK_KEYS)


def _sysinfo_int(v, default=0):
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def server_from_sysinfo(sysinfo, old):
    uuid = sysinfo.get("UUID")
    ram = _sysinfo_int(sysinfo.get("MiB of Memory"))
    boot_params = sysinfo.get("Boot Parameters") or {}
    headnode = str(boot_params.get("headnode", "")).lower() == "true"
    total = ram * 1024 * 1024
    pool = _sysinfo_int(sysinfo.get("Zpool Size in GiB")) * 1024 ** 3
    boot_time = sysinfo.get("Boot Time")
    last_boot = None
    if boot_time:
        last_boot = norm_ts(_sysinfo_int(boot_time) * 1000)
    s = {
        "sysinfo": sysinfo,
        "ram": ram,
        "current_platform": sysinfo.get("Live Image"),
        "headnode": headnode,
        "boot_platform": sysinfo.get("Live Image"),
        "datacenter": common.DATACENTER,
        "overprovision_ratio": 1,
        "reservation_ratio": 0.15,
        "reservoir": False,
        "traits": {},
        "rack_identifier": "",
        "comments": "",
        "uuid": uuid,
        "hostname": sysinfo.get("Hostname"),
        "reserved": False,
        "boot_params": {},
        "kernel_flags": {},
        "default_console": "serial",
        "serial": "ttyb",
        "setup": True,
        "setting_up": False,
        "last_boot": last_boot,
        "created": now_iso(),
        "vms": {},
        "transitional_status": "",
        "last_heartbeat": None,
        "status": "running",
        "memory_available_bytes": total,
        "memory_arc_bytes": 0,
        "memory_total_bytes": total,
        "memory_provisionable_bytes": int(total * 0.85),
        "disk_kvm_zvol_used_bytes": 0,
        "disk_kvm_zvol_volsize_bytes": 0,
        "disk_kvm_quota_bytes": 0,
        "disk_zone_quota_bytes": 0,
        "disk_cores_quota_bytes": 0,
        "disk_installed_images_used_bytes": 0,
        "disk_pool_size_bytes": pool,
        "disk_pool_alloc_bytes": 0,
        "overprovision_ratios": {"ram": 1},
        "agents": sysinfo.get("SDC Agents") or [],
    }
    if old:
        # Operator-set and agent-reported values survive a sysinfo refresh.
        for k in ("created", "vms", "last_heartbeat", "reserved", "reservoir",
                  "reservation_ratio", "traits", "rack_identifier", "comments",
                  "boot_params", "kernel_flags", "default_console", "serial",
                  "overprovision_ratios", "transitional_status", "setup"):
            if k in old:
                s[k] = old[k]
        for k in MEMORY_KEYS + DISK_KEYS:
            if k in old and k != "memory_total_bytes":
                s[k] = old[k]
        if old.get("boot_platform"):
            s["boot_platform"] = old["boot_platform"]
    return s


MiB = 1024 * 1024


def _capacity(s):
    """DAPI's figures, apart from free memory (memory_available_bytes).

    unreserved_ram as sdc-designation lib/algorithms/calculate-server-unreserved.js
    computes it: memory_total_bytes in MiB times (1 - reservation_ratio), less
    the max_physical_memory of every VM on the server that has not failed
    (divided by the RAM overprovision ratio, except kvm), stopped ones too: a
    stopped instance keeps its RAM reserved while it uses none, so a CN can
    have free memory and a negative unreserved_ram (the sample
    cnapi-server.json: 2 GB free, unreserved_ram -42863). unreserved_disk as
    the sample's CNAPI has it: the pool less what is allocated in it (images
    only in the sample, which predates disk_pool_alloc_bytes), in MiB.
    Provisions and destroys move both through the vm-agent's report (vms).
    """
    vms = [v for v in (s.get("vms") or {}).values() if v.get("state") != "failed"]
    ratios = s.get("overprovision_ratios") or {}
    ram_ratio = ratios.get("ram") or 1
    ram = (s.get("memory_total_bytes") or (s.get("ram") or 0) * MiB) / MiB \
        * (1 - (s.get("reservation_ratio") or 0))
    cores = _sysinfo_int((s.get("sysinfo") or {}).get("CPU Total Cores"), 1)
    cpu = cores * 100
    for v in vms:
        mem = v.get("max_physical_memory") or 0
        ram -= mem if v.get("brand") == "kvm" else mem / ram_ratio
        cpu = cpu - v["cpu_cap"] / (ratios.get("cpu") or 1) if v.get("cpu_cap") else 0
    alloc = s.get("disk_pool_alloc_bytes") or s.get("disk_installed_images_used_bytes") or 0
    return {
        "unreserved_cpu": int(cpu // 1),
        "unreserved_ram": int(ram // 1),
        "unreserved_disk": int(((s.get("disk_pool_size_bytes") or 0) - alloc) // MiB),
    }


def _heartbeat_stale(s):
    """CNAPI's heartbeat reconciler: a server whose heartbeats stopped (for
    SIMDC_HEARTBEAT_STALE seconds, default 60; 0 disables) has status
    'unknown' (or its transitional_status)."""
    try:
        limit = float(os.environ.get("SIMDC_HEARTBEAT_STALE", "60"))
    except ValueError:
        limit = 60.0
    hb = s.get("last_heartbeat")
    if not limit or not hb:
        return False
    try:
        t = datetime.datetime.fromisoformat(str(hb).replace("Z", "+00:00"))
    except ValueError:
        return False
    age = (datetime.datetime.now(datetime.timezone.utc) - t).total_seconds()
    return age > limit


def server_out(s, extras=None):
    """extras None: everything (ServerGet); else a set of ServerList extras."""
    out = dict(s)
    if out.get("status") == "running" and _heartbeat_stale(s):
        out["status"] = s.get("transitional_status") or "unknown"
    if extras is None or "all" in extras or "capacity" in extras:
        out.update(_capacity(s))
    if extras is None or "all" in extras:
        return out
    if "memory" not in extras:
        for k in MEMORY_KEYS:
            out.pop(k, None)
    if "disk" not in extras:
        for k in DISK_KEYS:
            out.pop(k, None)
    for k in ("vms", "agents", "sysinfo"):
        if k not in extras:
            out.pop(k, None)
    if not extras:
        out.pop("last_heartbeat", None)
    return out


def cnapi_list_servers(req):
    p = req.params
    servers = sorted(STORE.list("server"), key=lambda s: s["uuid"])
    uuids = set(u.strip() for u in p["uuids"].split(",")) if p.get("uuids") else None
    out = []
    for s in servers:
        if uuids is not None and s["uuid"] not in uuids:
            continue
        if p.get("hostname") and s.get("hostname") != p["hostname"]:
            continue
        ok = True
        for k in ("setup", "reserved", "headnode", "reservoir"):
            if k in p:
                b = to_bool(p[k])
                if b is None:
                    raise ApiError(409, "InvalidParameters", "Invalid parameters",
                                   [invalid_param(k)])
                if bool(s.get(k)) != b:
                    ok = False
        if ok:
            out.append(s)
    extras = set(e for e in (p.get("extras") or "").split(",") if e)
    offset = int(p.get("offset") or 0)
    limit = int(p.get("limit") or 1000)
    out = out[offset:offset + limit]
    return Response(200, [server_out(s, extras) for s in out])


def _load_server(req):
    s = STORE.get("server", req.match["uuid"])
    if s is None:
        raise not_found("Server %s not found" % req.match["uuid"])
    return s


def cnapi_get_server(req):
    return Response(200, server_out(_load_server(req)))


def cnapi_update_server(req):
    s = _load_server(req)
    body = req.body if isinstance(req.body, dict) else {}
    params = dict(req.params)
    params.update(body)
    for k, v in params.items():
        if k not in SERVER_UPDATABLE:
            continue
        if k in ("reserved", "reservoir", "setup", "setting_up"):
            b = to_bool(v)
            if b is None:
                raise ApiError(409, "InvalidParameters", "Invalid parameters",
                               [invalid_param(k)])
            v = b
        elif k == "reservation_ratio":
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise ApiError(409, "InvalidParameters", "Invalid parameters",
                               [invalid_param(k)])
        elif k in MEMORY_KEYS or k in DISK_KEYS:
            try:
                v = int(v)
            except (TypeError, ValueError):
                raise ApiError(409, "InvalidParameters", "Invalid parameters",
                               [invalid_param(k)])
        elif k == "traits" and not isinstance(v, dict):
            try:
                v = json.loads(v)
            except (TypeError, ValueError):
                raise ApiError(409, "InvalidParameters", "Invalid parameters",
                               [invalid_param(k)])
        elif k == "last_heartbeat":
            v = norm_ts(v)
        s[k] = v
    STORE.put("server", s["uuid"], s)
    return Response(204, None)


def cnapi_sysinfo(req):
    body = req.body if isinstance(req.body, dict) else {}
    sysinfo = body.get("sysinfo")
    if not isinstance(sysinfo, dict):
        raise ApiError(409, "InvalidParameters", "Invalid parameters",
                       [missing_param("sysinfo")])
    uuid = req.match["uuid"]
    sysinfo = dict(sysinfo)
    sysinfo.setdefault("UUID", uuid)
    old = STORE.get("server", uuid)
    STORE.put("server", uuid, server_from_sysinfo(sysinfo, old))
    return Response(200, None)


def cnapi_delete_server(req):
    s = _load_server(req)
    STORE.delete("server", s["uuid"])
    return Response(204, None)


def cnapi_ping(req):
    return Response(200, {"ready": True, "healthy": True,
                          "services": {"moray": "online", "workflow": "online"},
                          "pid": os.getpid()})


# ---- NAPI --------------------------------------------------------------------

def _ip(s, field="ip"):
    try:
        return ipaddress.IPv4Address(str(s).strip())
    except (ipaddress.AddressValueError, ValueError):
        raise napi_invalid([{"field": field, "code": "InvalidParameter",
                             "message": "invalid IP address"}])


def _subnet(net):
    return ipaddress.IPv4Network(net["subnet"], strict=False)


def network_out(net):
    sub = _subnet(net)
    out = {
        "family": "ipv4",
        "mtu": net.get("mtu", 1500),
        "nic_tag": net["nic_tag"],
        "name": net["name"],
        "provision_end_ip": net["provision_end_ip"],
        "provision_start_ip": net["provision_start_ip"],
        "subnet": str(sub),
        "uuid": net["uuid"],
        "vlan_id": net["vlan_id"],
    }
    if net.get("fabric"):
        out["fabric"] = True
        if net.get("vnet_id") is not None:
            out["vnet_id"] = net["vnet_id"]
        if "internet_nat" in net:
            out["internet_nat"] = net["internet_nat"]
        if net.get("gateway"):
            out["gateway_provisioned"] = bool(net.get("gateway_provisioned"))
    out["resolvers"] = list(net.get("resolvers") or [])
    if net.get("gateway"):
        out["gateway"] = net["gateway"]
    if net.get("routes"):
        out["routes"] = net["routes"]
    if net.get("description"):
        out["description"] = net["description"]
    if net.get("owner_uuids"):
        out["owner_uuids"] = net["owner_uuids"]
    out["netmask"] = str(sub.netmask)
    return out


def _ip_key(net_uuid, ip):
    return "%s|%s" % (net_uuid, ip)


def ip_out(rec, net_uuid=None):
    out = {"ip": rec["ip"], "reserved": bool(rec.get("reserved")),
           "free": not rec.get("reserved")}
    for k in ("belongs_to_type", "belongs_to_uuid", "owner_uuid"):
        if rec.get(k):
            out[k] = rec[k]
            out["free"] = False
    out["network_uuid"] = rec.get("network_uuid", net_uuid)
    return out


def _ip_in_use(rec):
    return bool(rec and (rec.get("reserved") or rec.get("belongs_to_uuid")
                         or rec.get("owner_uuid") or rec.get("belongs_to_type")))


def _load_network(uuid):
    net = STORE.get("network", uuid)
    if net is None:
        raise not_found("network not found")
    return net


def _list_arg(v):
    if v is None:
        return None
    if isinstance(v, list):
        return [str(x) for x in v]
    return [x for x in str(v).split(",") if x != ""]


def napi_list_networks(req):
    p = req.params
    out = []
    names = _list_arg(p.get("name"))
    tags = _list_arg(p.get("nic_tag"))
    for net in STORE.list("network"):
        if names and net["name"] not in names:
            continue
        if tags and net["nic_tag"] not in tags:
            continue
        if "fabric" in p and bool(net.get("fabric")) != bool(to_bool(p["fabric"])):
            continue
        if p.get("vlan_id") not in (None, "") and str(net["vlan_id"]) != str(p["vlan_id"]):
            continue
        if p.get("owner_uuid") and p["owner_uuid"] not in (net.get("owner_uuids") or []):
            continue
        if p.get("provisionable_by") and net.get("owner_uuids") and \
                p["provisionable_by"] not in net["owner_uuids"] + [ADMIN_UUID]:
            continue
        out.append(network_out(net))
    offset = int(p.get("offset") or 0)
    limit = int(p.get("limit") or 1000)
    return Response(200, out[offset:offset + limit])


def _reserve_admin_ip(net, ip):
    rec = {"ip": str(ip), "network_uuid": net["uuid"], "reserved": True,
           "belongs_to_type": "other", "belongs_to_uuid": ADMIN_UUID,
           "owner_uuid": ADMIN_UUID}
    STORE.put("ip", _ip_key(net["uuid"], ip), rec)


def napi_create_network(req):
    p = dict(req.params)
    if isinstance(req.body, dict):
        p.update(req.body)
    fabric = bool(to_bool(p.get("fabric")) if not isinstance(p.get("fabric"), bool)
                  else p.get("fabric"))
    if fabric and not p.get("nic_tag"):
        p["nic_tag"] = "sdc_overlay"
    errs = [missing_param(f) for f in ("name", "subnet", "provision_start_ip",
                                       "provision_end_ip", "nic_tag", "vlan_id")
            if p.get(f) in (None, "")]
    if errs:
        raise napi_invalid(errs)
    try:
        sub = ipaddress.IPv4Network(str(p["subnet"]), strict=False)
    except ValueError:
        raise napi_invalid([{"field": "subnet", "code": "InvalidParameter",
                             "message": "Subnet must be in CIDR form"}])
    start = _ip(p["provision_start_ip"], "provision_start_ip")
    end = _ip(p["provision_end_ip"], "provision_end_ip")
    errs = []
    for f, a in (("provision_start_ip", start), ("provision_end_ip", end)):
        if a not in sub:
            errs.append({"field": f, "code": "InvalidParameter",
                         "message": "provision_start_ip cannot be outside subnet"
                         .replace("provision_start_ip", f)})
    if not errs and int(start) > int(end):
        errs.append({"field": "provision_end_ip", "code": "InvalidParameter",
                     "message": "provision_end_ip must be greater than provision_start_ip"})
    gateway = p.get("gateway")
    if gateway:
        g = _ip(gateway, "gateway")
        if g not in sub:
            errs.append({"field": "gateway", "code": "InvalidParameter",
                         "message": "gateway cannot be outside subnet"})
        gateway = str(g)
    try:
        vlan_id = int(p["vlan_id"])
    except (TypeError, ValueError):
        errs.append({"field": "vlan_id", "code": "InvalidParameter",
                     "message": "VLAN ID must be a number"})
        vlan_id = 0
    if not fabric and STORE.get("nic_tag", p["nic_tag"]) is None:
        errs.append({"field": "nic_tag", "code": "InvalidParameter",
                     "message": "nic tag does not exist"})
    if any(n["name"] == p["name"] for n in STORE.list("network")):
        errs.append({"field": "name", "code": "Duplicate", "message": "Already exists"})
    resolvers = p.get("resolvers") or []
    if isinstance(resolvers, str):
        resolvers = [r for r in resolvers.split(",") if r]
    owner_uuids = p.get("owner_uuids")
    if isinstance(owner_uuids, str):
        owner_uuids = [o for o in owner_uuids.split(",") if o]
    if errs:
        raise napi_invalid(errs)
    net = {
        "uuid": p.get("uuid") if valid_uuid(p.get("uuid")) else new_uuid(),
        "name": p["name"],
        "subnet": str(sub),
        "provision_start_ip": str(start),
        "provision_end_ip": str(end),
        "nic_tag": p["nic_tag"],
        "vlan_id": vlan_id,
        "mtu": int(p.get("mtu") or (1400 if fabric else 1500)),
        "resolvers": [str(_ip(r, "resolvers")) for r in resolvers],
    }
    if gateway:
        net["gateway"] = gateway
    for k in ("routes", "description"):
        if p.get(k):
            net[k] = p[k]
    if owner_uuids:
        net["owner_uuids"] = owner_uuids
    if fabric:
        net["fabric"] = True
        net["vnet_id"] = int(p["vnet_id"]) if p.get("vnet_id") not in (None, "") else \
            random.randint(1, 16000000)
        if "internet_nat" in p:
            net["internet_nat"] = bool(to_bool(p["internet_nat"])
                                       if not isinstance(p["internet_nat"], bool)
                                       else p["internet_nat"])
        gp = p.get("gateway_provisioned", False)
        net["gateway_provisioned"] = gp if isinstance(gp, bool) else bool(to_bool(gp))
    STORE.put("network", net["uuid"], net)
    # Reserved records, as NAPI makes them: gateway, resolvers in the
    # subnet, and the broadcast address.
    if gateway:
        _reserve_admin_ip(net, gateway)
    for r in net["resolvers"]:
        if ipaddress.IPv4Address(r) in sub:
            _reserve_admin_ip(net, r)
    _reserve_admin_ip(net, sub.broadcast_address)
    return Response(200, network_out(net))


def napi_get_network(req):
    return Response(200, network_out(_load_network(req.match["uuid"])))


def napi_update_network(req):
    net = _load_network(req.match["uuid"])
    p = dict(req.params)
    if isinstance(req.body, dict):
        p.update(req.body)
    for k in ("name", "description", "routes"):
        if k in p:
            net[k] = p[k]
    if "owner_uuids" in p:
        o = p["owner_uuids"]
        net["owner_uuids"] = [x for x in o.split(",") if x] if isinstance(o, str) else o
    if "resolvers" in p:
        r = p["resolvers"]
        net["resolvers"] = [x for x in r.split(",") if x] if isinstance(r, str) else r
    if "mtu" in p:
        net["mtu"] = int(p["mtu"])
    for k in ("provision_start_ip", "provision_end_ip"):
        if k in p:
            a = _ip(p[k], k)
            if a not in _subnet(net):
                raise napi_invalid([{"field": k, "code": "InvalidParameter",
                                     "message": "%s cannot be outside subnet" % k}])
            net[k] = str(a)
    if "gateway" in p:
        if p["gateway"]:
            net["gateway"] = str(_ip(p["gateway"], "gateway"))
            _reserve_admin_ip(net, net["gateway"])
        else:
            net.pop("gateway", None)
    for k in ("gateway_provisioned", "internet_nat"):
        if k in p:
            v = p[k]
            net[k] = v if isinstance(v, bool) else bool(to_bool(v))
    STORE.put("network", net["uuid"], net)
    return Response(200, network_out(net))


def napi_delete_network(req):
    net = _load_network(req.match["uuid"])
    if any(n.get("network_uuid") == net["uuid"] for n in STORE.list("nic")):
        raise ApiError(422, "InUse", "Network is in use",
                       [{"type": "nic", "code": "UsedBy", "message": "in use"}])
    for rec in STORE.list("ip", net["uuid"] + "|"):
        STORE.delete("ip", _ip_key(net["uuid"], rec["ip"]))
    STORE.delete("network", net["uuid"])
    return Response(204, None)


def napi_list_ips(req):
    net = _load_network(req.match["uuid"])
    p = req.params
    out = []
    recs = sorted(STORE.list("ip", net["uuid"] + "|"),
                  key=lambda r: int(ipaddress.IPv4Address(r["ip"])))
    for rec in recs:
        if not _ip_in_use(rec):
            continue
        if p.get("belongs_to_type") and rec.get("belongs_to_type") != p["belongs_to_type"]:
            continue
        if p.get("belongs_to_uuid") and rec.get("belongs_to_uuid") != p["belongs_to_uuid"]:
            continue
        out.append(ip_out(rec))
    offset = int(p.get("offset") or 0)
    limit = int(p.get("limit") or 1000)
    return Response(200, out[offset:offset + limit])


def _ip_record(net, ip_s):
    a = _ip(ip_s)
    if a not in _subnet(net):
        raise not_found("IP is not in subnet")
    rec = STORE.get("ip", _ip_key(net["uuid"], str(a)))
    return a, rec


def napi_get_ip(req):
    net = _load_network(req.match["uuid"])
    a, rec = _ip_record(net, req.match["ip"])
    if rec is None:
        rec = {"ip": str(a), "network_uuid": net["uuid"], "reserved": False}
    return Response(200, ip_out(rec))


def napi_update_ip(req):
    net = _load_network(req.match["uuid"])
    a, rec = _ip_record(net, req.match["ip"])
    p = dict(req.params)
    if isinstance(req.body, dict):
        p.update(req.body)
    rec = dict(rec or {"ip": str(a), "network_uuid": net["uuid"], "reserved": False})
    key = _ip_key(net["uuid"], str(a))
    if to_bool(p.get("free")) or p.get("free") is True:
        rec = {"ip": str(a), "network_uuid": net["uuid"], "reserved": False,
               "freed": time.time()}
        STORE.put("ip", key, rec)
        return Response(200, ip_out(rec))
    if to_bool(p.get("unassign")) or p.get("unassign") is True:
        rec.pop("belongs_to_uuid", None)
        rec.pop("belongs_to_type", None)
        STORE.put("ip", key, rec)
        return Response(200, ip_out(rec))
    if "reserved" in p:
        b = p["reserved"] if isinstance(p["reserved"], bool) else to_bool(p["reserved"])
        if b is None:
            raise napi_invalid([{"field": "reserved", "code": "InvalidParameter",
                                 "message": "must be a boolean value"}])
        rec["reserved"] = b
    for k in ("owner_uuid", "belongs_to_uuid", "belongs_to_type"):
        if p.get(k):
            rec[k] = p[k]
    if bool(rec.get("belongs_to_uuid")) != bool(rec.get("belongs_to_type")):
        missing = "belongs_to_type" if rec.get("belongs_to_uuid") else "belongs_to_uuid"
        raise napi_invalid([missing_param(missing)])
    rec.pop("freed", None)
    STORE.put("ip", key, rec)
    return Response(200, ip_out(rec))


def napi_search_ips(req):
    ip_s = req.params.get("ip")
    if not ip_s:
        raise napi_invalid([missing_param("ip")])
    a = _ip(ip_s)
    out = []
    for net in STORE.list("network"):
        if a in _subnet(net):
            rec = STORE.get("ip", _ip_key(net["uuid"], str(a))) or \
                {"ip": str(a), "network_uuid": net["uuid"], "reserved": False}
            out.append(ip_out(rec))
    if not out:
        raise not_found("No networks found containing that IP address")
    return Response(200, out)


def napi_list_nic_tags(req):
    return Response(200, [{"mtu": t.get("mtu", 1500), "name": t["name"], "uuid": t["uuid"]}
                          for t in STORE.list("nic_tag")])


def napi_create_nic_tag(req):
    p = dict(req.params)
    if isinstance(req.body, dict):
        p.update(req.body)
    name = p.get("name")
    if not name:
        raise napi_invalid([missing_param("name")])
    if not re.match(r"^[a-zA-Z0-9_]{1,31}$", str(name)):
        raise napi_invalid([{"field": "name", "code": "InvalidParameter",
                             "message": "must only contain numbers, letters and "
                                        "underscores"}])
    if STORE.get("nic_tag", name):
        raise napi_invalid([{"field": "name", "code": "Duplicate",
                             "message": "Already exists"}])
    tag = {"mtu": int(p.get("mtu") or 1500), "name": name, "uuid": new_uuid()}
    STORE.put("nic_tag", name, tag)
    return Response(200, tag)


def napi_get_nic_tag(req):
    t = STORE.get("nic_tag", req.match["name"])
    if t is None:
        raise not_found("nic tag not found")
    return Response(200, {"mtu": t.get("mtu", 1500), "name": t["name"], "uuid": t["uuid"]})


MAC_RE = re.compile(r"^[0-9a-f]{12}$")


def norm_mac(s):
    h = re.sub(r"[:\-\.]", "", str(s).strip().lower())
    if not MAC_RE.match(h):
        if re.match(r"^[0-9a-f]{1,2}(:[0-9a-f]{1,2}){5}$", str(s).strip().lower()):
            h = "".join("%02x" % int(x, 16) for x in str(s).strip().lower().split(":"))
        else:
            return None
    return ":".join(h[i:i + 2] for i in range(0, 12, 2))


NIC_BOOL_PARAMS = ["allow_dhcp_spoofing", "allow_ip_spoofing", "allow_mac_spoofing",
                   "allow_restricted_traffic", "allow_unfiltered_promisc", "underlay"]


def nic_out(nic):
    out = {
        "belongs_to_type": nic["belongs_to_type"],
        "belongs_to_uuid": nic["belongs_to_uuid"],
        "mac": nic["mac"],
        "owner_uuid": nic["owner_uuid"],
        "primary": bool(nic.get("primary")),
        "state": nic.get("state", "running"),
        "created_timestamp": nic.get("created_timestamp", "1970-01-01T00:00:00.000Z"),
        "modified_timestamp": nic.get("modified_timestamp", "1970-01-01T00:00:00.000Z"),
    }
    net = STORE.get("network", nic["network_uuid"]) if nic.get("network_uuid") else None
    if nic.get("ip") and net:
        out["ip"] = nic["ip"]
        ns = network_out(net)
        for k in ("fabric", "gateway", "gateway_provisioned", "internet_nat", "mtu",
                  "netmask", "nic_tag", "resolvers", "vlan_id"):
            if k in ns:
                out[k] = ns[k]
        if ns.get("routes"):
            out["routes"] = ns["routes"]
        out["network_uuid"] = net["uuid"]
    for k in ("cn_uuid", "model", "nic_tag"):
        if nic.get(k):
            out[k] = nic[k]
    if net and net.get("fabric"):
        out["nic_tag"] = "%s/%s" % (net["nic_tag"], net.get("vnet_id"))
    if nic.get("nic_tags_provided"):
        out["nic_tags_provided"] = nic["nic_tags_provided"]
    for k in NIC_BOOL_PARAMS:
        if nic.get(k):
            out[k] = True
    return out


def _random_mac():
    while True:
        mac = "90:b8:d0:%02x:%02x:%02x" % (random.randint(0, 255), random.randint(0, 255),
                                           random.randint(0, 255))
        if STORE.get("nic", mac) is None:
            return mac


def _allocate_ip(net):
    start = int(ipaddress.IPv4Address(net["provision_start_ip"]))
    end = int(ipaddress.IPv4Address(net["provision_end_ip"]))
    recs = {int(ipaddress.IPv4Address(r["ip"])): r
            for r in STORE.list("ip", net["uuid"] + "|")}
    for n in range(start, end + 1):
        if n not in recs:
            return str(ipaddress.IPv4Address(n))
    free = [(r.get("freed", 0), n) for n, r in recs.items()
            if start <= n <= end and not _ip_in_use(r)]
    if free:
        return str(ipaddress.IPv4Address(min(free)[1]))
    raise ApiError(507, "SubnetFull", "No more free IPs available on network %s"
                   % net["uuid"])


def _find_network_for_ip(ip, nic_tag=None, vlan_id=None):
    a = ipaddress.IPv4Address(ip)
    best = None
    for net in STORE.list("network"):
        if a in _subnet(net):
            if (nic_tag is None or net["nic_tag"] == nic_tag) and \
                    (vlan_id is None or str(net["vlan_id"]) == str(vlan_id)):
                return net
            best = best or net
    return best


def _take_ip(net, ip, nic, reserved=None, explicit=True):
    """Give ip on net to nic; error if it belongs to something else."""
    key = _ip_key(net["uuid"], ip)
    rec = STORE.get("ip", key)
    if rec and rec.get("belongs_to_uuid") and rec.get("belongs_to_uuid") != nic["belongs_to_uuid"] \
            and not (rec.get("belongs_to_type") == "other"
                     and rec.get("belongs_to_uuid") == ADMIN_UUID):
        raise napi_invalid([{"field": "ip", "code": "UsedBy",
                             "message": "IP in use",
                             "type": rec.get("belongs_to_type"),
                             "id": rec.get("belongs_to_uuid")}])
    rec = dict(rec or {"ip": ip, "network_uuid": net["uuid"], "reserved": False})
    rec.pop("freed", None)
    rec["belongs_to_type"] = nic["belongs_to_type"]
    rec["belongs_to_uuid"] = nic["belongs_to_uuid"]
    rec["owner_uuid"] = nic["owner_uuid"]
    if reserved is not None:
        rec["reserved"] = reserved
    STORE.put("ip", key, rec)
    if net.get("fabric") and net.get("gateway") == ip:
        net["gateway_provisioned"] = True
        STORE.put("network", net["uuid"], net)


def _release_ip(net_uuid, ip):
    """A NIC let go of ip: free it, unless reserved (then keep owner)."""
    key = _ip_key(net_uuid, ip)
    rec = STORE.get("ip", key)
    if rec is None:
        return
    if rec.get("reserved"):
        rec.pop("belongs_to_uuid", None)
        rec.pop("belongs_to_type", None)
        STORE.put("ip", key, rec)
    else:
        STORE.put("ip", key, {"ip": ip, "network_uuid": net_uuid, "reserved": False,
                              "freed": time.time()})
    net = STORE.get("network", net_uuid)
    if net and net.get("fabric") and net.get("gateway") == ip:
        net["gateway_provisioned"] = False
        STORE.put("network", net_uuid, net)


def _bool_param(p, k):
    v = p.get(k)
    return v if isinstance(v, bool) else to_bool(v)


def napi_create_nic(req, network_uuid=None):
    p = dict(req.params)
    if isinstance(req.body, dict):
        p.update(req.body)
    if network_uuid:
        p["network_uuid"] = network_uuid
    errs = [missing_param(f) for f in ("owner_uuid", "belongs_to_uuid", "belongs_to_type")
            if not p.get(f)]
    if errs:
        raise napi_invalid(errs)
    if p.get("mac"):
        mac = norm_mac(p["mac"])
        if mac is None:
            raise napi_invalid([{"field": "mac", "code": "InvalidParameter",
                                 "message": "invalid MAC address"}])
        if STORE.get("nic", mac):
            raise napi_invalid([{"field": "mac", "code": "Duplicate",
                                 "message": "Already exists"}])
    else:
        mac = _random_mac()
    ts = now_iso()
    nic = {"mac": mac, "owner_uuid": p["owner_uuid"], "belongs_to_uuid": p["belongs_to_uuid"],
           "belongs_to_type": p["belongs_to_type"],
           "primary": bool(_bool_param(p, "primary")),
           "state": p.get("state") or "running",
           "created_timestamp": ts, "modified_timestamp": ts}
    for k in ("cn_uuid", "model", "nic_tag"):
        if p.get(k):
            nic[k] = p[k]
    if p.get("nic_tags_provided"):
        ntp = p["nic_tags_provided"]
        nic["nic_tags_provided"] = ntp if isinstance(ntp, list) else \
            [x for x in str(ntp).split(",") if x]
    for k in NIC_BOOL_PARAMS:
        if _bool_param(p, k):
            nic[k] = True
    net = None
    if p.get("network_uuid"):
        net = STORE.get("network", p["network_uuid"])
        if net is None:
            raise napi_invalid([{"field": "network_uuid", "code": "InvalidParameter",
                                 "message": "network does not exist"}])
    elif p.get("ip"):
        net = _find_network_for_ip(str(_ip(p["ip"])), p.get("nic_tag"), p.get("vlan_id"))
        if net is None:
            raise napi_invalid([{"field": "ip", "code": "InvalidParameter",
                                 "message": "No networks found matching parameters"}])
    if net is not None:
        if p.get("ip"):
            a = _ip(p["ip"])
            if a not in _subnet(net):
                raise napi_invalid([{"field": "ip", "code": "InvalidParameter",
                                     "message": "ip cannot be outside subnet"}])
            ip = str(a)
        else:
            ip = _allocate_ip(net)
        reserved = _bool_param(p, "reserved")
        _take_ip(net, ip, nic, reserved=reserved, explicit=bool(p.get("ip")))
        nic["ip"] = ip
        nic["network_uuid"] = net["uuid"]
    if nic["primary"]:
        for other in STORE.list("nic"):
            if other["belongs_to_uuid"] == nic["belongs_to_uuid"] and other.get("primary"):
                other["primary"] = False
                STORE.put("nic", other["mac"], other)
    STORE.put("nic", mac, nic)
    return Response(200, nic_out(nic))


def napi_provision_nic(req):
    _load_network(req.match["uuid"])
    return napi_create_nic(req, network_uuid=req.match["uuid"])


def _load_nic(req):
    mac = norm_mac(req.match["mac"])
    nic = STORE.get("nic", mac) if mac else None
    if nic is None:
        raise not_found("nic not found")
    return nic


def napi_get_nic(req):
    return Response(200, nic_out(_load_nic(req)))


def napi_update_nic(req):
    nic = _load_nic(req)
    p = dict(req.params)
    if isinstance(req.body, dict):
        p.update(req.body)
    for k in ("owner_uuid", "belongs_to_uuid", "belongs_to_type", "cn_uuid", "model",
              "state", "nic_tag"):
        if p.get(k):
            nic[k] = p[k]
    if "nic_tags_provided" in p:
        ntp = p["nic_tags_provided"]
        nic["nic_tags_provided"] = ntp if isinstance(ntp, list) else \
            [x for x in str(ntp).split(",") if x]
    for k in NIC_BOOL_PARAMS:
        if k in p:
            if _bool_param(p, k):
                nic[k] = True
            else:
                nic.pop(k, None)
    if "primary" in p:
        nic["primary"] = bool(_bool_param(p, "primary"))
        if nic["primary"]:
            for other in STORE.list("nic"):
                if other["mac"] != nic["mac"] and other["belongs_to_uuid"] == \
                        nic["belongs_to_uuid"] and other.get("primary"):
                    other["primary"] = False
                    STORE.put("nic", other["mac"], other)
    new_net_uuid = p.get("network_uuid") or nic.get("network_uuid")
    if p.get("ip") or (p.get("network_uuid") and p["network_uuid"] != nic.get("network_uuid")):
        net = STORE.get("network", new_net_uuid) if new_net_uuid else None
        if net is None and p.get("ip"):
            net = _find_network_for_ip(str(_ip(p["ip"])), nic.get("nic_tag"))
        if net is None:
            raise napi_invalid([{"field": "network_uuid", "code": "InvalidParameter",
                                 "message": "network does not exist"}])
        ip = str(_ip(p["ip"])) if p.get("ip") else _allocate_ip(net)
        if (net["uuid"], ip) != (nic.get("network_uuid"), nic.get("ip")):
            _take_ip(net, ip, nic)
            if nic.get("ip") and nic.get("network_uuid"):
                _release_ip(nic["network_uuid"], nic["ip"])
            nic["ip"] = ip
            nic["network_uuid"] = net["uuid"]
    elif nic.get("ip") and nic.get("network_uuid"):
        # belongs_to/owner changes follow onto the IP record
        key = _ip_key(nic["network_uuid"], nic["ip"])
        rec = STORE.get("ip", key)
        if rec is not None:
            for k in ("belongs_to_uuid", "belongs_to_type", "owner_uuid"):
                rec[k] = nic[k]
            STORE.put("ip", key, rec)
    nic["modified_timestamp"] = now_iso()
    STORE.put("nic", nic["mac"], nic)
    return Response(200, nic_out(nic))


def _delete_nic(nic):
    STORE.delete("nic", nic["mac"])
    if nic.get("ip") and nic.get("network_uuid"):
        _release_ip(nic["network_uuid"], nic["ip"])


def napi_delete_nic(req):
    _delete_nic(_load_nic(req))
    return Response(204, None)


def napi_list_nics(req):
    p = req.params
    filters = {}
    for k in ("belongs_to_uuid", "belongs_to_type", "owner_uuid", "network_uuid",
              "nic_tag", "nic_tags_provided", "cn_uuid", "state"):
        if p.get(k) not in (None, ""):
            filters[k] = set(_list_arg(p[k]))
    out = []
    for nic in STORE.list("nic"):
        ser = nic_out(nic)
        ok = True
        for k, vals in filters.items():
            if k == "nic_tags_provided":
                if not vals & set(nic.get("nic_tags_provided") or []):
                    ok = False
            elif k == "nic_tag":
                if ser.get("nic_tag") not in vals:
                    ok = False
            elif nic.get(k) not in vals:
                ok = False
        if ok:
            out.append(ser)
    offset = int(p.get("offset") or 0)
    limit = int(p.get("limit") or 1000)
    return Response(200, out[offset:offset + limit])


def napi_delete_nics_of(vm_uuid):
    for nic in STORE.list("nic"):
        if nic["belongs_to_uuid"] == vm_uuid:
            _delete_nic(nic)


def napi_ping(req):
    return Response(200, {"config": {"fabrics_enabled": True}, "healthy": True,
                          "services": {"moray": "online"}, "status": "OK"})


# ---- IMGAPI ------------------------------------------------------------------

IMAGE_ORDER = ["v", "uuid", "owner", "name", "version", "state", "disabled", "public",
               "published_at", "type", "os", "files", "description", "homepage", "urn",
               "requirements", "tags", "origin", "nic_driver", "disk_driver",
               "cpu_type", "image_size", "billing_tags", "traits", "channels"]


def image_out(img):
    out = {}
    for k in IMAGE_ORDER:
        if k in img and img[k] is not None:
            out[k] = img[k]
    for k, v in img.items():
        if k not in out and not k.startswith("_") and v is not None:
            out[k] = v
    if "files" in out:
        out["files"] = [{k: v for k, v in f.items() if not k.startswith("_")}
                        for f in out["files"]]
    return out


def imgapi_list_images(req):
    p = req.params
    state = p.get("state") or "active"
    out = []
    for img in STORE.list("image"):
        if state != "all" and img.get("state") != state:
            continue
        ok = True
        for k in ("name", "os", "type", "version", "owner"):
            if p.get(k) and js_str(img.get(k)) != p[k]:
                ok = False
        if p.get("public") and to_bool(p["public"]) is not None and \
                bool(img.get("public")) != to_bool(p["public"]):
            ok = False
        if ok:
            out.append(image_out(img))
    return Response(200, out)


def _load_image(uuid):
    img = STORE.get("image", uuid)
    if img is None:
        raise not_found('image "%s" was not found' % uuid)
    return img


def imgapi_get_image(req):
    return Response(200, image_out(_load_image(req.match["uuid"])))


def imgapi_create_image(req):
    body = req.body if isinstance(req.body, dict) else {}
    action = req.params.get("action")
    if action:
        raise ApiError(409, "InvalidParameter", "unknown action: %s" % action)
    errs = [missing_param(f) for f in ("name", "version") if not body.get(f)]
    if errs:
        raise ApiError(422, "ValidationFailed", "invalid image data", errs)
    uuid = body.get("uuid") or new_uuid()
    if not valid_uuid(uuid):
        raise ApiError(422, "ValidationFailed", "invalid image data",
                       [invalid_param("uuid", "invalid UUID")])
    if STORE.get("image", uuid):
        raise ApiError(409, "ImageUuidAlreadyExists", "image uuid \"%s\" already exists"
                       % uuid)
    img = {"v": 2, "uuid": uuid, "owner": body.get("owner") or ADMIN_UUID,
           "name": body["name"], "version": body["version"], "state": "unactivated",
           "disabled": bool(body.get("disabled", False)),
           "public": bool(body.get("public", False)), "type": body.get("type", "zone-dataset"),
           "os": body.get("os", "smartos"), "files": []}
    for k, v in body.items():
        if k not in img and k not in ("state", "files", "published_at"):
            img[k] = v
    STORE.put("image", uuid, img)
    return Response(200, image_out(img))


def imgapi_image_action(req):
    img = _load_image(req.match["uuid"])
    action = req.params.get("action")
    if action == "activate":
        if not img.get("files"):
            raise ApiError(422, "NoActivationNoFile",
                           'image "%s" cannot be activated: it has no file' % img["uuid"])
        img["state"] = "active"
        img.setdefault("published_at", now_iso())
    elif action in ("disable", "enable"):
        img["disabled"] = action == "disable"
        img["state"] = "disabled" if action == "disable" else "active"
    else:
        raise ApiError(409, "InvalidParameter", "unknown action: %s" % action)
    STORE.put("image", img["uuid"], img)
    return Response(200, image_out(img))


def imgapi_delete_image(req):
    img = _load_image(req.match["uuid"])
    STORE.delete("image", img["uuid"])
    try:
        os.unlink(common.path("imgapi", img["uuid"] + ".zfs"))
    except FileNotFoundError:
        pass
    return Response(204, None)


def imgapi_get_file(req):
    img = _load_image(req.match["uuid"])
    fpath = common.path("imgapi", img["uuid"] + ".zfs")
    if not img.get("files") or not os.path.exists(fpath):
        raise not_found('image "%s" has no file' % img["uuid"])
    f = img["files"][0]
    return Response(200, file=fpath, content_type="application/octet-stream",
                    headers=[("Content-MD5", f.get("_md5", ""))] if f.get("_md5") else [])


def imgapi_ping(req):
    return Response(200, {"ping": "pong", "pid": os.getpid(), "version": "4.13.0",
                          "imgapi": True})


# ---- SAPI --------------------------------------------------------------------

def _sapi_obj(kind, body, fields):
    obj = {"uuid": body.get("uuid") or new_uuid()}
    for k in fields:
        if k in body:
            obj[k] = body[k]
    for k in ("params", "metadata", "manifests"):
        obj[k] = body.get(k) if isinstance(body.get(k), dict) else {}
    return obj


def _sapi_list(kind, p, filters):
    out = []
    for o in STORE.list(kind):
        if all(not p.get(f) or js_str(o.get(f)) == p[f] for f in filters):
            out.append(o)
    return out


def sapi_list_apps(req):
    return Response(200, _sapi_list("application", req.params, ("name", "owner_uuid")))


def sapi_create_app(req):
    body = req.body if isinstance(req.body, dict) else {}
    errs = [missing_param(f) for f in ("name", "owner_uuid") if not body.get(f)]
    if errs:
        raise ApiError(409, "MissingParameter", "missing parameters", errs)
    app = _sapi_obj("application", body, ("name", "owner_uuid"))
    STORE.put("application", app["uuid"], app)
    return Response(200, app)


def sapi_get_app(req):
    o = STORE.get("application", req.match["uuid"])
    if o is None:
        raise not_found("application %s not found" % req.match["uuid"])
    return Response(200, o)


def sapi_list_services(req):
    return Response(200, _sapi_list("service", req.params, ("name", "application_uuid", "type")))


def sapi_create_service(req):
    body = req.body if isinstance(req.body, dict) else {}
    errs = [missing_param(f) for f in ("name", "application_uuid") if not body.get(f)]
    if errs:
        raise ApiError(409, "MissingParameter", "missing parameters", errs)
    svc = _sapi_obj("service", body, ("name", "application_uuid"))
    svc["type"] = body.get("type", "vm")
    STORE.put("service", svc["uuid"], svc)
    return Response(200, svc)


def sapi_get_service(req):
    o = STORE.get("service", req.match["uuid"])
    if o is None:
        raise not_found("service %s not found" % req.match["uuid"])
    return Response(200, o)


def sapi_list_instances(req):
    return Response(200, _sapi_list("instance", req.params, ("service_uuid", "type")))


def _assemble(app, svc, inst, field):
    """SAPI's attributes.assemble: instance over service over application."""
    out = {}
    for o in (app, svc, inst):
        out.update((o or {}).get(field) or {})
    return out


# What SAPI passes on to the zone's customer_metadata (sanitizeMetadata); the
# rest of the metadata is config-agent's, read from SAPI.
SAPI_ZONE_METADATA = ("SAPI_URL", "sapi_url", "SAPI-URL", "sapi-url", "user-script",
                      "assets-ip")


def sapi_create_instance(req):
    """CreateInstance: the record, then the zone through VMAPI's CreateVm (as
    SAPI's deployInstance does), unless `exists` adopts a zone already there.
    Waits for the provision unless ?async=true (then the job_uuid is returned)."""
    body = req.body if isinstance(req.body, dict) else {}
    with STORE:
        if not body.get("service_uuid"):
            raise ApiError(409, "MissingParameter", "missing parameters",
                           [missing_param("service_uuid")])
        svc = STORE.get("service", body["service_uuid"])
        if svc is None:
            raise not_found("no such service: %s" % body["service_uuid"])
        inst = _sapi_obj("instance", body, ("service_uuid",))
        inst["type"] = body.get("type", "vm")
        if body.get("exists") or svc.get("type", "vm") != "vm":
            STORE.put("instance", inst["uuid"], inst)
            return Response(200, inst)
        app = STORE.get("application", svc.get("application_uuid")) or {}
        params = _assemble(app, svc, inst, "params")
        metadata = _assemble(app, svc, inst, "metadata")
        params.update(owner_uuid=app.get("owner_uuid"), uuid=inst["uuid"],
                      brand="joyent-minimal",
                      customer_metadata={k: metadata[k] for k in SAPI_ZONE_METADATA
                                         if metadata.get(k)})
        vmreq = Request("POST", "/vms", "", {}, params, {}, {})
        created = vmapi_create_vm(vmreq).body
        STORE.put("instance", inst["uuid"], inst)
    if to_bool(req.params.get("async")):
        return Response(200, dict(inst, job_uuid=created["job_uuid"]))
    job = wait_job(created["job_uuid"])
    if job is None or job["execution"] != "succeeded":
        with STORE:
            STORE.delete("instance", inst["uuid"])
        errors = [r["error"] for r in (job or {}).get("chain_results", []) if r.get("error")]
        raise ApiError(500, "InternalError", "failed to provision instance %s: %s"
                       % (inst["uuid"], "; ".join(errors) or "job did not finish"))
    return Response(200, inst)


def sapi_get_instance(req):
    o = STORE.get("instance", req.match["uuid"])
    if o is None:
        raise not_found("instance %s not found" % req.match["uuid"])
    return Response(200, o)


def sapi_delete_instance(req):
    """DeleteInstance: the zone through VMAPI (waiting for the job), then the record."""
    with STORE:
        o = STORE.get("instance", req.match["uuid"])
        if o is None:
            raise not_found("instance %s not found" % req.match["uuid"])
        vm = STORE.get("vm", o["uuid"])
        job = destroy_vm(vm) if vm and vm.get("state") != "destroyed" else None
    if job is not None:
        job = wait_job(job["uuid"])
        if job is None or job["execution"] != "succeeded":
            errors = [r["error"] for r in (job or {}).get("chain_results", []) if r.get("error")]
            raise ApiError(500, "InternalError", "failed to delete VM %s: %s"
                           % (o["uuid"], "; ".join(errors) or "job did not finish"))
    with STORE:
        STORE.delete("instance", o["uuid"])
    return Response(204, None)


# Handlers that wait for a job: they take the store lock themselves, for short
# moments, so that the job (and the CN's vm-agent) can use the store meanwhile.
UNLOCKED = (sapi_create_instance, sapi_delete_instance)


def sapi_ping(req):
    return Response(200, {"mode": "full", "storType": "MorayStore", "storAvailable": True})


# ---- routes ------------------------------------------------------------------

def _r(pattern):
    rx = re.sub(r":(\w+)", r"(?P<\1>[^/]+)", pattern)
    return re.compile("^" + rx + "/?$")


ROUTES = {
    "vmapi": [
        ("GET", _r("/ping"), vmapi_ping),
        ("GET", _r("/vms"), vmapi_list_vms),
        ("PUT", _r("/vms"), vmapi_put_vms),
        ("POST", _r("/vms"), vmapi_create_vm),
        ("GET", _r("/vms/:uuid"), vmapi_get_vm),
        ("DELETE", _r("/vms/:uuid"), vmapi_delete_vm),
        ("GET", _r("/jobs"), vmapi_list_jobs),
        ("GET", _r("/jobs/:uuid"), vmapi_get_job),
        ("GET", _r("/migrations"), vmapi_list_migrations),
        ("GET", _r("/migrations/:uuid"), vmapi_get_migration),
        ("POST", _r("/migrations/:uuid/store"), vmapi_store_migration),
    ],
    "cnapi": [
        ("GET", _r("/ping"), cnapi_ping),
        ("GET", _r("/servers"), cnapi_list_servers),
        ("GET", _r("/servers/:uuid"), cnapi_get_server),
        ("POST", _r("/servers/:uuid"), cnapi_update_server),
        ("DELETE", _r("/servers/:uuid"), cnapi_delete_server),
        ("POST", _r("/servers/:uuid/sysinfo"), cnapi_sysinfo),
    ],
    "napi": [
        ("GET", _r("/ping"), napi_ping),
        ("GET", _r("/nic_tags"), napi_list_nic_tags),
        ("POST", _r("/nic_tags"), napi_create_nic_tag),
        ("GET", _r("/nic_tags/:name"), napi_get_nic_tag),
        ("GET", _r("/networks"), napi_list_networks),
        ("POST", _r("/networks"), napi_create_network),
        ("GET", _r("/networks/:uuid"), napi_get_network),
        ("PUT", _r("/networks/:uuid"), napi_update_network),
        ("DELETE", _r("/networks/:uuid"), napi_delete_network),
        ("POST", _r("/networks/:uuid/nics"), napi_provision_nic),
        ("GET", _r("/networks/:uuid/ips"), napi_list_ips),
        ("GET", _r("/networks/:uuid/ips/:ip"), napi_get_ip),
        ("PUT", _r("/networks/:uuid/ips/:ip"), napi_update_ip),
        ("GET", _r("/nics"), napi_list_nics),
        ("POST", _r("/nics"), napi_create_nic),
        ("GET", _r("/nics/:mac"), napi_get_nic),
        ("PUT", _r("/nics/:mac"), napi_update_nic),
        ("DELETE", _r("/nics/:mac"), napi_delete_nic),
        ("GET", _r("/search/ips"), napi_search_ips),
    ],
    "imgapi": [
        ("GET", _r("/ping"), imgapi_ping),
        ("GET", _r("/images"), imgapi_list_images),
        ("POST", _r("/images"), imgapi_create_image),
        ("GET", _r("/images/:uuid"), imgapi_get_image),
        ("POST", _r("/images/:uuid"), imgapi_image_action),
        ("DELETE", _r("/images/:uuid"), imgapi_delete_image),
        ("PUT", _r("/images/:uuid/file"), "upload"),
        ("GET", _r("/images/:uuid/file"), imgapi_get_file),
    ],
    "sapi": [
        ("GET", _r("/ping"), sapi_ping),
        ("GET", _r("/applications"), sapi_list_apps),
        ("POST", _r("/applications"), sapi_create_app),
        ("GET", _r("/applications/:uuid"), sapi_get_app),
        ("GET", _r("/services"), sapi_list_services),
        ("POST", _r("/services"), sapi_create_service),
        ("GET", _r("/services/:uuid"), sapi_get_service),
        ("GET", _r("/instances"), sapi_list_instances),
        ("POST", _r("/instances"), sapi_create_instance),
        ("GET", _r("/instances/:uuid"), sapi_get_instance),
        ("DELETE", _r("/instances/:uuid"), sapi_delete_instance),
    ],
}


# ---- HTTP server -------------------------------------------------------------

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
    global STORE
    os.makedirs(common.sim_dir(), exist_ok=True)
    STORE = Store(common.path("api.db"))
    servers = []
    for name in ("vmapi", "cnapi", "napi", "imgapi", "sapi"):
        servers.append(ApiServer(name, (common.API_IPS[name], common.API_PORT)))
    common.record_pid("api", os.getpid())
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threads = []
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


if __name__ == "__main__":
    sys.exit(main())
