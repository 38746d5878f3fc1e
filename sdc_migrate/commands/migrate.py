"""sdc-migrate UUID DEST: move an instance to another compute node.

Gather (read-only, refusals here), show, confirm, act. Every step that
changes something registers its undo; a failure before the switch point
(VMAPI showing the instance on the destination) undoes them in reverse.
"""
import concurrent.futures
import json
import os
import re
import signal
import threading
import time

from .. import cnlink, paths, placement, progress, zfs
from ..paths import STATE_DIR
from ..errors import MigrateError, NeedsOperator, NotFound, Refused, RemoteError, RolledBack
from ..node import Node, Runner, command_line
from ..procedure import InstanceLock, Journal
from dateutil.parser import isoparse as parse_time

from ..report import (JsonReport, Report, capped_rate, estimate_text, human_duration,
                      human_size, human_time, now)
from ..triton import UUID_RE, Triton, admin_ip

TCP_TUNABLES = (("tcp_max_buf", 2097152), ("tcp_xmit_hiwat", 1048576),
                ("tcp_recv_hiwat", 1048576))
VMAPI_WAIT = 120
HEALTH_TIMEOUT = 120    # --health-timeout's default: seconds to come up on the destination
HEALTH_POLL = 1.0
SMF_BRANDS = ("joyent", "joyent-minimal")     # zones with SMF inside: a milestone to ask
RECV_WAIT = 3600        # the longest a run waits for an earlier run's receive
RESUMES = 2             # a cut stream is resumed this many times, then the run fails
# --max-delta's convergence rule (RFD 34): live rounds end when one sends less
# than the limit, when the delta has not shrunk for STALL_ROUNDS rounds, or
# after MAX_ROUNDS rounds.
MAX_ROUNDS = 10
STALL_ROUNDS = 3


def converged(deltas, max_delta):
    """Why live rounds with these deltas (bytes, oldest first; the first round
    is the full send) should end and the instance stop now; None to go on."""
    if len(deltas) >= MAX_ROUNDS:
        return "%d rounds have run" % MAX_ROUNDS
    live = deltas[1:]
    if not live:
        return None
    if live[-1] < max_delta:
        return "under the limit of %s" % human_size(max_delta)
    # not shrinking: no smaller delta in the last STALL_ROUNDS rounds than before them
    if len(live) > STALL_ROUNDS and min(live[-STALL_ROUNDS:]) >= min(live[:-STALL_ROUNDS]):
        return "the delta has not shrunk for %d rounds" % STALL_ROUNDS
    return None


class Options:
    def __init__(self, uuid=None, dest=None, incremental=False, auto=False,
                 allow_older=False, yes=False, interval=60, max_delta=None, dry_run=False,
                 bwlimit=None, health_timeout=HEALTH_TIMEOUT, no_rollback=False):
        self.uuid, self.dest = uuid, dest
        self.incremental = incremental or auto
        self.auto = auto
        self.max_delta = max_delta  # -a: rounds until one sends less (bytes)
        self.allow_older = allow_older
        self.yes = yes
        self.interval = interval
        self.dry_run = dry_run      # gather and show for real; list, not run, the rest
        self.bwlimit = bwlimit      # bytes a second for every stream, or None
        self.health_timeout = health_timeout    # seconds for the instance to come up there
        self.no_rollback = no_rollback  # an instance that does not come up stays there


def zone_state(listing, uuid):
    """The state field of UUID's line in `zoneadm list -p` output."""
    for line in listing.splitlines():
        f = line.split(":")
        if len(f) > 2 and f[1] == uuid:
            return f[2]
    return "unknown"


EXPORT_MARK = "@@ zonecfg export @@"

# The scripts the CNs run: sh -c SCRIPT sh ARG... Values (UUIDs, names,
# journal data) are arguments, never script text: a test scans the package.
# GATHER_SOURCE SEPARATOR UUID: the instance's datasets, then its cores quota
GATHER_SOURCE = (command_line(zfs.list_command(snapshots=True)) + ' && echo "$1" && '
                 '{ zfs get -Hp -o value quota "zones/cores/$2" 2>/dev/null || true; }')
# GATHER_DEST: the host key the source will accept, the pool's room, its
# encryption (a cipher, or off; off too where the platform's zfs has no such
# property), its datasets
GATHER_DEST = ("cat %s; zfs get -Hp -o value available zones; "
               "zfs get -Hp -o value encryption zones 2>/dev/null || echo off; " % cnlink.HOST_KEY
               + command_line(zfs.list_command()))
NDD_GET = 'for n in "$@"; do ndd -get /dev/tcp "$n" || exit; done'     # NAME...
NDD_SET = ('while [ $# -gt 1 ]; do ndd -set /dev/tcp "$1" "$2" || exit; shift 2; '
           'done')                                                   # NAME VALUE...
DESTROY_ALL = 'for d in "$@"; do zfs destroy -r "$d"; done; true'   # DATASET...
# STOP_AND_EXPORT UUID MARK: stop, its state, and the configuration as it is now
STOP_AND_EXPORT = ('vmadm stop "$1" && zoneadm -z "$1" list -p && echo "$2" && '
                   'zonecfg -z "$1" export')
START_AND_REPORT = 'vmadm start "$1" && svcadm restart vm-agent'      # UUID
DNI_RE = re.compile(r'<attr\b[^>]*\bname="do-not-inventory"[^>]*>')


def hidden_xml(xml):
    """Whether a zone's XML has do-not-inventory set."""
    attr = DNI_RE.search(xml)
    return bool(attr and 'value="true"' in attr.group(0))


def hidden_config(exported, uuid):
    """`zonecfg export` output made into the destination's copy: hidden from
    inventory (attr do-not-inventory), autoboot and vm-autoboot off (it boots
    when the migration says so), and its uuid set (JPC-1421: an index line
    without it)."""
    out, block = [], None
    for line in exported.splitlines():
        if block is not None:
            block.append(line)
            if line.strip() == "end":
                if "set name=do-not-inventory" in block:
                    pass                        # replaced below
                elif "set name=vm-autoboot" in block:
                    out += [l if not l.startswith("set value=") else "set value=false"
                            for l in block]
                else:
                    out += block
                block = None
            continue
        if line.strip() == "add attr":
            block = [line]
        elif line.startswith("set autoboot="):
            out.append("set autoboot=false")
        elif line.startswith("set uuid="):
            continue
        else:
            out.append(line)
        if line.startswith("create"):
            out.append("set uuid=%s" % uuid)
    out += ["add attr", "set name=do-not-inventory", "set type=string", "set value=true", "end"]
    return "".join(l + "\n" for l in out)


def vm_type(vm):
    return "HVM" if vm.get("brand") in ("kvm", "bhyve") else "ZONE"


