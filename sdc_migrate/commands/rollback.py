"""sdc-migrate rollback: move a migrated instance back to the copy it left on its old compute node.

Usage:
  sdc-migrate rollback [-y] [-j] [--dry-run] [--bwlimit=RATE] INST_UUID
  sdc-migrate rollback -h | --help

After `sdc-migrate INST_UUID DEST_CN_NAME` the instance's old copy stays on
the source compute node, hidden from inventory, and the migration's last
snapshot stays on both compute nodes until `sdc-migrate cleanup-source`.
This moves the instance back onto that copy, keeping everything written on
DEST_CN_NAME since the switch: it stops the instance there, sends only what
changed since that snapshot (zfs send -i, CN to CN), hides the copy on
DEST_CN_NAME, shows the old copy to VMAPI and boots it if the instance was
running. It is a migration in the other direction, with the same output,
journal, rollback of its own on failure, resume after a kill (run the same
command again), -j events and --dry-run.

It refuses, changing nothing, when this head node has no finished
migration of INST_UUID, when that migration was rolled back already, when
VMAPI does not show the instance where the migration put it, when the old
copy is gone (cleanup-source removed it), running or visible, when the
migration kept no last snapshot (a bhyve instance, whose quota has no room
for it, or --no-rollback-snapshot: it would have to send everything), or
when the two compute nodes no longer share the migration's last snapshot.

The copy left on DEST_CN_NAME stays, hidden, until
`sdc-migrate cleanup-source INST_UUID` removes it.

Options:
  -y                Do not ask "Are you ready to proceed?".
  -j                One JSON event a line on stdout (as sdc-migrate -j); needs -y
                    or --dry-run.
  --dry-run         Gather and show for real, then list the rollback's steps
                    in order, each with every command it would run, host by
                    host; change nothing.
  --bwlimit=RATE    Send no more than RATE a second (e.g. 20M).
  -h --help         Show this help.

Exit status: 0 rolled back; 1 failed; 2 bad usage or refused (nothing
changed); 3 instance, migration or compute node not found; 4 failed and was
undone (the instance is where it was before the rollback, as it was);
5 failed and needs an operator (the message says what to do).
"""
from ..errors import NotFound, Refused, Usage
from ..procedure import Journal, Step
from ..report import JsonReport, Report
from ..steps import transfer, zone
from ..triton import UUID_RE
from .cleanup_source import probe
from .migrate import (AFTER_SWITCH, AUTHORIZED, HIDDEN, HOLD, KEY, MOUNT, QUOTA, RESERVATION,
                      SWITCH, TUNABLES, Migration, Options)

USAGE = __doc__


def finished(journal):
    ends = [r for r in journal.records if r["t"] == "end"]
    return bool(ends) and ends[-1].get("outcome") == "done"


