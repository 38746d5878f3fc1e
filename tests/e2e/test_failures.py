"""Whatever fails, the instance ends in exactly one place, in the run state it
had, with every write it made, and nothing is left for a person to clean up.

Each step of the migration (migrate.FULL) that changes something has a case that fails
it (tools/simdc fault; --remote for a step inside a sh -c script) and one
that SIGKILLs the tool there and runs the same command again; Ctrl-C, a CN's
sshd going away mid-transfer and a destination pool filling up during the
transfer have their own. Every outcome is checked from outside the tool:
VMAPI, NAPI, both CNs' pools, zone configuration and keys, the workload's
own numbered writes."""
import json
import os
import re
import signal
import subprocess
import time

import pytest

from checks import (assert_migrated, assert_sequence_continues, dc_state, journals, leftovers,
                    no_fault_left, start_tool, wait_for_the_fault)
from conftest import SDC_MIGRATE, SIMDC

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
    want = "true" if before_vm["autoboot"] else "false"
    if before_vm["brand"] in ("kvm", "bhyve"):
        # vmadm keeps the zone's autoboot off and boots them by vm-autoboot
        # (smartos-live src/vm/node_modules/VM.js; vmadmd's autoboot)
        assert 'autoboot="false"' in xml
        assert re.search(r'<attr name="vm-autoboot" type="string" value="%s"/>' % want, xml), xml
    else:
        assert 'autoboot="%s"' % want in xml
    assert not [n for n in dc.zfs_names(DST) if uuid in n]
    assert dc.exec(DST, "sh", "-c", "ls /etc/zones; cat /etc/zones/index").stdout.count(uuid) == 0
    for host in (SRC, DST):
        assert not [n for n in dc.zfs_names(host) if uuid in n and "_ops_migration_" in n]
        assert dc.exec(host, "sh", "-c", "ls /root/.ssh").stdout == before_keys[host]
    assert dc.exec(DST, "cat", "/root/.ssh/authorized_keys").stdout == before_keys["ak"]
    for nic in vm["nics"]:
        ip = dc.api("napi", "/networks/%s/ips/%s" % (nic["network_uuid"], nic["ip"]))[2]
        assert ip["belongs_to_uuid"] == uuid and not ip["reserved"]
    assert leftovers(dc, uuid) == []
    if before_vm["state"] == "running":
        # the workload went on where it stopped: every line it had written
        # before the attempt is still there as it was, then no gap
        time.sleep(0.3)
        lines = dc.seq_lines(SRC, uuid)
        earlier = _SEQ_BEFORE.pop(uuid, [])
        assert lines[:len(earlier)] == earlier, "the source's record lost or changed lines"
        numbers = [int(l[0]) for l in lines]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        assert len(lines) > len(earlier), "the workload did not go on"


def keys(dc):
    return {SRC: dc.exec(SRC, "ls", "/root/.ssh").stdout,
            DST: dc.exec(DST, "ls", "/root/.ssh").stdout,
            "ak": dc.exec(DST, "cat", "/root/.ssh/authorized_keys").stdout}


# (name, host, argv prefix (UUID filled in), extra fault options). --remote:
# the words anywhere in a command line the host's sshd runs (a step of a sh -c
# script, which no emulated command sees); --skip N: the N+1th such command.
FAULTS = [
    ("temporary key", SRC, ["ssh-keygen"], ["--remote"]),
    ("authorized_keys", DST, ["cat >> /root/.ssh/authorized_keys"], ["--remote"]),
    ("reserve IPs", "headnode", ["sdc-napi"], []),
    ("hold the instance in the waitlist", "headnode",
     ["sdc-cnapi", "/servers/SRC_UUID/tickets", "-X", "POST"], []),
    ("snapshot", SRC, ["zfs", "snapshot"], []),
    ("stop", SRC, ["vmadm", "stop"], []),
    ("send", SRC, ["zfs", "send"], []),
    # cut every time: resumed (zfs send -t) RESUMES times, then rolled back
    ("stream cut", DST, ["zfs", "recv"], ["--after-bytes", "65536", "--times", "3"]),
    ("cores dataset", DST, ["zfs", "create"], []),
    ("zone configuration copy", DST, ["zonecfg", "-z", "UUID", "-f", "-"], []),
    ("attach", DST, ["zoneadm", "-z", "UUID", "attach"], []),
    ("autoboot off and hide the source copy", SRC, ["vmadm", "update", "UUID",
                                                    "autoboot=false"], []),
    ("unhide the destination copy", DST, ["vmadm", "update", "UUID",
                                          "do_not_inventory=false"], []),
]


_SEQ_BEFORE = {}    # uuid -> the source workload's record just before an attempt


