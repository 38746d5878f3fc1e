"""sdc-migrate evacuate: move every instance off one or more compute nodes.

Usage:
  sdc-migrate evacuate [-y] [-D] [-j] [--dry-run] [--to=CN_NAME,...] [--concurrency=N]
                       [--per-cn=N] [--max-delta=SIZE] [--bwlimit=RATE] [--keep-reserved]
                       [-H] [-o COL,...] [-s COL,...] SOURCE_CN_NAME...
  sdc-migrate evacuate -h | --help

Empties each SOURCE_CN_NAME for a repair or a hardware refresh, all in one
plan; never onto a compute node being evacuated. First the plan: every
instance VMAPI shows on them, biggest first, gets a destination it fits on:
CNAPI's unreserved RAM and disk (what DAPI places by) and pool space after
the placements before it, a platform not older than its source's (unless
-D), the NIC tags its NICs need (a fabric NIC needs the sdc_underlay tag),
DAPI's hard filters (encrypted instances only on encrypted pools and others
never there, bhyve where Bhyve Capable with its vcpus, kvm and bhyve apart
without HVM API, its package's and image's traits), a net-agent that leaves
a hidden copy's NICs alone (2.3.2 or later: TRITON-1814) and no copy of it
there already: the check a single migration makes. A source whose net-agent
would delete them is refused until its agents are updated (sdcadm
experimental update-agents, no reboot). Among those, as DAPI spreads
an owner's instances, the one with the fewest of its owner's instances (on
it already, or put there from another source CN), then the most unreserved
RAM. The checks each migration makes at its gather run for every instance
first, and every blocker is listed at once: no destination fits (and why
not, each), a Triton migration record, another sdc-migrate holding it, an
unfinished rollback, neither running nor stopped, a core zone. Fabric NAT
zones are recreated on their destination with `sdc-migrate nat-recreate`;
core zones are listed as not movable by this tool (sdcadm moves them). The
plan is shown as a table with each instance's source, destination, size and
estimated time, and the total; the time is at the rate past migrations from
its source to its destination measured (their journals: bytes sent over send
time), as `sdc-migrate estimate` reads it, 20 MB/s where none did, and the
plan says which; --dry-run adds why each goes where it goes. The question is
asked once.

Then each source is reserved in CNAPI (DAPI places nothing new there), its
flag as it was journaled in /var/tmp/sdc-migrate-evacuate-CN_NAME.journal,
and the migrations run, each in a thread of its own: at most --concurrency
in all and at most --per-cn touching any one compute node, as sender or
receiver; the rest wait, biggest first, and each starts as soon as both its
compute nodes have a slot. Each is the migration `sdc-migrate -a` makes
(one full and one incremental round while the instance runs, then a short
stop), with its own journal, log and rollback: a failure rolls back that
instance alone and the others go on. At the end each source's reserved flag
is put back as it was (unless --keep-reserved), and a summary table gives
each instance's source, destination, result and downtime. ^C, SIGHUP or
SIGTERM stops it: each running migration rolls back before its switch point
or finishes after it, and the sources stay reserved. Run the same command
again after an interruption: what already moved is off its source and not
planned again, an interrupted migration is finished or undone from its
journal, the rest moves, and the reserved flags are put back as they were
before the first run; `sdc-migrate restore CN_NAME` puts one back without
it. The source copies stay hidden until `sdc-migrate cleanup-source`.

Options:
  --to=CN_NAME,...   The destinations to use, reserved ones too; default:
                     every other compute node that is set up, running and
                     not reserved.
  --concurrency=N    Migrations at a time in all [default: 4].
  --per-cn=N         Migrations at a time touching any one compute node, as
                     source or destination [default: 2]: one stream keeps a
                     CN's link busy while the other is between rounds (stop,
                     attach, boot); a third only splits the same link.
  --max-delta=SIZE   Each migration's live rounds go on until one sends less
                     than SIZE (see sdc-migrate --max-delta).
  --bwlimit=RATE     The evacuation's total rate a second (e.g. 50M), shared
                     equally by the migrations that can run at once (each
                     gets RATE / the most that --concurrency and --per-cn
                     let run at once); the plan's times count with it.
  --keep-reserved    Leave the sources reserved at the end (maintenance),
                     also when nothing is left to move; `sdc-migrate restore
                     CN_NAME` puts the flag back.
  -D                 Allow destinations whose platform is older than the source's.
  -y                 Do not ask "Are you ready to proceed?".
  -j                 One JSON object per event (plan, plan-total, drained,
                     started, finished, undrained, summary) instead of the
                     tables; needs -y or --dry-run.
  --dry-run          Show the plan, why each instance goes where it goes and
                     every blocker, and stop: nothing is changed.
  -H                 Omit the tables' header rows.
  -o COL,...         The columns to show, in this order, each in the table
                     that has it: the plan's instance, alias, brand, size,
                     state, source, destination, est_time; the summary's
                     instance, alias, source, destination, result, downtime.
  -s COL,...         Sort the tables on these columns (sizes by bytes, times
                     by seconds; -COL descending); default: the plan's
                     order, biggest first.
  -h --help          Show this help.

Exit status: 0 every instance moved (--dry-run: the plan is clean, every
instance has a destination); 1 some were not moved, or have a blocker, and
none failed (the plan and summary say which and why); 2 bad usage or refused
(nothing changed); 3 compute node not found; 4 some migration failed and was
rolled back (that instance is on the source as before); 5 some migration
needs an operator (its line says what to do).
"""
import concurrent.futures
import json
import os
import time

