"""sdc-migrate rollback, judged by the datacenter: after a migration the
instance goes back to its old copy with everything it wrote on the
destination; refusals change nothing; a failed rollback leaves it where the
migration put it; a killed one is finished by running it again."""
import json
import os
import signal
import subprocess
import time

from checks import (assert_migrated, assert_sequence_continues, data_digest, dc_state,
                    kept_snapshot, leftovers, zoned)
from conftest import SDC_MIGRATE, SIMDC

SRC, DST = "source-server", "dest-server"


def migrated(dc, *provision):
    """A running instance migrated to dest-server that has written there."""
    uuid = dc.provision("--size", "2", *provision)
    time.sleep(0.3)
    p = dc.migrate("-y", uuid, DST)
    assert p.returncode == 0, p.stdout + p.stderr
    time.sleep(1)
    return uuid


def assert_back_on_source(dc, uuid, dest_record):
    """On the source, running, visible; the destination's copy hidden and
    detached; the source's record is the destination's, then goes on."""
    vm = dc.vm(uuid)
    assert vm["server_uuid"] == dc.hosts()[SRC]["uuid"] and vm["state"] == "running"
    assert dc.exec(SRC, "zoneadm", "-z", uuid, "list", "-p").stdout.split(":")[2] == "running"
    assert 'name="do-not-inventory"' not in dc.exec(SRC, "cat", "/etc/zones/%s.xml" % uuid).stdout
    assert 'name="do-not-inventory"' in dc.exec(DST, "cat", "/etc/zones/%s.xml" % uuid).stdout
    assert dc.exec(DST, "zoneadm", "-z", uuid, "list", "-p").stdout.split(":")[2] == "configured"
    time.sleep(0.5)
    lines = dc.seq_lines(SRC, uuid)
    assert lines[:len(dest_record)] == dest_record, "a line written on the destination is lost"
    numbers = [int(l[0]) for l in lines]
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(lines) > len(dest_record) and lines[len(dest_record)][1] != dest_record[-1][1]
    assert leftovers(dc, uuid) == []
    for nic in vm["nics"]:
        ip = dc.api("napi", "/networks/%s/ips/%s" % (nic["network_uuid"], nic["ip"]))[2]
        assert ip["belongs_to_uuid"] == uuid and not ip.get("reserved")


def kept_cost(dc, uuid):
    """`sdc-migrate list`'s cost of uuid's kept snapshot, per side."""
    listed = [json.loads(l) for l in dc.migrate("list", "-j").stdout.splitlines()]
    return [m["snapshot_cost_bytes"] for m in listed if m["uuid"] == uuid][-1]


def test_rollback_brings_back_what_was_written_on_the_destination(dc):
    uuid = migrated(dc)
    moved = dc.seq_lines(DST, uuid)
    assert moved[-1][1] != moved[0][1], "the workload did not write on the destination"
    # the snapshot kept for it costs the destination what the workload wrote
    # over since (its blocks, zfs-fuse counts them in the snapshot's used),
    # the stopped source nothing
    cost = kept_cost(dc, uuid)
    assert cost["source"] == 0 and cost["destination"] > 0, cost
    before = dc_state(dc, uuid)
    dry = dc.migrate("rollback", "--dry-run", uuid)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "Dry run: nothing was changed" in dry.stdout and "zfs send" in dry.stdout
    assert dc_state(dc, uuid) == before
    p = dc.migrate("rollback", "-y", "-j", uuid)
    assert p.returncode == 0, p.stdout + p.stderr
    events = [json.loads(l) for l in p.stdout.splitlines()]
    summary = [e for e in events if e["event"] == "summary"][-1]
    assert (summary["outcome"], summary["source"], summary["destination"]) == \
        ("done", DST, SRC)
    assert_back_on_source(dc, uuid, dc.seq_lines(DST, uuid))
    # only what changed since the migration's snapshot went back
    sends = [r["argv"] for r in dc.log(DST) if r["argv"][:2] == ["zfs", "send"]
             and "-n" not in r["argv"] and any(uuid in a for a in r["argv"])]
    assert len(sends) == 1 and "-i" in sends[0] or "-I" in sends[0], sends
    listed = [json.loads(l) for l in dc.migrate("list", "-j").stdout.splitlines()]
    mine = [(m["kind"], m["outcome"]) for m in listed if m["uuid"] == uuid]
    assert mine == [("migration", "rolled-back"), ("rollback", "done")]
    again = dc.migrate("rollback", "-y", uuid)
    assert again.returncode == 2 and "rolled back already" in again.stderr
    # cleanup-source now removes the copy the rollback left on dest-server,
    # and the snapshot the source kept for a rollback
    c = dc.migrate("cleanup-source", "-y", uuid)
    assert c.returncode == 0, c.stdout + c.stderr
    assert not [n for n in dc.zfs_names(DST) if uuid in n]
    assert not [n for n in dc.zfs_names(SRC) if "@" in n and n.split("@")[1] == kept_snapshot(
        dc, uuid)]


