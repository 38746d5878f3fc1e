"""sdc-migrate estimate: how long moving instances off compute nodes would take.

Usage:
  sdc-migrate estimate [--rate=MBPS] [-j] [--measure=DEST_CN_NAME]
                       [-H] [-o COL,...] [-s COL,...] [CN_NAME...]
  sdc-migrate estimate -h | --help

The successor of mig-estimator.sh. On the head node it covers the compute
nodes named, or every set-up compute node but the head node when none is
named, with one remote call per compute node; on a compute node (no
/opt/smartdc/bin/sdc-cnapi there) it covers that node's own instances.

Per instance: UUID, alias, brand, state, the size of all its datasets (kvm's
zones/UUID-diskN and bhyve's zones/UUID/diskN included) as a migration sends
them: their own blocks and their snapshots' (usedbydataset + usedbysnapshots;
not REFER, which counts a clone's image) and the time a migration
would take at the rate, plus the two minutes every migration spends besides
the data. Per compute node the purge figure: the time to migrate every
instance off it, one after another. NAT zones (moved by
`sdc-migrate nat-recreate`), core zones (not moved) and the hidden copies
that migrations leave behind (removed by `sdc-migrate cleanup-source`) are
listed but not counted.

The rate is what past migrations out of each compute node measured, from
their journals on the head node (the bytes their streams sent over the time
they took), and the output says so ("rate: 84 MB/s, measured by 3
migrations source-server -> dest-server"); --rate where none did.

Options:
  --rate=MBPS               Transfer rate in MB/s where no past migration out
                            of the compute node measured one [default: 20].
  --measure=DEST_CN_NAME    Measure the rate first: send a 64 MB test stream
                            from each compute node to DEST_CN_NAME, as a
                            migration sends (zfs send | ssh | zfs recv, with a
                            temporary key; from a SunSSH CN, pulled by
                            DEST_CN_NAME at aes128-ctr), remove it, and use
                            that rate.
  -j                        One JSON object per instance and one per compute
                            node (the whole record: -o does not apply).
  -H                        Omit the tables' header rows.
  -o COL,...                The columns to show, in this order: uuid, alias,
                            brand, state, datasets, size, estimate.
  -s COL,...                Sort each compute node's table on these columns
                            (sizes by bytes, estimates by seconds; -COL
                            descending); default: by alias.
  -h --help                 Show this help.

Exit status: 0 done; 1 a compute node could not be read (the others are
reported); 2 bad usage or refused; 3 compute node not found.
"""
import concurrent.futures
import json
import os
import time

from .. import cnlink, placement, zfs
from ..cnlink import TempKey
from ..errors import MigrateError, NotFound, Refused, Usage
from ..node import Node, Runner
from ..report import Report, TableOptions, estimate_seconds, human_duration, human_size
from ..procedure import STATE_DIR
from ..triton import Triton, admin_ip
from .inflight import rate_for

USAGE = __doc__
HEADNODE_TOOL = "/opt/smartdc/bin/sdc-cnapi"
OVERHEAD = 120
MEASURE_MB = 64
SEPARATOR = "--- sdc-migrate estimate ---"
# alias last: it is the one field a user chose.
HEADERS = ["UUID", "ALIAS", "BRAND", "STATE", "DATASETS", "SIZE", "ESTIMATE"]
TABLES = [HEADERS]      # -o and -s name their columns
VMADM_FIELDS = ("uuid,brand,state,do_not_inventory,tags.smartdc_role,tags.smartdc_type,"
                "tags.manta_role,alias")


def listing_commands():
    """What one remote call runs on a compute node: its zones, then its datasets."""
    return [["vmadm", "list", "-p", "-o", VMADM_FIELDS], ["echo", SEPARATOR],
            zfs.list_command()]


def parse_rate(text):
    try:
        rate = float(text)
    except (TypeError, ValueError):
        rate = 0
    if not rate > 0:
        raise Usage("--rate takes a positive number of MB/s, not %r" % text)
    return rate


def note_for(vm, dni):
    """Why an instance of the listing is not moved (placement.kind_of), else None."""
    if dni == "true":
        return "(hidden copy: cleanup-source)"
    kind, what = placement.kind_of(vm)
    if kind == "nat":
        return "(NAT zone: nat-recreate)"
    if kind == "core":
        return "(core zone %s: not moved)" % what
    return None


