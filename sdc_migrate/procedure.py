"""The journal of a migration, on the head node.

Every change a migration makes is written here, with what undoes it, before
the next step starts: a run killed at any point (SIGKILL, a dropped
connection, a head node reboot) leaves enough for the next run of the same
command to finish it or undo it. One JSON object a line, fsynced:

  {"t": "begin", ...}            what the migration is and the instance was
  {"t": "change", "undo": NAME, "what": TEXT, "args": {...}, "data": bool}
  {"t": "confirmed", "i": N}     change N, journaled before it was made, was made
  {"t": "undone", "i": N}        change N was undone (or no longer needs undoing)
  {"t": "final", "snapshot": S}  the last snapshot sent, kept on both CNs after
  {"t": "switched"}              VMAPI showed the instance on the destination
  {"t": "end", "outcome": ...}   done, rolled-back, needs-operator or superseded
"""
import fcntl
import json
import os

from . import paths
from .errors import Refused

STATE_DIR = paths.STATE_DIR


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


class InstanceLock:
    """The head node's lock on an instance: one migration or cleanup at a time.

    flock on /var/tmp/sdc-migrate-UUID.lock: the kernel drops it when its
    holder dies, however it dies; release() also removes the file.
    """

    def __init__(self, uuid, state_dir=STATE_DIR):
        self.path = paths.lock(uuid, state_dir)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise Refused("instance %s is already being migrated (lock %s)"
                          % (uuid, self.path)) from None

    def release(self):
        if self.fd is not None:
            os.unlink(self.path)
            os.close(self.fd)
            self.fd = None
