"""sdc-migrate evacuate: move every instance off a compute node.

Usage:
  sdc-migrate evacuate [-y] [-D] [-j] [--dry-run] [--to=CN_NAME,...] [--concurrency=N]
                       [--max-delta=SIZE] [--bwlimit=RATE] [-H] [-o COL,...]
                       [-s COL,...] SOURCE_CN_NAME
  sdc-migrate evacuate -h | --help

Empties SOURCE_CN_NAME for a repair or a hardware refresh. First the plan:
every instance VMAPI shows on it, biggest first, gets the destination with
the most unreserved RAM among those it fits on: CNAPI's unreserved RAM and
disk (what DAPI places by) and pool space after the placements before it, a
platform not older than the source's (unless -D), the NIC tags its NICs
need (a fabric NIC needs the sdc_underlay tag), and DAPI's hard filters
(encrypted instances only on encrypted pools and others never there, bhyve
where Bhyve Capable with its vcpus, kvm and bhyve apart without HVM API,
its package's and image's traits): the check a single migration makes.
Fabric NAT zones are recreated there with `sdc-migrate nat-recreate`; core
zones are listed as not movable by this tool (sdcadm moves them). The plan
is shown as a table with each instance's size and estimated time, and the
total; the time is at the rate past migrations from SOURCE_CN_NAME to that
destination measured (their journals: bytes sent over send time), as
`sdc-migrate estimate` reads it, 20 MB/s where none did, and the plan says
which. The question is asked once.

Then the migrations, at most --concurrency at a time, each in a thread of
its own: the migration `sdc-migrate -a` makes (one full and one incremental
round while the instance runs, then a short stop), each with its own
journal, log and rollback: a failure rolls back that instance alone and the
others go on. The end is a summary table: instance, destination, result and
downtime. ^C, SIGHUP or SIGTERM stops it: each running migration rolls back
before its switch point or finishes after it. Run the same command again
after an interruption: what already moved is off the source and not planned
again, an interrupted migration is finished or undone from its journal, the
rest moves. The source copies stay hidden until `sdc-migrate cleanup-source`.

Options:
  --to=CN_NAME,...   The destinations to use, reserved ones too; default:
                     every other compute node that is set up, running and
                     not reserved.
  --concurrency=N    Migrations at a time [default: 2].
  --max-delta=SIZE   Each migration's live rounds go on until one sends less
                     than SIZE (see sdc-migrate --max-delta).
  --bwlimit=RATE     The evacuation's total rate a second (e.g. 50M), shared
                     equally by the migrations that run at once (each gets
                     RATE / --concurrency); the plan's times count with it.
  -D                 Allow destinations whose platform is older than the source's.
  -y                 Do not ask "Are you ready to proceed?".
  -j                 One JSON object per event (plan, started, finished,
                     summary) instead of the tables; needs -y or --dry-run.
  --dry-run          Show the plan and stop: nothing is changed.
  -H                 Omit the tables' header rows.
  -o COL,...         The columns to show, in this order, each in the table
                     that has it: the plan's instance, alias, brand, size,
                     state, destination, est_time; the summary's instance,
                     alias, destination, result, downtime.
  -s COL,...         Sort the tables on these columns (sizes by bytes, times
                     by seconds; -COL descending); default: the plan's
                     order, biggest first.
  -h --help          Show this help.

Exit status: 0 every instance moved; 1 some were not moved and none failed
(no destination fits it, a core zone, neither running nor stopped, or
another sdc-migrate holds it: the plan and summary say which); 2 bad usage or refused
(nothing changed); 3 compute node not found; 4 some migration failed and was
rolled back (that instance is on the source as before); 5 some migration
needs an operator (its line says what to do).
"""
import concurrent.futures
import json
import os
import signal
import time
import traceback

