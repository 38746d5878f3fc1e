"""sdc-migrate show: one migration's whole story.

Usage:
  sdc-migrate show [-j] INST_UUID
  sdc-migrate show -h | --help

Tells the last migration (or rollback) of INST_UUID that this head node ran,
from its journal (/var/tmp/migrator-INST_UUID-DEST_CN_NAME-EPOCH.journal)
and its log (.log): what it moved from where to where, each step with its
start and duration, the rounds of snapshots and the size of each, the stop
on the source and the boot on the destination, the downtime between them,
its outcome, and what is left to do: `sdc-migrate finish` (a running
incremental migration), the same command again (an interrupted one),
`sdc-migrate cleanup-source` or `sdc-migrate rollback` (a finished one).
The instance's earlier runs are listed under it. It reads the journals and
the log only and changes nothing.

Options:
  -j          One JSON object: the whole story.
  -h --help   Show this help.

Exit status: 0 done; 2 bad usage; 3 no journal of INST_UUID.
"""
import datetime
import os

from dateutil.parser import isoparse

from ..errors import NotFound
from ..procedure import STATE_DIR, Journal
from ..report import Report, human_duration, human_size, human_time
from .inflight import migrations

USAGE = __doc__


def seconds_between(a, b):
    return round((isoparse(b) - isoparse(a)).total_seconds(), 3)


def story(journal, listed):
    """What `show` tells of one journal; listed: its line of `list`."""
    recs = journal.records
    b = journal.begin
    last_at = recs[-1].get("at") if recs else None
    steps = [r for r in recs if r["t"] == "step"]
    out_steps = []
    for k, s in enumerate(steps):
        end = steps[k + 1]["at"] if k + 1 < len(steps) else \
            next((r.get("at") for r in recs if r["t"] == "end"), None)
        out_steps.append({"step": s["name"], "what": s.get("what"), "started": s.get("at"),
                          "seconds": seconds_between(s["at"], end)
                          if s.get("at") and end else None})
    sends = [r for r in recs if r["t"] == "sent"]
    rounds = []
    for r in (r for r in recs if r["t"] == "round"):
        sent = [x for x in sends if x.get("snapshot") == r.get("snapshot")]
        rounds.append({"n": r["n"], "bytes": r.get("bytes"), "at": r.get("at"),
                       "send_seconds": sent[-1].get("seconds") if sent else None})
    stops = journal.ever("stop")
    stopped = stops[0].get("at") if stops else None
    booted = next((r["at"] for r in recs if r["t"] == "booted"), None)
    ends = [r for r in recs if r["t"] == "end"]
    base = journal.path[:-len(".journal")] if journal.path else None
    return {
        "uuid": b.get("uuid"), "alias": b.get("alias"), "kind": b.get("kind", "migration"),
        "source": (b.get("src") or {}).get("hostname"), "destination": b.get("dest"),
        "incremental": b.get("incremental"), "was_running": b.get("was_running"),
        "started": b.get("started"), "last_record": last_at,
        "steps": out_steps, "rounds": rounds,
        "stopped": datetime.datetime.fromtimestamp(stopped, datetime.timezone.utc).isoformat()
        if stopped else None,
        "booted": booted, "downtime_s": ends[-1].get("downtime") if ends else None,
        "phase": listed["phase"], "outcome": listed["outcome"],
        "left_to_do": left_to_do(journal, listed, base),
        "journal": journal.path, "log": base + ".log" if base else None,
        "log_tail": log_tail(base + ".log") if base else []}