def remember_record(dc, uuid):
    if dc.vm(uuid)["state"] == "running":
        _SEQ_BEFORE[uuid] = dc.seq_lines(SRC, uuid)


def running_instance(dc):
    """A running 1 MB instance on the source: one that a rollback left as it
    was (as good as a new one: that is what the test checked), else a new one."""
    while dc.reusable:
        uuid = dc.reusable.pop()
        dc.reused.add(uuid)
        vm = dc.vm(uuid)
        if vm["server_uuid"] == dc.hosts()[SRC]["uuid"] and vm["state"] == "running":
            return uuid
    return dc.provision("--size", "1")


def fault(dc, host, prefix, extra, uuid):
    src = dc.hosts()[SRC]["uuid"]
    dc.simdc("fault", "add", host, *extra, "--", *[uuid if w == "UUID" else
                                                   w.replace("SRC_UUID", src) for w in prefix])


def migrate_with_fault(dc, uuid, host, prefix, extra=(), args=(), dest=DST):
    """Migrate with the fault in place; the tool's process and whether the
    fault was hit."""
    fault(dc, host, prefix, list(extra), uuid)
    remember_record(dc, uuid)
    try:
        p = dc.migrate("-y", *args, uuid, dest)
        hit = no_fault_left(dc)
    finally:
        dc.simdc("fault", "clear")
    return p, hit


@pytest.mark.parametrize("name,host,prefix,extra", FAULTS, ids=[f[0] for f in FAULTS])
def test_failure_before_the_switch_rolls_back(dc, name, host, prefix, extra):
    uuid = running_instance(dc)
    before, before_keys = dc.vm(uuid), keys(dc)
    p, hit = migrate_with_fault(dc, uuid, host, prefix, extra)
    assert p.returncode == 4, p.stdout + p.stderr
    assert hit, "the fault was never hit"
    assert "* Rolling back:" in p.stdout
    assert "rolled back" in p.stderr and "is on %s, running, as before" % SRC in p.stderr
    assert_rolled_back(dc, uuid, before, before_keys)
    dc.reusable.append(uuid)


# The other brands: a failure late before the switch rolls each back as it
# was (kvm's and bhyve's disks, lx's zone root), its workload's record intact.
BRANDS = [
    ("kvm", ["--brand", "kvm"], DST, ["zoneadm", "-z", "UUID", "attach"]),
    ("bhyve", ["--brand", "bhyve"], DST, ["zonecfg", "-z", "UUID", "-f", "-"]),
    ("lx", ["--brand", "lx"], SRC, ["zfs", "send"]),
]


@pytest.mark.parametrize("brand,prov,host,prefix", BRANDS, ids=[b[0] for b in BRANDS])
def test_failure_before_the_switch_rolls_back_every_brand(dc, brand, prov, host, prefix):
    uuid = dc.provision("--size", "1", *prov)
    before, before_keys = dc.vm(uuid), keys(dc)
    assert before["brand"] == brand
    p, hit = migrate_with_fault(dc, uuid, host, prefix)
    assert p.returncode == 4 and hit, p.stdout + p.stderr
    assert "is on %s, running, as before" % SRC in p.stderr
    assert_rolled_back(dc, uuid, before, before_keys)


TUNED = ("tcp_max_buf", "tcp_xmit_hiwat", "tcp_recv_hiwat")


def tunables(dc, host):
    return dc.exec(host, "ndd", "-get", "/dev/tcp", *TUNED).stdout.split()


def test_failure_while_tuning_tcp_rolls_back(dc):
    """tcp_max_buf raised, then the next ndd -set fails: both set back."""
    uuid = running_instance(dc)
    # illumos' defaults (an earlier migration tuned the CN)
    dc.exec(SRC, "sh", "-c", "ndd -set /dev/tcp tcp_xmit_hiwat 128000 && "
            "ndd -set /dev/tcp tcp_recv_hiwat 1048576 && ndd -set /dev/tcp tcp_max_buf 1048576")
    before, before_keys, before_tcp = dc.vm(uuid), keys(dc), tunables(dc, SRC)
    p, hit = migrate_with_fault(dc, uuid, SRC, ["ndd", "-set", "/dev/tcp", "tcp_xmit_hiwat"])
    assert p.returncode == 4 and hit, p.stdout + p.stderr
    assert tunables(dc, SRC) == before_tcp == ["1048576", "128000", "1048576"]
    assert_rolled_back(dc, uuid, before, before_keys)
    dc.reusable.append(uuid)