def parse_listing(out):
    """Instances from the output of listing_commands(), with their datasets."""
    zones_part, sep, datasets_part = out.partition(SEPARATOR + "\n")
    if not sep:
        raise MigrateError("unexpected listing output: %r" % out[:200])
    instances = []
    for line in zones_part.splitlines():
        f = line.split(":")
        if len(f) < 8:
            continue
        uuid, brand, state, dni, role, kind, manta = f[:7]
        alias = ":".join(f[7:])
        tags = {k: v for k, v in (("smartdc_role", role), ("smartdc_type", kind),
                                  ("manta_role", manta)) if v}
        datasets = zfs.instance_datasets(datasets_part, uuid)
        instances.append({
            "uuid": uuid, "alias": alias, "brand": brand, "state": state,
            "datasets": [d.name for d in datasets], "bytes": zfs.sent_size(datasets),
            "note": note_for({"alias": alias, "state": state, "tags": tags}, dni)})
    instances.sort(key=lambda i: (i["note"] is not None, i["alias"], i["uuid"]))
    return instances


def summarize(cn, instances, rate, measured, rate_text=None):
    """Each instance's estimate and the compute node's purge figure."""
    movable = [i for i in instances if i["note"] is None]
    for i in instances:
        i["estimate_seconds"] = round(estimate_seconds(i["bytes"], rate, OVERHEAD), 1) \
            if i["note"] is None else None
    total = sum(i["bytes"] for i in movable)
    return {"cn": cn["hostname"], "server_uuid": cn["uuid"], "instances": len(movable),
            "bytes": total,
            "purge_seconds": round(sum(i["estimate_seconds"] for i in movable), 1),
            "rate_mb": round(rate, 1), "rate_measured": measured, "rate": rate_text,
            "not_counted": len(instances) - len(movable)}


def instance_rows(instances):
    return [[i["uuid"], i["alias"] or "-", i["brand"], i["state"],
             (str(len(i["datasets"])), len(i["datasets"])), (human_size(i["bytes"]), i["bytes"]),
             (human_duration(i["estimate_seconds"]), i["estimate_seconds"])
             if i["note"] is None else i["note"]]
            for i in instances]


def count(n, what):
    return "%d %s%s" % (n, what, "" if n == 1 else "s")


def purge_line(s):
    how = "measured" if s["rate_measured"] else "at"
    return ("  purge %s:  %s across %s: %s (%s ~%g MB / second; +2 minutes"
            " extra each)" % (s["cn"], human_size(s["bytes"]), count(s["instances"], "instance"),
                              human_duration(s["purge_seconds"]), how, s["rate_mb"]))


