"""sdc-migrate UUID DEST: move an instance to another compute node.

Gather (read-only, refusals here), show, confirm, act. The act is a literal
list of steps (FULL, INCREMENTAL below; the steps are in sdc_migrate/steps)
that procedure.Procedure runs, journals and, on a failure before the switch
point (VMAPI showing the instance on the destination), undoes in reverse.
"""
import concurrent.futures
import os
import signal
import threading
import time

from dateutil.parser import isoparse as parse_time

from .. import cnlink, paths, placement, space, zfs
from ..errors import MigrateError, NeedsOperator, NotFound, Refused, RemoteError, RolledBack
from ..node import Node, Runner, command_line
from ..procedure import InstanceLock, Journal, Procedure, Step
from ..report import (JsonReport, Report, capped_rate, estimate_text, human_duration,
                      human_size, human_time, now)
from ..steps import addresses, keys, preparation, transfer, waitlist, zone
from ..triton import UUID_RE, Triton, admin_ip

HEALTH_TIMEOUT = 120    # --health-timeout's default: seconds to come up on the destination
VMAPI_WAIT = zone.VMAPI_WAIT


# The steps, each once; FULL and INCREMENTAL put them in order.
KEY = Step("key", keys.make_key, keys.remove_key,
           "temporary key on the CN that runs the streams (the source, or a destination"
           " that pulls)")
AUTHORIZED = Step("authorized", keys.authorize, keys.unauthorize,
                  "the key authorized on the other CN, from the first one's IP only")
TUNABLES = Step("tunables", preparation.tune_tcp, preparation.restore_tcp,
                "TCP buffers on both CNs", permanent=True)
ORIGIN = Step("origin", preparation.check_origin, None,
              "the image the instance is a clone of, imported on the destination")
RESERVATION = Step("reservation", addresses.reserve, addresses.unreserve_one,
                   "the instance's IPs reserved in NAPI")
QUOTA = Step("quota", preparation.raise_bhyve_quota, preparation.restore_quota,
             "a bhyve instance's quota raised for the snapshots")
SOURCE_XML = Step("source-xml", zone.fix_source_xml, None,
                  "create-timestamp and dataset-uuid in the source's zone XML")
INDEX = Step("index", zone.check_index, None, "the source's zone index line (JPC-1421)")
ROUNDS = Step("rounds", transfer.live_rounds, None,
              "live rounds: snapshot and send while it runs")
# Taken right before the stop (after -i's live rounds, during which the
# customer's jobs run), released after the boot: no call in the downtime.
HOLD = Step("hold", waitlist.hold, waitlist.release,
            "the instance held in CNAPI's waitlist on both CNs: VMAPI's jobs for it wait")
STOP = Step("stop", zone.stop, zone.start_again, "the instance stopped on the source",
            permanent=True)
SNAPSHOTS = Step("snapshots", transfer.final_snapshot, transfer.destroy_snapshots,
                 "the final snapshot on the source", keeps_data=True)
RECEIVED = Step("received", transfer.final_send, transfer.destroy_received,
                "the datasets sent to the destination", permanent=True, keeps_data=True)
MOUNT = Step("mount", transfer.mount, None, "the received filesystems mounted")
CORES = Step("cores", zone.create_cores, zone.destroy_cores,
             "the cores dataset on the destination", permanent=True)
CONFIG = Step("config", zone.copy_config, zone.delete_config,
              "the zone configuration on the destination, hidden", permanent=True)
ATTACH = Step("attach", zone.attach, zone.detach, "the zone attached on the destination",
              permanent=True)
HIDDEN = Step("hidden", zone.hide_source, zone.show_source,
              "the source copy checked installed and stopped, then hidden, autoboot off",
              permanent=True)
SWITCH = Step("shown", zone.switch, zone.hide_destination,
              "the switch: the destination copy shown, VMAPI moves the instance",
              permanent=True, switch=True)