def test_failure_raising_the_bhyve_quota_rolls_back(dc):
    uuid = dc.provision("--brand", "bhyve", "--size", "1", "--state", "stopped")
    quota = dc.exec(SRC, "zfs", "get", "-Hp", "-o", "value", "quota", "zones/" + uuid).stdout
    before, before_keys = dc.vm(uuid), keys(dc)
    p, hit = migrate_with_fault(dc, uuid, SRC, ["zfs", "set", "quota=none", "zones/" + uuid])
    assert p.returncode == 4 and hit, p.stdout + p.stderr
    assert dc.exec(SRC, "zfs", "get", "-Hp", "-o", "value", "quota",
                   "zones/" + uuid).stdout == quota
    assert_rolled_back(dc, uuid, before, before_keys)


# Incremental (-a: round 0 while it runs, round 1 while it runs, then the
# stop and the final increment): round 1 fails after round 0 reached the
# destination, or its stream is cut half way.
ROUNDS = [
    ("round 1 send fails", SRC, ["zfs", "send"], ["--skip", "1"]),
    ("round 1 stream cut", DST, ["zfs", "recv"], ["--skip", "1", "--after-bytes", "400",
                                                  "--times", "3"]),
]


@pytest.mark.parametrize("name,host,prefix,extra", ROUNDS, ids=[f[0] for f in ROUNDS])
def test_failure_in_an_incremental_round_rolls_back(dc, name, host, prefix, extra):
    uuid = running_instance(dc)
    before, before_keys = dc.vm(uuid), keys(dc)
    p, hit = migrate_with_fault(dc, uuid, host, prefix, extra, ["-a", "--interval", "0"])
    assert p.returncode == 4, p.stdout + p.stderr
    assert hit and "Transferring incremental dataset snapshot 1" in p.stdout
    assert_rolled_back(dc, uuid, before, before_keys)
    dc.reusable.append(uuid)


def test_failed_image_import_migrates_without_the_origin(dc):
    """imgadm import fails on the destination: the instance goes whole, not as a clone."""
    dest = "spare-server"
    uuid = dc.provision("--brand", "joyent-minimal", "--size", "1", "--state", "stopped")
    image = dc.vm(uuid)["image_uuid"]
    dc.exec(dest, "zfs", "destroy", "-r", "zones/" + image, check=False)
    before = dc.vm(uuid)
    p, hit = migrate_with_fault(dc, uuid, dest, ["imgadm", "import"], dest=dest)
    assert p.returncode == 0 and hit, p.stdout + p.stderr
    assert "Image import failed" in p.stdout
    assert_migrated(dc, uuid, before, p.stdout, dst=dest)
    assert dc.exec(dest, "zfs", "get", "-H", "-o", "value", "origin",
                   "zones/" + uuid).stdout.strip() == "-"


def test_sigkill_during_image_import_then_rerun_finishes(dc):
    """The import goes on without the tool; the rerun finds the image there and
    sends the instance as its clone. (Runs after the test above: the image is
    still not on spare-server.)"""
    dest = "spare-server"
    uuid = dc.provision("--brand", "joyent-minimal", "--size", "1", "--state", "stopped")
    image = dc.vm(uuid)["image_uuid"]
    before = dc.vm(uuid)
    killed = kill_at(dc, uuid, dest, ["imgadm", "import"], [], dest=dest)
    assert "Attempting import of image" in killed
    p = dc.migrate("-y", uuid, dest)
    assert p.returncode == 0, killed + p.stdout + p.stderr
    assert "Found the journal of an interrupted migration" in p.stdout
    assert_migrated(dc, uuid, before, killed + p.stdout, dst=dest)
    assert dc.exec(dest, "zfs", "get", "-H", "-o", "value", "origin",
                   "zones/" + uuid).stdout.strip() == "zones/%s@final" % image


# Past the switch: (name, host, prefix, extra fault options, migration options).
# A failed boot rolls the instance back (tests/e2e/test_rollback.py) unless
# --no-rollback keeps it there.
AFTER_SWITCH = [
    ("boot on the destination", DST, ["vmadm", "start", "UUID"], [], ["--no-rollback"]),
    ("detaching the old copy", SRC, ["zoneadm", "-z", "UUID", "detach"], [], []),
    # -a: the live rounds' snapshots are deleted, the final one is kept
    ("deleting the migration snapshots", SRC, ["zfs", "destroy"], [],
     ["-a", "--interval", "0"]),
    ("clearing the keys", DST, ["grep -v -F -e"], ["--remote"], []),
]


@pytest.mark.parametrize("name,host,prefix,extra,args", AFTER_SWITCH,
                         ids=[f[0] for f in AFTER_SWITCH])
def test_failure_after_the_switch_is_finished_by_a_rerun(dc, name, host, prefix, extra, args):
    uuid = running_instance(dc)
    before = dc.vm(uuid)
    first, hit = migrate_with_fault(dc, uuid, host, prefix, extra, args)
    assert first.returncode == 5 and hit, first.stdout + first.stderr
    assert "run `sdc-migrate -y %s %s` again to finish" % (uuid, DST) in first.stderr
    p = dc.migrate("-y", uuid, DST)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "VMAPI shows the instance on dest-server: finishing the migration" in p.stdout
    assert_migrated(dc, uuid, before, first.stdout + p.stdout)
    assert_sequence_continues(dc, uuid)


