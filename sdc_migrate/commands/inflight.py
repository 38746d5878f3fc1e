"""sdc-migrate list: the migrations this head node ran or is running.

Usage:
  sdc-migrate list [-j] [-H] [-o COL,...] [-s COL,...] [--instance=INST_UUID]
                   [--cn=CN_NAME] [--outcome=OUTCOME]
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
  --instance=INST_UUID  Only the migrations of this instance.
  --cn=CN_NAME          Only those from or to this compute node.
  --outcome=OUTCOME     Only those with this outcome (running, interrupted,
                        done, rolled-back, superseded, needs-operator).
  -H          Omit the table's header row.
  -o COL,...  The columns to show, in this order: instance, alias, kind,
              source, destination, phase, rounds, last_delta, started,
              outcome.
  -s COL,...  Sort on these columns (sizes by bytes; -COL descending);
              default: oldest first.
  -h --help   Show this help.

`sdc-migrate show INST_UUID` tells one migration's whole story.

Exit status: 0 done; 2 bad usage.
"""
import fcntl
import os

from dateutil.parser import isoparse

from .. import paths
from ..errors import Usage
from ..procedure import STATE_DIR, Journal
from ..report import Report, TableOptions, human_size, human_time

USAGE = __doc__
HEADERS = ["INSTANCE", "ALIAS", "KIND", "SOURCE", "DESTINATION", "PHASE", "ROUNDS",
           "LAST DELTA", "STARTED", "OUTCOME"]
TABLES = [HEADERS]      # -o and -s name their columns
OUTCOMES = ("running", "interrupted", "done", "rolled-back", "superseded", "needs-operator")
MB = 1048576


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


def measured_rate(source, dest=None, state_dir=STATE_DIR):
    """The rate past migrations from compute node SOURCE to DEST (to any when
    None) measured, from their journals: the bytes their streams sent over
    the time the streams took. (MB/s, how many migrations, the destinations),
    or None when no journal measured one. `estimate` and the evacuation's
    plan use it."""
    sent = seconds = 0.0
    runs, dests = 0, []
    for j in Journal.all(state_dir=state_dir):
        b = j.begin
        pair = ((b.get("src") or {}).get("hostname"), (b.get("dst") or {}).get("hostname"))
        if pair[0] != source or dest not in (None, pair[1]):
            continue
        sends = [r for r in j.records if r["t"] == "sent" and r.get("bytes")
                 and r.get("seconds")]
        if not sends:
            continue
        runs += 1
        dests.append(pair[1])
        sent += sum(r["bytes"] for r in sends)
        seconds += sum(r["seconds"] for r in sends)
    if not runs:
        return None
    return sent / MB / seconds, runs, sorted(set(dests))


def rate_for(source, dest, fallback, state_dir=STATE_DIR):
    """(MB/s, the words that say where it comes from): what past migrations
    SOURCE -> DEST measured, else FALLBACK (--rate)."""
    measured = measured_rate(source, dest, state_dir)
    if measured is None:
        return fallback, "rate: %g MB/s (--rate; no past migration %s -> %s measured one)" % (
            fallback, source, dest or "any")
    rate, runs, dests = measured
    return rate, "rate: %.0f MB/s, measured by %d migration%s %s -> %s" % (
        rate, runs, "" if runs == 1 else "s", source, ", ".join(dests))


def row(m):
    started = human_time(isoparse(m["started"])) if m["started"] else "-"
    delta = human_size(m["last_delta_bytes"]) if m["last_delta_bytes"] is not None else "-"
    return [m["uuid"], m["alias"] or "-", m["kind"], m["source"] or "-", m["destination"] or "-",
            m["phase"], (str(m["rounds"]), m["rounds"]), (delta, m["last_delta_bytes"]),
            (started, m["started"]), m["outcome"]]


def main(args, report=None, state_dir=STATE_DIR):
    r = report or Report()
    r.table_options = TableOptions.from_args(args, *TABLES)
    outcome = args.get("--outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise Usage("--outcome takes one of %s, not %r" % (", ".join(OUTCOMES), outcome))
    found = [m for m in migrations(state_dir)
             if args.get("--instance") in (None, m["uuid"])
             and args.get("--cn") in (None, m["source"], m["destination"])
             and outcome in (None, m["outcome"])]
    if args["-j"]:
        for m in found:
            r.json_event("migration", **m)
        return 0
    if not found:
        r.line("No migrations: no journal in %s%s." % (
            state_dir, "" if not any(args.get(o) for o in ("--instance", "--cn", "--outcome"))
            else " that the filters take"))
        return 0
    r.table(HEADERS, [row(m) for m in found])
    return 0
