"""The journal's replay rules and the instance lock (sdc_migrate/procedure.py):
what a run killed at any point leaves for the next run to undo or finish."""
import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
from dateutil.parser import isoparse

from sdc_migrate.errors import Refused
from sdc_migrate.procedure import InstanceLock, Journal

UUID = "fbcb4ea0-52e1-4c26-9a7e-8f7f4c0d9b11"


def journal(tmp_path, dest="dest-server", epoch=1796400000):
    return Journal(str(tmp_path / ("migrator-%s-%s-%d.journal" % (UUID, dest, epoch))))


def test_a_change_announced_and_never_confirmed_is_still_undone(tmp_path):
    """Write-ahead: a run killed while a command was in flight cannot know
    whether it happened; its undo stays pending (undos are harmless when
    nothing was made), but it does not count as made."""
    j = journal(tmp_path)
    j.write({"t": "begin", "uuid": UUID, "dest": "dest-server"})
    key = j.change("key", "temporary key on source-server", maybe=True, key="/root/.ssh/k")
    j.confirm(key)
    stop = j.change("stop", "stop of the instance", maybe=True, uuid=UUID)
    # killed here: the stop was announced, never confirmed
    again = Journal(j.path)
    assert [r["undo"] for _, r in again.pending()] == ["key", "stop"]
    assert again.made("key") and not again.made("stop")
    assert again.of("key") == [{"key": "/root/.ssh/k"}]
    assert not again.ended and not again.switched
    assert again.records[stop]["undo"] == "stop" and not again.confirmed(stop)


def test_undone_changes_leave_the_pending_list_in_the_order_they_were_made(tmp_path):
    j = journal(tmp_path)
    j.write({"t": "begin", "uuid": UUID})
    ids = [j.change(name, name) for name in ("key", "tunables", "reserve", "snapshots")]
    j.mark_undone(ids[3])
    j.mark_undone(ids[1])
    again = Journal(j.path)
    assert [r["undo"] for _, r in again.pending()] == ["key", "reserve"]
    # ever: what happened, undone or not (the stop stays a fact after the switch)
    assert again.ever("snapshots") == [{}] and again.of("snapshots") == []


def test_a_line_cut_by_a_crash_is_skipped_and_the_rest_is_read(tmp_path):
    j = journal(tmp_path)
    j.write({"t": "begin", "uuid": UUID, "dest": "dest-server"})
    j.change("key", "temporary key")
    with open(j.path, "a") as f:
        f.write('{"t": "change", "undo": "stop", "wh')       # the power went
    again = Journal(j.path)
    assert [r["t"] for r in again.records] == ["begin", "change"]
    assert again.begin["uuid"] == UUID


def test_the_journal_is_roots_alone_and_every_record_reaches_the_disk(tmp_path):
    j = journal(tmp_path)
    j.write({"t": "begin", "uuid": UUID})
    assert stat.S_IMODE(os.stat(j.path).st_mode) == 0o600
    with open(j.path) as f:
        rec = json.loads(f.readline())
    # stamped with its time, which `sdc-migrate show` tells
    assert isoparse(rec.pop("at")) and rec == {"t": "begin", "uuid": UUID}


def test_a_dry_run_journal_writes_no_file(tmp_path):
    j = Journal(None)
    j.write({"t": "begin", "uuid": UUID})
    j.change("key", "temporary key")
    assert [r["t"] for r in j.records] == ["begin", "change"]
    assert os.listdir(tmp_path) == []


def test_end_switch_final_snapshot_and_the_command_that_finishes_it(tmp_path):
    j = journal(tmp_path)
    j.write({"t": "begin", "kind": "migration", "uuid": UUID, "dest": "dest-server"})
    j.write({"t": "final", "snapshot": "sdc-migrate_ops_migration_1"})
    j.write({"t": "final", "snapshot": "sdc-migrate_ops_migration_2"})
    j.write({"t": "switched"})
    assert j.switched and not j.ended
    assert j.final_snapshot == "sdc-migrate_ops_migration_2"
    assert j.command() == "sdc-migrate -y %s dest-server" % UUID
    assert j.outcome is None
    j.write({"t": "end", "outcome": "done"})
    assert Journal(j.path).ended and Journal(j.path).outcome == "done"
    r = journal(tmp_path, "source-server", 1796400100)
    r.write({"t": "begin", "kind": "rollback", "uuid": UUID, "dest": "source-server"})
    assert r.command() == "sdc-migrate rollback -y %s" % UUID


def test_all_finds_an_instances_journals_oldest_first_and_no_other(tmp_path):
    for dest, epoch in (("spare-server", 1796400200), ("dest-server", 1796400100)):
        journal(tmp_path, dest, epoch).write({"t": "begin", "uuid": UUID, "dest": dest})
    other = tmp_path / "migrator-5ca5b3dc-48fe-6f75-ed8c-8d8fbd77e2aa-dest-server-1.journal"
    other.write_text('{"t": "begin"}\n')
    found = Journal.all(UUID, state_dir=str(tmp_path))
    assert [j.begin["dest"] for j in found] == ["dest-server", "spare-server"]
    assert [j.begin["dest"] for j in Journal.all(UUID, "spare-server", str(tmp_path))] == \
        ["spare-server"]


def test_one_run_at_a_time_and_a_dead_holders_lock_is_free(tmp_path):
    lock = InstanceLock(UUID, str(tmp_path))
    with pytest.raises(Refused, match="already being migrated"):
        InstanceLock(UUID, str(tmp_path))
    lock.release()
    assert not os.path.exists(lock.path)
    # a holder killed with SIGKILL: the kernel drops its flock, the file stays
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from sdc_migrate.procedure import InstanceLock; "
        "InstanceLock(%r, %r); print('held', flush=True); time.sleep(60)") % (UUID, str(tmp_path))],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(Refused):
            InstanceLock(UUID, str(tmp_path))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    deadline = time.time() + 5
    while True:
        try:
            InstanceLock(UUID, str(tmp_path)).release()
            break
        except Refused:
            assert time.time() < deadline, "the dead holder's lock was never dropped"
            time.sleep(0.05)