def left_to_do(journal, listed, base):
    b = journal.begin
    uuid, src = b.get("uuid"), (b.get("src") or {}).get("hostname")
    outcome = listed["outcome"]
    if outcome == "running":
        if b.get("incremental") and base and os.path.exists(base + ".st"):
            return ["`sdc-migrate finish %s` ends its live rounds: it stops the instance"
                    " and switches" % uuid]
        return ["nothing yet: it is running (`sdc-migrate list` follows it)"]
    if outcome in ("interrupted", "needs-operator"):
        what = "finishes or undoes it" if outcome == "interrupted" else \
            "finishes the undo once what its log names is fixed"
        return ["`%s` %s" % (journal.command(), what)]
    if outcome == "done" and listed["kind"] == "rollback":
        return ["nothing: the instance is back on its old copy"]
    if outcome == "done":
        return ["`sdc-migrate cleanup-source %s` removes the hidden copy on %s" % (uuid, src),
                "`sdc-migrate rollback %s` moves it back onto that copy, until then" % uuid]
    if outcome == "rolled-back":
        return ["nothing: the instance is where it was (%s)" % listed["phase"]
                if listed["phase"].startswith("rolled back (") else
                "nothing: the instance is where and as it was"]
    return ["nothing: a later run of it started over"]


def log_tail(path, n=3):
    """The log's last lines (where a failure says what happened)."""
    try:
        with open(path) as f:
            lines = [l.rstrip() for l in f if l.strip()]
    except OSError:
        return []
    return lines[-n:]


def when(iso):
    return human_time(isoparse(iso)) if iso else "-"


def tell(r, s, earlier):
    r.line("%s %s (%s): %s -> %s" % (s["kind"].capitalize(), s["uuid"], s["alias"] or "-",
                                     s["source"] or "-", s["destination"] or "-"))
    r.block(None, [
        ("Started", when(s["started"])),
        ("How", ("incremental" if s["incremental"] else "full") + ", the instance "
         + ("running" if s["was_running"] else "stopped") + " before"),
        ("Journal", s["journal"]), ("Log", s["log"] or "-")])
    r.line()
    if s["steps"]:
        r.table(["STARTED", "DURATION", "STEP"], [
            [isoparse(st["started"]).strftime("%H:%M:%S.%f")[:-3] if st["started"] else "-",
             "%.1f s" % st["seconds"] if st["seconds"] is not None else "-",
             st["what"] or st["step"]] for st in s["steps"]])
        r.line()
    if s["rounds"]:
        r.table(["ROUND", "AT", "DELTA", "SENT IN"], [
            [str(x["n"]), isoparse(x["at"]).strftime("%H:%M:%S") if x["at"] else "-",
             human_size(x["bytes"]) if x["bytes"] is not None else "(final: not measured)",
             "%.1f s" % x["send_seconds"] if x["send_seconds"] is not None else "-"]
            for x in s["rounds"]])
        r.line()
    down = s["downtime_s"]
    r.block(None, [
        ("Stopped", when(s["stopped"]) if s["stopped"] else
         "never (it was not running)" if not s["was_running"] else "not yet"),
        ("Booted", when(s["booted"]) if s["booted"] else "-"),
        ("Downtime", human_duration(down) if down is not None else "-"),
        ("Phase", s["phase"]), ("Outcome", s["outcome"])])
    for k, todo in enumerate(s["left_to_do"]):
        r.line("%s:  %s" % (("Left to do" if k == 0 else "or").rjust(20), todo))
    if s["log_tail"] and s["outcome"] not in ("done",):
        r.line()
        r.line("The log ends:")
        r.lines("  " + l for l in s["log_tail"])
    if earlier:
        r.line()
        r.line("Earlier runs of this instance:")
        r.lines("  %s %s -> %s, %s: %s" % (when(m["started"]), m["source"] or "-",
                                          m["destination"] or "-", m["outcome"], m["journal"])
                for m in earlier)


def main(args, report=None, state_dir=STATE_DIR):
    r = report or Report()
    uuid = args["INST_UUID"]
    mine = [m for m in migrations(state_dir) if m["uuid"] == uuid]
    if not mine:
        raise NotFound("no journal of %s in %s (`sdc-migrate list` shows those there are)"
                       % (uuid, state_dir))
    last = mine[-1]
    s = story(Journal(last["journal"]), last)
    if args["-j"]:
        r.json_event("migration", **dict(s, earlier=[m["journal"] for m in mine[:-1]]))
        return 0
    tell(r, s, mine[:-1])
    return 0

