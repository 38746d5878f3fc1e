"""Whatever fails, the instance ends in exactly one place, in the run state it
had, with every write it made, and nothing is left for a person to clean up.

Each case injects a failure at one step of a migration (tools/simdc fault),
or kills the tool there and runs it again, and checks the outcome from
outside the tool."""
import os
import signal
import subprocess
import time

import pytest

from checks import assert_migrated, assert_sequence_continues, dc_state
from conftest import SIMDC

SRC, DST = "source-server", "dest-server"


def assert_rolled_back(dc, uuid, before_vm, before_keys):
    """On the source as before; no trace of the attempt anywhere."""
    hosts = dc.hosts()
    vm = dc.vm(uuid)
    assert vm["server_uuid"] == hosts[SRC]["uuid"]
    assert vm["state"] == before_vm["state"]
    assert dc.exec(SRC, "zoneadm", "-z", uuid, "list", "-p").stdout.split(":")[2] == \
        ("running" if before_vm["state"] == "running" else "installed")
    xml = dc.exec(SRC, "cat", "/etc/zones/%s.xml" % uuid).stdout
    assert 'name="do-not-inventory"' not in xml
    assert 'autoboot="%s"' % ("true" if before_vm["autoboot"] else "false") in xml
    assert not [n for n in dc.zfs_names(DST) if uuid in n]
    assert dc.exec(DST, "sh", "-c", "ls /etc/zones; cat /etc/zones/index").stdout.count(uuid) == 0
    for host in (SRC, DST):
        assert not [n for n in dc.zfs_names(host) if "_ops_migration_" in n]
        assert dc.exec(host, "sh", "-c", "ls /root/.ssh").stdout == before_keys[host]
    assert dc.exec(DST, "cat", "/root/.ssh/authorized_keys").stdout == before_keys["ak"]
    for nic in vm["nics"]:
        ip = dc.api("napi", "/networks/%s/ips/%s" % (nic["network_uuid"], nic["ip"]))[2]
        assert ip["belongs_to_uuid"] == uuid and not ip["reserved"]
    assert dc.exec("headnode", "sh", "-c", "ls /var/tmp/sdc-migrate-%s.lock 2>/dev/null || true"
                   % uuid).stdout == ""
    if before_vm["state"] == "running":
        # the workload went on where it stopped: nothing lost, no gap
        time.sleep(0.3)
        numbers = [int(l[0]) for l in dc.seq_lines(SRC, uuid)]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))


def keys(dc):
    return {SRC: dc.exec(SRC, "ls", "/root/.ssh").stdout,
            DST: dc.exec(DST, "ls", "/root/.ssh").stdout,
            "ak": dc.exec(DST, "cat", "/root/.ssh/authorized_keys").stdout}


# (name, host, argv prefix (UUID filled in), extra fault options)
FAULTS = [
    ("reserve IPs", "headnode", ["sdc-napi"], []),
    ("snapshot", SRC, ["zfs", "snapshot"], []),
    ("stop", SRC, ["vmadm", "stop"], []),
    ("send", SRC, ["zfs", "send"], []),
    ("stream cut", DST, ["zfs", "recv"], ["--after-bytes", "65536"]),
    ("cores dataset", DST, ["zfs", "create"], []),
    ("attach", DST, ["zoneadm", "-z", "UUID", "attach"], []),
    ("hide source copy", SRC, ["zonecfg", "-z", "UUID",
                               "add attr; set name=do-not-inventory; set type=string; "
                               "set value=true; end"], []),
    ("vmadmd restart", DST, ["svcadm", "restart", "vmadmd"], []),
]


