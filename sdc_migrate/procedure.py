"""Steps, the engine that runs them, and the journal of a migration on the head node.

A procedure (a migration, a rollback) is a literal list of Steps. Each step
that changes something journals the change under its own name, with the
arguments its undo takes, before the next step starts; the engine runs the
steps, marks the changes of permanent steps done for good at the switch point,
and undoes the rest, newest first, when something fails before it.

Every change a migration makes is written here, with what undoes it, before
the next step starts: a run killed at any point (SIGKILL, a dropped
connection, a head node reboot) leaves enough for the next run of the same
command to finish it or undo it. One JSON object a line, fsynced:

  {"t": "begin", ...}            what the migration is and the instance was
  {"t": "step", "name": N, ...}  step N starts (every record has its time, "at")
  {"t": "sent", "bytes": B, "seconds": S}  a round's streams sent B bytes in S seconds
  {"t": "booted"}                the instance was started on the destination
  {"t": "change", "undo": NAME, "what": TEXT, "args": {...}, "data": bool}
  {"t": "confirmed", "i": N}     change N, journaled before it was made, was made
  {"t": "undone", "i": N}        change N was undone (or no longer needs undoing)
  {"t": "final", "snapshot": S}  the last snapshot sent, kept on both CNs after
  {"t": "switched"}              VMAPI showed the instance on the destination
  {"t": "undoing"}               a failure before the switch: every change is being undone
  {"t": "end", "outcome": ...}   done, rolled-back, needs-operator or superseded
"""
import concurrent.futures
import datetime
import fcntl
import json
import os

from . import paths
from .errors import MigrateError, Refused

STATE_DIR = paths.STATE_DIR


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


class Journal:
    def __init__(self, path):
        """path None: a journal in memory only (--dry-run changes no file)."""
        self.path = path
        self.records = []
        if path is not None and os.path.exists(path):
            with open(path) as f:
                for line in f:
                    try:
                        self.records.append(json.loads(line))
                    except ValueError:
                        pass        # a line cut by a crash: the rest is sound

    @staticmethod
    def path_for(uuid, dest, epoch):
        return paths.run_base(uuid, dest, epoch) + ".journal"

    @staticmethod
    def all(uuid="*", dest="*", state_dir=STATE_DIR):
        """The journals of this head node's migrations (of UUID, to DEST), by path."""
        return [Journal(p) for p in paths.runs(uuid, dest, ".journal", state_dir)]

    @staticmethod
    def unfinished(uuid):
        """Journals of UUID's migrations that never ended, oldest first."""
        return [j for j in Journal.all(uuid) if j.records and not j.ended]

    def write(self, record):
        """Append record, stamped with its time ("at", ISO 8601; `show` reads
        the steps' starts and durations, the rounds, stop and boot from them)."""
        record.setdefault("at", now_iso())
        if self.path is None:
            self.records.append(record)
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(record) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self.records.append(record)

    @property
    def begin(self):
        return self.records[0] if self.records and self.records[0]["t"] == "begin" else {}

    @property
    def ended(self):
        return any(r["t"] == "end" for r in self.records)

    @property
    def outcome(self):
        """How it ended (done, rolled-back, needs-operator, superseded), or None."""
        ends = [r["outcome"] for r in self.records if r["t"] == "end"]
        return ends[-1] if ends else None

    @property
    def switched(self):
        return any(r["t"] == "switched" for r in self.records)

    @property
    def undoing(self):
        """A run failed before the switch and set out to undo every change
        (if it ended without an end record, an undo failed or it was cut off)."""
        return any(r["t"] == "undoing" for r in self.records)

    @property
    def final_snapshot(self):
        """The name of the migration's last snapshot, kept on both CNs after it."""
        finals = [r["snapshot"] for r in self.records if r["t"] == "final"]
        return finals[-1] if finals else None

    def command(self):
        """The command that finishes or undoes this journal's procedure."""
        b = self.begin
        if b.get("kind") == "rollback":
            return "sdc-migrate rollback -y %s" % b.get("uuid")
        return "sdc-migrate -y %s %s" % (b.get("uuid"), b.get("dest"))

    def change(self, undo, what, data=False, maybe=False, **args):
        """Journal a change; with maybe, one about to be made (write-ahead: a run
        killed while the command is in flight leaves its undo behind). Returns its index."""
        self.write({"t": "change", "undo": undo, "what": what, "args": args, "data": data,
                    "maybe": maybe})
        return len(self.records) - 1

    def confirm(self, i):
        """The change announced with maybe=True did happen."""
        self.write({"t": "confirmed", "i": i})

    def confirmed(self, i):
        return any(r["t"] == "confirmed" and r["i"] == i for r in self.records)

    def pending(self):
        """The changes not undone yet, in the order they were made, with their index."""
        changes = [(i, r) for i, r in enumerate(self.records) if r["t"] == "change"]
        undone = {r["i"] for r in self.records if r["t"] == "undone"}
        return [(i, r) for i, r in changes if i not in undone]

    def made(self, undo):
        """Whether a pending change named undo surely happened (journaled after
        it was made, or announced and confirmed)."""
        return any(r["undo"] == undo and (not r.get("maybe") or self.confirmed(i))
                   for i, r in self.pending())

    def mark_undone(self, i):
        self.write({"t": "undone", "i": i})

    def of(self, undo):
        """The args of every pending change named undo."""
        return [r["args"] for _, r in self.pending() if r["undo"] == undo]

    def ever(self, undo):
        """The args of every change named undo, undone since or not (the stop
        stays a fact once the switch marks it permanent)."""
        return [r["args"] for r in self.records if r["t"] == "change" and r["undo"] == undo]

    def rounds(self):
        """The snapshot rounds the migration took: each one sent before the switch."""
        return [r for r in self.records if r["t"] == "round"]


