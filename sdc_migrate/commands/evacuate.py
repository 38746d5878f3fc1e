"""sdc-migrate evacuate: move every instance off a compute node.

Usage:
  sdc-migrate evacuate [-y] [-D] [-j] [--dry-run] [--to=CN_NAME,...] [--concurrency=N]
                       [--max-delta=SIZE] [--bwlimit=RATE] SOURCE_CN_NAME
  sdc-migrate evacuate -h | --help

Empties SOURCE_CN_NAME for a repair or a hardware refresh. First the plan:
every instance VMAPI shows on it, biggest first, gets the destination with
the most unreserved RAM among those it fits on: CNAPI's unreserved RAM and
disk (what DAPI places by) and pool space after the placements before it, a
platform not older than the source's (unless -D), and the NIC tags its NICs
need (a fabric NIC needs the sdc_underlay tag): the check a single
migration makes.
Fabric NAT zones are recreated there with `sdc-migrate nat-recreate`; core
zones are listed as not movable by this tool (sdcadm moves them). The plan
is shown as a table with each instance's size and estimated time, and the
total; the question is asked once.

Then the migrations, at most --concurrency at a time, each one
`sdc-migrate -a` (one full and one incremental round while the instance
runs, then a short stop), each with its own journal, log and rollback: a
failure rolls back that instance alone and the others go on. The end is a
summary table: instance, destination, result and downtime. Run the same
command again after an interruption: what already moved is off the source
and not planned again, an interrupted migration is finished or undone from
its journal, the rest moves. The source copies stay hidden until
`sdc-migrate cleanup-source`.

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
import re
import subprocess
import sys
import time

from .. import placement, zfs
from ..errors import Refused, Usage
from ..node import Node, Runner
from ..procedure import STATE_DIR, Journal
from ..report import Report, capped_rate, estimate_seconds, human_duration, human_size
from ..triton import Triton, admin_ip
from .inflight import lock_held

USAGE = __doc__
PLAN_HEADERS = ["INSTANCE", "ALIAS", "BRAND", "SIZE", "STATE", "DESTINATION", "EST. TIME"]
SUMMARY_HEADERS = ["INSTANCE", "ALIAS", "DESTINATION", "RESULT", "DOWNTIME"]
RESULTS = {0: "moved", 2: "refused", 4: "rolled back", 5: "needs operator"}
POLL = 0.5


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


def item_for(vm, listing):
    """What the plan needs of an instance: kind, size, RAM, NIC tags."""
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
    return {"uuid": vm["uuid"], "alias": vm.get("alias"), "brand": vm.get("brand"),
            "state": vm.get("state"), "kind": kind, "reason": reason, "dest": None,
            "bytes": zfs.sent_size(datasets), "pool": sum(d.used for d in datasets),
            "ram": int(vm.get("ram") or 0), "tags": placement.needed_tags(vm)}


def child_argv(item, opts):
    """The sdc-migrate command that moves one item."""
    cmd = [sys.executable, "-m", "sdc_migrate"]
    if item["kind"] == "nat":
        return cmd + ["nat-recreate", "-y", item["uuid"], item["dest"]]
    cmd += ["-y", "-a", "--interval=0"]
    if opts["max_delta"]:
        cmd += ["--max-delta=%d" % opts["max_delta"]]
    if opts.get("bwlimit"):
        cmd += ["--bwlimit=%d" % opts["bwlimit"]]
    if opts["allow_older"]:
        cmd.append("-D")
    return cmd + [item["uuid"], item["dest"]]


# what cli.error writes: sdc-migrate[ SUB]: error (Code): message
ERROR_LINE = re.compile(r"^sdc-migrate(?: [a-z-]+)?: error \(\w+\): (.*)$")


def last_error(path):
    """The one-line error a child sdc-migrate printed last, if any."""
    try:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        said = ERROR_LINE.match(line)
        if said:
            return said.group(1)
        if line.startswith("sdc-migrate: "):
            return line.split(": ", 1)[1]
    return None


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
                 state_dir=STATE_DIR, bwlimit=None):
        self.source, self.to = source, to
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
        items = [item_for(vm, listing) for vm in vms]
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
                         human_size(i["bytes"]), i["state"], dest, est])
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
        if self.bwlimit:
            r.line("Bandwidth limit: %s / second in all, %s / second for each migration"
                   % (human_size(self.bwlimit), human_size(self.opts["bwlimit"])))
        if notes:
            r.line("Not moved:")
            r.lines(notes)
        r.line()

    def seconds(self, item):
        """The seed's estimate for one item, at its share of --bwlimit."""
        return estimate_seconds(item["bytes"], capped_rate(self.opts["bwlimit"]))

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
        queue = list(todo)
        running = {}
        n = len(todo)
        order = {i["uuid"]: k + 1 for k, i in enumerate(todo)}
        try:
            while queue or running:
                while queue and len(running) < self.concurrency:
                    self.start(queue.pop(0), running, order, n)
                time.sleep(POLL)
                for uuid, (item, proc, out) in list(running.items()):
                    if proc.poll() is not None:
                        del running[uuid]
                        self.ended(item, proc.returncode, out, order, n)
        except KeyboardInterrupt:
            # each child got the SIGINT too and rolls its own migration back
            for item, proc, out in running.values():
                proc.wait()
                self.ended(item, proc.returncode, out, order, n)
            raise

    def start(self, item, running, order, n):
        if lock_held(item["uuid"], self.state_dir):
            item["result"], item["detail"] = "refused", "another sdc-migrate is migrating it" \
                " (see `sdc-migrate list`)"
            self.report_end(item, order, n)
            return
        out = os.path.join(self.outdir, item["uuid"] + ".out")
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            proc = subprocess.Popen(child_argv(item, self.opts), stdin=subprocess.DEVNULL,
                                    stdout=f, stderr=subprocess.STDOUT)
        item["started"] = time.time()
        running[item["uuid"]] = (item, proc, out)
        how = "recreating NAT zone" if item["kind"] == "nat" else \
            "finishing or undoing the interrupted migration of" if item.get("resume") else \
            "migrating"
        self.emit("started", "* [%d/%d] %s %s (%s) to %s ..." % (
            order[item["uuid"]], n, how, item["uuid"], item["alias"] or "-", item["dest"]),
            uuid=item["uuid"], alias=item["alias"], destination=item["dest"], kind=item["kind"],
            output=out)

    def ended(self, item, status, out, order, n):
        item["status"] = status
        item["result"] = RESULTS.get(status, "failed")
        item["detail"] = last_error(out) if status else None
        item["seconds"] = round(time.time() - item["started"], 1)
        if status == 0 and item["kind"] == "migrate":
            item["downtime"] = downtime_of(item["uuid"], item["dest"], self.state_dir)
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
                             human_duration(down) if down is not None else "-"])
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
    e = Evacuation(args["SOURCE_CN_NAME"], to=args["--to"], concurrency=concurrency,
                   max_delta=max_delta, allow_older=args["-D"], yes=args["-y"],
                   as_json=args["-j"], dry_run=args["--dry-run"],
                   bwlimit=parse_rate(args["--bwlimit"]))
    try:
        return e.run()
    finally:
        e.r.close()
