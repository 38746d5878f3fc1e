"""What the end-to-end tests check, from outside the tool: VMAPI, NAPI, both
CNs' pools and zone configuration, keys, and the workload's own records."""
import contextlib
import json
import subprocess
import time

from conftest import SDC_MIGRATE, SIMDC


def datadir(dc, host, uuid):
    return dc.exec(host, "simdc-datadir", uuid).stdout.strip()


# sh -c IN_DELEGATED sh UUID SCRIPT ARG...: run SCRIPT (sh -c SCRIPT sh ARG...)
# with the instance's delegated datasets mounted where they belong. The zone's
# boot set zoned=on on them (illumos-joyent usr/src/cmd/zoneadmd/vplat.c
# validate_datasets): they are the zone's, and the global zone cannot mount
# them (zfs_main.c share_mount_one); an operator who must look turns zoned
# off for the moment, and back on, as this does.
IN_DELEGATED = (
    'u=$1; s=$2; shift 2; z=$(zfs get -H -r -t filesystem -s local,received -o name,value '
    "zoned \"zones/$u\" | awk '$2 == \"on\" {print $1}'); "
    'for d in $z; do zfs set zoned=off "$d" && zfs mount "$d" || exit 1; done; '
    'sh -c "$s" sh "$@"; rc=$?; for d in $z; do zfs set zoned=on "$d"; done; exit $rc')


def in_delegated(dc, host, uuid, script, *args):
    """sh -c SCRIPT sh ARGS... on host, the instance's delegated datasets readable."""
    return dc.exec(host, "sh", "-c", IN_DELEGATED, "sh", uuid, script, *args)


def zoned(dc, host, dataset):
    """(value, source) of a dataset's zoned property."""
    out = dc.exec(host, "zfs", "get", "-H", "-o", "value,source", "zoned", dataset).stdout
    return tuple(out.split())


def data_digest(dc, host, uuid):
    """sha1 of every file of the instance's data but the live sequence file: the
    zone root or disk0, every other disk and the delegated dataset."""
    dirs = dc.exec(host, "simdc-datadir", "--all", uuid).stdout.split()
    out = in_delegated(dc, host, uuid, 'for d in "$@"; do echo "$d"; (cd "$d" && find . -type f '
                       '! -name simdc-seq | sort | xargs -r sha1sum); done', *dirs).stdout
    if "--size" in dc.provisioned.get(uuid, []):
        # provision wrote a simdc-data file in each
        assert out.count("/simdc-data\n") == len(dirs), \
            "some of the instance's data is missing on %s: %s" % (host, out)
    return out


def journals(dc, uuid):
    """The head node's journals of uuid's migrations and rollbacks, oldest first:
    each a list of records."""
    names = [f for f in dc.exec("headnode", "ls", "/var/tmp").stdout.split()
             if f.startswith("migrator-%s-" % uuid) and f.endswith(".journal")]
    names.sort(key=lambda f: int(f[:-len(".journal")].rsplit("-", 1)[1]))
    return [[json.loads(l) for l in dc.exec("headnode", "cat", "/var/tmp/" + f).stdout.splitlines()
             if l.strip()] for f in names]


def kept_snapshot(dc, uuid):
    """The snapshot the newest finished migration (or rollback) of uuid keeps
    on both CNs for `sdc-migrate rollback`, until cleanup-source; or None
    (none kept: its journal says it dropped it)."""
    for records in reversed(journals(dc, uuid)):
        if any(r["t"] == "end" and r.get("outcome") == "done" for r in records):
            finals = [r["snapshot"] for r in records if r["t"] == "final"]
            dropped = {r["snapshot"] for r in records if r["t"] == "dropped"}
            return finals[-1] if finals and finals[-1] not in dropped else None
    return None


def leftovers(dc, uuid, hosts=("source-server", "dest-server")):
    """What a finished or undone migration must not leave behind: temporary keys
    and known_hosts, authorized_keys backups and entries, a receive's pid file,
    migration snapshots (but the one kept for a rollback), a waitlist ticket
    holding the instance in CNAPI (VMAPI's jobs for it would wait), the head
    node's lock and state file; [] if none."""
    found = []
    kept = kept_snapshot(dc, uuid)
    all_hosts = dc.hosts()
    for host in hosts:
        tickets = dc.api("cnapi", "/servers/%s/tickets" % all_hosts[host]["uuid"])[2]
        found += ["%s: waitlist ticket %s (%s)" % (host, t["uuid"], t["status"]) for t in tickets
                  if t["id"] == uuid and t["status"] in ("active", "queued")]
        ssh = dc.exec(host, "ls", "-a", "/root/.ssh").stdout.split()
        found += ["%s:/root/.ssh/%s" % (host, f) for f in ssh
                  if f.startswith(("migr-key", "migr-known", "authorized_keys."))]
        if "sdc-migrate-" in authorized_keys(dc, host):
            found.append("%s: sdc-migrate's entry in authorized_keys" % host)
        found += ["%s:%s" % (host, n) for n in dc.zfs_names(host)
                  if uuid in n and "@" in n and "migration" in n.split("@")[1]
                  and n.split("@")[1] != kept]
        found += ["%s:/var/tmp/%s" % (host, f) for f in dc.exec(host, "ls", "/var/tmp").stdout.split()
                  if f == "sdc-migrate-recv-%s.pid" % uuid]
    found += ["headnode:/var/tmp/" + f for f in dc.exec("headnode", "ls", "/var/tmp").stdout.split()
              if f == "sdc-migrate-%s.lock" % uuid or (f.startswith("migrator-" + uuid)
                                                        and f.endswith(".st"))]
    return found