from .. import admission, batch, cnlink, drain, paths, placement, zfs
from ..batch import downtime_of, error_text, on_signals, run_one  # noqa: F401 (tests, list)
from ..errors import Refused, RemoteError, Usage
from ..node import Node, Runner, command_line
from ..procedure import STATE_DIR, InstanceLock, Journal
from ..report import (Report, TableOptions, capped_rate, estimate_seconds, human_duration,
                      human_size)
from ..triton import Triton, admin_ip
from .inflight import lock_held, rate_for
from .migrate import Migration, Options
from .nat_recreate import NatRecreate

USAGE = __doc__
PLAN_HEADERS = ["INSTANCE", "ALIAS", "BRAND", "SIZE", "STATE", "SOURCE", "DESTINATION",
                "EST. TIME"]
SUMMARY_HEADERS = ["INSTANCE", "ALIAS", "SOURCE", "DESTINATION", "RESULT", "DOWNTIME"]
TABLES = [PLAN_HEADERS, SUMMARY_HEADERS]     # -o and -s name their columns
RATE = 20       # MB/s where no past migration between the two CNs measured one
SIGNALS = batch.SIGNALS
# sh -c DEST_SCRIPT: what a destination has (cnlink.FACTS), its free space in
# zones, then its instances' datasets (zones/UUID...)
DEST_SCRIPT = (cnlink.FACTS + "zfs get -Hp -o value available zones && "
               "zfs list -H -o name -d 1 zones")
# sh -c SOURCE_LISTING: what the source has (cnlink.FACTS), then its datasets
SOURCE_LISTING = cnlink.FACTS + command_line(zfs.list_command())


class AgentBlocked(placement.Destination):
    """A destination whose net-agent would delete the NICs of an instance's
    copy a migration hides there (a rollback does): no instance goes there
    until its agents are updated (cnlink.check_net_agents)."""

    def __init__(self, server, pool_free, facts, copies=()):
        super().__init__(server, pool_free, copies=copies)
        self.facts = facts

    def why_not(self, need, *args, **kwargs):
        if need.get("kind") == "nat":       # recreated, never hidden
            return super().why_not(need, *args, **kwargs)
        return ("%s's net-agent %s would delete the NICs of a copy hidden there (TRITON-1814):"
                " update its agents" % (self.name, self.facts.net_agent))


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


