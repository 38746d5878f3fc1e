"""vm-agent of a simulated compute node (sdc-vm-agent, with heartbeater's numbers).

`report(host)` sends what the CN holds:
- VMAPI `PUT /vms?server_uuid=CN_UUID` with `{"vms": {UUID: <vmadm get object>}}`
  for every zone of /etc/zones/index except those with do-not-inventory
  (commented-out index lines are not zones at all);
- CNAPI `POST /servers/CN_UUID` with the pool and memory figures and the time.

It runs synchronously from `svcadm restart vm-agent|vmadmd|heartbeater` and on
a timer in `python3 -m simdc.vmagent HOST` (started by `simdc up` inside the
CN's namespaces; SIMDC_AGENT_INTERVAL seconds apart, 15 by default).
`svcadm disable vm-agent` pauses it (a flag file in the host's run folder).
"""
import os
import signal
import sys
import time

from . import common, zones

MiB = 1 << 20


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


def report(host=None):
    """One full report to VMAPI and CNAPI; ReportError when they cannot take it."""
    host = host or common.this_host()
    server_uuid, vms, server = gather(host)
    try:
        status, body = common.api("vmapi", "PUT", "/vms?server_uuid=%s" % server_uuid,
                                  {"vms": vms})
        if status >= 300:
            raise ReportError("VMAPI PUT /vms: %s %s" % (status, body))
        status, body = common.api("cnapi", "POST", "/servers/%s" % server_uuid, server)
        if status >= 300:
            raise ReportError("CNAPI POST /servers/%s: %s %s" % (server_uuid, status, body))
    except OSError as e:     # urllib's URLError is one
        raise ReportError("cannot reach the APIs: %s" % getattr(e, "reason", e))
    return {"server_uuid": server_uuid, "vms": sorted(vms), **server}


def _log(msg):
    sys.stderr.write("%s vm-agent: %s\n" % (zones.iso(time.time()), msg))
    sys.stderr.flush()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    host = argv[0] if argv else common.this_host()
    os.environ["SIMDC_HOST"] = host
    interval = float(os.environ.get("SIMDC_AGENT_INTERVAL", "15"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        if not is_disabled(host):
            try:
                report(host)
            except Exception as e:   # the timer never dies of a bad report
                _log("report failed: %s" % e)
        time.sleep(interval)


if __name__ == "__main__":
    sys.exit(main())