class Migration:
    KIND = "migration"      # the journal's begin record says which procedure wrote it

    def __init__(self, opts, report=None, runner=None):
        self.opts = opts
        self.r = report or Report()
        self.hn = runner or Runner(dry_run=opts.dry_run, trace=self.trace)
        self.listing = False     # --dry-run: trace() prints each command act() would run
        self.api = Triton(self.hn)
        self.journal = None      # every change and its undo (procedure.Journal)
        self.resuming = False    # an interrupted run's data is on the destination
        self.epoch = int(time.time())
        self.tag = None          # names its key and backups on the CNs (run_tag)
        self.cancel = threading.Event()     # interrupt(): roll back at the next step
        self.cancel_reason = None
        self.increments = 0
        self.stopped_at = None
        self.booted_at = None
        self.lock = None
        self.start_after = False  # boot it on the destination even if it is not running

    # ---- gather -------------------------------------------------------------

    def gather(self):
        o, r = self.opts, self.r
        r.line("* Please wait, gathering instance and CN data....")
        r.step("    + retrieving instance alias, server_uuid, brand, create_timestamp,\n"
               "      image_uuid, zone_state, quota, ram, and owner_uuid ....")
        vm = self.api.vm(o.uuid)
        if vm.get("state") in ("destroyed", "failed") or not vm.get("server_uuid"):
            raise NotFound("instance %s is %s" % (o.uuid, vm.get("state") or "not on any server"))
        kind, what = placement.kind_of(vm)
        if kind == "nat":
            raise Refused("instance %s is a fabric NAT zone: use `sdc-migrate nat-recreate %s`"
                          % (o.uuid, o.uuid))
        if kind == "core":
            raise Refused("instance %s is a Triton core zone (%s): sdc-migrate does not move"
                          " core zones" % (o.uuid, what))
        record = self.api.migration(o.uuid)
        if record and record.get("state") != "aborted":
            raise Refused("instance %s has a Triton migration (sdc-vmapi /migrations/%s) in"
                          " phase %s, state %s: finish or abort it with Triton's"
                          " /opt/smartdc/bin/sdc-migrate first"
                          % (o.uuid, o.uuid, record.get("phase"), record.get("state")))
        self.vm = vm
        r.done()
        r.step("    + checking instance for any IP addrs to potentially reserve during\n"
               "      the migration ...")
        self.ips = [(n["ip"], n["network_uuid"]) for n in vm.get("nics") or []
                    if n.get("ip") and n.get("network_uuid") and n.get("ip") != "dhcp"]
        r.done()
        r.step("    + retrieving SRC CN hostname, SDC Version, reservation status, and\n"
               "      IP addr ...")
        src = self.api.server(vm["server_uuid"])
        r.done()
        r.step("    + retrieving DEST CN UUID, SDC Version, reservation status, and\n"
               "      IP addr ...")
        dst = self.api.server_by_hostname(o.dest)
        self._check_destination(vm, src, dst)
        r.done()
        self.src_server, self.dst_server = src, dst
        self.src = Node(src["hostname"], src["uuid"], admin_ip(src),
                        trace=self.hn.trace, dry_run=self.hn.dry_run)
        self.dst = Node(dst["hostname"], dst["uuid"], admin_ip(dst),
                        trace=self.hn.trace, dry_run=self.hn.dry_run)
        r.step("    + checking instance for datasets to migrate during the migration ...")
        try:
            self._gather_datasets()
        except RemoteError as e:
            if e.status != 255:
                raise
            raise Refused("cannot reach %s over ssh: %s" % (e.host, e.stderr.strip() or
                                                           "connection failed")) from None
        r.done()
        r.line("  - Data gathering complete!")

    def _check_destination(self, vm, src, dst, pool_bytes=0, pool_free=None):
        """The destination check evacuate shares (placement.Destination)."""
        o = self.opts
        if dst["uuid"] == src["uuid"]:
            raise Refused("instance %s is already on %s" % (o.uuid, o.dest))
        placement.Destination(dst, pool_free).check(
            placement.need_of(vm, pool_bytes), src.get("current_platform") or "", o.allow_older)

    SEP = "--- sdc-migrate: cores quota ---"

    def _gather_datasets(self):
        uuid = self.opts.uuid
        # Both CNs at once, one round trip each (and their ssh connections
        # opened side by side). The destination's host key is read over the
        # head node's own trusted connection: the source will accept exactly it.
        src_script = ["sh", "-c", GATHER_SOURCE, "sh", self.SEP, uuid]
        dst_script = ["sh", "-c", GATHER_DEST]
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            mine = pool.submit(self.src.run, src_script, readonly=True)
            theirs = pool.submit(self.dst.run, dst_script, readonly=True)
            adminui = pool.submit(self._adminui)     # for the closing block
            listing, _, quota = mine.result().partition(self.SEP + "\n")
            out = theirs.result().split("\n")
            self.adminui = adminui.result()
        self.datasets = zfs.instance_datasets(listing, uuid)
        self.indestructible = zfs.indestructible_snapshots(listing, self.datasets)
        if not self.datasets:
            raise NotFound("instance %s has no datasets on %s" % (uuid, self.src.hostname))
        self.total = zfs.sent_size(self.datasets)
        self.cores_quota = quota.strip() or None
        self.dst_hostkey = " ".join(out[0].split()[:2])
        avail = int(out[1])
        # an encrypted pool takes our -p streams (and their send -t rests)
        # only without their encryption=off: the datasets inherit the pool's
        self.recv_exclude = ("encryption",) if out[2].strip() not in ("off", "-", "") else ()
        there = [d.name for d in zfs.instance_datasets("\n".join(out[3:]), uuid)]
        self.dst_has_cores = any(l.split("\t")[0] == "zones/cores/" + uuid for l in out[3:])
        self.on_dest = set(there)
        if there and not self.resuming:
            raise Refused("destination %s already has %s: a copy of this instance is there"
                          " (remove it, or migrate elsewhere)" % (self.opts.dest, ", ".join(there)))
        self._check_destination(self.vm, self.src_server, self.dst_server,
                                self.space_needed(), avail)

    def space_needed(self):
        return sum(d.used for d in self.datasets)

    # ---- show -------------------------------------------------------------------

    def paths(self):
        base = paths.run_base(self.opts.uuid, self.opts.dest, self.epoch)
        return base + ".log", base + ".st"

    def show(self):
        vm, o, r = self.vm, self.opts, self.r
        log, st = self.paths()
        dc = self.src_server.get("datacenter") or \
            (self.src_server.get("sysinfo") or {}).get("Datacenter Name", "-")
        self.datacenter = dc
        pairs = [
            ("uuid", vm["uuid"]), ("alias", vm.get("alias") or "-"),
            ("IP Addr(s)", " ".join(ip for ip, _ in self.ips) or "-"),
            ("datacenter", dc), ("zone state", vm.get("zone_state") or vm.get("state")),
            ("type", vm_type(vm)), ("owner", vm.get("owner_uuid")),
            ("create at", vm.get("create_timestamp")),
            ("base image", vm.get("image_uuid") or self._image_of_disks() or "-"),
            ("total dataset size", "%s across %d datasets" % (human_size(self.total),
                                                             len(self.datasets))),
            ("est. migration time", estimate_text(self.total, capped_rate(o.bwlimit))),
            ("migration type", "Incremental" if o.incremental else "Non-Incremental"),
        ]
        if o.bwlimit:
            pairs.append(("bandwidth limit", "%s / second" % human_size(o.bwlimit)))
        if o.incremental:
            pairs += [("migration log file", "%s HN:%s" % (dc, log)),
                      ("migration state file", "%s HN:%s" % (dc, st))]
        r.line()
        r.line("We will be migrating:")
        r.block("INSTANCE:", pairs)
        r.line()

        def col(server, node):
            si = server.get("sysinfo") or {}
            return [("Host:", node.hostname), ("UUID:", server["uuid"]),
                    ("SDC Ver:", si.get("SDC Version", "-")),
                    ("IP Addr:", node.ip), ("reserved:", str(bool(server.get("reserved"))).lower())]
        left = ["%-10s%s" % p for p in col(self.src_server, self.src)] + \
            ["migr key: %s" % paths.temp_key(self.tag)]
        right = ["%-10s%s" % p for p in col(self.dst_server, self.dst)] + \
            ["auth_keys bkup: %s" % paths.authorized_keys_backup(self.tag)]
        r.table(["SRC CN", "DEST CN"], list(zip(left, right)))
        r.line()

    def _image_of_disks(self):
        for d in self.vm.get("disks") or []:
            if d.get("image_uuid"):
                return d["image_uuid"]
        return None

    # ---- act ----------------------------------------------------------------

    def changed(self, undo, what, data=False, **args):
        """Journal a change that just succeeded: self.undo_<undo>(**args) undoes it.

        data=True marks what a resumed run reuses (snapshots, received
        datasets) rather than undoes.
        """
        self.journal.change(undo, what, data, **args)

    def will(self, undo, what, **args):
        """Journal a change before making it; confirm(i) once it is made."""
        return self.journal.change(undo, what, maybe=True, **args)

    def both(self, fn):
        """(fn(source), fn(destination)), run side by side: independent
        commands on the two CNs cost one round trip, not two."""
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            return tuple(pool.map(fn, (self.src, self.dst)))

    def node(self, which):
        return self.src if which == "src" else self.dst

    def run(self):
        """The whole migration; returns the exit status."""
        o, r = self.opts, self.r
        r.line()
        r.line("           -: Welcome to the SDC Migrator :-")
        r.line()
        if not o.uuid:
            o.uuid = r.prompt("UUID of Instance to Move:")
        if not o.dest:
            o.dest = r.prompt("Destination Server:")
        r.line()
        if not UUID_RE.match(o.uuid or ""):
            raise Refused("'%s' is not an instance UUID" % o.uuid)
        self.tag = run_tag(o.uuid)
        interrupted = Journal.unfinished(o.uuid)
        if interrupted and interrupted[-1].begin.get("kind", "migration") != self.KIND:
            raise Refused("a %s of %s was interrupted (journal %s): run `%s` to finish or undo"
                          " it first" % (interrupted[-1].begin.get("kind"), o.uuid,
                                         interrupted[-1].path, interrupted[-1].command()))
        if interrupted and o.dry_run:
            raise Refused("a migration of %s is running or was interrupted (journal %s):"
                          " no dry run until it is finished or undone" % (o.uuid,
                                                                         interrupted[-1].path))
        if o.dry_run:
            self.gather()
            self.show()
            return self.rehearse()
        self.lock = InstanceLock(o.uuid)
        if interrupted:
            if self.resume(interrupted[-1]):
                return 0
        self.gather()
        log, st = self.paths()
        self.show()
        if not o.yes and not r.ask("Are you ready to proceed? [y|n]"):
            raise Refused("not confirmed: nothing was changed")
        r.open_log(log)
        r.line("Here we go...")
        r.line()
        self.started = now()
        self.was_running = self.vm.get("state") == "running" or self.start_after
        self.journal = Journal(Journal.path_for(o.uuid, o.dest, self.epoch))
        self.journal.write({
            "t": "begin", "kind": self.KIND, "uuid": o.uuid, "dest": o.dest,
            "epoch": self.epoch, "tag": self.tag,
            "alias": self.vm.get("alias"),
            "started": self.started.isoformat(), "incremental": o.incremental,
            "was_running": self.was_running, "autoboot": self.vm.get("autoboot"),
            "datacenter": self.datacenter,
            "src": {"hostname": self.src.hostname, "uuid": self.src.uuid, "ip": self.src.ip},
            "dst": {"hostname": self.dst.hostname, "uuid": self.dst.uuid, "ip": self.dst.ip}})
        if o.incremental:
            os.close(os.open(st, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            self.act()
        except (RolledBack, NeedsOperator):
            raise       # said already (after the switch: the instance did not come up)
        except (Exception, KeyboardInterrupt) as e:
            self.fail(e)
        finally:
            if o.incremental and os.path.exists(st):
                os.unlink(st)
        return 0

    def rehearse(self):
        """--dry-run: act() with the commands that change something listed, not run."""
        r = self.r
        r.line("* Dry run: the commands this migration would run, host by host, in order:")
        self.started = now()
        self.was_running = self.vm.get("state") == "running" or self.start_after
        self.journal = Journal(None)        # in memory: no file on the head node
        r.muted, self.listing = True, True
        try:
            self.act()
        finally:
            r.muted, self.listing = False, False
        r.line("  - Dry run: nothing was changed.")
        r.event("summary", **self.summary("dry-run", 0))
        return 0

    def trace(self, host, cmdline):
        if self.listing:
            self.r.event("command", "%s: %s" % (host, cmdline), host=host, command=cmdline)

    def summary(self, outcome, exit_status):
        """The -j summary event: what moved where, when, how long it was down."""
        vm, o = self.vm, self.opts
        ended = getattr(self, "ended", None) or now()
        down = self.downtime()
        return {"uuid": vm["uuid"], "alias": vm.get("alias"), "source": self.src.hostname,
                "destination": self.dst.hostname, "started": self.started.isoformat(),
                "ended": ended.isoformat(),
                "duration_s": round((ended - self.started).total_seconds(), 2),
                "downtime_s": None if o.dry_run else down or 0, "instance_type": vm_type(vm),
                "type": "incremental" if o.incremental else "full",
                "increments": self.increments, "outcome": outcome, "exit_status": exit_status,
                "log_file": None if o.dry_run else self.paths()[0]}

    def fail(self, error):
        """Undo what was done (before the switch) and raise what happened."""
        o, r = self.opts, self.r
        what = "interrupted" if isinstance(error, KeyboardInterrupt) else str(error)
        if isinstance(error, HungUp):
            what = "interrupted by %s" % error
        r.failed()
        rerun = "sdc-migrate -y %s %s" % (o.uuid, o.dest)
        if self.journal.switched:
            r.event("failure", error=what)
            r.event("summary", **self.summary("needs-operator", NeedsOperator.exit_status))
            raise NeedsOperator(
                "%s\n  VMAPI shows %s on %s already: run `%s` again to finish the migration"
                " (journal %s)." % (what, o.uuid, o.dest, rerun, self.journal.path)) from None
        r.line()
        r.event("failure", "* Migration failed: %s" % what, error=what)
        if getattr(self, "sending", False):
            self.wait_for_receive()
        r.line("* Rolling back:")
        if not self.rollback():
            r.event("summary", **self.summary("needs-operator", NeedsOperator.exit_status))
            raise NeedsOperator(
                "migration of %s failed (%s) and could not be undone completely: fix what the"
                " lines above name, then run `%s` again to finish or undo it (journal %s)."
                % (o.uuid, what, rerun, self.journal.path)) from None
        self.journal.write({"t": "end", "outcome": "rolled-back"})
        r.event("summary", **self.summary("rolled-back", RolledBack.exit_status))
        raise RolledBack("migration of %s failed and was rolled back: %s\n"
                         "  The instance is on %s, %s, as before."
                         % (o.uuid, what, self.src.hostname, self.vm.get("state"))) from None

    def resume(self, journal):
        """Finish or undo an interrupted migration; True if it is finished."""
        o, r, b = self.opts, self.r, journal.begin
        if b.get("dest") != o.dest:
            raise Refused("a migration of %s to %s was interrupted (journal %s): run"
                          " `sdc-migrate %s %s` to finish or undo it first"
                          % (o.uuid, b.get("dest"), journal.path, o.uuid, b.get("dest")))
        self.journal, self.epoch, self.tag = journal, b["epoch"], b["tag"]
        stale = self.paths()[1]
        if os.path.exists(stale):
            os.unlink(stale)        # the state file of the killed run's rounds
        self.src = Node(trace=self.hn.trace, dry_run=self.hn.dry_run, **b["src"])
        self.dst = Node(trace=self.hn.trace, dry_run=self.hn.dry_run, **b["dst"])
        listing = self.src.run(zfs.list_command(snapshots=True), readonly=True)
        self.datasets = zfs.instance_datasets(listing, o.uuid)
        self.indestructible = zfs.indestructible_snapshots(listing, self.datasets)
        r.open_log(self.paths()[0])
        r.line("* Found the journal of an interrupted migration: %s" % journal.path)
        self.vm = self.api.vm(o.uuid)
        # VMAPI shows the destination once its copy is unhidden (switch_vmapi,
        # after the attach): that is the switch point.
        if journal.switched or (self.vm.get("server_uuid") == self.dst.uuid
                                and journal.made("attach")):
            r.line("  - VMAPI shows the instance on %s: finishing the migration"
                   % self.dst.hostname)
            self.was_running = b["was_running"]
            if "autoboot" in b:     # VMAPI shows the destination's copy: autoboot off
                self.vm["autoboot"] = b["autoboot"]
            for rec in journal.records:     # as the stop found it (current_state)
                if rec["t"] == "run-state":
                    self.was_running, self.vm["autoboot"] = rec["was_running"], rec["autoboot"]
            self.datacenter = b["datacenter"]
            self.started = parse_time(b["started"])
            # what the closing block reports, from the journal: the stop (marked
            # permanent at the switch, so no longer pending) and the rounds sent
            stops = journal.ever("stop")
            self.stopped_at = stops[0]["at"] if stops else None
            self.increments = len(journal.rounds())
            if not journal.switched:
                # Shown there, so the source copy was hidden first: make sure of
                # it (idempotent), or both CNs report it.
                self.hide_source()
                self.mark_switched()
            self.after_switch()
            return True
        r.line("  - the instance is still on %s: undoing what that run changed, keeping"
               " the data it sent" % self.src.hostname)
        if any(rec.get("undo") == "received" for rec in journal.records):
            self.wait_for_receive()
        if not self.rollback(keep_data=True):
            raise NeedsOperator("could not undo the interrupted migration of %s: fix what the"
                                " lines above name and run the same command again" % o.uuid)
        journal.write({"t": "end", "outcome": "superseded"})
        self.resuming = True
        self.epoch, self.tag = int(time.time()), run_tag(o.uuid)
        r.close()
        r.line()
        return False

    def interrupt(self, why="interrupted"):
        """Stop this migration from another thread (evacuate's ^C): before the
        switch it rolls back at its next step, as on ^C; past it, it finishes."""
        self.cancel_reason = why
        self.cancel.set()

    def checkpoint(self):
        if self.cancel.is_set() and not (self.journal is not None and self.journal.switched):
            raise HungUp(self.cancel_reason)

    def release(self):
        """End the ssh connections and drop the lock, however the run ended."""
        for n in (getattr(self, "src", None), getattr(self, "dst", None)):
            if n is not None:
                n.close()
        if self.lock is not None:
            self.lock.release()

    def rollback(self, keep_data=False):
        """Undo the journal's pending changes, newest first, and see VMAPI show the
        instance on the source again; True if all were undone."""
        clean = self._undo_all(keep_data)
        if clean:
            try:
                self.back_on_source()
            except Exception as e:  # noqa: BLE001 - said, and the run ends unclean
                self.r.event("undo_failed", "    ! %s" % e, what="VMAPI", error=str(e))
                return False
        return clean

    def back_on_source(self):
        """A source copy hidden and shown again was reported gone meanwhile
        (VMAPI: destroyed): have the source's vm-agent report it, wait for VMAPI."""
        uuid = self.opts.uuid
        vm = self.api.vm(uuid)
        if vm.get("server_uuid") == self.src.uuid and vm.get("state") != "destroyed":
            return
        self.r.line("    - VMAPI shows %s on %s: asking %s's vm-agent to report it"
                    % (uuid, vm.get("server_uuid"), self.src.hostname))
        self.src.run(["svcadm", "restart", "vm-agent"])
        deadline = time.time() + VMAPI_WAIT
        while time.time() < deadline:
            vm = self.api.vm(uuid)
            if vm.get("server_uuid") == self.src.uuid and vm.get("state") != "destroyed":
                return
            time.sleep(0.5)
        raise MigrateError("VMAPI still shows %s on server %s" % (uuid, vm.get("server_uuid")))

    def _undo_all(self, keep_data):
        clean = True
        for i, rec in reversed(self.journal.pending()):
            if keep_data and rec["data"]:
                continue
            try:
                getattr(self, "undo_" + rec["undo"])(**rec["args"])
                self.journal.mark_undone(i)
                self.r.event("undone", "    - undone: %s" % rec["what"], what=rec["what"])
            except Exception as e:  # keep undoing the rest
                if rec.get("maybe") and not self.journal.confirmed(i):
                    # announced, never confirmed: it had not happened
                    self.journal.mark_undone(i)
                    continue
                clean = False
                self.r.event("undo_failed", "    ! could not undo %s: %s" % (rec["what"], e),
                             what=rec["what"], error=str(e))
        return clean

    def act(self):
        o, r, vm = self.opts, self.r, self.vm
        uuid = o.uuid
        self.setup_key()
        self.checkpoint()
        self.check_tunables()
        self.checkpoint()
        self.check_origin()
        self.checkpoint()
        self.reserve_ips()
        self.checkpoint()
        self.raise_bhyve_quota()
        self.checkpoint()
        typ = vm_type(vm)
        label = "%s (%s)" % (uuid, vm.get("alias") or "-")
        self.snap_base = self.snapshot_name()
        self.sent = None
        # what needs no stop, before it. (The cores dataset waits for the data:
        # mounted at /zones/UUID/cores, it would keep zones/UUID from mounting.)
        self.fix_source_xml()
        self.check_index()
        self.checkpoint()
        if o.incremental:
            self.incremental_rounds()
        r.line()
        r.line("**** Runtime impact and pre-migration changes to %s instance" % typ)
        r.line("****    %s" % label)
        r.line("**** start here!")
        r.line()
        self.stop_instance()
        self.checkpoint()
        self.final_transfer()
        self.checkpoint()
        self.create_cores()
        self.checkpoint()
        self.copy_config()
        self.checkpoint()
        self.attach()
        self.checkpoint()
        self.disable_source()
        self.checkpoint()
        self.switch_vmapi()
        self.after_switch()

    def snapshot_name(self):
        return zfs.migration_snapshot(self.epoch)

    def after_switch(self):
        """Past the switch the migration only goes forward, unless the instance
        does not come up on the destination: then it is rolled back."""
        boot_error = None
        try:
            self.finish_destination()  # the boot first: the instance is down until then
        except RemoteError as e:
            if not self.was_running or self.opts.no_rollback or self.KIND != "migration":
                raise
            self.r.failed()
            boot_error = e
        trouble = self.health(boot_error) if self.was_running and not self.opts.dry_run \
            else None
        if trouble:
            return self.not_up(trouble)
        self.protect_destination()
        self.wrap_up()
        if not self.opts.dry_run:
            self.r.event("summary", **self.summary("done", 0))

    def wrap_up(self, trouble=None):
        """What every migration that switched ends with, the instance up or not."""
        self.unreserve_ips()
        self.cleanup_snapshots()
        self.restore_bhyve_quota()
        self.ended = now()
        if trouble is None:
            self.closing_block()
        self.clear_keys()
        self.journal.write({"t": "end", "outcome": "done", "downtime": self.downtime(),
                            **({"health": trouble} if trouble else {})})

    def health(self, boot_error=None):
        """None once the instance is up on the destination: its zone running
        and, in a zone with SMF inside, svc:/milestone/multi-user online,
        within --health-timeout (at once after a failed boot); else what is
        wrong. One round trip a look."""
        r, uuid, dst = self.r, self.opts.uuid, self.dst
        smf = self.vm.get("brand") in SMF_BRANDS
        r.step("* Checking that %s is up on %s (zone running%s)..."
               % (self.vm.get("alias") or uuid, dst.hostname,
                  ", milestone/multi-user online" if smf else ""))
        look = ["sh", "-c", 'zoneadm -z "$1" list -p && { [ "$2" = no ] || '
                'svcs -z "$1" -H -o state svc:/milestone/multi-user:default; }',
                "sh", uuid, "yes" if smf else "no"]
        deadline = time.time() + (0 if boot_error else self.opts.health_timeout)
        while True:
            status, out, err = dst.call(look, readonly=True)
            state = zone_state(out, uuid)
            milestone = out.split()[-1] if smf and status == 0 and out.split() else None
            if state == "running" and (not smf or milestone == "online"):
                if boot_error:      # it runs all the same: vm-agent's report is due
                    dst.run(["svcadm", "restart", "vm-agent"])
                r.done("Up.")
                return None
            said = (err.strip().splitlines() or ["?"])[-1]
            trouble = ("its zone is %s" % state if state != "running" else
                       "its milestone/multi-user is %s" % (milestone or "not online: " + said))
            if time.time() >= deadline:
                r.failed()
                if boot_error:
                    return "the boot failed (%s) and %s" % (boot_error, trouble)
                return "%s after %d seconds" % (trouble, self.opts.health_timeout)
            time.sleep(HEALTH_POLL)

    def not_up(self, trouble):
        """It did not come up on the destination: finish what the migration
        leaves in order, then roll it back onto the source copy with what it
        wrote (sdc-migrate rollback), or with --no-rollback leave it there."""
        o, r = self.opts, self.r
        alias = self.vm.get("alias") or o.uuid
        self.wrap_up(trouble)
        r.line("* %s did not come up on %s: %s" % (alias, self.dst.hostname, trouble))
        r.event("failure", error=trouble)
        if o.no_rollback or self.KIND != "migration":
            r.event("summary", **self.summary("needs-operator", NeedsOperator.exit_status))
            back = ("; `sdc-migrate rollback %s` moves it back to %s with what it wrote"
                    % (o.uuid, self.src.hostname)) if self.KIND == "migration" else ""
            raise NeedsOperator("%s is on %s (VMAPI shows it there) but did not come up: %s."
                                " It was left as it is: look at it there%s."
                                % (o.uuid, self.dst.hostname, trouble, back))
        r.line("* Rolling it back to %s, with what it wrote on %s:"
               % (self.src.hostname, self.dst.hostname))
        from .rollback import Rollback
        self.lock.release()             # the rollback takes the instance's lock
        self.lock = None
        rb = Rollback(Options(uuid=o.uuid, yes=True, bwlimit=o.bwlimit,
                              health_timeout=o.health_timeout), r)
        rb.start_after = True           # it ran on the source before the migration
        try:
            rb.run()
        except MigrateError as e:
            raise NeedsOperator("%s did not come up on %s (%s), and rolling it back to %s"
                                " failed: %s" % (o.uuid, self.dst.hostname, trouble,
                                                 self.src.hostname, e)) from None
        finally:
            rb.release()
        raise RolledBack("migration of %s failed after the switch: %s on %s\n"
                         "  It was rolled back: the instance is on %s, with what it wrote on"
                         " %s." % (o.uuid, trouble, self.dst.hostname, self.src.hostname,
                                   self.dst.hostname))

    # What stays as it is once VMAPI shows the instance on the destination.
    PERMANENT = ("tunables", "stop", "received", "cores", "config", "autoboot", "attach",
                 "hidden", "shown")

    def mark_switched(self):
        self.journal.write({"t": "switched"})
        for i, rec in self.journal.pending():
            if rec["undo"] in self.PERMANENT:
                self.journal.mark_undone(i)

    # ---- steps --------------------------------------------------------------

    def setup_key(self):
        r, src, dst = self.r, self.src, self.dst
        key, kh = paths.temp_key(self.tag), paths.temp_known_hosts(self.tag)
        bkup = paths.authorized_keys_backup(self.tag)
        self.key, self.known_hosts, self.ak_backup = key, kh, bkup
        r.step("    + Creating an SSH key on %s to copy to authorized_keys on\n"
               "      %s for the migration; Key will be removed once migration completes."
               % (src.hostname, dst.hostname))
        # both journaled before they are made: their undos are harmless if they were not
        i = self.will("key", "temporary key on %s" % src.hostname, key=key, known_hosts=kh)
        pub = cnlink.make_key(src, key, kh, "sdc-migrate-" + self.opts.uuid, dst.ip,
                              self.dst_hostkey)
        self.journal.confirm(i)
        r.done()
        r.step("    + Copying SSH key to %s..." % dst.hostname)
        i = self.will("authorized", "authorized key on %s" % dst.hostname, backup=bkup,
                      blob=pub.split()[1] if pub else None)    # --dry-run made no key
        cnlink.authorize(dst, src.ip, pub, bkup)
        self.journal.confirm(i)
        r.done()

    def undo_key(self, key, known_hosts):
        cnlink.remove_key(self.src, key, known_hosts)

    def undo_authorized(self, backup, blob=None):
        cnlink.unauthorize(self.dst, backup, blob)

    def clear_keys(self):
        """The destination's entry and the source's key, both CNs at once."""
        self.r.line("* Clearing migration SSH keys")
        todo = [(i, rec) for i, rec in self.journal.pending()
                if rec["undo"] in ("authorized", "key")]
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            for i, done in [(i, pool.submit(getattr(self, "undo_" + rec["undo"]), **rec["args"]))
                            for i, rec in todo]:
                done.result()
                self.journal.mark_undone(i)

    def check_tunables(self):
        r, src, dst = self.r, self.src, self.dst
        r.line("* Checking if tcp_max_buf, tcp_xmit_hiwat, and tcp_recv_hiwat have")
        r.line("  been tuned on both %s and %s ..." % (src.hostname, dst.hostname))
        get = ["sh", "-c", NDD_GET, "sh"] + [name for name, _ in TCP_TUNABLES]
        for node, out in zip((src, dst), self.both(lambda n: n.run(get, readonly=True))):
            values = [int(v) for v in out.split()]
            # tcp_max_buf first: the hiwat values may not exceed it.
            low = [(name, want, have) for (name, want), have in zip(TCP_TUNABLES, values)
                   if have < want]
            if not low:
                r.line("  - nothing to do for %s" % node.hostname)
                continue
            # journaled first: one ndd -set may succeed and the next fail (or
            # the run die), and setting the old values back is harmless
            self.changed("tunables", "TCP tunables on %s" % node.hostname,
                         node="src" if node is src else "dst",
                         values=[(n, have) for n, _, have in reversed(low)])
            node.run(["sh", "-c", NDD_SET, "sh"] + [str(w) for name, want, _ in low
                                                    for w in (name, want)])
            r.line("  - tuned %s on %s" % (", ".join(n for n, _, _ in low), node.hostname))

    def undo_tunables(self, node, values):
        self.node(node).run(["sh", "-c", NDD_SET, "sh"] + [str(w) for n, v in values
                                                           for w in (n, v)])

    def check_origin(self):
        """Keep the instance a clone of its image on the destination when possible."""
        r, dst = self.r, self.dst
        r.line("* Checking for origin dataset for the instance...")
        self.incremental_from = {}
        for ds in self.datasets:
            image = zfs.image_origin(ds)
            if not image:
                if ds is self.datasets[0] or ds.origin:
                    r.line("    + origin dataset null or non-standard (%s)" % (ds.origin or "-"))
                    r.line("      > instance DS origin does not reference IMG_UUID@final,"
                           " relation to")
                    r.line("        origin DS will be lost in the course of migrating the"
                           " instance.")
                continue
            r.line("    + origin dataset is %s" % ds.origin)
            guid = ["zfs", "get", "-Hp", "-o", "value", "guid", ds.origin]
            (_, guid_src, _), (st, out, _) = self.both(lambda n: n.call(guid, readonly=True))
            guid_src = guid_src.strip()
            if st != 0:
                r.line("      > origin DS doesn't exist on %s, will need to try import"
                       % dst.hostname)
                r.line("        of origin DS (%s)" % ds.origin[len("zones/"):])
                r.line("* Attempting import of image (%s) to %s" % (image, dst.hostname))
                st, out, err = dst.call(["imgadm", "import", "-q", image])
                if st != 0:
                    r.line("  - Image import failed: %s" % (err.strip().splitlines() or ["?"])[-1])
                    r.line("      > relation to origin DS will be lost in the course of"
                           " migrating the instance.")
                    continue
                r.line("  - Image imported successfully!")
                st, out, _ = dst.call(["zfs", "get", "-Hp", "-o", "value", "guid", ds.origin],
                                      readonly=True)
            if st == 0 and out.strip() == guid_src:
                self.incremental_from[ds.name] = ds.origin
            else:
                r.line("      > %s on %s is not the same snapshot; relation to origin DS"
                       " will be lost" % (ds.origin, dst.hostname))

    def reserve_ips(self):
        r = self.r
        if not self.ips:
            return
        r.line("* Temporarily reserving instance IP addrs so they don't get reprovisioned"
               " elsewhere")
        r.line('  in the short amount of time that the instance may show up as "destroyed"...')
        for ip, net in self.ips:
            r.step("    + reserving %s on network_uuid %s..." % (ip, net))
            before = self.api.ip(net, ip).get("reserved", False)
            if not before:
                # journaled first: unreserving an IP this run never reserved is harmless
                self.changed("reservation", "reservation of %s" % ip, ip=ip, network=net)
                self.api.set_ip_reserved(net, ip, True)
            r.done("Done")

    def unreserve_ips(self):
        r = self.r
        reserved = [(i, rec) for i, rec in self.journal.pending() if rec["undo"] == "reservation"]
        if not reserved:
            return
        r.line("* Unreserving instance IP addrs since we're no longer at risk of")
        r.line('  the instance showing up as "destroyed".')
        for i, rec in reserved:
            ip, net = rec["args"]["ip"], rec["args"]["network"]
            r.step("    - unreserving %s on network_uuid %s..." % (ip, net))
            self.undo_reservation(ip, net)
            self.journal.mark_undone(i)
            r.done("Done")

    def undo_reservation(self, ip, network):
        self.api.set_ip_reserved(network, ip, False)

    def raise_bhyve_quota(self):
        """bhyve's quota is exactly its disks: snapshots need room above it."""
        self.bhyve_quota = None
        if self.vm.get("brand") != "bhyve":
            return
        top = self.datasets[0]
        self.bhyve_quota = str(top.quota) if top.quota else "none"
        self.r.step("* Raising the quota of %s for the migration snapshots..." % top.name)
        # journaled first: a run killed while zfs set is in flight must not
        # leave the next run to read quota=none as the instance's own
        self.changed("quota", "quota of %s on %s" % (top.name, self.src.hostname),
                     dataset=top.name, quota=self.bhyve_quota)
        self.src.run(["zfs", "set", "quota=none", top.name])
        self.r.done()

    def restore_bhyve_quota(self):
        for i, rec in self.journal.pending():
            if rec["undo"] == "quota":
                a = rec["args"]
                self.r.step("* Restoring the quota of %s on both CNs..." % a["dataset"])
                self.dst.run(["zfs", "set", "quota=" + a["quota"], a["dataset"]])
                self.undo_quota(**a)
                self.journal.mark_undone(i)
                self.r.done()

    def undo_quota(self, dataset, quota):
        self.src.run(["zfs", "set", "quota=" + quota, dataset])

    def snapshot_round(self, n=None, final=False):
        """Snapshot every dataset at once (one zfs call); returns the snapshot name.

        self.delta is what the snapshots hold that the previous ones do not
        (zfs's `written`): what this round sends.
        """
        name = self.snap_base if n is None else "%s-%d" % (self.snap_base, n)
        snaps = ["%s@%s" % (d.name, name) for d in self.datasets]
        # the final increment's size is not worth a command while the instance is down
        # and the snapshots there are now, oldest first: what the round sends
        out = self.src.script([["zfs", "snapshot"] + snaps] + ([] if final else [
            ["zfs", "get", "-Hp", "-o", "value", "written"] + snaps]) +
            [zfs.snapshot_chain_command(d.name for d in self.datasets)])
        self.chains = zfs.snapshot_chains(out)
        if n in (None, 0):
            self.changed("snapshots", "migration snapshots on %s" % self.src.hostname,
                         data=True, node="src")
        self.delta = None if final else sum(int(v) for v in out.split() if v.isdigit())
        self.journal.write({"t": "round", "n": 0 if n is None else n, "bytes": self.delta,
                            "at": now().isoformat()})
        for ds in self.datasets:
            self.r.step("    + Creating %s snapshot%s..." % (ds.name, "" if n is None else " %d" % n))
            self.r.done()
        return name

    def undo_snapshots(self, node, keep=None):
        """Destroy every migration snapshot of the instance's datasets on node
        but those named keep (the final one, which `sdc-migrate rollback`
        sends back from, stays until cleanup-source)."""
        self.node(node).run(["sh", "-c", zfs.DESTROY_MIGRATION_SNAPSHOTS, "sh", keep or ""]
                            + [d.name for d in self.datasets])

    def send_round(self, snap):
        """Send every dataset's snapshot to the destination, CN to CN."""
        r, first = self.r, self.sent is None
        if first and self.on_dest:
            self._resume_cut_receives()
        common = self._common_snapshots() if first and self.on_dest else {}
        if first:
            # journaled before the stream starts: a receive cut or killed half
            # way leaves datasets there too (destroying absent ones is harmless)
            self.changed("received", "received datasets on %s" % self.dst.hostname, data=True,
                         datasets=[d.name for d in self.datasets])
        # On a terminal, zfs send -vP's lines drive one progress line (never logged).
        meter = progress.Meter(show=r.meter) if r.wants_progress() else None
        for ds in self.datasets:
            r.step("    + Tranferring %s@%s ..." % (ds.name, snap))
            if first:
                base = common.get(ds.name) or self.incremental_from.get(ds.name)
            else:
                base = "%s@%s" % (ds.name, self.sent)
            for from_snap, to in zfs.legs(ds.name, self.chains.get(ds.name, ()), base, snap):
                self._send(ds, to, from_snap, first, meter)
            r.done("done")
        self._verify_received(snap)
        self.sent = snap
        self.increments += 1

    def _send(self, ds, snap, from_snap, props, meter):
        """One stream; a cut one goes on from where it was cut (zfs recv -s
        kept it: send -t its token), up to RESUMES times."""
        token = None
        for attempt in range(RESUMES + 1):
            try:
                return self._stream(ds, snap, from_snap, props, meter, token)
            except RemoteError as e:
                cut = e
            if self.opts.dry_run or attempt == RESUMES:
                raise cut
            status, out, _ = self.dst.call(zfs.resume_tokens_command([ds.name]), readonly=True)
            token = zfs.resume_tokens(out).get(ds.name) if status == 0 else None
            if token is None:
                raise cut
            said = [l for l in cut.stderr.splitlines() if l.strip()]
            self.r.line("    + The stream of %s@%s was cut (exit status %s%s)"
                        % (ds.name, snap, cut.status, ": " + said[-1] if said else ""))
            self.r.step("    + Resuming it where it was cut (zfs send -t) ...")
            meter = None

    def _stream(self, ds, snap, from_snap, props, meter, token=None):
        argv = zfs.send_pipeline(ds.name, snap, from_snap, self.src.ip, self.dst.ip,
                                 self.key, self.known_hosts, props=props,
                                 progress=meter is not None, pidfile=self.recv_pidfile(),
                                 exclude=self.recv_exclude,
                                 bwlimit=self.opts.bwlimit, token=token)
        self.sending = True
        if meter is None:
            self.src.run(argv)
        else:
            status, _, err = self.src.stream(argv, meter.feed)
            if status != 0:
                raise RemoteError(self.src.name, argv, status, err)
            meter.complete()
        self.sending = False

    def _resume_cut_receives(self):
        """An interrupted run's receive that was cut kept its state (zfs recv
        -s): finish each such stream from its token, not from the start."""
        names = [d.name for d in self.datasets if d.name in self.on_dest]
        tokens = zfs.resume_tokens(self.dst.run(zfs.resume_tokens_command(names),
                                                readonly=True))
        for ds in self.datasets:
            if ds.name not in tokens:
                continue
            # its snapshot may be gone (the interrupted run's undo destroyed
            # it): then zfs send -t cannot resume, and the partial state is
            # thrown away (zfs recv -A) for a send from the last common one
            status, _, err = self.src.call(["zfs", "send", "-nP", "-t", tokens[ds.name]],
                                           readonly=True)
            if status != 0:
                said = [l for l in err.splitlines() if l.strip()]
                self.r.line("    + The cut transfer of %s cannot be resumed (%s); discarding it"
                            " (zfs recv -A)" % (ds.name, said[-1] if said else status))
                self.dst.run(["zfs", "recv", "-A", ds.name])
                st, _, _ = self.dst.call(["zfs", "list", "-H", "-o", "name", ds.name],
                                         readonly=True)
                if st != 0:
                    self.on_dest.discard(ds.name)
                continue
            self.r.step("    + Resuming the cut transfer of %s (zfs send -t) ..." % ds.name)
            self._stream(ds, None, None, False, None, tokens[ds.name])
            self.r.done("done")

    def recv_pidfile(self):
        return "%s/sdc-migrate-recv-%s.pid" % (STATE_DIR, self.opts.uuid)

    def wait_for_receive(self):
        """A receive whose client died (a dropped connection, a killed or
        interrupted run) runs on: wait for it to end before undoing or
        resending, or it lands after and behind our back."""
        self.r.line("* Making sure no transfer to %s is still running..." % self.dst.hostname)
        self.dst.call(zfs.receive_waiter(self.recv_pidfile(), RECV_WAIT))

    def _common_snapshots(self):
        """For each dataset already on the destination (an interrupted run sent it),
        the newest snapshot both sides have, matched by GUID: only what is newer
        is sent again."""
        names = [d.name for d in self.datasets if d.name in self.on_dest]
        cmd = ["zfs", "list", "-H", "-p", "-o", "name,guid", "-t", "snapshot", "-d", "1"] + names
        have = {}
        for node in (self.src, self.dst):
            st, out, _ = node.call(cmd, readonly=True)
            have[node] = [tuple(l.split("\t")) for l in out.splitlines() if "\t" in l]
        dst_guids = {guid for _, guid in have[self.dst]}
        common = {}
        for name, guid in have[self.src]:       # oldest first: the last match wins
            if guid in dst_guids:
                common[name.split("@")[0]] = name
        for name in names:
            if name not in common:
                raise MigrateError("%s on %s shares no snapshot with %s: remove it there to"
                                   " send it whole" % (name, self.dst.hostname, self.src.hostname))
        return common

    def _verify_received(self, snap):
        """zfs exit codes have lied before: compare the snapshots' GUIDs."""
        names = ["%s@%s" % (d.name, snap) for d in self.datasets]
        cmd = ["zfs", "get", "-Hp", "-o", "name,value", "guid"] + names
        # --dry-run: the snapshots do not exist; list the check, do not run it
        ro = not self.opts.dry_run
        a, b = self.both(lambda n: n.run(cmd, readonly=ro))
        if sorted(a.split("\n")) != sorted(b.split("\n")):
            raise MigrateError("snapshot %s on %s differs from the source's" % (snap, self.dst.hostname))

    def undo_received(self, datasets):
        self.dst.run(["sh", "-c", DESTROY_ALL, "sh"] + list(reversed(datasets)))

    def incremental_rounds(self):
        o, r = self.opts, self.r
        _, st = self.paths()
        n = 0
        deltas = []
        while True:
            r.line("* Creating dataset snapshots on %s" % self.src.hostname)
            snap = self.snapshot_round(n)
            r.line("* Transferring incremental dataset snapshot %d to %s" % (n, self.dst.hostname))
            self.send_round(snap)
            deltas.append(self.delta)
            if o.auto and os.path.exists(st):
                if o.max_delta is not None:
                    done = converged(deltas, o.max_delta)
                    if done:
                        r.line("    + Round %d sent %s, %s: stopping the instance now."
                               % (n, human_size(self.delta), done))
                else:
                    done = n >= 1
                if done:
                    os.unlink(st)
            if not os.path.exists(st):
                break
            r.line("    + Sleeping for %d seconds before next snapshot." % o.interval)
            deadline = time.time() + o.interval
            while time.time() < deadline and os.path.exists(st):
                self.checkpoint()
                time.sleep(min(1.0, max(0.0, deadline - time.time())))
            n += 1
            if not os.path.exists(st):
                # the operator removed it while we slept: one last live round
                # is not needed, the final increment follows the stop.
                break
        self.round = n + 1

    def current_state(self):
        """The run state and autoboot the instance has now, on the source: a
        customer may have started or stopped it since the gather (-i rounds)."""
        vm = self.vm
        cur = json.loads(self.src.run(["vmadm", "get", vm["uuid"]], readonly=True))
        running = cur.get("state") == "running"
        if running != self.was_running or cur.get("autoboot") != vm.get("autoboot"):
            self.was_running = running
            vm["autoboot"] = cur.get("autoboot")
            vm["state"] = "running" if running else "stopped"
            self.journal.write({"t": "run-state", "was_running": running,
                                "autoboot": vm["autoboot"]})

    def stop_instance(self):
        r, vm = self.r, self.vm
        alias = vm.get("alias") or vm["uuid"]
        if not self.opts.dry_run:
            self.current_state()
        if not self.was_running:
            r.line("* Instance %s is already shutdown.  Proceeding." % alias)
            return
        r.step("* Instance %s is running; shutting it down, please wait .." % alias)
        self.stopped_at = time.time()
        i = self.will("stop", "stop of the instance on %s" % self.src.hostname, uuid=vm["uuid"],
                      at=self.stopped_at)
        # the configuration copy_config sends, read in the same round trip: the
        # instance is down from here on
        out = self.src.run(["sh", "-c", STOP_AND_EXPORT, "sh", vm["uuid"], EXPORT_MARK])
        self.journal.confirm(i)
        out, _, self.exported = out.partition(EXPORT_MARK + "\n")
        state = zone_state(out, vm["uuid"])
        r.done()
        r.line("  - New state is:  %s" % ("stopped" if state == "installed" else state))

    def undo_stop(self, uuid, at=None):
        self.src.run(["sh", "-c", START_AND_REPORT, "sh", uuid])

    def fix_source_xml(self):
        r, vm, src = self.r, self.vm, self.src
        uuid = vm["uuid"]
        r.line("* Source XML file modifications...")
        xml = src.run(["cat", "/etc/zones/%s.xml" % uuid], readonly=True)
        self.xml = xml
        fixes = [("create-timestamp", vm.get("create_timestamp"), "JPC-1212"),
                 ("dataset-uuid", vm.get("image_uuid") or self._image_of_disks(),
                  "image_uuid; AGENT-629")]
        for name, value, why in fixes:
            r.line("    + Checking instance XML file for %s (%s)..." % (name, why))
            if 'name="%s"' % name in xml:
                r.line("    = %s already exists" % name)
            elif value:
                src.run(["zonecfg", "-z", uuid, "add attr; set name=%s; set type=string; "
                         "set value=%s; end" % (name, value)])
                r.line("    + added %s" % name)
        if any('name="%s"' % n not in xml for n, v, _ in fixes if v):
            self.xml = src.run(["cat", "/etc/zones/%s.xml" % uuid], readonly=True)
        r.line("  - Source XML file modifications complete!")

    def check_index(self):
        r, uuid = self.r, self.vm["uuid"]
        r.step("* Getting Zone index configuration...")
        index = self.src.run(["cat", "/etc/zones/index"], readonly=True)
        r.done()
        r.line("    + checking if we need to correct it (JPC-1421)")
        line = [l for l in index.splitlines() if l.split(":")[0].strip() == uuid]
        if not line:
            raise MigrateError("%s has no line in /etc/zones/index on %s" % (uuid, self.src.hostname))
        fields = line[0].split(":")
        # JPC-1421: an index line without the trailing uuid field breaks attach.
        if len(fields) < 4 or fields[3] != uuid:
            r.line("    + index line is missing its uuid field; the destination gets a"
                   " corrected one")
        r.line("  - Zone index configuration check complete!")

    def final_transfer(self):
        r, o = self.r, self.opts
        if o.incremental:
            r.line("* Creating final incrmental dataset snapshot on %s" % self.src.hostname)
            snap = self.snapshot_round(self.round, final=True)
        else:
            r.line("* Creating dataset snapshots on %s" % self.src.hostname)
            snap = self.snapshot_round()
            r.line("* Transferring dataset snapshots to %s" % self.dst.hostname)
        self.send_round(snap)
        self.mount_received()
        self.final_snap = snap
        # both sides keep it after the migration: a rollback's common snapshot
        self.journal.write({"t": "final", "snapshot": snap})

    def mount_received(self):
        """zfs recv -u mounts no new filesystem: mount them, parents first,
        before the cores dataset mounts below zones/UUID and the zone uses them."""
        names = [d.name for d in self.datasets if d.type == "filesystem"]
        self.dst.run(["sh", "-c", zfs.MOUNT_DATASETS, "sh"] + names)

    def create_cores(self):
        r, uuid = self.r, self.vm["uuid"]
        r.line("* Creating cores dataset on %s" % self.dst.hostname)
        ds = "zones/cores/" + uuid
        argv = ["zfs", "create", "-o", "mountpoint=/zones/%s/cores" % uuid]
        if self.cores_quota and self.cores_quota not in ("0", "none"):
            argv += ["-o", "quota=" + self.cores_quota]
        if not self.dst_has_cores:      # as the gather found it: one round trip
            i = self.will("cores", "cores dataset on %s" % self.dst.hostname, dataset=ds)
            self.dst.run(argv + [ds])
            self.journal.confirm(i)
        r.line("  - Created cores dataset:  %s" % ds)

    def undo_cores(self, dataset):
        self.dst.run(["zfs", "destroy", "-r", dataset])

    def copy_config(self):
        """The source's configuration as it is after the stop, through zonecfg on
        both sides (libzonecfg's index lock, not echo >> index): hidden from
        inventory and never booting by itself from its first file on."""
        r, uuid = self.r, self.vm["uuid"]
        r.step("* Transferring Zone XML to the destination...")
        exported = getattr(self, "exported", None) or \
            self.src.run(["zonecfg", "-z", uuid, "export"], readonly=True)
        i = self.will("config", "zone configuration on %s" % self.dst.hostname, uuid=uuid)
        # zonecfg -f - reads the commands from stdin (illumos zonecfg.c cmd_file)
        self.dst.run(["zonecfg", "-z", uuid, "-f", "-"], input=hidden_config(exported, uuid))
        self.journal.confirm(i)
        r.done()

    def dest_copy(self, uuid):
        """(zone state, hidden) of the destination's copy; (None, None) if it has none."""
        out = self.dst.run(["sh", "-c", 'zoneadm -z "$1" list -p 2>/dev/null; echo @@; '
                            'cat "/etc/zones/$1.xml" 2>/dev/null; true', "sh", uuid],
                           readonly=True)
        listing, _, xml = out.partition("@@\n")
        if not xml.strip():
            return None, None
        return zone_state(listing, uuid), hidden_xml(xml)

    def _hidden_dest_copy(self, uuid):
        """The destination copy's state, refusing to touch a copy inventory sees:
        its vm-agent and net-agent would report it gone (destroyed, NICs deleted)."""
        state, hidden = self.dest_copy(uuid)
        if state is not None and not hidden:
            raise MigrateError("the copy of %s on %s is not hidden (do-not-inventory):"
                               " not removing it" % (uuid, self.dst.hostname))
        return state

    def undo_config(self, uuid):
        if self._hidden_dest_copy(uuid) is not None:
            self.dst.run(["zonecfg", "-z", uuid, "delete", "-F"])

    def disable_source(self):
        """The source copy never boots by itself and leaves inventory: the first
        half of Triton's switch (hide the source, move server_uuid, unhide the
        destination), one vmadm update (kvm/bhyve keep zone autoboot=false,
        their own is vm-autoboot)."""
        r, uuid = self.r, self.vm["uuid"]
        r.step("* Disabling instance on %s, setting attr 'do-not-inventory'..."
               % self.src.hostname)
        autoboot = "true" if self.vm.get("autoboot", True) else "false"
        # journaled first: setting them back is harmless if this never ran
        self.changed("autoboot", "autoboot off on %s" % self.src.hostname, uuid=uuid,
                     value=autoboot)
        i = self.will("hidden", "do-not-inventory on %s" % self.src.hostname, uuid=uuid)
        self.src.run(["vmadm", "update", uuid, "autoboot=false", self.HIDE])
        self.journal.confirm(i)
        r.done()

    def undo_autoboot(self, uuid, value):
        self.src.run(["vmadm", "update", uuid, "autoboot=%s" % value])

    def attach(self):
        r, uuid = self.r, self.vm["uuid"]
        r.step("* Importing & Attaching Zone on %s..." % self.dst.hostname)
        i = self.will("attach", "attach on %s" % self.dst.hostname, uuid=uuid)
        # no vmadmd restart to have it detected: it is hidden until the switch
        self.dst.run(["zoneadm", "-z", uuid, "attach"])
        self.journal.confirm(i)
        r.done()

    def undo_attach(self, uuid):
        if self._hidden_dest_copy(uuid) == "installed":
            self.dst.run(["zoneadm", "-z", uuid, "detach"])

    HIDE = "do_not_inventory=true"

    def hide_source(self):
        """The source copy out of inventory and never booting by itself (idempotent)."""
        uuid = self.vm["uuid"]
        self.src.run(["vmadm", "update", uuid, "autoboot=false", self.HIDE])

    def switch_vmapi(self):
        """The rest of Triton's order (sdc-vmapi lib/workflows/vm-migration,
        cn-agent machine-migrate switch): hide the source (disable_source), move
        server_uuid, unhide the destination. Here VMAPI moves server_uuid on the
        destination's report."""
        r, uuid, dst = self.r, self.vm["uuid"], self.dst
        # the source is hidden (disable_source): only now the destination's copy
        # shows, VMAPI must never see two live copies
        r.line("    + Clearing attr 'do-not-inventory' for %s on %s." % (uuid, dst.hostname))
        r.line("    + Restarting vm-agent on destination, to hasten update of VM's presence.")
        i = self.will("shown", "do-not-inventory cleared on %s" % dst.hostname, uuid=uuid)
        dst.script([["vmadm", "update", uuid, "do_not_inventory=false"],
                    ["svcadm", "restart", "vm-agent"]])
        self.journal.confirm(i)
        r.step("* Checking VMAPI for 'do-not-inventory' update (VMAPI will show %s's\n"
               "  server_uuid if updated); may take up to a minute or so ..." % dst.hostname)
        deadline = time.time() + VMAPI_WAIT
        polls = 0
        while True:
            vm = self.api.vm(uuid)
            if vm.get("server_uuid") == dst.uuid and vm.get("state") != "destroyed" or \
                    self.opts.dry_run:
                break
            if time.time() > deadline:
                raise MigrateError("VMAPI still shows %s on server %s after %d s"
                                   % (uuid, vm.get("server_uuid"), VMAPI_WAIT))
            polls += 1
            if polls % 5 == 0:          # a dot a second, as migrator.sh
                self.r.dot()
            # the instance is down while we wait: ask often
            time.sleep(0.2)
        self.mark_switched()
        r.done("Success!")

    def undo_hidden(self, uuid):
        self.src.script([["vmadm", "update", uuid, "do_not_inventory=false"],
                         ["svcadm", "restart", "vm-agent"]])

    def undo_shown(self, uuid):
        # hidden again before the source shows again: never two visible copies
        if self.dest_copy(uuid)[0] is not None:
            self.dst.run(["vmadm", "update", uuid, self.HIDE])

    def finish_destination(self):
        """Autoboot as it was and, if it ran before, boot: one round trip."""
        r, vm, dst = self.r, self.vm, self.dst
        uuid = vm["uuid"]
        autoboot = "true" if vm.get("autoboot", True) else "false"
        alias = vm.get("alias") or uuid
        r.step("* Enabling Autostart on the %s..." % dst.hostname)
        if self.was_running:
            # vmadm start turns autoboot on: the VM's own setting after it
            out = dst.script([["vmadm", "start", uuid],
                              ["vmadm", "update", uuid, "autoboot=" + autoboot],
                              ["zoneadm", "-z", uuid, "list", "-p"],
                              ["svcadm", "restart", "vm-agent"]])
            self.booted_at = time.time()
            r.done()
            r.step("* VM %s is ready for startup, please wait for boot.." % alias)
            r.done("Done. (State is: %s)" % zone_state(out, uuid))
        else:
            dst.script([["vmadm", "update", uuid, "autoboot=" + autoboot],
                        ["svcadm", "restart", "vm-agent"]])
            r.done()
            r.line(' - VM %s was in state %s when we started' % (alias, vm.get("zone_state") or
                                                                 vm.get("state")))
            r.line('   thus not running.  Leaving in "installed" state.')

    def protect_destination(self):
        """indestructible_zoneroot/_delegated: @indestructible came with the
        data (send -I), its hold does not travel (holds are not in a stream):
        hold it there as VM.js did here. Not before the switch, or undoing
        the received datasets would have to lift it first."""
        if not self.indestructible:
            return
        r = self.r
        r.step("* Protecting %s on %s (indestructible)..." % (
            ", ".join(self.indestructible), self.dst.hostname))
        for snap in self.indestructible:
            st, _, err = self.dst.call(["zfs", "hold", zfs.HOLD_TAG, snap])
            # a resumed run may find it held already
            if st != 0 and "tag already exists" not in err:
                raise RemoteError(self.dst.name, ["zfs", "hold", zfs.HOLD_TAG, snap], st, err)
        r.done()

    def cleanup_snapshots(self):
        r = self.r
        r.step("* Deleting migration snapshots on %s..." % self.dst.hostname)
        # the source's (journaled) and the destination's, side by side; the final
        # one stays on both for `sdc-migrate rollback`, until cleanup-source
        keep = self.journal.final_snapshot
        self.both(lambda n: self.undo_snapshots("src" if n is self.src else "dst", keep))
        for i, rec in self.journal.pending():
            if rec["undo"] in ("snapshots", "received"):
                self.journal.mark_undone(i)
        r.done()

    def downtime(self):
        """Seconds from the stop on the source to the boot on the destination; None
        if the instance was not running."""
        if not self.stopped_at:
            return None
        return round((self.booted_at or time.time()) - self.stopped_at, 2)

    def closing_block(self):
        r, vm, o = self.r, self.vm, self.opts
        uuid, alias = vm["uuid"], vm.get("alias") or "-"
        dur = (self.ended - self.started).total_seconds()
        down = self.downtime()
        downtime = "0 seconds (it was not running)" if down is None else human_duration(down)
        log, _ = self.paths()
        r.line()
        r.line("                    ===   Done! ===")
        r.line()
        r.line("%s Instance:  %s (%s)" % (vm_type(vm), uuid, alias))
        r.line()
        r.line("          is now installed on")
        r.line()
        r.line("      Dest CN:  %s (%s)" % (self.dst.hostname, self.dst.uuid))
        r.line()
        pairs = [("Migration started", human_time(self.started)),
                 ("Migration ended", human_time(self.ended)),
                 ("Duration of migration", human_duration(dur)),
                 ("Instance downtime", downtime),
                 ("Migration type", "Incremental" if o.incremental else "Non-Incremental"),
                 ("# dataset increments", str(self.increments)),
                 ("migration log file", "%s HN:%s" % (self.datacenter, log))]
        for label, value in pairs:
            r.line("%s:  %s" % (label.rjust(21), value))
        r.line()
        ip = self.src.ip
        r.line("Don't forget to at least comment out %s" % uuid)
        r.line("  on %s in /etc/zones/index, if not outright remove it." % self.src.hostname)
        r.line("To remove it on %s:" % self.src.hostname)
        # an installed zone must be detached before zonecfg deletes it (illumos
        # zonecfg_destroy), and a held @indestructible released before zfs destroys it
        r.line('   * /usr/bin/ssh %s "/usr/sbin/zoneadm -z %s detach"' % (ip, uuid))
        r.line('   * /usr/bin/ssh %s "/usr/sbin/zonecfg -z %s delete -F"' % (ip, uuid))
        for snap in getattr(self, "indestructible", None) or []:
            r.line('   * /usr/bin/ssh %s "/usr/sbin/zfs release %s %s"'
                   % (ip, zfs.HOLD_TAG, snap))
        r.line('   * /usr/bin/ssh %s "/usr/sbin/zfs destroy zones/cores/%s"' % (ip, uuid))
        for d in self.datasets:
            if d.name.count("/") == 1:
                r.line('   * /usr/bin/ssh %s "/usr/sbin/zfs destroy -r %s"' % (ip, d.name))
        r.line("   (or all of it: sdc-migrate cleanup-source %s)" % uuid)
        if self.KIND == "migration":
            r.line("   (or move it back, with what it writes until then: sdc-migrate rollback %s)"
                   % uuid)
        r.line()
        r.line(" Please validate in AdminUI:  https://%s/vms/%s"
               % (getattr(self, "adminui", None) or self._adminui(), uuid))
        r.line("        or validate via CLI:  /opt/smartdc/bin/sdc-vmapi /vms/%s" % uuid)
        r.line()

    def _adminui(self):
        """Where AdminUI answers: its own core zone's (tags.smartdc_role=adminui)
        admin NIC, as sdc-headnode deploys adminui0; not the head node's IP."""
        try:
            zones = self.api.vms(state="active", **{"tag.smartdc_role": "adminui"})
        except MigrateError:
            zones = []
        for vm in zones:
            for nic in vm.get("nics") or []:
                if nic.get("nic_tag") == "admin" and nic.get("ip"):
                    return nic["ip"]
        return "adminui"


def run_tag(uuid):
    """What names a run's temporary key, known_hosts and authorized_keys
    backup on the CNs: its process and instance, as evacuate runs several
    migrations from one source in one process."""
    return "%d-%s" % (os.getpid(), uuid[:8])


class HungUp(KeyboardInterrupt):
    """The operator's session ended (SIGHUP) or sdc-migrate was told to stop
    (SIGTERM): before the switch, handled as ^C is (rolled back)."""


def on_hangup(m):
    """SIGHUP and SIGTERM: before the switch point, the rollback of ^C; past it,
    the migration goes on to its end (the journal and the log record it)."""
    def handler(signum, frame):
        name = signal.Signals(signum).name
        # one is enough: the rollback or the rest of the migration runs to its end
        for sig in (signal.SIGHUP, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        if m.journal is not None and m.journal.switched:
            m.r.line("* %s past the switch point: finishing the migration" % name)
            return
        raise HungUp(name)
    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, handler)


def main(args):
    opts = Options(uuid=args["INST_UUID"], dest=args["DEST_CN_NAME"],
                   incremental=args["-i"], auto=args["-a"], allow_older=args["-D"],
                   yes=args["-y"], interval=int(args["--interval"] or 60),
                   max_delta=args.get("--max-delta"), dry_run=args.get("--dry-run"),
                   bwlimit=args.get("--bwlimit"), health_timeout=args["--health-timeout"],
                   no_rollback=args["--no-rollback"])
    m = Migration(opts, JsonReport() if args.get("-j") else Report())
    on_hangup(m)
    try:
        return m.run()
    finally:
        m.release()
        m.r.close()