class Step:
    """One step of a procedure.

    do(ctx) makes the step's change (and journals it through the procedure);
    undo(ctx, **args) undoes one change journaled under the step's name, with
    the args it was journaled with. permanent: the change stays once VMAPI
    shows the instance on the destination. keeps_data: a resumed run reuses
    it (snapshots, received datasets) rather than undoes it. switch: the
    point of no return; after it the procedure only goes forward.
    """

    def __init__(self, name, do, undo=None, what=None, permanent=False, keeps_data=False,
                 switch=False):
        self.name, self.do, self.undo, self.what = name, do, undo, what or name
        self.permanent, self.keeps_data, self.switch = permanent, keeps_data, switch

    def __repr__(self):
        return "Step(%s)" % self.name


class Procedure:
    """Runs a list of steps over a context (the migration: its nodes, its
    report, its options), journals their changes, and undoes them.

    The context provides r (the report) and checkpoint(), called before
    every step: it raises to stop the run there (an interrupt).
    """

    def __init__(self, steps, journal):
        self.steps = list(steps)
        self.by_name = {s.name: s for s in self.steps}
        assert len(self.by_name) == len(self.steps), "two steps of one name"
        self.journal = journal
        self.undo_failures = []     # (what, error) of the undos the last undo_all left pending

    def step(self, name):
        try:
            return self.by_name[name]
        except KeyError:
            raise MigrateError("the journal names a change %r that no step of this procedure"
                               " makes or undoes" % name) from None

    @property
    def switch_index(self):
        """The index of the first step after the switch point (len(steps) if none)."""
        for i, s in enumerate(self.steps):
            if s.switch:
                return i + 1
        return len(self.steps)

    def before_switch(self):
        return self.steps[:self.switch_index]

    def after_switch(self):
        return self.steps[self.switch_index:]

    # ---- journaling -------------------------------------------------------------

    def changed(self, name, what, **args):
        """Journal a change of step NAME that was made (or whose undo is harmless
        if it was not): step(NAME).undo(ctx, **args) undoes it."""
        step = self.step(name)
        assert step.undo is not None, "step %s has no undo" % name
        return self.journal.change(name, what, step.keeps_data, **args)

    def will(self, name, what, **args):
        """Journal a change before making it (write-ahead: a run killed while
        its command is in flight leaves the undo behind); confirm() it once made."""
        step = self.step(name)
        assert step.undo is not None, "step %s has no undo" % name
        return self.journal.change(name, what, step.keeps_data, maybe=True, **args)

    def confirm(self, i):
        self.journal.confirm(i)

    def pending(self, *names):
        """The pending changes of the steps named, in the order they were made."""
        return [(i, rec) for i, rec in self.journal.pending() if rec["undo"] in names]

    def forget(self, *names):
        """The pending changes of the steps named need no undo any more."""
        for i, _ in self.pending(*names):
            self.journal.mark_undone(i)

    def mark_switched(self):
        """The switch point: the changes of permanent steps stay as they are."""
        self.journal.write({"t": "switched"})
        for i, rec in self.journal.pending():
            if self.step(rec["undo"]).permanent:
                self.journal.mark_undone(i)

    # ---- running ----------------------------------------------------------------

    def run(self, ctx, steps, listing=False):
        """Run steps in order; with listing (--dry-run), say each before its commands."""
        for step in steps:
            ctx.checkpoint()
            if listing:
                n = self.steps.index(step) + 1
                how = ("stays after the switch" if step.permanent else
                       "undone on failure" if step.undo else "changes nothing to undo")
                ctx.r.event("plan_step", "-- step %d of %d: %s (%s)"
                            % (n, len(self.steps), step.what, how), n=n, step=step.name,
                            undo=step.undo is not None, permanent=step.permanent,
                            switch=step.switch)
            if not listing:
                self.journal.write({"t": "step", "name": step.name, "what": step.what})
            step.do(ctx)
            if step.switch:
                self.mark_switched()

    def undo_all(self, ctx, keep_data=False):
        """Undo every pending change, newest first, going on past a failed undo
        (it stays pending: undo_failures says which and why); True if all were
        undone. keep_data keeps what a rerun reuses."""
        clean = True
        self.undo_failures = []
        for i, rec in reversed(self.journal.pending()):
            if keep_data and rec["data"]:
                continue
            try:
                self.step(rec["undo"]).undo(ctx, **rec["args"])
                self.journal.mark_undone(i)
                ctx.r.event("undone", "    - undone: %s" % rec["what"], what=rec["what"])
            except Exception as e:  # noqa: BLE001 - keep undoing the rest, say it
                if rec.get("maybe") and not self.journal.confirmed(i):
                    # announced, never confirmed: it had not happened
                    self.journal.mark_undone(i)
                    continue
                clean = False
                self.undo_failures.append((rec["what"], str(e)))
                ctx.r.event("undo_failed", "    ! could not undo %s: %s" % (rec["what"], e),
                            what=rec["what"], error=str(e))
        return clean

    def undo_now(self, ctx, *names, parallel=False):
        """Past the switch, undo the pending changes of the steps named (the
        temporary key, the IP reservations...) as part of finishing; with
        parallel, side by side. Raises the first failure."""
        todo = self.pending(*names)

        def one(item):
            i, rec = item
            self.step(rec["undo"]).undo(ctx, **rec["args"])
            self.journal.mark_undone(i)
            return rec
        if not parallel:
            return [one(item) for item in todo]
        with concurrent.futures.ThreadPoolExecutor(max(1, len(todo))) as pool:
            return list(pool.map(one, todo))


class InstanceLock:
    """The head node's lock on an instance: one migration or cleanup at a time.

    flock on /var/tmp/sdc-migrate-UUID.lock: the kernel drops it when its
    holder dies, however it dies; release() also removes the file.
    """

    def __init__(self, uuid, state_dir=STATE_DIR, busy=None):
        """busy: the refusal while another holds it (evacuate locks its source
        CNs the same way: paths.lock("evacuate-" + CN_NAME))."""
        self.path = paths.lock(uuid, state_dir)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise Refused("%s (lock %s)" % (busy or "instance %s is already being migrated"
                                            % uuid, self.path)) from None

    def release(self):
        if self.fd is not None:
            os.unlink(self.path)
            os.close(self.fd)
            self.fd = None
