"""sdc-migrate list: the migrations this head node ran or is running.

Usage:
  sdc-migrate list [-j] [-H] [-o COL,...] [-s COL,...]
  sdc-migrate list -h | --help

One line per migration or rollback (`sdc-migrate rollback`, KIND rollback),
from its journal in /var/tmp on the head node
(migrator-INST_UUID-DEST_CN_NAME-EPOCH.journal): instance, alias, source and
destination compute nodes, phase (preparing, round N, stopped, switched,
undoing, finished, rolled back), the rounds sent and the size of the last
one, when it started, and its outcome: running (its sdc-migrate holds the
instance's lock), interrupted (run the same sdc-migrate command again to
finish or undo it), done, rolled-back, superseded (undone by a later run
that started over) or needs-operator (it failed and could not undo all it
did: its message named what is left; run it again once that is fixed); a
finished migration that a later rollback undid shows rolled-back, and its
phase says by which rollback.

Options:
  -j          One JSON object per migration instead of the table (the
              whole record: -o does not apply).
  -H          Omit the table's header row.
  -o COL,...  The columns to show, in this order: instance, alias, kind,
              source, destination, phase, rounds, last_delta, started,
              outcome.
  -s COL,...  Sort on these columns (sizes by bytes; -COL descending);
              default: oldest first.
  -h --help   Show this help.

Exit status: 0 done; 2 bad usage.
"""
import fcntl
import os

from dateutil.parser import isoparse

from .. import paths
from ..procedure import STATE_DIR, Journal
from ..report import Report, TableOptions, human_size, human_time

USAGE = __doc__
HEADERS = ["INSTANCE", "ALIAS", "KIND", "SOURCE", "DESTINATION", "PHASE", "ROUNDS",
           "LAST DELTA", "STARTED", "OUTCOME"]
TABLES = [HEADERS]      # -o and -s name their columns


def lock_held(uuid, state_dir=STATE_DIR):
    """Whether a running sdc-migrate holds UUID's lock (procedure.InstanceLock)."""
    path = paths.lock(uuid, state_dir)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def summary(journal, running):
    """What `list` shows of one journal."""
    b = journal.begin
    recs = journal.records
    rounds = [r for r in recs if r["t"] == "round"]
    end = [r for r in recs if r["t"] == "end"]
    stopped = any(r["t"] == "change" and r["undo"] == "stop" for r in recs)
    if end:
        outcome = end[-1]["outcome"]
        phase = {"done": "finished", "rolled-back": "rolled back"}.get(outcome, "ended")
    elif journal.undoing:
        # it failed and could not undo everything (or was cut off undoing):
        # an operator fixes what the message named, then reruns it
        outcome = "running" if running else "needs-operator"
        phase = "undoing"
    else:
        outcome = "running" if running else "interrupted"
        phase = "switched" if journal.switched else "stopped" if stopped else \
            "round %d" % rounds[-1]["n"] if rounds else "preparing"
    return {"uuid": b.get("uuid"), "alias": b.get("alias"),
            "kind": b.get("kind", "migration"),
            "source": (b.get("src") or {}).get("hostname"), "destination": b.get("dest"),
            "phase": phase, "rounds": len(rounds),
            # the final increment's size is not measured (the instance is down then)
            "last_delta_bytes": next((r["bytes"] for r in reversed(rounds)
                                      if r.get("bytes") is not None), None),
            "started": b.get("started"), "outcome": outcome,
            "downtime_s": end[-1].get("downtime") if end else None,
            "incremental": b.get("incremental"), "journal": journal.path}


def migrations(state_dir=STATE_DIR):
    """Every journal's summary, oldest first."""
    out = []
    for j in Journal.all(state_dir=state_dir):
        if not j.begin:
            continue
        out.append(summary(j, not j.ended and lock_held(j.begin["uuid"], state_dir)))
    out.sort(key=lambda m: m["started"] or "")
    # a finished rollback undid the finished migration of its instance before it
    last_done = {}
    for m in out:
        if m["outcome"] != "done":
            continue
        if m["kind"] == "rollback" and m["uuid"] in last_done:
            undone = last_done.pop(m["uuid"])
            undone["outcome"] = "rolled-back"
            undone["phase"] = "rolled back (%s)" % m["journal"]
        elif m["kind"] != "rollback":
            last_done[m["uuid"]] = m
    return out


def row(m):
    started = human_time(isoparse(m["started"])) if m["started"] else "-"
    delta = human_size(m["last_delta_bytes"]) if m["last_delta_bytes"] is not None else "-"
    return [m["uuid"], m["alias"] or "-", m["kind"], m["source"] or "-", m["destination"] or "-",
            m["phase"], (str(m["rounds"]), m["rounds"]), (delta, m["last_delta_bytes"]),
            (started, m["started"]), m["outcome"]]


def main(args, report=None, state_dir=STATE_DIR):
    r = report or Report()
    r.table_options = TableOptions.from_args(args, *TABLES)
    found = migrations(state_dir)
    if args["-j"]:
        for m in found:
            r.json_event("migration", **m)
        return 0
    if not found:
        r.line("No migrations: no journal in %s." % state_dir)
        return 0
    r.table(HEADERS, [row(m) for m in found])
    return 0