def test_a_delegated_dataset_zoned_by_the_boot_migrates_and_comes_back(dc):
    """A running joyent instance with a delegated dataset (zones/UUID/data): its
    boot set zoned=on there (illumos-joyent usr/src/cmd/zoneadmd/vplat.c
    validate_datasets), `zfs send -p` carries it, and from the global zone
    `zfs mount` of a zoned dataset fails (usr/src/cmd/zfs/zfs_main.c
    share_mount_one: "dataset is exported to a local zone"). The migration
    mounts what Triton's cn-agent mounts (sdc-cn-agent
    lib/backends/smartos/tasks/machine_migrate.js setupFilesystem: the zone's
    dataset) and leaves the zoned one to the zone, there and on the way back."""
    uuid = dc.provision("--delegate", "--size", "1")
    data = "zones/%s/data" % uuid
    assert zoned(dc, SRC, data) == ("on", "local")
    before = dc.vm(uuid)
    p = dc.migrate("-y", uuid, DST)
    assert p.returncode == 0, p.stdout + p.stderr
    assert zoned(dc, DST, data) == ("on", "received")
    assert_migrated(dc, uuid, before, p.stdout)        # the delegated dataset's data too
    assert_sequence_continues(dc, uuid)
    time.sleep(0.5)
    p = dc.migrate("rollback", "-y", uuid)
    assert p.returncode == 0, p.stdout + p.stderr
    assert_back_on_source(dc, uuid, dc.seq_lines(DST, uuid))
    assert zoned(dc, SRC, data)[0] == "on"
    assert data_digest(dc, SRC, uuid) == data_digest(dc, DST, uuid)


def test_no_rollback_snapshot_keeps_none_and_rollback_says_so(dc):
    uuid = dc.provision("--size", "1", "--state", "stopped")
    p = dc.migrate("-y", "--no-rollback-snapshot", uuid, DST)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "no snapshot is kept for `sdc-migrate rollback` (--no-rollback-snapshot)" in p.stdout
    assert kept_snapshot(dc, uuid) is None and leftovers(dc, uuid) == []
    assert kept_cost(dc, uuid) is None
    before = dc_state(dc, uuid)
    r = dc.migrate("rollback", "-y", uuid)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "kept no snapshot on both compute nodes (--no-rollback-snapshot)" in r.stderr
    assert "sdc-migrate cleanup-source %s" % uuid in r.stderr
    assert dc_state(dc, uuid) == before


def test_rollback_refuses_without_a_common_snapshot_or_an_old_copy(dc):
    never = dc.provision("--size", "1", "--state", "stopped")
    p = dc.migrate("rollback", "-y", never)
    assert p.returncode == 3 and "no finished migration of %s" % never in p.stderr
    assert dc.migrate("rollback", "-y", "../../etc").returncode == 2
    uuid = migrated(dc)
    kept = kept_snapshot(dc, uuid)
    dc.exec(DST, "zfs", "destroy", "zones/%s@%s" % (uuid, kept))
    before = dc_state(dc, uuid)
    p = dc.migrate("rollback", "-y", uuid)
    assert p.returncode == 2 and "no snapshot in common" in p.stderr, p.stdout + p.stderr
    assert dc_state(dc, uuid) == before
    assert dc.migrate("cleanup-source", "-y", uuid).returncode == 0
    before = dc_state(dc, uuid)
    p = dc.migrate("rollback", "-y", uuid)
    assert p.returncode == 2 and "is gone" in p.stderr, p.stdout + p.stderr
    assert dc_state(dc, uuid) == before


def test_a_failed_rollback_leaves_the_instance_where_the_migration_put_it(dc):
    uuid = migrated(dc)
    kept = kept_snapshot(dc, uuid)
    old_copy = dc.exec(SRC, "zfs", "get", "-Hp", "-o", "value", "guid",
                       "zones/%s@%s" % (uuid, kept)).stdout
    before = dc_state(dc, uuid)
    p = dc.migrate_with_fault([SRC, "--", "zfs", "recv"], "rollback", "-y", uuid)
    assert p.returncode == 4, p.stdout + p.stderr
    after = dc_state(dc, uuid)
    for k in ("pools", "vm", "ips", "zones", "keys"):
        assert after[k] == before[k], (k, before[k], after[k])
    vm = dc.vm(uuid)
    assert vm["server_uuid"] == dc.hosts()[DST]["uuid"] and vm["state"] == "running"
    # the old copy as it was: hidden, with the snapshot a later rollback needs
    assert dc.exec(SRC, "zfs", "get", "-Hp", "-o", "value", "guid",
                   "zones/%s@%s" % (uuid, kept)).stdout == old_copy
    assert leftovers(dc, uuid) == []
    record = dc.seq_lines(DST, uuid)
    numbers = [int(l[0]) for l in record]
    assert numbers == list(range(1, len(numbers) + 1))


