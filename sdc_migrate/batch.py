"""The runner of many migrations at once (evacuate): threads, signals, and
the lines and events that report each one.

Each move runs in a thread of its own, as `sdc-migrate` run alone would run
it (its own journal, lock, log and rollback), its lines in a file of its
own; admission (admission.admit) says which start when. The main thread only
sleeps, POLL seconds at a time, and takes an interrupt (^C, SIGHUP, SIGTERM,
which reach it alone) only when it looks up: a signal is held until then
(hold_signals), never raised in the middle of starting a migration's thread
or of reporting one's end. Then nothing new starts, every running migration
is told to stop (before its switch point it rolls back, past it it
finishes), waited for and reported, and the interrupt goes on up (cli).
"""
import concurrent.futures
import os
import signal
import time
import traceback

from . import admission
from .errors import MigrateError, NeedsOperator, Refused, RolledBack
from .procedure import STATE_DIR, Journal
from .report import Report, human_duration

# a migration's exit status (0, or its error's) as the summary's RESULT; others: failed
RESULTS = {0: "moved", Refused.exit_status: "refused", RolledBack.exit_status: "rolled back",
           NeedsOperator.exit_status: "needs operator"}
POLL = 0.5      # how often the main thread looks up from waiting: an interrupt is taken then
SIGNALS = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)


def run_one(m, report):
    """Run one mover to its end, in a worker thread: (exit status, the
    exception it ended with or None), as `sdc-migrate` run alone would exit."""
    try:
        try:
            m.run()
            return 0, None
        finally:
            m.release()
            report.close()
    except MigrateError as e:
        return e.exit_status, e
    except KeyboardInterrupt as e:      # HungUp: stopped before it changed anything
        return 130, e
    except Exception as e:  # noqa: BLE001 - a bug ends this migration, not the others
        report.line(traceback.format_exc().rstrip("\n"))
        return 1, e


def error_text(e):
    """What cli.error says of an exception (an item's detail: its first line)."""
    if isinstance(e, KeyboardInterrupt):
        return "interrupted by %s" % e if e.args else "interrupted"
    return str(e)


def downtime_of(uuid, dest, state_dir=STATE_DIR):
    """The downtime the newest finished journal of UUID to DEST recorded."""
    for journal in reversed(Journal.all(uuid, dest, state_dir)):
        for rec in reversed(journal.records):
            if rec["t"] == "end" and rec.get("outcome") == "done":
                return rec.get("downtime")
    return None