# Where to kill the tool: the step's command is made slow, the tool is killed
# while it waits, and the command is let finish before the rerun (it runs on
# after its client died, as a remote command does). Before the switch, one
# instance goes through them all in the order migrate.FULL runs them: each rerun
# undoes what the killed run did and is killed at the next step; the last
# rerun finishes. (name, host, prefix, extra fault options)
# (name, host, prefix, extra fault options, the step line the kill lands in)
CHAIN = [
    ("making the temporary key", SRC, ["ssh-keygen"], ["--remote"],
     "+ Creating an SSH key on %s" % SRC),
    ("authorizing the key", DST, ["cat >> /root/.ssh/authorized_keys"], ["--remote"],
     "+ Copying SSH key to %s" % DST),
    ("tuning TCP", SRC, ["ndd", "-set"], [], "* Checking if tcp_max_buf"),
    ("reserving IPs", "headnode", ["sdc-napi"], ["--skip", "1"], "+ reserving "),
    # the source's ticket made slow: the destination's is taken meanwhile
    ("holding the instance in the waitlist", "headnode",
     ["sdc-cnapi", "/servers/SRC_UUID/tickets", "-X", "POST"], [], "* Holding "),
    ("during the stop", SRC, ["vmadm", "stop"], [], "is running; shutting it down"),
    ("after the stop", SRC, ["zfs", "snapshot"], [], "* Creating dataset snapshots on"),
    ("during the send", SRC, ["zfs", "send"], [], "+ Tranferring zones/"),
    ("creating the cores dataset", DST, ["zfs", "create"], [], "* Creating cores dataset"),
    ("copying the zone configuration", DST, ["zonecfg", "-z", "UUID", "-f", "-"], [],
     "* Transferring Zone XML to the destination"),
    # the destination copy stays hidden until the switch: undone, and again
    ("during attach", DST, ["zoneadm", "-z", "UUID", "attach"], [],
     "* Importing & Attaching Zone"),
    ("while hiding the source copy", SRC, ["vmadm", "update", "UUID",
                                           "autoboot=false"], [],
     "* Disabling instance on %s" % SRC),
]
# One instance each: past these a rerun finishes the migration.
# (name, host, prefix, extra fault options, migrate options, provision options)
KILLS = [
    ("raising the bhyve quota", SRC, ["zfs", "set", "quota=none"], [], [],
     ["--brand", "bhyve", "--state", "stopped"]),
    ("during the send of a running kvm's disks", SRC, ["zfs", "send"], [], [],
     ["--brand", "kvm"]),
    ("during the attach of a running bhyve", DST, ["zoneadm", "-z", "UUID", "attach"], [], [],
     ["--brand", "bhyve"]),
    ("during the boot of a running lx zone", DST, ["vmadm", "start"], [], [],
     ["--brand", "lx"]),
    ("during round 1", SRC, ["zfs", "send"], ["--skip", "1"], ["-a", "--interval", "0"], []),
    ("waiting for VMAPI", DST, ["svcadm", "restart", "vm-agent"], [], [], []),
    ("during the boot on the destination", DST, ["vmadm", "start"], [], [], []),
]
DELAY = 1


def landed(out):
    """The step a killed run was in: the last step line it printed."""
    steps = [l.strip() for l in out.splitlines() if l.lstrip().startswith(("* ", "+ "))]
    return steps[-1] if steps else ""


def kill_at(dc, uuid, host, prefix, extra, *args, dest=DST):
    """Run the tool, SIGKILL it in the slow step; its output."""
    fault(dc, host, prefix, ["--delay", str(DELAY), "--exit", "0"] + extra, uuid)
    tool = start_tool(dc, "-y", *args, uuid, dest)
    try:
        wait_for_the_fault(dc, tool)
    finally:
        os.killpg(tool.pid, signal.SIGKILL)
    killed = tool.communicate()[0].decode()
    time.sleep(DELAY + 0.5)          # the command in flight on the CN ends
    return killed