from .. import placement, zfs
from ..errors import MigrateError, NeedsOperator, Refused, RolledBack, Usage
from ..node import Node, Runner
from ..procedure import STATE_DIR, Journal
from ..report import Report, TableOptions, capped_rate, estimate_seconds, human_duration, human_size
from ..triton import Triton, admin_ip
from .inflight import lock_held, rate_for
from .migrate import HungUp, Migration, Options
from .nat_recreate import NatRecreate

USAGE = __doc__
PLAN_HEADERS = ["INSTANCE", "ALIAS", "BRAND", "SIZE", "STATE", "DESTINATION", "EST. TIME"]
SUMMARY_HEADERS = ["INSTANCE", "ALIAS", "DESTINATION", "RESULT", "DOWNTIME"]
TABLES = [PLAN_HEADERS, SUMMARY_HEADERS]     # -o and -s name their columns
# a migration's exit status (0, or its error's) as the summary's RESULT; others: failed
RESULTS = {0: "moved", Refused.exit_status: "refused", RolledBack.exit_status: "rolled back",
           NeedsOperator.exit_status: "needs operator"}
RATE = 20       # MB/s where no past migration between the two CNs measured one
POLL = 0.5      # how often the main thread looks up from waiting: an interrupt is taken then
SIGNALS = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)


def place(items, candidates, source_platform, allow_older=False):
    """Give each movable item, biggest first, the candidate it fits on with the
    most unreserved RAM; an item that fits nowhere gets dest None and a reason."""
    for item in sorted(items, key=lambda i: (-i["bytes"], i["uuid"])):
        if item["kind"] not in ("migrate", "nat") or item.get("dest"):
            continue
        reasons = []
        fits = []
        for c in candidates:
            why = c.why_not(item, source_platform, allow_older)
            (reasons.append(why) if why else fits.append(c))
        if not fits:
            item["reason"] = "fits on no destination: " + "; ".join(reasons) \
                if reasons else "no destination"
            continue
        best = max(fits, key=lambda c: (c.ram or 0, c.pool or 0, c.name))
        best.take(item)
        item["dest"] = best.name
    return sorted(items, key=lambda i: (i["dest"] is None, -i["bytes"], i["uuid"]))


def item_for(vm, listing, packages=None, images=None):
    """What the plan needs of an instance: kind, size, and what it needs of a
    destination (placement.need_of: RAM, NIC tags, what DAPI's hard filters
    read; packages and images by UUID, for its traits)."""
    datasets = zfs.instance_datasets(listing, vm["uuid"])
    kind, reason = "migrate", None
    what, role = placement.kind_of(vm)
    if what == "nat" and role:
        kind = "nat"
    elif what == "nat":
        kind, reason = "skip", "NAT zone of no fabric network its alias names"
    elif what == "core":
        kind, reason = "core", "core zone %s: not moved by sdc-migrate (sdcadm moves it)" % role
    elif vm.get("state") not in ("running", "stopped"):
        kind, reason = "skip", "state %s: neither running nor stopped" % vm.get("state")
    image_uuid = vm.get("image_uuid") or next(
        (d["image_uuid"] for d in vm.get("disks") or [] if d.get("image_uuid")), None)
    need = placement.need_of(vm, sum(d.used for d in datasets),
                             None if packages is None else packages.get(vm.get("billing_id"), {}),
                             None if images is None else images.get(image_uuid, {}))
    return dict(need, uuid=vm["uuid"], alias=vm.get("alias"), state=vm.get("state"),
                kind=kind, reason=reason, dest=None, bytes=zfs.sent_size(datasets))


class NatMove:
    """A NAT zone's recreation (nat-recreate) as evacuate runs it. It is not
    stopped by an interrupt: between its destroy and its create the fabric
    network would have no NAT zone, so it goes on to its end."""

    def __init__(self, item, report):
        self.item = item
        self.nat = NatRecreate(yes=True, report=report)

    def run(self):
        return self.nat.recreate(self.item["uuid"], self.item["dest"])

    def interrupt(self, why):
        pass

    def release(self):
        pass