class Rollback(Migration):
    """A migration from where the last migration put the instance back to its
    old copy: the destination has the instance's datasets, configuration and
    cores dataset already, hidden, and shares the final snapshot with it."""

    KIND = "rollback"

    def __init__(self, opts, report=None, runner=None):
        super().__init__(opts, report, runner)
        self.migration = None
        self.old_state = None       # the old copy's zone state: configured (detached) or installed

    def run(self):
        o = self.opts
        if not UUID_RE.match(o.uuid or ""):
            raise Refused("'%s' is not an instance UUID" % o.uuid)
        self.migration = self.last_migration()
        b = self.migration.begin
        # the old source is this rollback's destination; the instance ran there
        o.dest, o.allow_older = b["src"]["hostname"], True
        return super().run()

    def last_migration(self):
        """The journal of the finished migration this rollback undoes."""
        uuid = self.opts.uuid
        done = sorted((j for j in Journal.all(uuid) if j.begin and finished(j)),
                      key=lambda j: j.begin.get("epoch", 0))
        if not done:
            raise NotFound("this head node has no finished migration of %s: nothing to roll"
                           " back" % uuid)
        last = done[-1]
        if last.begin.get("kind") == self.KIND:
            raise Refused("the last migration of %s was rolled back already (journal %s);"
                          " nothing changed" % (uuid, last.path))
        return last

    def _check_destination(self, vm, src, dst, *pool):
        b = self.migration.begin
        if src["uuid"] != b["dst"]["uuid"]:
            raise Refused("VMAPI shows %s on %s, not on %s where the migration of %s put it;"
                          " nothing changed" % (vm["uuid"], src["hostname"],
                                                b["dst"]["hostname"], b["started"]))
        super()._check_destination(vm, src, dst, *pool)

    def space_needed(self):
        # the old copy holds all but what changed since the final snapshot
        return 0

    def gather(self):
        self.resuming = True        # the destination holds the old copy: expected
        super().gather()
        uuid, dst = self.opts.uuid, self.dst
        old = probe(dst, uuid)
        if not old.datasets:
            raise Refused("the old copy of %s on %s is gone (sdc-migrate cleanup-source removed"
                          " it?): nothing to roll back to; nothing changed" % (uuid, dst.hostname))
        if old.state == "running":
            raise Refused("the old copy of %s on %s is running; nothing changed"
                          % (uuid, dst.hostname))
        # detached at the migration's switch (installed by an sdc-migrate of before)
        if not old.hidden or old.state not in ("configured", "installed", "ready"):
            raise Refused("the copy of %s on %s is not the hidden, detached copy a migration"
                          " leaves (%s); nothing changed" % (uuid, dst.hostname, old.describe()))
        self.old_state = old.state
        self.check_common_snapshot()

    def quota_owed(self):
        """A migration that did not come up left the bhyve quota raised on
        both CNs for this rollback (preparation.restore_bhyve_quota)."""
        return [(self.migration, i, rec["args"]) for i, rec in self.migration.pending()
                if rec["undo"] == "quota"]

    def check_common_snapshot(self):
        """Both CNs still have the migration's final snapshot of every dataset,
        the same one (GUID): only what is newer is sent back."""
        if self.migration.final_snapshot and not self.migration.rollback_snapshot:
            b = self.migration.begin
            raise Refused("the migration of %s kept no snapshot on both compute nodes (%s):"
                          " a rollback would have to send everything; nothing changed. To move"
                          " it back, remove its old copy (`sdc-migrate cleanup-source %s`),"
                          " then migrate it (`sdc-migrate %s %s`)"
                          % (self.opts.uuid, self.migration.dropped_why, self.opts.uuid,
                             self.opts.uuid, b["src"]["hostname"]))
        keep = self.migration.final_snapshot
        if keep is None:
            raise Refused("the journal of the migration (%s) names no final snapshot: no common"
                          " snapshot to send from; nothing changed" % self.migration.path)
        snaps = ["%s@%s" % (d.name, keep) for d in self.datasets]
        cmd = ["zfs", "get", "-Hp", "-o", "name,value", "guid"] + snaps
        got = self.both(lambda n: n.call(cmd, readonly=True))
        for node, (status, out, _) in zip((self.src, self.dst), got):
            have = dict(l.split("\t") for l in out.splitlines() if "\t" in l)
            missing = [s for s in snaps if s not in have]
            if missing:
                raise Refused("%s has no %s: no snapshot in common with %s to send from;"
                              " nothing changed" % (node.hostname, ", ".join(missing),
                                                    (self.dst if node is self.src
                                                     else self.src).hostname))
            node.guids = have
        if self.src.guids != self.dst.guids:
            raise Refused("the snapshots %s differ between %s and %s; nothing changed"
                          % (keep, self.src.hostname, self.dst.hostname))
        self.common = keep

    def show(self):
        self.r.line()
        self.r.line("We will be rolling back the migration of %s (journal %s):"
                    % (self.opts.uuid, self.migration.path))
        self.r.line("  %s goes back to its old copy on %s, with what was written on %s since"
                    % (self.opts.uuid, self.dst.hostname, self.src.hostname))
        self.r.line("  its snapshot %s." % self.common)
        super().show()

    def steps(self):
        return ROLLBACK


def stop_if_running(m):
    """A boot there that failed left nothing to stop."""
    zone.impact_banner(m, "changes")
    if m.vm.get("state") != "running":
        m.r.line("* Instance %s is already shutdown.  Proceeding."
                 % (m.vm.get("alias") or m.opts.uuid))
        return
    zone.stop(m, banner=False)


def destroy_snapshots(m, node, keep=None):
    """Undone, the rollback keeps the migration's snapshot on both sides: a
    later rollback sends from it."""
    transfer.destroy_snapshots(m, node, keep or m.migration.final_snapshot)


def roll_back_received(m, datasets):
    """Never destroy the old copy: roll it back to the common snapshot."""
    common = m.migration.final_snapshot
    m.dst.script([["zfs", "rollback", "-r", "%s@%s" % (d, common)] for d in datasets])


# The migration's steps, without those the old copy has done already (image,
# configuration, cores dataset, attach), and undos that keep the old copy.
ROLLBACK = [KEY, AUTHORIZED, TUNABLES, RESERVATION, QUOTA, HOLD,
            Step("stop", stop_if_running, zone.start_again,
                 "the instance stopped where the migration put it", permanent=True),
            Step("snapshots", transfer.final_snapshot, destroy_snapshots,
                 "the final snapshot", keeps_data=True),
            Step("received", transfer.final_send, roll_back_received,
                 "what it wrote since, sent to the old copy", permanent=True,
                 keeps_data=True),
            MOUNT,
            Step("reattached", zone.attach_old, zone.detach,
                 "the old copy, detached at the migration's switch, attached again",
                 permanent=True),
            HIDDEN, SWITCH] + AFTER_SWITCH


def main(args):
    from ..cli import parse_rate
    if args["-j"] and not (args["-y"] or args["--dry-run"]):
        raise Usage("-j asks no question: add -y (or --dry-run)")
    opts = Options(uuid=args["INST_UUID"], yes=args["-y"], dry_run=args["--dry-run"],
                   bwlimit=parse_rate(args["--bwlimit"]))
    rb = Rollback(opts, JsonReport() if args["-j"] else Report())
    try:
        return rb.run()
    finally:
        rb.release()
        rb.r.close()