def test_sigkill_at_every_step_then_rerun_finishes(dc):
    uuid = running_instance(dc)
    before = dc.vm(uuid)
    dc.exec(SRC, "sh", "-c", "ndd -set /dev/tcp tcp_xmit_hiwat 128000 && "
            "ndd -set /dev/tcp tcp_max_buf 1048576")       # tuning TCP is a step
    out = []
    for i, (name, host, prefix, extra, step) in enumerate(CHAIN):
        killed = kill_at(dc, uuid, host, prefix, extra)
        assert i == 0 or "Found the journal of an interrupted migration" in killed, \
            (name, killed)
        # where the kill landed: in the step the fault made slow
        assert step in landed(killed), (name, landed(killed), killed)
        out.append(killed)
    p = dc.migrate("-y", uuid, DST)
    assert p.returncode == 0, "".join(out) + p.stdout + p.stderr
    assert "Found the journal of an interrupted migration" in p.stdout
    assert_migrated(dc, uuid, before, "".join(out) + p.stdout)
    assert not [ip for ip in ips(dc, uuid) if ip["reserved"]]
    assert_sequence_continues(dc, uuid)


@pytest.mark.parametrize("name,host,prefix,extra,opts,prov", KILLS, ids=[k[0] for k in KILLS])
def test_sigkill_then_rerun_finishes(dc, name, host, prefix, extra, opts, prov):
    uuid = dc.provision("--size", "1", *prov) if prov else running_instance(dc)
    before = dc.vm(uuid)
    quota = dc.exec(SRC, "zfs", "get", "-Hp", "-o", "value", "quota", "zones/" + uuid).stdout
    killed = kill_at(dc, uuid, host, prefix, extra, *opts)
    p = dc.migrate("-y", *opts, uuid, DST)
    assert p.returncode == 0, killed + p.stdout + p.stderr
    assert "Found the journal of an interrupted migration" in p.stdout
    assert_migrated(dc, uuid, before, killed + p.stdout)
    # a bhyve's quota too, on both CNs: its undo before the switch cannot set
    # it back while a migration snapshot of its disks is there (test_migrate.py)
    for host in (SRC, DST):
        assert dc.exec(host, "zfs", "get", "-Hp", "-o", "value", "quota",
                       "zones/" + uuid).stdout == quota, host
    assert not [ip for ip in ips(dc, uuid) if ip["reserved"]]
    if before["state"] == "running":
        assert_sequence_continues(dc, uuid)
    if "finishing the migration" in p.stdout and not opts:
        # the closing block of the run that finished: the killed run's stop and
        # round, from the journal
        assert "# dataset increments:  1\n" in p.stdout, p.stdout
        down = [l for l in p.stdout.splitlines() if "Instance downtime:" in l]
        assert len(down) == 1
        assert ("(it was not running)" in down[0]) == (before["state"] != "running"), down


def ips(dc, uuid):
    return [dc.api("napi", "/networks/%s/ips/%s" % (n["network_uuid"], n["ip"]))[2]
            for n in dc.vm(uuid)["nics"]]


# Ctrl-C: SIGINT to the tool's process group, as a terminal sends it.
# (name, host, prefix, delay, exit status). The interrupted send goes on on
# the CNs: the rollback waits for the receive before it undoes anything.
def signal_in_step(dc, uuid, host, prefix, delay, signum):
    """Migrate with the step made slow; send signum to the tool's process
    group while it waits there. (exit status, output)."""
    fault(dc, host, prefix, ["--delay", str(delay), "--exit", "0"], uuid)
    tool = start_tool(dc, "-y", uuid, DST)
    wait_for_the_fault(dc, tool)
    time.sleep(0.3)
    os.killpg(tool.pid, signum)
    out = tool.communicate(timeout=90)[0].decode()
    return tool.returncode, out


SIGINTS = [
    ("during the send", SRC, ["zfs", "send"], 3, 4),
    ("during the boot on the destination", DST, ["vmadm", "start"], 3, 5),
]


@pytest.mark.parametrize("name,host,prefix,delay,status", SIGINTS, ids=[k[0] for k in SIGINTS])
def test_ctrl_c(dc, name, host, prefix, delay, status):
    uuid = running_instance(dc)
    before, before_keys = dc.vm(uuid), keys(dc)
    remember_record(dc, uuid)
    returncode, out = signal_in_step(dc, uuid, host, prefix, delay, signal.SIGINT)
    assert returncode == status, out
    assert "interrupted" in out
    if status == 4:
        assert "rolled back" in out
        assert_rolled_back(dc, uuid, before, before_keys)
        return
    assert "run `sdc-migrate -y %s %s` again to finish" % (uuid, DST) in out
    time.sleep(delay)
    p = dc.migrate("-y", uuid, DST)
    assert p.returncode == 0, out + p.stdout + p.stderr
    assert_migrated(dc, uuid, before, out + p.stdout)
    assert_sequence_continues(dc, uuid)