@pytest.mark.parametrize("name,host,prefix,extra", FAULTS, ids=[f[0] for f in FAULTS])
def test_failure_before_the_switch_rolls_back(dc, name, host, prefix, extra):
    uuid = dc.provision("--size", "1")
    before, before_keys = dc.vm(uuid), keys(dc)
    prefix = [uuid if w == "UUID" else w for w in prefix]
    dc.simdc("fault", "add", host, *extra, "--", *prefix)
    try:
        p = dc.migrate("-y", uuid, DST)
    finally:
        dc.simdc("fault", "clear")
    assert p.returncode == 4, p.stdout + p.stderr
    assert "* Rolling back:" in p.stdout
    assert "rolled back" in p.stderr and "is on %s, running, as before" % SRC in p.stderr
    assert_rolled_back(dc, uuid, before, before_keys)


def test_failure_after_the_switch_is_finished_by_a_rerun(dc):
    uuid = dc.provision("--size", "1")
    before = dc.vm(uuid)
    dc.simdc("fault", "add", DST, "--", "vmadm", "start", uuid)
    first = dc.migrate("-y", uuid, DST)
    dc.simdc("fault", "clear")
    assert first.returncode == 5, first.stdout + first.stderr
    assert "run `sdc-migrate -y %s %s` again to finish" % (uuid, DST) in first.stderr
    p = dc.migrate("-y", uuid, DST)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "VMAPI shows the instance on dest-server: finishing the migration" in p.stdout
    assert_migrated(dc, uuid, before, first.stdout + p.stdout)
    assert_sequence_continues(dc, uuid)


# Where to kill the tool: the step's command is made slow, the tool is killed
# while it waits, and the command is let finish before the rerun.
KILLS = [
    ("during the send", SRC, ["zfs", "send"]),
    ("after the stop", SRC, ["zfs", "snapshot"]),
    ("during attach", DST, ["zoneadm", "-z", "UUID", "attach"]),
    ("while hiding the source copy", SRC, ["zonecfg", "-z", "UUID",
                                           "add attr; set name=do-not-inventory; "
                                           "set type=string; set value=true; end"]),
    ("during the boot on the destination", DST, ["vmadm", "start"]),
]


