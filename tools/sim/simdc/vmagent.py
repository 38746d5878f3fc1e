"""vm-agent of a simulated compute node (sdc-vm-agent, with heartbeater's numbers).

`report(host)` sends what the CN holds:
- VMAPI `PUT /vms?server_uuid=CN_UUID` with `{"vms": {UUID: <vmadm get object>}}`
  for every zone of /etc/zones/index except those with do-not-inventory
  (commented-out index lines are not zones at all);
- CNAPI `POST /servers/CN_UUID` with the pool and memory figures and the time.

It runs synchronously from `svcadm restart vm-agent|vmadmd|heartbeater`, and
`python3 -m simdc.vmagent HOST` (started by `simdc up` inside the CN's
namespaces) is event driven as sdc-vm-agent is (lib/vm-agent.js and
lib/watchers/fs-watcher.js, zoneevent-watcher.js: it watches /etc/zones and
zone state events and PUTs the changed VM within a second): it looks at
/etc/zones and the zones' run state every WATCH_INTERVAL seconds and sends
one report when they changed. A zone that vanished, or turned
do-not-inventory (vmadm.load filters those: "VmNotFound"), is no longer in
the report, so VMAPI marks it destroyed; a change to a hidden zone alone
sends nothing. Every SIMDC_AGENT_INTERVAL seconds (15 by default) it also
heartbeats CNAPI and re-sends the VMs only if they differ from its last
report (the periodic watcher's full lookup).
`svcadm disable vm-agent` pauses it (a flag file in the host's run folder).
"""
import json
import os
import signal
import sys
import time

from . import common, zones

MiB = 1 << 20
WATCH_INTERVAL = 0.2


class ReportError(Exception):
    pass


def disabled_flag(host):
    return common.host_dir(host, "run", "vm-agent.disabled")


def is_disabled(host):
    return os.path.exists(disabled_flag(host))


def set_disabled(host, disabled):
    p = disabled_flag(host)
    if disabled:
        os.makedirs(os.path.dirname(p), exist_ok=True)
        open(p, "w").close()
    elif os.path.exists(p):
        os.unlink(p)


def gather(host):
    """(server_uuid, vms dict for VMAPI, server figures for CNAPI)."""
    hosts = common.load_hosts()
    server_uuid = hosts.get(host, {}).get("uuid")
    if not server_uuid:
        raise ReportError("no server uuid for host %s (is hosts.json there?)" % host)
    cache = zones.vm_cache()
    cache["server_uuid"] = server_uuid
    cache["host"] = host
    vms = {}
    used_mem = 0
    for obj in zones.vm_objects(cache):
        if obj.get("zone_state") == "running":
            used_mem += (obj.get("max_physical_memory") or 0) * MiB
        if obj.get("do_not_inventory") is True:
            continue
        vms[obj["uuid"]] = obj
    pool = cache["zfs"].get(zones.POOL) or {}
    used = pool.get("used") if isinstance(pool.get("used"), int) else 0
    avail = pool.get("available") if isinstance(pool.get("available"), int) else 0
    ram = int(hosts.get(host, {}).get("ram_mb") or 0) * MiB
    server = {"disk_pool_size_bytes": used + avail, "disk_pool_alloc_bytes": used,
              "memory_available_bytes": max(0, ram - used_mem),
              "last_heartbeat": zones.iso(time.time())}
    return server_uuid, vms, server


def _send(api, method, urlpath, body):
    try:
        status, answer = common.api(api, method, urlpath, body, agent="vm-agent")
    except OSError as e:     # urllib's URLError is one
        raise ReportError("cannot reach the APIs: %s" % getattr(e, "reason", e))
    if status >= 300:
        raise ReportError("%s %s %s: %s %s" % (api.upper(), method, urlpath, status, answer))


def send(server_uuid, vms, server):
    _send("vmapi", "PUT", "/vms?server_uuid=%s" % server_uuid, {"vms": vms})
    _send("cnapi", "POST", "/servers/%s" % server_uuid, server)


def report(host=None):
    """One full report to VMAPI and CNAPI; ReportError when they cannot take it."""
    host = host or common.this_host()
    server_uuid, vms, server = gather(host)
    send(server_uuid, vms, server)
    return {"server_uuid": server_uuid, "vms": sorted(vms), **server}


def watched(host):
    """What a zone event changes: every file of /etc/zones (index, UUID.xml) and
    every zone's run state, as (name, mtime, size) triples."""
    out = []
    for d in (zones.etc_zones(), common.host_dir(host, "run")):
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            continue
        for n in names:
            if d != zones.etc_zones() and not n.endswith(".state"):
                continue
            if n.startswith("."):       # write_atomic's temporary files
                continue
            try:
                st = os.stat(os.path.join(d, n))
            except FileNotFoundError:
                continue
            out.append((d, n, st.st_mtime_ns, st.st_size))
    return sorted(out)


def _fingerprint(vms):
    """The reported VMs without what changes on its own (none of it does today)."""
    return json.dumps(vms, sort_keys=True)


class Agent:
    """The event loop of one CN's vm-agent."""

    def __init__(self, host, interval):
        self.host, self.interval = host, interval
        self.seen = None            # watched() at the last look
        self.last = None            # the VMs of the last report VMAPI took
        self.next_beat = 0.0

    def step(self, now):
        if is_disabled(self.host):
            self.seen = None        # a restart after enable sends a full report
            return
        files = watched(self.host)
        beat = now >= self.next_beat
        if files == self.seen and not beat:
            return
        server_uuid, vms, server = gather(self.host)
        changed = _fingerprint(vms) != self.last
        if changed:
            _send("vmapi", "PUT", "/vms?server_uuid=%s" % server_uuid, {"vms": vms})
            self.last = _fingerprint(vms)
        if changed or beat:
            _send("cnapi", "POST", "/servers/%s" % server_uuid, server)
        self.seen = files
        if beat:
            self.next_beat = now + self.interval


def _log(msg):
    sys.stderr.write("%s vm-agent: %s\n" % (zones.iso(time.time()), msg))
    sys.stderr.flush()


def serve(argv, make, log):
    """The main loop of a CN agent: make(host) once, then its step() every
    WATCH_INTERVAL seconds until SIGTERM. A failed step is logged and retried
    from a fresh look: the agent never dies of an API's answer."""
    argv = sys.argv[1:] if argv is None else argv
    host = argv[0] if argv else common.this_host()
    os.environ["SIMDC_HOST"] = host
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    agent = make(host)
    while True:
        try:
            agent.step(time.time())
        except Exception as e:   # noqa: BLE001 - see above
            agent.seen = None
            log("step failed: %s" % e)
            time.sleep(1)
        time.sleep(WATCH_INTERVAL)


def main(argv=None):
    interval = float(os.environ.get("SIMDC_AGENT_INTERVAL", "15"))
    serve(argv, lambda host: Agent(host, interval), _log)


if __name__ == "__main__":
    sys.exit(main())