class Estimate:
    def __init__(self, rate=20.0, as_json=False, measure=None, names=(), report=None,
                 runner=None, state_dir=STATE_DIR):
        self.rate, self.as_json, self.measure, self.names = rate, as_json, measure, list(names)
        self.r = report or Report()
        self.hn = runner or Runner()
        self.state_dir = state_dir
        self.failed = 0

    def run(self):
        if os.path.exists(HEADNODE_TOOL):
            cns = self.head_node_targets()
        else:
            cns = [self.this_node()]
        rates = self.measure_rates(cns) if self.measure else {}
        # every CN read at once (one remote call each), reported in order
        with concurrent.futures.ThreadPoolExecutor(max(1, len(cns))) as pool:
            listings = list(pool.map(lambda c: self.listing(c[1]), cns))
        for (cn, node), listing in zip(cns, listings):
            if cn["uuid"] in rates:
                rate, measured = rates[cn["uuid"]]
                text = "rate: %.0f MB/s, measured now %s -> %s" % (
                    rate, cn["hostname"], self.measure)
            else:
                # what past migrations out of it measured, else --rate
                measured = False
                rate, text = rate_for(cn["hostname"], None, self.rate, self.state_dir)
            self.one(cn, node, listing, rate, measured, text)
        return 1 if self.failed else 0

    @staticmethod
    def listing(node):
        """A CN's instances (or the error that kept them from us), in one remote call."""
        try:
            return parse_listing(node.script(listing_commands(), readonly=True))
        except MigrateError as e:
            return e
        finally:
            if isinstance(node, Node):
                node.close()

    def this_node(self):
        """On a compute node: itself, run locally."""
        if self.measure:
            raise Refused("--measure needs the head node (it sends between compute nodes)")
        info = json.loads(self.hn.run(["sysinfo"], readonly=True))
        host = info.get("Hostname") or os.uname().nodename
        if any(n != host for n in self.names):
            raise Refused("on a compute node, estimate covers only its own instances (%s);"
                          " run it on the head node for %s" % (host, ", ".join(self.names)))
        self.hn.name = host
        return {"hostname": host, "uuid": info.get("UUID")}, self.hn

    def head_node_targets(self):
        api = Triton(self.hn)
        # one CNAPI call, sysinfo (hence admin IPs) included
        everyone = api.servers()
        if self.names:
            by_name = {s.get("hostname"): s for s in everyone}
            missing = [n for n in self.names if n not in by_name]
            if missing:
                raise NotFound("compute node %s not found in CNAPI" % missing[0])
            servers = [by_name[n] for n in dict.fromkeys(self.names)]
        else:
            servers = [s for s in everyone if s.get("setup") and not s.get("headnode")]
            servers.sort(key=lambda s: s.get("hostname") or "")
        self.dest = api.server_by_hostname(self.measure) if self.measure else None
        return [(s, self.node(s)) for s in servers]

    def node(self, server):
        return Node(server["hostname"], server["uuid"], admin_ip(server), trace=self.hn.trace)

    def one(self, cn, node, instances, rate, measured, rate_text=None):
        if isinstance(instances, MigrateError):
            e = instances
            self.failed += 1
            if self.as_json:
                self.r.json_event("cn", cn=cn["hostname"], server_uuid=cn["uuid"], error=str(e))
            else:
                self.r.line("%s: cannot list its instances: %s" % (cn["hostname"], e))
                self.r.line()
            return
        summary = summarize(cn, instances, rate, measured, rate_text)
        if self.as_json:
            for i in instances:
                self.r.json_event("instance", **dict(
                    i, cn=cn["hostname"], server_uuid=cn["uuid"], rate_mb=summary["rate_mb"]))
            self.r.json_event("cn", **summary)
            return
        ip = getattr(node, "ip", None)
        self.r.line("%s (%s%s): %s" % (cn["hostname"], cn["uuid"], ", " + ip if ip else "",
                                       count(len(instances), "instance")))
        if instances:
            self.r.table(HEADERS, instance_rows(instances))
        self.r.line(purge_line(summary))
        if rate_text:
            self.r.line("  " + rate_text)
        self.r.line()

    # ---- --measure ----------------------------------------------------------

    def measure_rates(self, cns):
        """{server uuid: (MB/s, True)} for every compute node but the destination."""
        dst = self.node(self.dest)
        rates = {}
        try:
            for cn, node in cns:
                if cn["uuid"] == self.dest["uuid"]:
                    if not self.as_json:
                        self.r.line("* %s is the measure's destination: its rate stays"
                                    " %g MB / second" % (cn["hostname"], self.rate))
                    continue
                rate = measure(node, dst)
                rates[cn["uuid"]] = (rate, True)
                if not self.as_json:
                    self.r.line("* Measured %s -> %s: %.1f MB / second (%d MB, zfs send |"
                                " ssh | zfs recv)" % (cn["hostname"], dst.hostname, rate,
                                                      MEASURE_MB))
        finally:
            dst.close()
        if not self.as_json:
            self.r.line()
        return rates


def measure(src, dst):
    """MB/s of a MEASURE_MB test stream from src to dst, sent as a migration sends it.

    The scratch dataset (random data, so that nothing compresses it away), its
    snapshot, the received copy and the temporary key are removed whatever
    happens. The round trip of one remote command is subtracted from the time.
    """
    tag = "measure-%d" % os.getpid()
    name = "sdc-migrate-" + tag
    ds = "zones/" + name
    # the way a migration would take between them (cnlink.Link): a SunSSH
    # source is pulled from, at a cipher both have
    link = cnlink.Link(*cnlink.read_facts(src, dst))
    key = TempKey(src, dst, tag, "sdc-migrate-estimate", name, link)    # zones/NAME only
    runner = dst if link.pull else src
    try:
        src.run(["zfs", "create", "-o", "compression=off", "-o",
                 "mountpoint=/" + ds, ds])
        src.script([["dd", "if=/dev/urandom", "of=/%s/data" % ds, "bs=1048576",
                     "count=%d" % MEASURE_MB], ["zfs", "snapshot", ds + "@measure"]])
        key.create()
        t0 = time.time()
        runner.run(["true"], readonly=True)
        rtt = time.time() - t0
        t0 = time.time()
        runner.run(zfs.send_pipeline(ds, "measure", None, src.ip, dst.ip, key.key,
                                     key.known_hosts, link=link))
        seconds = max(time.time() - t0 - rtt, 0.001)
    finally:
        for node in (dst, src):
            node.call(["zfs", "destroy", "-r", ds])
        key.remove()
    return MEASURE_MB / seconds


def main(args):
    rate = parse_rate(args["--rate"])
    e = Estimate(rate, args["-j"], args["--measure"], args["CN_NAME"])
    e.r.table_options = TableOptions.from_args(args, *TABLES)
    return e.run()