class Evacuation:
    def __init__(self, sources, to=None, concurrency=admission.CONCURRENCY,
                 per_cn=admission.PER_CN, max_delta=None, allow_older=False, yes=False,
                 as_json=False, dry_run=False, report=None, runner=None, state_dir=STATE_DIR,
                 bwlimit=None, mover=mover, keep_reserved=False):
        self.sources = list(dict.fromkeys([sources] if isinstance(sources, str) else sources))
        self.to = to
        self.mover = mover      # mover(item, opts, report): the object that moves one item
        self.concurrency, self.per_cn = concurrency, per_cn
        self.bwlimit = bwlimit
        self.keep_reserved = keep_reserved
        # --bwlimit is the evacuation's total: each of the migrations running
        # at once gets an equal share of it
        self.opts = {"max_delta": max_delta, "allow_older": allow_older,
                     "bwlimit": bwlimit // concurrency if bwlimit else None}
        self.yes, self.as_json, self.dry_run = yes, as_json, dry_run
        self.r = report or Report()
        self.hn = runner or Runner()
        self.api = Triton(self.hn)
        self.state_dir = state_dir
        self.rates = {}         # (source, destination) -> rate_for's (MB/s, words)
        self.epoch = int(time.time())
        self.srcs = []
        self.most = {}

    def emit(self, event, text=None, **fields):
        if self.as_json:
            self.r.json_event(event, **fields)
        elif text is not None:
            self.r.line(text)

    # ---- plan -----------------------------------------------------------------

    def state_path(self, source):
        return os.path.join(self.state_dir, "sdc-migrate-evacuate-%s.json" % source)

    def destinations(self, srcs):
        """The candidates: --to's, or every CN set up, running and not reserved;
        never a CN being evacuated."""
        evacuated = {s["uuid"] for s in srcs}
        if self.to:
            # docopt reads `--to=CN_NAME,...` as repeatable: a list of comma lists
            to = self.to if isinstance(self.to, list) else [self.to]
            names = [n.strip() for t in to for n in t.split(",") if n.strip()]
            chosen = []
            for name in dict.fromkeys(names):
                s = self.api.server_by_hostname(name)
                if s["uuid"] in evacuated:
                    raise Refused("--to names %s, a compute node being evacuated" % name)
                # named by the operator, a reserved CN is a destination (placement)
                why = placement.Destination(s).unusable()
                if why:
                    raise Refused("destination " + why)
                chosen.append(s)
            return chosen
        servers = [self.api.server(s["uuid"]) for s in self.api.servers()]
        return sorted((s for s in servers if s["uuid"] not in evacuated and s.get("setup")
                       and not s.get("headnode") and not s.get("reserved")
                       and s.get("status") == "running"), key=lambda s: s["hostname"])

    def candidates(self, servers):
        """Each server as a placement.Destination: its free space in zones and
        the instances with datasets there, one ssh call per CN, all at once; a
        CN out of reach is a candidate that takes nothing, and says why."""
        def one(s):
            node = Node(s["hostname"], s["uuid"], admin_ip(s), trace=self.hn.trace)
            try:
                facts, rest = cnlink.parse_facts(s["hostname"], node.run(
                    ["sh", "-c", DEST_SCRIPT], readonly=True))
                out = rest.split("\n")
                copies = {n.split("/")[1][:36] for n in out[1:] if n.count("/") == 1}
                if facts is not None and facts.net_agent_deletes_hidden():
                    return AgentBlocked(s, int(out[0].strip()), facts, copies=copies)
                return placement.Destination(s, int(out[0].strip()), copies=copies)
            except (RemoteError, ValueError) as e:
                return placement.Destination(s, trouble="cannot read %s over ssh: %s"
                                             % (s["hostname"], e))
            finally:
                node.close()
        with concurrent.futures.ThreadPoolExecutor(max(1, len(servers))) as pool:
            return list(pool.map(one, servers))

    def listing(self, src):
        node = Node(src["hostname"], src["uuid"], admin_ip(src), trace=self.hn.trace)
        try:
            facts, listing = cnlink.parse_facts(src["hostname"], node.run(
                ["sh", "-c", SOURCE_LISTING], readonly=True))
        except RemoteError as e:
            raise Refused("cannot read %s over ssh: %s" % (src["hostname"], e)) from None
        finally:
            node.close()
        # every migration would hide its copy on the source: refused as one
        cnlink.check_net_agents(facts)
        return listing

    def plan(self):
        srcs = [self.api.server_by_hostname(name) for name in self.sources]
        for src in srcs:
            if src.get("headnode"):
                raise Refused("%s is the head node: evacuate compute nodes" % src["hostname"])
        dests = self.destinations(srcs)
        vms = {src["uuid"]: self.api.vms(server_uuid=src["uuid"], state="active")
               for src in srcs}
        # their packages and images (traits) in one call each, not one per instance
        anything = any(vms.values())
        packages = {p["uuid"]: p for p in self.api.packages()} if anything else {}
        images = {i["uuid"]: i for i in self.api.images()} if anything else {}
        items = []
        for src in srcs:
            listing = self.listing(src) if vms[src["uuid"]] else ""
            items += [placement.item_for(vm, listing, packages, images, src["hostname"])
                      for vm in vms[src["uuid"]]]
        self.srcs = srcs
        self.resume_items(items, srcs)
        self.preflight(items)
        self.items = placement.place(
            items, self.candidates(dests),
            {s["hostname"]: s.get("current_platform") or "" for s in srcs},
            self.opts["allow_older"])
        for i in self.items:
            if not i["dest"] and i["blockers"]:
                i["reason"] = "; ".join(i["blockers"])
        moving = [i for i in self.items if i["dest"]]
        if self.bwlimit and moving:
            # shared by the migrations that can run at once
            self.opts["bwlimit"] = self.bwlimit // admission.most_at_once(
                moving, self.concurrency, self.per_cn)
        return self.items

    def preflight(self, items):
        """The checks each migration makes at its gather that the plan does not
        make itself (placement checks room, NIC tags, platform and DAPI's
        filters), for every instance at once, each a blocker: a Triton (RFD 34)
        migration record, another sdc-migrate holding it, a rollback of it
        not finished."""
        check = [i for i in items if i["kind"] == "migrate" and not i.get("resume")]

        def blockers(item):
            found = []
            uuid = item["uuid"]
            if lock_held(uuid, self.state_dir):
                found.append("another sdc-migrate holds it (lock %s; see `sdc-migrate list`)"
                             % paths.lock(uuid, self.state_dir))
            for j in Journal.all(uuid, state_dir=self.state_dir):
                if j.records and not j.ended and j.begin.get("kind") == "rollback":
                    found.append("a rollback of it was interrupted (journal %s): run `%s`"
                                 " first" % (j.path, j.command()))
            record = self.api.migration(uuid)
            if record and record.get("state") != "aborted":
                found.append("a Triton migration (sdc-vmapi /migrations/%s) in phase %s,"
                             " state %s: finish or abort it with Triton's"
                             " /opt/smartdc/bin/sdc-migrate first"
                             % (uuid, record.get("phase"), record.get("state")))
            return found
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for item, found in zip(check, pool.map(blockers, check)):
                item["blockers"] = item.get("blockers", []) + found

    def resume_items(self, items, srcs):
        """What an interrupted run left: migrations whose journal did not end and NAT
        zones destroyed but not recreated yet."""
        have = {i["uuid"] for i in items}
        names = {s["uuid"]: s["hostname"] for s in srcs}
        for j in Journal.all(state_dir=self.state_dir):
            b = j.begin
            src = (b.get("src") or {}).get("uuid")
            if not b or j.ended or src not in names or b.get("kind", "migration") != "migration":
                continue
            if b["uuid"] in have:
                for i in items:
                    if i["uuid"] == b["uuid"] and i["kind"] == "migrate":
                        i["dest"], i["resume"] = b["dest"], True
                        i["why"] = "an interrupted migration to it: finished or undone first"
                        i["blockers"] = []
                continue
            items.append({"uuid": b["uuid"], "alias": b.get("alias"), "brand": "-",
                          "state": "interrupted", "kind": "migrate", "reason": None,
                          "blockers": [], "source": names[src], "owner": None,
                          "why": "an interrupted migration to it: finished or undone first",
                          "dest": b["dest"], "resume": True, "bytes": 0, "pool": 0, "ram": 0,
                          "tags": set()})
            have.add(b["uuid"])
        for src in srcs:
            try:
                with open(self.state_path(src["hostname"])) as f:
                    earlier = json.load(f)
            except (OSError, ValueError):
                continue
            for i in earlier.get("items", []):
                if i["kind"] == "nat" and i.get("result") != "moved" and i["uuid"] not in have \
                        and i.get("dest"):
                    items.append(dict(i, tags=set(), state="interrupted", resume=True,
                                      bytes=0, pool=0, ram=0, reason=None, blockers=[],
                                      source=src["hostname"]))

    def show(self):
        items = self.items
        rows, notes, whys = [], [], []
        for i in items:
            est = human_duration(self.seconds(i)) if i["dest"] else "-"
            dest = i["dest"] or "-"
            if i["kind"] == "nat" and i["dest"]:
                dest += " (nat-recreate)"
            if i.get("resume"):
                dest += " (resume)"
            rows.append([i["uuid"], i["alias"] or "-", i["brand"] or "-",
                         (human_size(i["bytes"]), i["bytes"]), i["state"],
                         i.get("source") or "-", dest,
                         (est, self.seconds(i) if i["dest"] else None)])
            if not i["dest"]:
                notes.append("  %s (%s):" % (i["uuid"], i["alias"] or "-"))
                notes += ["    - %s" % b for b in i["blockers"] or [i["reason"] or "-"]]
            elif i.get("why"):
                whys.append("  %s (%s) to %s: %s" % (i["uuid"], i["alias"] or "-", i["dest"],
                                                     i["why"]))
        moving = [i for i in items if i["dest"]]
        total = sum(i["bytes"] for i in moving)
        secs = admission.makespan(moving, self.seconds, self.concurrency, self.per_cn)
        if self.as_json:
            for i in items:
                self.emit("plan", uuid=i["uuid"], alias=i["alias"], brand=i["brand"],
                          state=i["state"], kind=i["kind"], bytes=i["bytes"],
                          source=i.get("source"), destination=i["dest"], why=i.get("why"),
                          reason=None if i["dest"] else i["reason"],
                          blockers=[] if i["dest"] else i["blockers"] or [i["reason"]],
                          estimate_s=round(self.seconds(i), 1) if i["dest"] else None)
            self.emit("plan-total", instances=len(moving), bytes=total,
                      estimate_s=round(secs, 1), not_moved=len(items) - len(moving),
                      concurrency=self.concurrency, per_cn=self.per_cn)
            return
        r = self.r
        names = ", ".join("%s (%s)" % (s["hostname"], s["uuid"]) for s in self.srcs)
        r.line("* Evacuating %s: %d instance%s" % (names, len(items),
                                                 "" if len(items) == 1 else "s"))
        r.line()
        if rows:
            r.table(PLAN_HEADERS, rows)
            r.line()
        r.line("Total: %d to move, %s, about %s at %d at a time, at most %d a compute node"
               " (+2 minutes each, as estimated)" % (len(moving), human_size(total),
                                                     human_duration(secs), self.concurrency,
                                                     self.per_cn))
        for pair in sorted({(i.get("source"), i["dest"]) for i in moving
                            if i["kind"] == "migrate"}):
            r.line("  " + self.rate(*pair)[1])
        if self.bwlimit:
            r.line("Bandwidth limit: %s / second in all, %s / second for each migration"
                   % (human_size(self.bwlimit), human_size(self.opts["bwlimit"])))
        if whys and self.dry_run:
            r.line("Placement:")
            r.lines(whys)
        if notes:
            r.line("Not moved:")
            r.lines(notes)
        r.line()

    def rate(self, source, dest):
        """(MB/s, its words) from source to dest: what past migrations between
        them measured (inflight.rate_for, as `estimate`), else 20."""
        if (source, dest) not in self.rates:
            self.rates[source, dest] = rate_for(source or self.sources[0], dest, RATE,
                                                self.state_dir)
        return self.rates[source, dest]

    def seconds(self, item):
        """One item's estimate at the pair's rate, at its share of --bwlimit."""
        rate = self.rate(item.get("source"), item["dest"])[0] if item.get("dest") else RATE
        return estimate_seconds(item["bytes"], capped_rate(self.opts["bwlimit"], rate))

    # ---- run ------------------------------------------------------------------

    def save(self, item=None):
        for source in self.sources:
            mine = [i for i in self.items if (i.get("source") or self.sources[0]) == source]
            path = self.state_path(source)
            fd = os.open(path + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"source": source, "epoch": self.epoch,
                           "items": [dict(i, tags=sorted(i["tags"])) for i in mine]}, f)
            os.rename(path + ".new", path)

    def run(self):
        if self.as_json and not (self.yes or self.dry_run):
            raise Refused("-j needs -y or --dry-run: a script cannot answer the question")
        locks = []
        try:
            if not self.dry_run:
                for name in self.sources:
                    locks.append(InstanceLock(
                        "evacuate-" + name, self.state_dir,
                        busy="compute node %s is being evacuated by another sdc-migrate" % name))
            return self.evacuate()
        finally:
            for lock in locks:
                lock.release()

    def evacuate(self):
        self.plan()
        self.show()
        todo = [i for i in self.items if i["dest"]]
        if self.dry_run:
            return 0 if len(todo) == len(self.items) else 1
        if not todo:
            if self.keep_reserved:
                self.drain()        # maintenance: reserved even when nothing is left
            self.undrain()          # what an earlier, interrupted run drained
            self.emit("summary", "Nothing to move off %s." % ", ".join(self.sources), moved=0,
                      failed=0, not_moved=len(self.items),
                      exit_status=1 if self.items else 0)
            self.finish_state()
            return 1 if self.items else 0
        if not self.yes and not self.r.ask("Are you ready to proceed? [y|n]"):
            raise Refused("not confirmed: nothing was changed")
        self.outdir = os.path.join(self.state_dir, "sdc-migrate-evacuate-%s-%d"
                                   % ("+".join(self.sources), self.epoch))
        os.makedirs(self.outdir, mode=0o700, exist_ok=True)
        self.save()
        self.drain()
        try:
            self.execute(todo)
        except KeyboardInterrupt:
            self.emit("still-drained", "* %s stay%s reserved in CNAPI: run the evacuation again,"
                      " or `sdc-migrate restore CN_NAME` to lift it"
                      % (", ".join(self.sources), "s" if len(self.sources) == 1 else ""),
                      cns=self.sources)
            raise
        self.undrain()
        return self.summary()

    def drain(self):
        """Each source reserved in CNAPI, its flag as it was journaled first."""
        for src in self.srcs:
            rec = drain.drain(self.api, src, self.state_dir)
            self.emit("drained", "* %s is reserved in CNAPI while it is evacuated (it was%s"
                      " reserved before)" % (src["hostname"], "" if rec["was"] else " not"),
                      cn=src["hostname"], was_reserved=rec["was"])

    def undrain(self):
        """The end of the evacuation: each source's reserved flag as it was,
        or, with --keep-reserved, left for `sdc-migrate restore`."""
        for name in self.sources:
            if self.keep_reserved:
                if drain.open_drain(drain.journal(name, self.state_dir).records):
                    drain.keep(name, self.state_dir)
                    self.emit("kept-reserved", "* %s stays reserved in CNAPI (--keep-reserved):"
                              " `sdc-migrate restore %s` lifts it" % (name, name), cn=name)
                continue
            rec = drain.lift(self.api, name, "evacuate", self.state_dir)
            if rec is not None:
                self.emit("undrained", "* %s is %s in CNAPI, as it was before the evacuation"
                          % (name, "reserved" if rec["was"] else "no longer reserved"),
                          cn=name, reserved=rec["was"])

    def execute(self, todo):
        """The migrations, within --concurrency and --per-cn (batch.Batch)."""
        b = batch.Batch(self.mover, self.opts, self.emit, self.outdir, self.concurrency,
                        self.per_cn, self.state_dir,
                        lock_held=lambda uuid: lock_held(uuid, self.state_dir),
                        on_end=self.save)
        try:
            b.execute(todo)
        finally:
            self.most = b.most

    def finish_state(self):
        for source in self.sources:
            try:
                os.unlink(self.state_path(source))
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
                      most_at_once=self.most,
                      instances=[{"uuid": i["uuid"], "source": i.get("source"),
                                  "destination": i["dest"],
                                  "result": i.get("result") or "not moved",
                                  "downtime_s": i.get("downtime")} for i in items])
        else:
            r = self.r
            r.line()
            r.line("                    ===   Evacuation of %s ===" % ", ".join(self.sources))
            r.line()
            rows = []
            for i in items:
                down = i.get("downtime")
                rows.append([i["uuid"], i["alias"] or "-", i.get("source") or "-",
                             i["dest"] or "-",
                             i.get("result") or "not moved: " + (i["reason"] or "-"),
                             (human_duration(down) if down is not None else "-", down)])
            r.table(SUMMARY_HEADERS, rows)
            r.line()
            r.line("%d of %d moved." % (moved, len(items)))
            if self.most:
                r.line("Most migrations at once on a compute node: %s (--per-cn %d)." % (
                    ", ".join("%s %d" % kv for kv in sorted(self.most.items())), self.per_cn))
            if moved:
                r.line("The source copies stay hidden on %s: remove each with"
                       " `sdc-migrate cleanup-source INST_UUID`." % ", ".join(self.sources))
            failed = [i for i in items if i.get("result") not in (None, "moved")]
            if failed:
                r.line("Each migration's output is in %s/; `sdc-migrate list` shows their"
                       " journals." % self.outdir)
        if all(i.get("result") == "moved" for i in items if i["dest"]):
            self.finish_state()
        return status


def count(text, option):
    try:
        n = int(text)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise Usage("%s takes a positive whole number, not %r" % (option, text))
    return n


def main(args):
    concurrency = count(args["--concurrency"], "--concurrency")
    per_cn = count(args["--per-cn"], "--per-cn")
    from ..cli import parse_rate, parse_size
    max_delta = None
    if args["--max-delta"] is not None:
        max_delta = parse_size(args["--max-delta"])
    tables = TableOptions.from_args(args, *TABLES)
    e = Evacuation(args["SOURCE_CN_NAME"], to=args["--to"], concurrency=concurrency,
                   per_cn=per_cn, max_delta=max_delta, allow_older=args["-D"], yes=args["-y"],
                   as_json=args["-j"], dry_run=args["--dry-run"],
                   bwlimit=parse_rate(args["--bwlimit"]), keep_reserved=args["--keep-reserved"])
    e.r.table_options = tables
    on_signals()
    try:
        return e.run()
    finally:
        e.r.close()
