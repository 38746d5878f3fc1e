"""CNAPI: servers from the CNs' sysinfo and heartbeats, with the capacity
DAPI would see."""
import datetime
import json
import os
import re
import time

from .. import common
from .base import (ApiError, Response, invalid_param, missing_param, new_uuid, norm_ts,
                   not_found, now_iso, route, to_bool)
from .store import STORE


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
        # cn-agent's list (POST /servers/UUID {agents}) outlives a sysinfo
        # refresh; sysinfo's "SDC Agents" only fills an empty one
        # (sdc-cnapi lib/models/server.js, the backward compat section)
        if old.get("agents"):
            s["agents"] = old["agents"]
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


ROUTES = [
    ("GET", route("/ping"), cnapi_ping),
    ("GET", route("/servers"), cnapi_list_servers),
    ("GET", route("/servers/:uuid"), cnapi_get_server),
    ("POST", route("/servers/:uuid"), cnapi_update_server),
    ("DELETE", route("/servers/:uuid"), cnapi_delete_server),
    ("POST", route("/servers/:uuid/sysinfo"), cnapi_sysinfo),
]


# ---- the waitlist ---------------------------------------------------------------
# sdc-cnapi docs/README.md "Waitlist", lib/endpoints/waitlist.js and
# lib/models/waitlist.js: tickets serialize work on one resource (scope and id,
# e.g. vm and its UUID) of one server. Each queue is a server's, scope's and
# id's: a ticket is created queued, and becomes active once no ticket of its
# server, scope and id is active (the oldest queued one, by created_at); a
# release (finished), a delete or an expiry (expires_at passed: the
# WaitlistDirector looks every 500 ms) lets the next one go.
TICKET_ACTIVE, TICKET_QUEUED = "active", "queued"
TICKET_FINISHED, TICKET_EXPIRED = "finished", "expired"
WAITLIST_PERIOD = 0.5       # WAITLIST_PERIOD_MS
WAIT_LIMIT = 3600           # the endpoints' connectionTimeoutSeconds
TICKET_LIST_LIMIT = 1000    # UPPER_LIMIT


def _ticket_queue(server_uuid, scope, tid):
    """ModelWaitlist.getServerQueue: the active and queued tickets of one
    server, scope and id, oldest first."""
    return sorted((t for t in STORE.list("ticket")
                   if t.get("server_uuid") == server_uuid and t.get("scope") == scope
                   and t.get("id") == tid and t.get("status") in (TICKET_ACTIVE, TICKET_QUEUED)),
                  key=lambda t: t.get("created_at") or "")


def _activate_next(server_uuid, scope, tid):
    """ModelWaitlist.activateOneTicket: no active ticket in the queue, the
    oldest queued one becomes active."""
    queue = _ticket_queue(server_uuid, scope, tid)
    if queue and not any(t["status"] == TICKET_ACTIVE for t in queue):
        first = queue[0]
        first["status"] = TICKET_ACTIVE
        first["updated_at"] = now_iso()
        STORE.put("ticket", first["uuid"], first)


def _assert_string(opts, name):
    # lib/models/waitlist.js createTicket asserts them (assert-plus): a throw
    # restify answers as an InternalError
    if not isinstance(opts.get(name), str):
        raise ApiError(500, "InternalError", "opts.%s (string) is required" % name)


def create_ticket(server_uuid, opts, reqid=None):
    """ModelWaitlist.createTicket: (the ticket, its queue). Called under the
    store's lock (the endpoint, VMAPI's jobs)."""
    for name in ("scope", "id", "expires_at"):
        _assert_string(opts, name)
    if opts.get("action") is not None and not isinstance(opts["action"], str):
        raise ApiError(500, "InternalError", "opts.action (string) is required")
    ts = now_iso()
    ticket = {"action": opts.get("action"), "created_at": ts, "expires_at": opts["expires_at"],
              "extra": opts.get("extra") if isinstance(opts.get("extra"), dict) else {},
              "id": opts["id"], "reqid": reqid, "scope": opts["scope"],
              "server_uuid": server_uuid, "status": TICKET_QUEUED, "updated_at": ts,
              "uuid": new_uuid()}
    STORE.put("ticket", ticket["uuid"], ticket)
    _activate_next(server_uuid, ticket["scope"], ticket["id"])
    return STORE.get("ticket", ticket["uuid"]), _ticket_queue(server_uuid, ticket["scope"],
                                                              ticket["id"])


def release_ticket(ticket_uuid):
    """ModelWaitlist.releaseTicket: finished, whatever it was; the next one goes.
    False if there is no such ticket."""
    t = STORE.get("ticket", ticket_uuid)
    if t is None:
        return False
    t["status"] = TICKET_FINISHED
    t["updated_at"] = now_iso()
    STORE.put("ticket", ticket_uuid, t)
    _activate_next(t["server_uuid"], t["scope"], t["id"])
    return True


def expire_tickets(now=None):
    """The WaitlistDirector's pass: every ticket neither finished nor expired
    whose expires_at is behind now (compared as ISO strings, as it does) is
    expired, and the next one of its queue goes."""
    now = now or now_iso()
    for t in STORE.list("ticket"):
        if t.get("status") in (TICKET_FINISHED, TICKET_EXPIRED) or not now > str(t["expires_at"]):
            continue
        t["status"] = TICKET_EXPIRED
        t["updated_at"] = now_iso()
        STORE.put("ticket", t["uuid"], t)
        _activate_next(t["server_uuid"], t["scope"], t["id"])