def test_a_killed_rollback_is_finished_by_running_it_again(dc):
    uuid = migrated(dc)
    dc.simdc("fault", "add", DST, "--delay", "1", "--exit", "0", "--", "zfs", "send")
    tool = subprocess.Popen([SIMDC, "exec", "headnode", "--", SDC_MIGRATE, "rollback", "-y",
                             uuid], env=dc.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 60
        while "[]" not in dc.simdc("fault", "list").stdout.replace("\n", "").replace(" ", ""):
            assert time.time() < deadline and tool.poll() is None
            time.sleep(0.1)
    finally:
        os.killpg(tool.pid, signal.SIGKILL)
        tool.communicate()
        dc.simdc("fault", "clear")
    time.sleep(1.5)                  # the send in flight on the CN ends
    p = dc.migrate("rollback", "-y", uuid)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Found the journal of an interrupted migration" in p.stdout
    assert_back_on_source(dc, uuid, dc.seq_lines(DST, uuid))


# After the boot on the destination the migration checks that the instance is
# up: its zone running and, in a joyent zone, svc:/milestone/multi-user online
# (what `svcs -z ZONE` answers from the global zone, illumos
# usr/src/cmd/svc/svcs/svcs.c). Its services failing there, or its boot:
def test_an_instance_whose_services_fail_on_the_destination_is_rolled_back(dc):
    uuid = dc.provision("--size", "2", "--alias", "sick-services")
    time.sleep(0.3)
    p = dc.migrate_with_fault([DST, "--times", "100", "--", "svcs", "-z", uuid],
                              "-y", "--health-timeout=3", uuid, DST)
    assert p.returncode == 4, p.stdout + p.stderr
    assert "did not come up on %s" % DST in p.stdout
    assert "milestone/multi-user" in p.stderr and "It was rolled back" in p.stderr
    assert_back_on_source(dc, uuid, dc.seq_lines(DST, uuid))
    listed = [json.loads(l) for l in dc.migrate("list", "-j").stdout.splitlines()]
    assert [(m["kind"], m["outcome"]) for m in listed if m["uuid"] == uuid] == \
        [("migration", "rolled-back"), ("rollback", "done")]


def test_a_bhyve_that_does_not_boot_is_rolled_back_with_its_quota(dc):
    """A bhyve instance keeps no snapshot for a rollback (its quota, VM.js
    setQuotaBhyve, has no room for one), but one that did not come up is
    rolled back at once: its migration keeps the last snapshot and the
    raised quota for that, and the rollback sets the quota back on both CNs
    once the snapshots are gone (sdc-vmapi lib/workflows/migrate-switch.js
    order; illumos dsl_dir_set_quota_check refuses it before)."""
    uuid = dc.provision("--brand", "bhyve", "--size", "1", "--alias", "no-boot-bhyve")
    quota = dc.exec(SRC, "zfs", "get", "-Hp", "-o", "value", "quota", "zones/" + uuid).stdout
    time.sleep(0.3)
    p = dc.migrate_with_fault([DST, "--", "vmadm", "start", uuid], "-y", uuid, DST)
    assert p.returncode == 4, p.stdout + p.stderr
    assert "the boot failed" in p.stderr and "stays raised for the rollback" in p.stdout
    assert_back_on_source(dc, uuid, dc.seq_lines(DST, uuid))
    assert kept_snapshot(dc, uuid) is None
    for host in (SRC, DST):
        assert dc.exec(host, "zfs", "get", "-Hp", "-o", "value", "quota",
                       "zones/" + uuid).stdout == quota, host


def test_a_failed_boot_rolls_back_or_with_no_rollback_stays(dc):
    uuid = dc.provision("--size", "2", "--alias", "no-boot")
    time.sleep(0.3)
    p = dc.migrate_with_fault([DST, "--", "vmadm", "start", uuid], "-y", uuid, DST)
    assert p.returncode == 4, p.stdout + p.stderr
    assert "the boot failed" in p.stderr
    assert_back_on_source(dc, uuid, dc.seq_lines(DST, uuid))
    assert dc.migrate("cleanup-source", "-y", uuid).returncode == 0
    # --no-rollback: its services fail, it stays there, up to the operator
    p = dc.migrate_with_fault([DST, "--times", "100", "--", "svcs", "-z", uuid],
                              "-y", "--no-rollback", "--health-timeout=2", uuid, DST)
    assert p.returncode == 5, p.stdout + p.stderr
    assert "It was left as it is" in p.stderr and "sdc-migrate rollback %s" % uuid in p.stderr
    vm = dc.vm(uuid)
    assert vm["server_uuid"] == dc.hosts()[DST]["uuid"] and vm["state"] == "running"
    assert leftovers(dc, uuid) == []