@pytest.mark.parametrize("name,host,prefix", KILLS, ids=[k[0] for k in KILLS])
def test_sigkill_then_rerun_finishes(dc, name, host, prefix):
    uuid = dc.provision("--size", "1")
    before = dc.vm(uuid)
    prefix = [uuid if w == "UUID" else w for w in prefix]
    delay = 3
    dc.simdc("fault", "add", host, "--delay", str(delay), "--exit", "0", "--", *prefix)
    tool = subprocess.Popen([SIMDC, "exec", "headnode", "--", "sdc-migrate", "-y", uuid, DST],
                            env=dc.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.time() + 60
    while "[]" not in dc.simdc("fault", "list").stdout.replace("\n", "").replace(" ", ""):
        assert time.time() < deadline and tool.poll() is None, "the step was never reached"
        time.sleep(0.1)
    os.killpg(tool.pid, signal.SIGKILL)
    killed = tool.communicate()[0].decode()
    time.sleep(delay + 1)          # the command in flight on the CN ends
    p = dc.migrate("-y", uuid, DST)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Found the journal of an interrupted migration" in p.stdout
    assert_migrated(dc, uuid, before, killed + p.stdout)
    assert_sequence_continues(dc, uuid)


def test_a_second_migration_of_the_same_instance_is_refused(dc):
    uuid = dc.provision("--size", "1")
    dc.simdc("fault", "add", SRC, "zfs", "snapshot", "--delay", "3", "--exit", "0")
    first = subprocess.Popen([SIMDC, "exec", "headnode", "--", "sdc-migrate", "-y", uuid, DST],
                             env=dc.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while "[]" not in dc.simdc("fault", "list").stdout.replace("\n", "").replace(" ", ""):
        assert time.time() < deadline
        time.sleep(0.1)
    second = dc.migrate("-y", uuid, DST)
    assert second.returncode == 2
    assert "already being migrated" in second.stderr
    # meanwhile, the temporary key: root's alone, usable only from the source
    src_ip = dc.hosts()[SRC]["admin_ip"]
    modes = dc.exec(SRC, "sh", "-c", "stat -c '%a %n' /root/.ssh/migr-*").stdout.split("\n")
    assert [m.split()[0] for m in modes if m.strip()] == ["600", "600", "600"]
    entry = dc.exec(DST, "grep", "sdc-migrate-" + uuid, "/root/.ssh/authorized_keys").stdout
    assert entry.startswith('from="%s",no-pty,no-agent-forwarding,no-port-forwarding,'
                            'no-X11-forwarding,no-user-rc ssh-ed25519 ' % src_ip)
    assert first.wait(timeout=120) == 0
    log = dc.exec("headnode", "sh", "-c", "cat /var/tmp/migrator-%s-*.log" % uuid).stdout
    assert "PRIVATE KEY" not in log and "ssh-ed25519 AAAA" not in log


REFUSALS = [
    ("malformed uuid", lambda dc, u: ["-y", "not-a-uuid", DST], 2, "is not an instance UUID"),
    ("unknown instance", lambda dc, u: ["-y", "00000000-0000-4000-8000-000000000000", DST], 3,
     "not found"),
    ("unknown destination", lambda dc, u: ["-y", u, "no-such-server"], 3, "not found"),
    ("destination is the source", lambda dc, u: ["-y", u, SRC], 2, "already on"),
    ("head node as destination", lambda dc, u: ["-y", u, "headnode"], 2, "head node"),
]


@pytest.mark.parametrize("name,args,status,message", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_change_nothing(dc, name, args, status, message):
    uuid = dc.provision("--size", "1", "--state", "stopped")
    before = dc_state(dc, uuid)
    p = dc.migrate(*args(dc, uuid))
    assert p.returncode == status, p.stdout + p.stderr
    assert message in p.stderr and p.stderr.count("\n") == 1
    assert dc_state(dc, uuid) == before


def test_reserved_destination_and_unreachable_cns_are_refused(dc):
    uuid = dc.provision("--size", "1", "--state", "stopped")
    before = dc_state(dc, uuid)
    spare = dc.hosts()["spare-server"]["uuid"]
    dc.api("cnapi", "/servers/" + spare, "-X", "POST", "-d", '{"reserved": true}')
    try:
        p = dc.migrate("-y", uuid, "spare-server")
    finally:
        dc.api("cnapi", "/servers/" + spare, "-X", "POST", "-d", '{"reserved": false}')
    assert p.returncode == 2 and "reserved" in p.stderr
    dc.simdc("sshd", DST, "stop")
    try:
        p = dc.migrate("-y", uuid, DST)
    finally:
        dc.simdc("sshd", DST, "start")
    assert p.returncode == 2 and "cannot reach" in p.stderr, p.stderr
    assert dc_state(dc, uuid) == before


def test_full_destination_pool_is_refused(dc):
    uuid = dc.provision("--size", "8", "--state", "stopped")
    before = dc_state(dc, uuid)
    dc.simdc("fill", "spare-server")
    try:
        p = dc.migrate("-y", uuid, "spare-server")
    finally:
        dc.simdc("fault", "clear")
    assert p.returncode == 2 and "free in zones" in p.stderr, p.stderr
    assert dc_state(dc, uuid) == before


def nat_zone(dc):
    """The fabric network's NAT zone (one per network), provisioned if missing."""
    status, _, vms = dc.api("vmapi", "/vms?tag.smartdc_role=nat&state=active")
    return vms[0]["uuid"] if vms else dc.provision("--nat", "--size", "1")


def test_nat_and_core_zones_are_refused(dc):
    for make, message in ((nat_zone, "nat-recreate"),
                          (lambda dc: dc.provision("--core", "--size", "1"), "core zone")):
        uuid = make(dc)
        before = dc_state(dc, uuid)
        p = dc.migrate("-y", uuid, DST)
        assert p.returncode == 2 and message in p.stderr, p.stderr
        assert dc_state(dc, uuid) == before