def wait_ticket(ticket_uuid, timeout=WAIT_LIMIT):
    """WaitlistDirector.waitForTicketByUuid, without the store's lock: None once
    the ticket is active, else why not ("no such ticket", "expired", or
    "timeout" when it is neither active nor expired after timeout seconds: a
    finished ticket never becomes either)."""
    deadline = time.time() + timeout
    first = True
    while True:
        with STORE:
            t = STORE.get("ticket", ticket_uuid)
        if t is None and first:
            return "no such ticket %s" % ticket_uuid
        if t is None:
            pass        # deleted meanwhile: no callback ever comes, as for a finished one
        elif t["status"] == TICKET_ACTIVE:
            return None
        elif t["status"] == TICKET_EXPIRED:
            return "ticket %s is expired" % ticket_uuid if first else "ticket has expired"
        if time.time() >= deadline:
            return "timeout"
        first = False
        time.sleep(0.1)


def waitlist_director(stop):
    """The API service's WaitlistDirector thread: expiries every 500 ms."""
    while not stop.wait(WAITLIST_PERIOD):
        try:
            with STORE:
                expire_tickets()
        except Exception:  # noqa: BLE001 - the director keeps going, as CNAPI's does
            import traceback
            traceback.print_exc()


def _ticket_params(req):
    p = dict(req.params)
    if isinstance(req.body, dict):
        p.update(req.body)
    return p


def cnapi_create_ticket(req):
    """ServerWaitlistTicketCreate: 202 {uuid, queue}."""
    s = _load_server(req)
    ticket, queue = create_ticket(s["uuid"], _ticket_params(req),
                                  reqid=req.headers.get("x-request-id") or new_uuid())
    return Response(202, {"uuid": ticket["uuid"], "queue": queue})


def cnapi_list_tickets(req):
    """ServerWaitlistList: the server's tickets, by created_at (or attribute),
    every status, limit (at most 1000) and offset."""
    s = _load_server(req)
    p = req.params
    for k in ("limit", "offset"):
        if k in p and not re.match(r"^(0|[1-9][0-9]*)$", p[k]):
            raise ApiError(409, "InvalidParameters", "Invalid parameters",
                           [invalid_param(k)])
    limit = int(p.get("limit") or TICKET_LIST_LIMIT)
    if limit > TICKET_LIST_LIMIT:
        raise ApiError(409, "InvalidArgument", "limit must be less than %d" % TICKET_LIST_LIMIT)
    attr = p.get("attribute") or "created_at"
    tickets = sorted((t for t in STORE.list("ticket") if t.get("server_uuid") == s["uuid"]),
                     key=lambda t: str(t.get(attr) or ""),
                     reverse=(p.get("order") or "ASC").upper() == "DESC")
    offset = int(p.get("offset") or 0)
    return Response(200, tickets[offset:offset + limit])


def cnapi_delete_tickets(req):
    """ServerWaitlistTicketsDeleteAll: only with ?force=true."""
    s = _load_server(req)
    if req.params.get("force") != "true":
        raise ApiError(412, "PreconditionFailed",
                       "Will not delete all tickets without ?force=true")
    for t in STORE.list("ticket"):
        if t.get("server_uuid") == s["uuid"]:
            STORE.delete("ticket", t["uuid"])
    return Response(204, None)


def cnapi_get_ticket(req):
    t = STORE.get("ticket", req.match["uuid"])
    if t is None:
        raise not_found("ticket %s not found" % req.match["uuid"])
    return Response(200, t)


def cnapi_delete_ticket(req):
    """ServerWaitlistDeleteTicket: gone, the next one goes (an unknown ticket:
    the model's ResourceNotFoundError, answered as an InternalError)."""
    t = STORE.get("ticket", req.match["uuid"])
    if t is None:
        raise ApiError(500, "InternalError", "ticket %s not found" % req.match["uuid"])
    STORE.delete("ticket", t["uuid"])
    _activate_next(t["server_uuid"], t["scope"], t["id"])
    return Response(204, None)


def cnapi_release_ticket(req):
    if not release_ticket(req.match["uuid"]):
        raise not_found("ticket %s not found" % req.match["uuid"])
    return Response(204, None)


def cnapi_wait_ticket(req):
    """ServerWaitlistTicketsWait: 204 once the ticket is active; an expired
    one is an error (500), an unknown one 404."""
    why = wait_ticket(req.match["uuid"])
    if why is None:
        return Response(204, None)
    if why.startswith("no such ticket"):
        raise not_found(why)
    raise ApiError(500, "InternalError", why)


# the wait holds its request for as long as it takes, without the store's lock
UNLOCKED = (cnapi_wait_ticket,)

ROUTES += [
    ("GET", route("/servers/:uuid/tickets"), cnapi_list_tickets),
    ("POST", route("/servers/:uuid/tickets"), cnapi_create_ticket),
    ("DELETE", route("/servers/:uuid/tickets"), cnapi_delete_tickets),
    ("GET", route("/tickets/:uuid/wait"), cnapi_wait_ticket),
    ("PUT", route("/tickets/:uuid/release"), cnapi_release_ticket),
    ("GET", route("/tickets/:uuid"), cnapi_get_ticket),
    ("DELETE", route("/tickets/:uuid"), cnapi_delete_ticket),
]