# The operator's ssh session drops (SIGHUP) or the tool is told to stop
# (SIGTERM), sent to its process group as a terminal does: before the switch
# it rolls back as for ^C; past it, it finishes. Its commands run in process
# groups of their own, so the signal stops none of them half way.
# (signal, host, prefix, delay, exit status)
HANGUPS = [
    ("SIGHUP", SRC, ["zfs", "send"], 3, 4),
    ("SIGTERM", SRC, ["zfs", "send"], 3, 4),
    ("SIGHUP", DST, ["vmadm", "start"], 3, 0),
    ("SIGTERM", DST, ["vmadm", "start"], 3, 0),
]


@pytest.mark.parametrize("sig,host,prefix,delay,status", HANGUPS,
                         ids=["%s %s the switch" % (h[0], "before" if h[4] else "after")
                              for h in HANGUPS])
def test_hangup_or_sigterm(dc, sig, host, prefix, delay, status):
    uuid = running_instance(dc)
    before, before_keys = dc.vm(uuid), keys(dc)
    returncode, out = signal_in_step(dc, uuid, host, prefix, delay, getattr(signal, sig))
    assert returncode == status, out
    if status == 4:
        assert "interrupted by %s" % sig in out and "rolled back" in out
        assert_rolled_back(dc, uuid, before, before_keys)
        dc.reusable.append(uuid)
        return
    assert "* %s past the switch point: finishing the migration" % sig in out
    assert_migrated(dc, uuid, before, out)
    assert_sequence_continues(dc, uuid)
    down = [l for l in out.splitlines() if "Instance downtime:" in l]
    assert len(down) == 1 and "(it was not running)" not in down[0], down


def pending(records):
    """The undo names of a journal's changes that are not undone."""
    undone = {r["i"] for r in records if r["t"] == "undone"}
    return [r["undo"] for i, r in enumerate(records) if r["t"] == "change" and i not in undone]


def test_an_undo_that_cannot_destroy_the_received_data_needs_an_operator(dc):
    """A failure late before the switch while a snapshot received on the
    destination is held there (`zfs hold`): the undo's `zfs destroy -r` fails
    (illumos-joyent usr/src/cmd/zfs/zfs_main.c zfs_do_destroy,
    lib/libzfs/common/libzfs_dataset.c zfs_destroy_snaps_nvl: "cannot destroy
    snapshot NAME: dataset is busy"). Only "does not exist" is success: the
    tool says an operator is needed, and what is left (exit 5); the journal
    keeps that undo pending and has undone the rest; once the hold is gone the
    same command ends it (the undo, then the migration)."""
    uuid = running_instance(dc)
    before = dc.vm(uuid)
    remember_record(dc, uuid)
    tool = start_tool(dc, "-y", "-i", "--interval", "600", uuid, DST)
    try:
        # round 0 is on the destination: the tool sleeps until `finish`
        deadline = time.time() + 60
        while "Sleeping for 600 seconds" not in dc.exec("headnode", "sh", "-c", (
                "cat /var/tmp/migrator-%s-*.log 2>/dev/null || true") % uuid).stdout:
            assert time.time() < deadline and tool.poll() is None, "no round was sent"
            time.sleep(0.3)
        held = [n for n in dc.zfs_names(DST) if n.startswith("zones/%s@" % uuid)][0]
        dc.exec(DST, "zfs", "hold", "operator", held)
        fault(dc, DST, ["zoneadm", "-z", "UUID", "attach"], [], uuid)
        assert dc.migrate("finish", uuid).returncode == 0
        out = tool.communicate(timeout=180)[0].decode()
    finally:
        if tool.poll() is None:
            os.killpg(tool.pid, signal.SIGKILL)
        dc.simdc("fault", "clear")
    assert tool.returncode == 5, out
    assert ("left to undo: received datasets on %s (zones/%s is still on %s: cannot destroy"
            " snapshot %s: dataset is busy)" % (DST, uuid, DST, held)) in out, out
    assert "It needs an operator" in out and "run `sdc-migrate -y %s %s` again" % (uuid, DST) \
        in out
    assert pending(journals(dc, uuid)[-1]) == ["received"]
    listed = [json.loads(l) for l in dc.migrate("list", "-j").stdout.splitlines()]
    assert [(m["phase"], m["outcome"]) for m in listed if m["uuid"] == uuid][-1] == \
        ("undoing", "needs-operator")
    # the rest was undone: on the source, running, writing on
    vm = dc.vm(uuid)
    assert (vm["server_uuid"], vm["state"]) == (dc.hosts()[SRC]["uuid"], "running")
    assert "zones/" + uuid in dc.zfs_names(DST)
    dc.exec(DST, "zfs", "release", "operator", held)
    p = dc.migrate("-y", uuid, DST)
    assert p.returncode == 0, out + p.stdout + p.stderr
    assert "Found the journal of an interrupted migration" in p.stdout
    assert "undoing what that run changed\n" in p.stdout
    first = journals(dc, uuid)[-2]
    assert pending(first) == [] and \
        {k: v for k, v in first[-1].items() if k != "at"} == {"t": "end", "outcome": "rolled-back"}
    assert_migrated(dc, uuid, before, p.stdout)
    assert_sequence_continues(dc, uuid)