# After the switch: forward only (a rerun after a kill runs them all again).
AFTER_SWITCH = [
    Step("held", waitlist.hold_again, None, "still held on the destination (a rerun looks)"),
    Step("boot", zone.boot, None, "autoboot as it was, the boot if it ran"),
    Step("detach", zone.detach_source, None, "the old copy detached: nothing boots it"),
    Step("release", waitlist.let_go, None, "the waitlist tickets released"),
    Step("health", zone.health, None, "the instance up on the destination"),
    Step("protect", zone.protect, None, "an indestructible dataset's hold"),
    Step("unreserve", addresses.unreserve, None, "the IPs unreserved"),
    Step("cleanup", transfer.cleanup_snapshots, None,
         "the migration snapshots, but the last, deleted"),
    Step("restore-quota", preparation.restore_bhyve_quota, None, "a bhyve quota as it was"),
    Step("closing", lambda m: m.closing(), None, "the closing summary"),
    Step("clear-keys", keys.clear, None, "the temporary key and its entry removed"),
]

# Everything that needs no stop comes before it. (The cores dataset waits for
# the data: mounted at /zones/UUID/cores, it would keep zones/UUID from mounting.)
FULL = [KEY, AUTHORIZED, TUNABLES, ORIGIN, RESERVATION, QUOTA, SOURCE_XML, INDEX,
        HOLD, STOP, SNAPSHOTS, RECEIVED, MOUNT, CORES, CONFIG, ATTACH, HIDDEN, SWITCH] + AFTER_SWITCH
INCREMENTAL = [KEY, AUTHORIZED, TUNABLES, ORIGIN, RESERVATION, QUOTA, SOURCE_XML, INDEX,
               ROUNDS, HOLD, STOP, SNAPSHOTS, RECEIVED, MOUNT, CORES, CONFIG, ATTACH, HIDDEN,
               SWITCH] + AFTER_SWITCH


class Options:
    def __init__(self, uuid=None, dest=None, incremental=False, auto=False,
                 allow_older=False, yes=False, interval=60, max_delta=None, dry_run=False,
                 bwlimit=None, health_timeout=HEALTH_TIMEOUT, no_rollback=False,
                 rollback_snapshot=True):
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
        # the last snapshot stays on both CNs for `sdc-migrate rollback`
        self.rollback_snapshot = rollback_snapshot


# The scripts the CNs run: sh -c SCRIPT sh ARG... Values (UUIDs, names,
# journal data) are arguments, never script text: a test scans the package.
# Each begins with what the CN has (cnlink.FACTS: its ssh, host keys,
# resumable receives, net-agent).
# GATHER_SOURCE SEPARATOR UUID: the instance's datasets, then the pool's room
# (the migration's snapshots take some of it) and its cores quota, then the
# pool's encryption and, if encrypted, its datasets' properties
# (zfs.SOURCE_ENCRYPTION)
GATHER_SOURCE = (cnlink.FACTS + command_line(zfs.list_command(snapshots=True)) +
                 ' && echo "$1" && zfs get -Hp -o value available zones && '
                 '{ zfs get -Hp -o value quota "zones/cores/$2" 2>/dev/null || true; } && '
                 'echo "$1" && ' + zfs.SOURCE_ENCRYPTION)