def authorized_keys(dc, host):
    return dc.exec(host, "cat", "/root/.ssh/authorized_keys").stdout


def assert_migrated(dc, uuid, before, out, src="source-server", dst="dest-server"):
    hosts = dc.hosts()
    vm = dc.vm(uuid)
    assert vm["server_uuid"] == hosts[dst]["uuid"], out
    assert vm["state"] == before["state"]
    # the source copy: hidden from inventory, intact for cleanup-source
    xml = dc.exec(src, "cat", "/etc/zones/%s.xml" % uuid).stdout
    assert 'name="do-not-inventory"' in xml
    assert "zones/" + uuid in dc.zfs_names(src)
    # never booting by itself there again
    got = dc.exec(src, "vmadm", "get", uuid).stdout
    assert '"autoboot": false' in got, "autoboot still on at the source"
    # no migration snapshot, key, backup or lock left anywhere; the IPs free to go
    left = leftovers(dc, uuid, (src, dst))
    assert left == [], left
    # the last snapshot stays on both sides, the same, for `sdc-migrate rollback`;
    # not a bhyve's: its quota has no room for it (VM.js setQuotaBhyve), and
    # leftovers() above saw none there
    kept = kept_snapshot(dc, uuid)
    begin = journals(dc, uuid)[-1][0]
    wanted = before["brand"] != "bhyve" and begin.get("rollback_snapshot", True)
    assert bool(kept) == wanted, (kept, "kept" if wanted else "dropped")
    for host in (src, dst):
        assert kept is None or "zones/%s@%s" % (uuid, kept) in dc.zfs_names(host), (host, kept)
    for nic in vm["nics"]:
        ip = dc.api("napi", "/networks/%s/ips/%s" % (nic["network_uuid"], nic["ip"]))[2]
        assert ip["belongs_to_uuid"] == uuid and not ip.get("reserved"), ip
    # the destination's data is the source's as of the stop
    assert data_digest(dc, src, uuid) == data_digest(dc, dst, uuid)
    # the seed's blocks
    for block in ("-: Welcome to the SDC Migrator :-", "We will be migrating:", "SRC CN",
                  "DEST CN", "Here we go...", "[ DONE ]", "===   Done! ===",
                  "Instance downtime:", "# dataset increments:",
                  '/usr/sbin/zonecfg -z %s delete -F"' % uuid,
                  "or validate via CLI:  /opt/smartdc/bin/sdc-vmapi /vms/%s" % uuid,
                  "* Clearing migration SSH keys"):
        assert block in out, block
    return vm


def assert_sequence_continues(dc, uuid, src="source-server", dst="dest-server"):
    """Every line written on the source before the stop is on the destination,
    and the destination's workload went on from the next number."""
    old = dc.seq_lines(src, uuid)
    time.sleep(0.5)
    new = dc.seq_lines(dst, uuid)
    assert new[:len(old)] == old
    numbers = [int(l[0]) for l in new]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert len(new) > len(old), "the workload did not resume on the destination"
    assert new[len(old)][1] != old[-1][1]          # written by a new boot


def dc_state(dc, uuid):
    """What an operator would look at to see whether anything changed."""
    vm = dc.vm(uuid)
    for k in ("last_modified",):
        vm.pop(k, None)
    ips = [dc.api("napi", "/networks/%s/ips/%s" % (n["network_uuid"], n["ip"]))[2]
           for n in vm["nics"]]
    return {
        "vm": (vm["server_uuid"], vm["state"]),
        "ips": [(i["ip"], i.get("reserved"), i.get("belongs_to_uuid")) for i in ips],
        "pools": {h: sorted(n for n in dc.zfs_names(h) if uuid in n)
                  for h in ("source-server", "dest-server", "old-server")},
        "zones": {h: dc.exec(h, "cat", "/etc/zones/index").stdout
                  for h in ("source-server", "dest-server", "old-server")},
        "keys": {h: dc.exec(h, "ls", "/root/.ssh").stdout
                 for h in ("source-server", "dest-server", "old-server")},
        # (not the ssh ControlMaster sockets' folder, which the first run makes)
        "headnode": dc.exec("headnode", "sh", "-c", "ls /var/tmp | grep -v -e simdc "
                            "-e '^sdc-migrate-ssh$' || true").stdout,
    }


# ---- a run held in a slow step (simdc fault --delay) -----------------------------

def no_fault_left(dc):
    return "[]" in dc.simdc("fault", "list").stdout.replace("\n", "").replace(" ", "")


def start_tool(dc, *args):
    return subprocess.Popen([SIMDC, "exec", "headnode", "--", SDC_MIGRATE, *args],
                            env=dc.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_for_the_fault(dc, tool):
    """Until the slow command has begun (the fault table is empty)."""
    deadline = time.time() + 60
    while not no_fault_left(dc):
        assert time.time() < deadline and tool.poll() is None, \
            "the step was never reached: " + (tool.stdout.read().decode()
                                              if tool.poll() is not None else "")
        time.sleep(0.1)


# the net-agent `simdc up` gives a CN: old-server's is from before TRITON-1814,
# and a migration from or to it is refused until its agents are updated
NET_AGENT = {"old-server": "2.3.0"}


@contextlib.contextmanager
def net_agent(dc, host, version):
    """host runs net-agent VERSION in the with block, as an agents update
    leaves it (no reboot), and the one `simdc up` gave it after: every test
    that needs another one says so."""
    dc.simdc("agent", host, "net-agent", "install", version)
    try:
        yield
    finally:
        dc.simdc("agent", host, "net-agent", "install", NET_AGENT.get(host, "2.3.6"))