@pytest.mark.parametrize("down", [SRC, DST])
def test_sshd_stopped_mid_transfer_then_rerun_ends_it(dc, down):
    """A CN's sshd goes away (its connections with it) while the data is on
    its way: the tool cannot undo on that CN (exit 5, says to rerun); once
    sshd is back the same command ends the migration. The destination's
    receive goes on after its client died: the rerun must cope with it."""
    uuid = running_instance(dc)
    before = dc.vm(uuid)
    dc.simdc("fault", "add", DST, "--delay", "3", "--exit", "0", "--", "zfs", "recv")
    tool = start_tool(dc, "-y", uuid, DST)
    try:
        wait_for_the_fault(dc, tool)
        dc.simdc("sshd", down, "stop")
        out = tool.communicate(timeout=120)[0].decode()
    finally:
        dc.simdc("sshd", down, "start")
    assert tool.returncode == 5, out
    assert "run `sdc-migrate -y %s %s` again" % (uuid, DST) in out
    p = dc.migrate("-y", uuid, DST)
    assert p.returncode == 0, out + p.stdout + p.stderr
    assert "Found the journal of an interrupted migration" in p.stdout
    assert_migrated(dc, uuid, before, out + p.stdout)
    assert_sequence_continues(dc, uuid)
    assert not [ip for ip in ips(dc, uuid) if ip["reserved"]]
    if down == SRC:
        # the receive went on without its client and got it all: not sent again
        sends = [r["argv"] for r in dc.log(SRC) if r["argv"][:2] == ["zfs", "send"]
                 and any(uuid in a for a in r["argv"])]
        assert "zones/%s@sdc-migrate_ops_migration_" % uuid in " ".join(sends[-1]), sends[-1]


def test_destination_pool_fills_during_the_transfer_rolls_back(dc):
    # bigger than what `simdc fill` may leave free under load (zfs-fuse keeps
    # up to 1/64 of the pool, 32 MB here, from reservations, as ZFS keeps a
    # slop for frees): the receive runs out of space whatever the load
    uuid = dc.provision("--size", "48")
    before, before_keys = dc.vm(uuid), keys(dc)
    # after the gather saw room enough, before the send: the pool fills
    dc.simdc("fault", "add", SRC, "--delay", "2", "--exit", "0", "--", "zfs", "snapshot")
    remember_record(dc, uuid)
    tool = start_tool(dc, "-y", uuid, DST)
    try:
        wait_for_the_fault(dc, tool)
        dc.simdc("fill", DST)
        free = int(dc.exec(DST, "zfs", "get", "-Hp", "-o", "value", "available",
                           "zones").stdout)
        assert free < 40 << 20, free
        out = tool.communicate(timeout=120)[0].decode()
    finally:
        tool.wait(timeout=120)
        dc.simdc("fault", "clear")          # and the fill
    assert tool.returncode == 4, out
    assert "out of space" in out
    assert "rolled back" in out
    assert_rolled_back(dc, uuid, before, before_keys)


def sends_of(dc, uuid, since=0):
    return [r for r in dc.log(SRC)[since:] if r["argv"][:2] == ["zfs", "send"]
            and any(uuid in a for a in r["argv"][2:])
            or r["argv"][:3] == ["zfs", "send", "-t"]]


def stream_size(dc, send_argv):
    """How many bytes `zfs send ARGS` sends, counted (its -v/-P progress aside)."""
    args = [a for a in send_argv[2:] if a not in ("-v", "-P", "-vP")]
    out = dc.exec(SRC, "bash", "-c", 'zfs send "$@" | wc -c', "-", *args).stdout
    return int(out)


CUT = 1 << 20


def test_a_cut_stream_is_resumed_where_it_was_cut(dc):
    """The destination's receive ends 1 MB into the stream (a dropped
    connection): zfs recv -s kept that much, and zfs send -t sends the rest
    only (illumos zfs(8): receive -s, send -t; Triton's cn-agent receives
    with -s: sdc-cn-agent lib/backends/smartos/bin/machine-migrate-receive.js)."""
    uuid = dc.provision("--size", "8")
    before = dc.vm(uuid)
    since = len(dc.log(SRC))
    p, hit = migrate_with_fault(dc, uuid, DST, ["zfs", "recv"], ["--after-bytes", str(CUT)])
    assert p.returncode == 0 and hit, p.stdout + p.stderr
    assert "    + The stream of zones/%s@sdc-migrate_ops_migration_" % uuid in p.stdout
    assert "Resuming it where it was cut (zfs send -t)" in p.stdout
    assert_migrated(dc, uuid, before, p.stdout)
    assert_sequence_continues(dc, uuid)
    sends = sends_of(dc, uuid, since)
    resumed = [r for r in sends if r["argv"][2] == "-t"]
    assert len(resumed) == 1, sends
    whole = stream_size(dc, sends[0]["argv"])    # the stream that was cut
    assert whole - CUT - (1 << 16) <= resumed[0]["bytes"] <= whole - CUT + (1 << 16), \
        (resumed[0]["bytes"], whole)
    recvs = [r["argv"] for r in dc.log(DST) if r["argv"][:2] == ["zfs", "recv"]
             and r["argv"][-1] == "zones/" + uuid]
    assert recvs and all(a[2:5] == ["-s", "-u", "-F"] for a in recvs), recvs