# GATHER_DEST: the pool's room, its encryption (a cipher, or off; off too
# where the platform's zfs has no such property), its datasets
GATHER_DEST = (cnlink.FACTS + "zfs get -Hp -o value available zones; "
               "zfs get -Hp -o value encryption zones 2>/dev/null || echo off; "
               + command_line(zfs.list_command()))


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
        self.proc = None         # the steps, run over that journal (procedure.Procedure)
        self.resuming = False    # an interrupted run's data is on the destination
        self.epoch = int(time.time())
        self.tag = None          # names its key and backups on the CNs (run_tag)
        self.cancel = threading.Event()     # interrupt(): roll back at the next step
        self.cancel_reason = None
        self.lock = None
        self.start_after = False  # boot it on the destination even if it is not running
        self.tickets = {}               # server uuid -> our waitlist ticket there (hold)
        self.hold_until = 0             # when they expire by themselves
        # what the gather finds (or a resumed run's journal says)
        self.vm = None                  # the instance, from VMAPI
        self.ips = []                   # (ip, network_uuid) of its NICs, to reserve
        self.src_server = self.dst_server = None    # the CNs, from CNAPI
        self.src = self.dst = None      # the CNs, as node.Node
        self.datasets = []              # the instance's datasets on the source (zfs.Dataset)
        self.indestructible = []        # its @indestructible snapshots
        self.total = 0                  # what is sent, in bytes
        self.cores_quota = None
        self.src_facts = self.dst_facts = None  # what each CN has (cnlink.Facts)
        self.link = None                # how the stream goes between them (cnlink.Link)
        self.recv_exclude = ()          # properties the destination's pool will not take
        self.src_encrypted = False      # the source's pool is: no -p streams
        self.src_props = {}             # then: dataset -> what the receive sets (-o)
        self.package = self.image = None    # its PAPI package and image: traits
        self.dst_has_cores = False
        self.on_dest = set()            # its datasets already on the destination
        self.adminui = None             # AdminUI's IP, for the closing block
        self.datacenter = None
        self.started = None             # when the migration began
        self.was_running = False        # boot it on the destination
        # what the steps learn and leave, read by the later ones and the summary
        self.key = self.known_hosts = self.pub = None     # keys
        self.incremental_from = {}      # dataset -> image snapshot both CNs have (origin)
        self.snap_base = None           # the migration snapshots' name
        self.chains = {}                # dataset -> its snapshots on the source, oldest first
        self.sent = None                # the last snapshot sent
        self.delta = None               # what the last round sent (bytes)
        self.round = 0                  # the final snapshot's round (-i)
        self.final_snap = None
        self.sending = False            # a stream is in flight
        self.exported = None            # zonecfg export, read at the stop
        self.increments = 0
        self.stopped_at = self.booted_at = self.ended = None
        self.boot_error = None          # a boot that failed, for the health check
        self.trouble = None             # why it is not up on the destination, or None

    def steps(self):
        """This migration's procedure, in order."""
        return INCREMENTAL if self.opts.incremental else FULL

    def vm_type(self):
        return vm_type(self.vm)

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
        self.release_nodes()        # a resumed run's, before it started over
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
        """The destination check evacuate shares (placement.Destination); the
        traits once the instance's package and image are read."""
        o = self.opts
        if dst["uuid"] == src["uuid"]:
            raise Refused("instance %s is already on %s" % (o.uuid, o.dest))
        placement.Destination(dst, pool_free).check(
            placement.need_of(vm, pool_bytes, self.package, self.image),
            src.get("current_platform") or "", o.allow_older)

    def _package_and_image(self):
        """The instance's package (PAPI, its billing_id) and image (IMGAPI), whose
        traits DAPI places by; {} for one the APIs no longer have."""
        vm = self.vm
        package = self.api.found("papi", "/packages/" + vm["billing_id"]) \
            if UUID_RE.match(vm.get("billing_id") or "") else None
        image_uuid = vm.get("image_uuid") or self.image_of_disks()
        image = self.api.found("imgapi", "/images/" + image_uuid) if image_uuid else None
        return package or {}, image or {}

    SEP = "--- sdc-migrate: cores quota ---"

    def _gather_datasets(self):
        uuid = self.opts.uuid
        # Both CNs at once, one round trip each (and their ssh connections
        # opened side by side). The destination's host key is read over the
        # head node's own trusted connection: the source will accept exactly it.
        src_script = ["sh", "-c", GATHER_SOURCE, "sh", self.SEP, uuid]
        dst_script = ["sh", "-c", GATHER_DEST]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            mine = pool.submit(self.src.run, src_script, readonly=True)
            theirs = pool.submit(self.dst.run, dst_script, readonly=True)
            adminui = pool.submit(self._adminui)     # for the closing block
            placed_by = pool.submit(self._package_and_image)     # traits
            self.src_facts, mine_out = cnlink.parse_facts(self.src.hostname, mine.result())
            self.dst_facts, theirs_out = cnlink.parse_facts(self.dst.hostname, theirs.result())
            listing, _, rest = mine_out.partition(self.SEP + "\n")
            room, _, encryption = rest.partition(self.SEP + "\n")
            out = theirs_out.split("\n")
            self.adminui = adminui.result()
            self.package, self.image = placed_by.result()
        src_avail, _, quota = room.partition("\n")
        # what the platforms allow: refused here, or the slower path (Link)
        cnlink.check_net_agents(self.src_facts, self.dst_facts)
        self.link = cnlink.Link(self.src_facts, self.dst_facts)
        self.link.check()
        self.datasets = zfs.instance_datasets(listing, uuid)
        self.indestructible = zfs.indestructible_snapshots(listing, self.datasets)
        if not self.datasets:
            raise NotFound("instance %s has no datasets on %s" % (uuid, self.src.hostname))
        self.total = zfs.sent_size(self.datasets)
        self.cores_quota = quota.strip() or None
        # an encrypted source pool sends no -p stream (refused without -w,
        # and -w would need its key on the destination): the properties
        # such a stream carries are set by the receive instead
        cipher, _, props = encryption.partition("\n")
        self.src_encrypted = zfs.encrypted(cipher)
        self.src_props = zfs.dataset_properties(props) if self.src_encrypted else {}
        self._check_source_room(int(src_avail))
        avail = int(out[0])
        # an encrypted pool takes our -p streams (and their send -t rests)
        # only without their encryption=off: the datasets inherit the pool's
        self.recv_exclude = ("encryption",) if out[1].strip() not in ("off", "-", "") else ()
        there = [d.name for d in zfs.instance_datasets("\n".join(out[2:]), uuid)]
        self.dst_has_cores = any(l.split("\t")[0] == "zones/cores/" + uuid for l in out[2:])
        self.on_dest = set(there)
        if there and not self.resuming:
            raise Refused("destination %s already has %s: a copy of this instance is there"
                          " (remove it, or migrate elsewhere)" % (self.opts.dest, ", ".join(there)))
        self._check_destination(self.vm, self.src_server, self.dst_server,
                                self.space_needed(), avail)

    def space_needed(self):
        """What the destination's pool gives up (space.py: each dataset once,
        a received volume's refreservation with its data)."""
        return space.needed_on_destination(self.datasets)

    def _check_source_room(self, avail):
        """The migration's snapshots take room on the source too: a volume with
        a refreservation is charged its data again (space.snapshot_charge).
        Refused here, not after the stop, where the snapshot would fail."""
        need = space.snapshot_charge(self.datasets)
        if need > avail:
            raise Refused("source %s has %s free in zones; the migration's snapshots of %s"
                          " need %s there (its disks' refreservations are charged again)"
                          % (self.src.hostname, human_size(avail), self.opts.uuid,
                             human_size(need)))

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
            ("base image", vm.get("image_uuid") or self.image_of_disks() or "-"),
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
        self.show_link()

    def show_link(self):
        """What each CN has that the migration relies on, and the way the data
        takes between them (the slower one an older platform allows)."""
        r, link = self.r, self.link
        if link is None:
            return
        r.event("platforms", "CN software:  %s: %s\n              %s: %s" % (
            self.src.hostname, self.src_facts.describe(), self.dst.hostname,
            self.dst_facts.describe()), source=self.src_facts.as_dict(),
            destination=self.dst_facts.as_dict())
        slower = link.slower()
        r.event("transfer_path", "Transfer:     %s%s" % (
            link.describe(), "\n              older platform: " + "; ".join(slower)
            if slower else ""), slower=slower, **link.as_dict())
        r.line()

    def image_of_disks(self):
        for d in self.vm.get("disks") or []:
            if d.get("image_uuid"):
                return d["image_uuid"]
        return None

    # ---- act ----------------------------------------------------------------

    def both(self, fn):
        """(fn(source), fn(destination)), run side by side: independent
        commands on the two CNs cost one round trip, not two."""
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            return tuple(pool.map(fn, (self.src, self.dst)))

    def node(self, which):
        return self.src if which == "src" else self.dst

    def runs_on(self):
        """Which CN runs the streams ("src", or "dst" when it pulls) and holds the key."""
        return "dst" if self.link is not None and self.link.pull else "src"

    def other_end(self):
        """The CN the streams' ssh connects to, which authorizes the key."""
        return "src" if self.runs_on() == "dst" else "dst"

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
        self.begin(Journal(Journal.path_for(o.uuid, o.dest, self.epoch)))
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

    def begin(self, journal):
        """The journal's first record: what the migration is and the instance was."""
        o = self.opts
        self.journal = journal
        self.proc = Procedure(self.steps(), journal)
        journal.write({
            "t": "begin", "kind": self.KIND, "uuid": o.uuid, "dest": o.dest,
            "epoch": self.epoch, "tag": self.tag,
            "alias": self.vm.get("alias"),
            "started": self.started.isoformat(), "incremental": o.incremental,
            "was_running": self.was_running, "autoboot": self.vm.get("autoboot"),
            "datacenter": self.datacenter, "rollback_snapshot": o.rollback_snapshot,
            "src": {"hostname": self.src.hostname, "uuid": self.src.uuid, "ip": self.src.ip},
            "dst": {"hostname": self.dst.hostname, "uuid": self.dst.uuid, "ip": self.dst.ip}})

    def act(self):
        """Every step, in order, then the end of the journal."""
        self.snap_base = zfs.migration_snapshot(self.epoch)
        self.proc.run(self, self.proc.steps, listing=self.listing)
        self.finish()

    def rehearse(self):
        """--dry-run: the steps with the commands that change something listed, not run."""
        r = self.r
        r.line("* Dry run: the commands this migration would run, host by host, in order:")
        self.started = now()
        self.was_running = self.vm.get("state") == "running" or self.start_after
        self.journal = Journal(None)        # in memory: no file on the head node
        self.proc = Procedure(self.steps(), self.journal)
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
        ended = self.ended or now()
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
        if self.sending:
            transfer.wait_for_receive(self)
        r.line("* Rolling back:")
        # (sdc-migrate list: a run that stops here needs an operator)
        self.journal.write({"t": "undoing"})
        if not self.rollback():
            r.event("summary", **self.summary("needs-operator", NeedsOperator.exit_status))
            raise NeedsOperator(
                "%s of %s failed (%s) and could not be undone completely%s.\n  It needs an"
                " operator: fix that, then run `%s` again to finish the undo and start over"
                " (journal %s)." % (self.KIND, o.uuid, what, self.left_to_undo(),
                                    self.journal.command(), self.journal.path)) from None
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
        self.proc = Procedure(self.steps(), journal)
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
        # VMAPI shows the destination once its copy is unhidden (the switch
        # step, after the attach): that is the switch point.
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
                zone.hide_source_again(self)
                self.proc.mark_switched()
            self.proc.run(self, self.proc.after_switch())
            self.finish()
            return True
        # What it sent is of use while the source keeps the snapshots it was
        # sent from: a run killed or cut off did; one that failed and was
        # undoing may have destroyed them, and then its undo is finished. A
        # bhyve instance's quota cannot be set back while a migration snapshot
        # of its disks is there (preparation.raise_bhyve_quota): its undo
        # deletes them, and the data sent is sent again.
        bhyve = self.vm.get("brand") == "bhyve"
        keep = bool(self.proc.pending("snapshots")) and not bhyve
        r.line("  - the instance is still on %s: undoing what that run changed%s"
               % (self.src.hostname, ", keeping the data it sent" if keep else
                  ", and the data it sent: a bhyve instance's quota leaves no room for the"
                  " snapshots to send from" if bhyve else ""))
        if any(rec.get("undo") == "received" for rec in journal.records):
            transfer.wait_for_receive(self)
        if not self.rollback(keep_data=keep):
            raise NeedsOperator("could not undo the interrupted %s of %s%s: fix that and run"
                                " `%s` again (journal %s)" % (
                                    self.KIND, o.uuid, self.left_to_undo(), journal.command(),
                                    journal.path))
        journal.write({"t": "end", "outcome": "rolled-back" if journal.undoing and not keep
                       else "superseded"})
        self.resuming = True
        # a new epoch, even within the killed run's second: it names the new
        # journal and snapshots, which must not be the superseded run's
        self.epoch, self.tag = max(int(time.time()), b["epoch"] + 1), run_tag(o.uuid)
        r.close()
        r.line()
        return False

    def left_to_undo(self):
        """What the last undo left pending, and why, for the operator's message."""
        failed = self.proc.undo_failures
        return ": left to undo: %s" % "; ".join("%s (%s)" % f for f in failed) if failed else ""

    def interrupt(self, why="interrupted"):
        """Stop this migration from another thread (evacuate's ^C): before the
        switch it rolls back at its next step, as on ^C; past it, it finishes."""
        self.cancel_reason = why
        self.cancel.set()

    def rolls_back_now(self):
        """It did not come up on the destination and is rolled back at the end
        of this run (not_up), from the last snapshot."""
        return self.trouble is not None and not self.opts.no_rollback and \
            self.KIND == "migration"

    def no_rollback_snapshot(self):
        """Why the last snapshot does not stay on both CNs after this run, or
        None if it stays (for `sdc-migrate rollback`, until cleanup-source)."""
        if self.rolls_back_now():
            return None
        if self.vm.get("brand") == "bhyve":
            # the quota wins: raise_bhyve_quota
            return "a bhyve instance's quota leaves no room for it"
        if not self.journal.begin.get("rollback_snapshot", self.opts.rollback_snapshot):
            return "--no-rollback-snapshot"
        return None

    def quota_owed(self):
        """[(journal, index, args)] of quota changes another run left for this
        one to restore (a rollback's: rollback.py)."""
        return []

    def checkpoint(self):
        """Called by the procedure before every step."""
        if self.cancel.is_set() and not (self.journal is not None and self.journal.switched):
            raise HungUp(self.cancel_reason)

    def release(self):
        """End the ssh connections and drop the lock, however the run ended."""
        self.release_nodes()
        if self.lock is not None:
            self.lock.release()

    def release_nodes(self):
        for n in (self.src, self.dst):
            if n is not None:
                n.close()
        self.src = self.dst = None

    def rollback(self, keep_data=False):
        """Undo the journal's pending changes, newest first, and see VMAPI show the
        instance on the source again; True if all were undone."""
        clean = self.proc.undo_all(self, keep_data)
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

    # ---- after the switch -----------------------------------------------------

    def finish(self):
        """After the switch steps: the journal's end, and the instance rolled
        back if it did not come up on the destination."""
        if self.opts.dry_run:
            return
        self.journal.write({"t": "end", "outcome": "done", "downtime": self.downtime(),
                            **({"health": self.trouble} if self.trouble else {})})
        if self.trouble:
            return self.not_up(self.trouble)
        self.r.event("summary", **self.summary("done", 0))

    def closing(self):
        self.ended = now()
        if self.trouble is None:
            self.closing_block()

    def not_up(self, trouble):
        """It did not come up on the destination: the migration's ends were
        tied up (AFTER_SWITCH); roll it back onto the source copy with what
        it wrote (sdc-migrate rollback), or with --no-rollback leave it there."""
        o, r = self.opts, self.r
        alias = self.vm.get("alias") or o.uuid
        r.line("* %s did not come up on %s: %s" % (alias, self.dst.hostname, trouble))
        r.event("failure", error=trouble)
        if o.no_rollback or self.KIND != "migration":
            r.event("summary", **self.summary("needs-operator", NeedsOperator.exit_status))
            back = ("; `sdc-migrate rollback %s` moves it back to %s with what it wrote"
                    % (o.uuid, self.src.hostname)) if self.KIND == "migration" else ""
            if back and not self.journal.rollback_snapshot:
                back = ("; it keeps no snapshot for `sdc-migrate rollback` (%s)"
                        % self.journal.dropped_why)
            raise NeedsOperator("%s is on %s (VMAPI shows it there) but did not come up: %s."
                                " It was left as it is: look at it there%s."
                                % (o.uuid, self.dst.hostname, trouble, back))
        r.line("* Rolling it back to %s, with what it wrote on %s:"
               % (self.src.hostname, self.dst.hostname))
        from .rollback import Rollback
        self.lock.release()             # the rollback takes the instance's lock
        self.lock = None
        rb = Rollback(Options(uuid=o.uuid, yes=True, bwlimit=o.bwlimit,
                              health_timeout=o.health_timeout,
                              rollback_snapshot=o.rollback_snapshot), r)
        rb.start_after = True           # it ran on the source before the migration
        try:
            rb.run()
        except MigrateError as e:
            self.restore_owed_quota()
            raise NeedsOperator("%s did not come up on %s (%s), and rolling it back to %s"
                                " failed: %s" % (o.uuid, self.dst.hostname, trouble,
                                                 self.src.hostname, e)) from None
        finally:
            rb.release()
        raise RolledBack("migration of %s failed after the switch: %s on %s\n"
                         "  It was rolled back: the instance is on %s, with what it wrote on"
                         " %s." % (o.uuid, trouble, self.dst.hostname, self.src.hostname,
                                   self.dst.hostname))

    def restore_owed_quota(self):
        """The rollback failed before it took over the quota this run left
        raised for it (preparation.restore_bhyve_quota): the quota wins, on
        both CNs, over the snapshot a later rollback would have sent from."""
        self.journal = Journal(self.journal.path)       # as the rollback left it
        self.proc = Procedure(self.steps(), self.journal)
        self.trouble = None                             # no rollback follows now
        final = self.journal.rollback_snapshot
        if final and self.proc.pending("quota"):
            self.journal.write({"t": "dropped", "snapshot": final,
                                "why": "a bhyve instance's quota leaves no room for it"})
        try:
            preparation.restore_bhyve_quota(self)
        except MigrateError as e:
            self.r.event("undo_failed", "    ! could not restore the quota: %s" % e,
                         what="quota", error=str(e))

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
        r.line("  (It is detached there: nothing boots it until `sdc-migrate rollback`.)")
        r.line("To remove it on %s:" % self.src.hostname)
        # zonecfg deletes a detached zone (illumos zonecfg_destroy refuses an
        # installed one), and zfs a held @indestructible once it is released
        r.line('   * /usr/bin/ssh %s "/usr/sbin/zonecfg -z %s delete -F"' % (ip, uuid))
        for snap in self.indestructible:
            r.line('   * /usr/bin/ssh %s "/usr/sbin/zfs release %s %s"'
                   % (ip, zfs.HOLD_TAG, snap))
        r.line('   * /usr/bin/ssh %s "/usr/sbin/zfs destroy zones/cores/%s"' % (ip, uuid))
        for d in self.datasets:
            if d.name.count("/") == 1:
                r.line('   * /usr/bin/ssh %s "/usr/sbin/zfs destroy -r %s"' % (ip, d.name))
        r.line("   (or all of it: sdc-migrate cleanup-source %s)" % uuid)
        if self.KIND == "migration":
            self.closing_snapshot_lines()
        r.line()
        r.line(" Please validate in AdminUI:  https://%s/vms/%s"
               % (self.adminui or self._adminui(), uuid))
        r.line("        or validate via CLI:  /opt/smartdc/bin/sdc-vmapi /vms/%s" % uuid)
        r.line()

    def closing_snapshot_lines(self):
        """What keeping the last snapshot for a rollback costs, or why none is kept."""
        r, uuid = self.r, self.opts.uuid
        kept = self.journal.rollback_snapshot
        if not kept:
            r.line("   (no snapshot is kept for `sdc-migrate rollback` (%s): to move it back,"
                   % self.journal.dropped_why)
            r.line("    remove the old copy with cleanup-source, then migrate it)")
            return
        r.line("   (or move it back, with what it writes until then: sdc-migrate rollback %s)"
               % uuid)
        now = space.switch_snapshot_cost(self.datasets)
        r.line(" The last snapshot, @%s, stays on both CNs for that rollback until" % kept)
        if now:
            r.line(" cleanup-source. It costs about %s on each CN now (its disks' data, again"
                   % human_size(now))
            r.line(" under their refreservation), and more as the instance rewrites data;")
        else:
            r.line(" cleanup-source. It costs nothing yet, then what the instance rewrites or")
            r.line(" deletes (its quota counts it);")
        r.line(" `sdc-migrate list` shows what it costs now.")

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
                   no_rollback=args["--no-rollback"],
                   rollback_snapshot=not args["--no-rollback-snapshot"])
    m = Migration(opts, JsonReport() if args.get("-j") else Report())
    on_hangup(m)
    try:
        return m.run()
    finally:
        m.release()
        m.r.close()