def mover(item, opts, report):
    """What moves one item, writing its lines to report: `sdc-migrate -y -a
    --interval=0` (with evacuate's --max-delta, share of --bwlimit and -D)
    or, for a NAT zone, `sdc-migrate nat-recreate -y`."""
    if item["kind"] == "nat":
        return NatMove(item, report)
    return Migration(Options(uuid=item["uuid"], dest=item["dest"], incremental=True, auto=True,
                             yes=True, interval=0, max_delta=opts["max_delta"],
                             bwlimit=opts["bwlimit"], allow_older=opts["allow_older"]), report)


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


class Evacuation:
    def __init__(self, source, to=None, concurrency=2, max_delta=None, allow_older=False,
                 yes=False, as_json=False, dry_run=False, report=None, runner=None,
                 state_dir=STATE_DIR, bwlimit=None, mover=mover):
        self.source, self.to = source, to
        self.mover = mover      # mover(item, opts, report): the object that moves one item
        self.concurrency = concurrency
        self.bwlimit = bwlimit
        # --bwlimit is the evacuation's total: each of the migrations running
        # at once gets an equal share of it
        self.opts = {"max_delta": max_delta, "allow_older": allow_older,
                     "bwlimit": bwlimit // concurrency if bwlimit else None}
        self.yes, self.as_json, self.dry_run = yes, as_json, dry_run
        self.r = report or Report()
        self.hn = runner or Runner()
        self.api = Triton(self.hn)
        self.state_dir = state_dir
        self.rates = {}         # destination -> rate_for's (MB/s, words)
        self.epoch = int(time.time())

    def emit(self, event, text=None, **fields):
        if self.as_json:
            self.r.json_event(event, **fields)
        elif text is not None:
            self.r.line(text)

    # ---- plan -----------------------------------------------------------------

    def state_path(self):
        return os.path.join(self.state_dir, "sdc-migrate-evacuate-%s.json" % self.source)

    def destinations(self, src):
        servers = [self.api.server(s["uuid"]) for s in self.api.servers()]
        if self.to:
            # docopt reads `--to=CN_NAME,...` as repeatable: a list of comma lists
            to = self.to if isinstance(self.to, list) else [self.to]
            names = [n.strip() for t in to for n in t.split(",") if n.strip()]
            chosen = []
            for name in dict.fromkeys(names):
                s = self.api.server_by_hostname(name)
                if s["uuid"] == src["uuid"]:
                    raise Refused("--to names %s, the compute node being evacuated" % name)
                # named by the operator, a reserved CN is a destination (placement)
                why = placement.Destination(s).unusable()
                if why:
                    raise Refused("destination " + why)
                chosen.append(s)
            return chosen
        return sorted((s for s in servers if s["uuid"] != src["uuid"] and s.get("setup")
                       and not s.get("headnode") and not s.get("reserved")
                       and s.get("status") == "running"), key=lambda s: s["hostname"])

    def pool_free(self, servers):
        """Each server's free space in its zones pool: one call per CN, all at once."""
        def one(s):
            node = Node(s["hostname"], s["uuid"], admin_ip(s), trace=self.hn.trace)
            try:
                return int(node.run(["zfs", "get", "-Hp", "-o", "value", "available", "zones"],
                                    readonly=True).strip())
            finally:
                node.close()
        with concurrent.futures.ThreadPoolExecutor(max(1, len(servers))) as pool:
            return list(pool.map(one, servers))

    def plan(self):
        src = self.api.server_by_hostname(self.source)
        if src.get("headnode"):
            raise Refused("%s is the head node: evacuate compute nodes" % self.source)
        dests = self.destinations(src)
        vms = [v for v in self.api.vms(server_uuid=src["uuid"], state="active")]
        node = Node(src["hostname"], src["uuid"], admin_ip(src), trace=self.hn.trace)
        try:
            listing = node.run(zfs.list_command(), readonly=True) if vms else ""
        finally:
            node.close()
        # their packages and images (traits) in one call each, not one per instance
        packages = {p["uuid"]: p for p in self.api.packages()} if vms else {}
        images = {i["uuid"]: i for i in self.api.images()} if vms else {}
        items = [item_for(vm, listing, packages, images) for vm in vms]
        self.resume_items(items, src)
        candidates = [placement.Destination(s, free)
                      for s, free in zip(dests, self.pool_free(dests))]
        self.items = place(items, candidates, src.get("current_platform") or "",
                           self.opts["allow_older"])
        self.src = src
        return self.items

    def resume_items(self, items, src):
        """What an interrupted run left: migrations whose journal did not end and NAT
        zones destroyed but not recreated yet."""
        have = {i["uuid"] for i in items}
        for j in Journal.all(state_dir=self.state_dir):
            b = j.begin
            if not b or j.ended or (b.get("src") or {}).get("uuid") != src["uuid"]:
                continue
            if b["uuid"] in have:
                for i in items:
                    if i["uuid"] == b["uuid"] and i["kind"] == "migrate":
                        i["dest"], i["resume"] = b["dest"], True
                continue
            items.append({"uuid": b["uuid"], "alias": b.get("alias"), "brand": "-",
                          "state": "interrupted", "kind": "migrate", "reason": None,
                          "dest": b["dest"], "resume": True, "bytes": 0, "pool": 0, "ram": 0,
                          "tags": set()})
            have.add(b["uuid"])
        try:
            with open(self.state_path()) as f:
                earlier = json.load(f)
        except (OSError, ValueError):
            return
        for i in earlier.get("items", []):
            if i["kind"] == "nat" and i.get("result") != "moved" and i["uuid"] not in have \
                    and i.get("dest"):
                items.append(dict(i, tags=set(), state="interrupted", resume=True,
                                  bytes=0, pool=0, ram=0, reason=None))

    def show(self):
        items = self.items
        rows, notes = [], []
        for i in items:
            est = human_duration(self.seconds(i)) if i["dest"] else "-"
            dest = i["dest"] or "-"
            if i["kind"] == "nat" and i["dest"]:
                dest += " (nat-recreate)"
            if i.get("resume"):
                dest += " (resume)"
            rows.append([i["uuid"], i["alias"] or "-", i["brand"] or "-",
                         (human_size(i["bytes"]), i["bytes"]), i["state"], dest,
                         (est, self.seconds(i) if i["dest"] else None)])
            if not i["dest"]:
                notes.append("  %s (%s): %s" % (i["uuid"], i["alias"] or "-", i["reason"]))
        moving = [i for i in items if i["dest"]]
        total = sum(i["bytes"] for i in moving)
        secs = sum(self.seconds(i) for i in moving) / max(1, self.concurrency)
        if self.as_json:
            for i in items:
                self.emit("plan", uuid=i["uuid"], alias=i["alias"], brand=i["brand"],
                          state=i["state"], kind=i["kind"], bytes=i["bytes"],
                          destination=i["dest"], reason=None if i["dest"] else i["reason"],
                          estimate_s=round(self.seconds(i), 1) if i["dest"]
                          else None)
            self.emit("plan-total", instances=len(moving), bytes=total,
                      estimate_s=round(secs, 1), not_moved=len(items) - len(moving))
            return
        r = self.r
        r.line("* Evacuating %s (%s): %d instance%s" % (self.src["hostname"], self.src["uuid"],
                                                      len(items), "" if len(items) == 1 else "s"))
        r.line()
        if rows:
            r.table(PLAN_HEADERS, rows)
            r.line()
        r.line("Total: %d to move, %s, about %s at %d at a time (+2 minutes each, as"
               " estimated)" % (len(moving), human_size(total), human_duration(secs),
                                self.concurrency))
        for dest in sorted({i["dest"] for i in moving if i["kind"] == "migrate"}):
            r.line("  " + self.rate(dest)[1])
        if self.bwlimit:
            r.line("Bandwidth limit: %s / second in all, %s / second for each migration"
                   % (human_size(self.bwlimit), human_size(self.opts["bwlimit"])))
        if notes:
            r.line("Not moved:")
            r.lines(notes)
        r.line()

    def rate(self, dest):
        """(MB/s, its words) from the source to dest: what past migrations
        between them measured (inflight.rate_for, as `estimate`), else 20."""
        if dest not in self.rates:
            self.rates[dest] = rate_for(self.src["hostname"], dest, RATE, self.state_dir)
        return self.rates[dest]

    def seconds(self, item):
        """One item's estimate at the pair's rate, at its share of --bwlimit."""
        rate = self.rate(item["dest"])[0] if item.get("dest") else RATE
        return estimate_seconds(item["bytes"], capped_rate(self.opts["bwlimit"], rate))

    # ---- run ------------------------------------------------------------------

    def save(self):
        fd = os.open(self.state_path() + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"source": self.source, "epoch": self.epoch,
                       "items": [dict(i, tags=sorted(i["tags"])) for i in self.items]}, f)
        os.rename(self.state_path() + ".new", self.state_path())

    def run(self):
        if self.as_json and not (self.yes or self.dry_run):
            raise Refused("-j needs -y or --dry-run: a script cannot answer the question")
        self.plan()
        self.show()
        todo = [i for i in self.items if i["dest"]]
        if self.dry_run:
            return 0 if len(todo) == len(self.items) else 1
        if not todo:
            self.emit("summary", "Nothing to move off %s." % self.source, moved=0, failed=0,
                      not_moved=len(self.items), exit_status=1 if self.items else 0)
            self.finish_state()
            return 1 if self.items else 0
        if not self.yes and not self.r.ask("Are you ready to proceed? [y|n]"):
            raise Refused("not confirmed: nothing was changed")
        self.outdir = os.path.join(self.state_dir, "sdc-migrate-evacuate-%s-%d"
                                   % (self.source, self.epoch))
        os.makedirs(self.outdir, mode=0o700, exist_ok=True)
        self.save()
        self.execute(todo)
        return self.summary()

    def execute(self, todo):
        """The migrations, at most --concurrency at a time, each in a thread.

        The main thread only sleeps, POLL seconds at a time, and takes an
        interrupt (^C, SIGHUP, SIGTERM, which reach it alone) only when it
        looks up: a signal is held until then (hold_signals), never raised
        in the middle of starting a migration's thread or of reporting one's
        end. Then nothing new starts, every running migration is told to
        stop (before its switch point it rolls back, past it it finishes),
        waited for and reported, and the interrupt goes on up (cli)."""
        queue = list(todo)
        running = {}
        n = len(todo)
        order = {i["uuid"]: k + 1 for k, i in enumerate(todo)}
        pool = concurrent.futures.ThreadPoolExecutor(self.concurrency)
        held = []
        before = hold_signals(held)
        try:
            while True:
                if held:
                    raise held[0]
                if not (queue or running):
                    break
                while queue and len(running) < self.concurrency:
                    self.start(queue.pop(0), running, order, n, pool)
                time.sleep(POLL)
                self.reap(running, order, n)
        except KeyboardInterrupt as e:
            why = str(e) if e.args else "SIGINT"
            if running and not self.as_json:
                self.r.line("* Interrupted (%s): stopping the running migrations (each rolls"
                            " back before its switch point, finishes after it) ..." % why)
            for item, m, heard, f, ended in running.values():
                m.interrupt(why)
            pool.shutdown()         # waits for every one: each was started whole
            self.reap(running, order, n)
            raise
        finally:
            pool.shutdown()
            if not held:
                for sig, handler in before.items():
                    signal.signal(sig, handler)

    def start(self, item, running, order, n, pool):
        if lock_held(item["uuid"], self.state_dir):
            item["result"], item["detail"] = "refused", "another sdc-migrate is migrating it" \
                " (see `sdc-migrate list`)"
            self.report_end(item, order, n)
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
        self.emit("started", "* [%d/%d] %s %s (%s) to %s ..." % (
            order[item["uuid"]], n, how, item["uuid"], item["alias"] or "-", item["dest"]),
            uuid=item["uuid"], alias=item["alias"], destination=item["dest"], kind=item["kind"],
            output=out)

    def reap(self, running, order, n):
        """Report the migrations that ended."""
        for uuid, (item, m, heard, f, ended) in list(running.items()):
            if "result" in ended:
                self.ended(item, *ended["result"], heard, f, order, n)
                f.close()
                del running[uuid]

    def ended(self, item, status, error, heard, f, order, n):
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
        self.report_end(item, order, n)
        self.save()

    def report_end(self, item, order, n):
        down = item.get("downtime")
        text = "* [%d/%d] %s (%s): %s" % (order[item["uuid"]], n, item["uuid"],
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

    def finish_state(self):
        try:
            os.unlink(self.state_path())
        except FileNotFoundError:
            pass

    def summary(self):
        items = self.items
        results = [i.get("result") for i in items if i["dest"]]
        if "needs operator" in results:
            status = 5
        elif any(r not in ("moved", "refused") for r in results):
            status = 4
        elif "refused" in results or any(not i["dest"] for i in items):
            status = 1
        else:
            status = 0
        moved = results.count("moved")
        if self.as_json:
            self.emit("summary", moved=moved, failed=len(results) - moved,
                      not_moved=len(items) - len(results), exit_status=status,
                      instances=[{"uuid": i["uuid"], "destination": i["dest"],
                                  "result": i.get("result") or "not moved",
                                  "downtime_s": i.get("downtime")} for i in items])
        else:
            r = self.r
            r.line()
            r.line("                    ===   Evacuation of %s ===" % self.source)
            r.line()
            rows = []
            for i in items:
                down = i.get("downtime")
                rows.append([i["uuid"], i["alias"] or "-", i["dest"] or "-",
                             i.get("result") or "not moved: " + (i["reason"] or "-"),
                             (human_duration(down) if down is not None else "-", down)])
            r.table(SUMMARY_HEADERS, rows)
            r.line()
            r.line("%d of %d moved." % (moved, len(items)))
            if moved:
                r.line("The source copies stay hidden on %s: remove each with"
                       " `sdc-migrate cleanup-source INST_UUID`." % self.source)
            failed = [i for i in items if i.get("result") not in (None, "moved")]
            if failed:
                r.line("Each migration's output is in %s/; `sdc-migrate list` shows their"
                       " journals." % self.outdir)
        if all(i.get("result") == "moved" for i in items if i["dest"]):
            self.finish_state()
        return status


def interruption(signum):
    """What the first of ^C, SIGHUP and SIGTERM stops evacuate with; the later
    ones are ignored from then on, while the running migrations roll back or
    finish, as a single migration rides out a second SIGHUP (migrate.on_hangup)."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if signum == signal.SIGINT:
        return KeyboardInterrupt()
    return HungUp(signal.Signals(signum).name)


def on_signals():
    """^C, SIGHUP and SIGTERM, which reach the main thread alone: the first
    stops the evacuation, at once while it plans, at the main thread's next
    look up while migrations run (execute)."""
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


def main(args):
    try:
        concurrency = int(args["--concurrency"] or 2)
    except ValueError:
        concurrency = 0
    if concurrency < 1:
        raise Usage("--concurrency takes a positive whole number, not %r"
                    % args["--concurrency"])
    from ..cli import parse_rate, parse_size
    max_delta = None
    if args["--max-delta"] is not None:
        max_delta = parse_size(args["--max-delta"])
    tables = TableOptions.from_args(args, *TABLES)
    e = Evacuation(args["SOURCE_CN_NAME"], to=args["--to"], concurrency=concurrency,
                   max_delta=max_delta, allow_older=args["-D"], yes=args["-y"],
                   as_json=args["-j"], dry_run=args["--dry-run"],
                   bwlimit=parse_rate(args["--bwlimit"]))
    e.r.table_options = tables
    on_signals()
    try:
        return e.run()
    finally:
        e.r.close()