def test_a_run_killed_after_a_cut_is_resumed_by_the_rerun_from_the_token(dc):
    """Killed after its receive was cut and before it resumed it: the rerun
    finishes that stream from its receive_resume_token, then sends only what
    is newer; nothing is sent whole twice. The stopped instance's datasets
    are mounted there although every receive was -u."""
    uuid = dc.provision("--size", "8", "--state", "stopped")
    before = dc.vm(uuid)
    fault(dc, DST, ["zfs", "recv"], ["--after-bytes", str(CUT)], uuid)
    killed = kill_at(dc, uuid, DST, ["zfs", "get", "-H", "-o", "name,value",
                                     "receive_resume_token"], [])
    # killed while it read the token, before it said the stream was cut
    assert "    + Tranferring zones/%s@" % uuid in killed and "was cut" not in killed, killed
    token = dc.exec(DST, "zfs", "get", "-H", "-o", "value", "receive_resume_token",
                    "zones/" + uuid).stdout.strip()
    assert token.startswith("1-"), token
    since = len(dc.log(SRC))
    p = dc.migrate("-y", uuid, DST)
    assert p.returncode == 0, killed + p.stdout + p.stderr
    assert "Resuming the cut transfer of zones/%s (zfs send -t)" % uuid in p.stdout
    assert_migrated(dc, uuid, before, killed + p.stdout)
    sends = [r["argv"] for r in sends_of(dc, uuid, since)]
    assert sends[0][:3] == ["zfs", "send", "-t"], sends
    assert all("-t" in a or "-i" in a for a in sends), "sent whole again: %s" % sends
    assert dc.exec(DST, "zfs", "get", "-H", "-o", "value", "mounted",
                   "zones/" + uuid).stdout.strip() == "yes"


def test_a_second_migration_of_the_same_instance_is_refused(dc):
    uuid = running_instance(dc)
    dc.simdc("fault", "add", SRC, "zfs", "snapshot", "--delay", "3", "--exit", "0")
    first = subprocess.Popen([SIMDC, "exec", "headnode", "--", SDC_MIGRATE, "-y", uuid, DST],
                             env=dc.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_for_the_fault(dc, first)
    second = dc.migrate("-y", uuid, DST)
    assert second.returncode == 2
    assert "already being migrated" in second.stderr
    # meanwhile, the temporary key: root's alone, usable only from the source
    src_ip = dc.hosts()[SRC]["admin_ip"]
    modes = dc.exec(SRC, "sh", "-c", "stat -c '%a %n' /root/.ssh/migr-*").stdout.split("\n")
    assert [m.split()[0] for m in modes if m.strip()] == ["600", "600", "600"]
    entry = dc.exec(DST, "grep", "sdc-migrate-" + uuid, "/root/.ssh/authorized_keys").stdout
    # (what it can run: tests/e2e/test_cn_key.py)
    assert entry.startswith('restrict,command="/bin/sh -c ')
    assert (',from="%s" ssh-ed25519 ' % src_ip) in entry
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


def test_reserved_destination_is_shown_and_unreachable_cns_are_refused(dc):
    uuid = dc.provision("--size", "1", "--state", "stopped")
    before = dc_state(dc, uuid)
    spare = dc.hosts()["spare-server"]["uuid"]
    # Operators reserve a new CN so that DAPI places nothing else there while
    # they fill it: the SRC/DEST table shows the reservation, and it goes on.
    dc.api("cnapi", "/servers/" + spare, "-X", "POST", "-d", '{"reserved": true}')
    try:
        p = dc.migrate("--dry-run", uuid, "spare-server")
    finally:
        dc.api("cnapi", "/servers/" + spare, "-X", "POST", "-d", '{"reserved": false}')
    assert p.returncode == 0, p.stdout + p.stderr
    table = [l for l in p.stdout.splitlines() if "reserved:" in l]
    assert len(table) == 1 and table[0].split()[1:] == ["false", "reserved:", "true"], table
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