class Batch:
    """Runs a plan's moves to their ends within the budgets.

    mover(item, opts, report): the object that moves one item (run,
    interrupt, release); emit(event, text, **fields): a line or a -j event;
    lock_held(uuid): whether another sdc-migrate holds the instance;
    on_end(item): after each move ended (the evacuation saves its state)."""

    def __init__(self, mover, opts, emit, outdir, concurrency=admission.CONCURRENCY,
                 per_cn=admission.PER_CN, state_dir=STATE_DIR, lock_held=None,
                 on_end=None):
        self.mover, self.opts, self.emit, self.outdir = mover, opts, emit, outdir
        self.concurrency, self.per_cn = concurrency, per_cn
        self.state_dir = state_dir
        self.lock_held = lock_held or (lambda uuid: False)
        self.on_end = on_end or (lambda item: None)
        self.most = {}      # CN -> the most moves that touched it at once

    def execute(self, todo):
        queue = admission.order(todo)
        running = {}
        self.order = {i["uuid"]: k + 1 for k, i in enumerate(queue)}
        self.n = len(todo)
        pool = concurrent.futures.ThreadPoolExecutor(self.concurrency)
        held = []
        before = hold_signals(held)
        try:
            while True:
                if held:
                    raise held[0]
                if not (queue or running):
                    break
                now = [r[0] for r in running.values()]
                for item in admission.admit(queue, now, self.concurrency, self.per_cn):
                    queue.remove(item)
                    self.start(item, running, pool)
                for cn, k in admission.load([r[0] for r in running.values()]).items():
                    self.most[cn] = max(k, self.most.get(cn, 0))
                if not running:
                    continue        # each of those was refused at its start: the next
                time.sleep(POLL)
                self.reap(running)
        except KeyboardInterrupt as e:
            why = str(e) if e.args else "SIGINT"
            if running:
                self.emit("interrupted", "* Interrupted (%s): stopping the running migrations"
                          " (each rolls back before its switch point, finishes after it) ..."
                          % why, signal=why, running=sorted(running))
            for item, m, heard, f, ended in running.values():
                m.interrupt(why)
            pool.shutdown()         # waits for every one: each was started whole
            self.reap(running)
            raise
        finally:
            pool.shutdown()
            if not held:
                for sig, handler in before.items():
                    signal.signal(sig, handler)

    def start(self, item, running, pool):
        if self.lock_held(item["uuid"]):
            item["result"], item["detail"] = "refused", "another sdc-migrate is migrating it" \
                " (see `sdc-migrate list`)"
            self.report_end(item)
            return
        # its lines go to a file of its own, its events to heard, how it ended to ended
        out = os.path.join(self.outdir, item["uuid"] + ".out")
        f = os.fdopen(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w")
        heard, ended = {}, {}
        report = Report(f, on_event=heard.__setitem__)
        m = self.mover(item, self.opts, report)
        item["started"] = time.time()
        # known as running before it runs: an interrupt from here on reaches it
        running[item["uuid"]] = (item, m, heard, f, ended)
        pool.submit(lambda: ended.update(result=run_one(m, report)))
        how = "recreating NAT zone" if item["kind"] == "nat" else \
            "finishing or undoing the interrupted migration of" if item.get("resume") else \
            "migrating"
        self.emit("started", "* [%d/%d] %s %s (%s) from %s to %s ..." % (
            self.order[item["uuid"]], self.n, how, item["uuid"], item["alias"] or "-",
            item.get("source") or "-", item["dest"]),
            uuid=item["uuid"], alias=item["alias"], source=item.get("source"),
            destination=item["dest"], kind=item["kind"], output=out)

    def reap(self, running):
        """Report the migrations that ended."""
        for uuid, (item, m, heard, f, ended) in list(running.items()):
            if "result" in ended:
                self.ended(item, *ended["result"], heard, f)
                f.close()
                del running[uuid]

    def ended(self, item, status, error, heard, f):
        """What a migration's exit status and events say: its result, detail
        (the first line of its error) and downtime."""
        if error is not None:
            # the line the command run alone ends with (cli.error)
            f.write("%s: error (%s): %s\n" % (
                "sdc-migrate nat-recreate" if item["kind"] == "nat" else "sdc-migrate",
                type(error).__name__, error_text(error)))
        item["status"] = status
        item["result"] = RESULTS.get(status, "failed")
        item["detail"] = error_text(error).split("\n")[0] if error else None
        item["seconds"] = round(time.time() - item["started"], 1)
        if status == 0 and item["kind"] == "migrate":
            # the summary's downtime is 0 for an instance that was not running: its
            # journal's (None) says so; and a resumed run may have ended before a summary
            item["downtime"] = (heard.get("summary") or {}).get("downtime_s") or \
                downtime_of(item["uuid"], item["dest"], self.state_dir)
        self.report_end(item)
        self.on_end(item)

    def report_end(self, item):
        down = item.get("downtime")
        text = "* [%d/%d] %s (%s): %s" % (self.order[item["uuid"]], self.n, item["uuid"],
                                          item["alias"] or "-", item["result"])
        if item["result"] == "moved":
            text += " to %s" % item["dest"]
            if down is not None:
                text += ", downtime %s" % human_duration(down)
        elif item.get("detail"):
            text += ": %s" % item["detail"]
        self.emit("finished", text, uuid=item["uuid"], alias=item["alias"],
                  destination=item["dest"], result=item["result"], downtime_s=down,
                  seconds=item.get("seconds"), exit_status=item.get("status"),
                  detail=item.get("detail"))


def interruption(signum):
    """What the first of ^C, SIGHUP and SIGTERM stops a batch with; the later
    ones are ignored from then on, while the running migrations roll back or
    finish, as a single migration rides out a second SIGHUP (migrate.on_hangup)."""
    from .commands.migrate import HungUp
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if signum == signal.SIGINT:
        return KeyboardInterrupt()
    return HungUp(signal.Signals(signum).name)


def on_signals():
    """^C, SIGHUP and SIGTERM, which reach the main thread alone: the first
    stops the evacuation, at once while it plans, at the main thread's next
    look up while migrations run (Batch.execute)."""
    def handler(signum, frame):
        raise interruption(signum)
    for sig in SIGNALS:
        signal.signal(sig, handler)


def hold_signals(held):
    """Until the handlers it returns are put back: the first of ^C, SIGHUP and
    SIGTERM is appended to held, for the main thread to raise where it looks
    (the later ones ignored). A handler that raised wherever the main thread
    was could land inside ThreadPoolExecutor.submit, after it started a
    migration's thread and before it counted it: pool.shutdown() then did
    not wait for that migration, and it was never reported."""
    before = {sig: signal.getsignal(sig) for sig in SIGNALS}

    def handler(signum, frame):
        held.append(interruption(signum))
    for sig in SIGNALS:
        signal.signal(sig, handler)
    return before
