"""sdc-migrate cleanup-source: remove what a migration left on the old source compute node.

Usage:
  sdc-migrate cleanup-source [-y] [--comment-out] INST_UUID
  sdc-migrate cleanup-source -h | --help

After a migration the instance's old copy stays on the source compute node,
hidden from inventory (do-not-inventory), detached and intact. Once the instance is
verified on its new compute node, this removes that copy as the migration's
closing block says: `zonecfg -z INST_UUID delete -F`,
`zfs destroy zones/cores/INST_UUID` and `zfs destroy -r` of zones/INST_UUID
(and of kvm's zones/INST_UUID-diskN), after lifting the do_not_destroy hold
of an indestructible_zoneroot/_delegated copy (zfs release). It then removes
the migration's last snapshot, which the live copy keeps for `sdc-migrate
rollback`: once the old copy is gone there is nothing to roll back to.

It finds the old source compute node in the journals of the finished
migrations and rollbacks on the head node
(/var/tmp/migrator-INST_UUID-*.journal), then in the logs migrator.sh left
(/var/tmp/migrator-INST_UUID-*.log with no journal beside them), or else by
looking on every compute node for the hidden copy. It refuses, removing nothing, unless VMAPI
shows the instance on another compute node that has it installed, and it
never touches that live copy.

Options:
  --comment-out     Only comment out the instance's line in the old source's
                    /etc/zones/index (the reversible first step).
  -y                Do not ask "Are you ready to proceed?".
  -h --help         Show this help.

Exit status: 0 done; 1 failed; 2 bad usage or refused (nothing removed);
3 instance or compute node not found.
"""
import re

from .. import paths, zfs
from ..paths import STATE_DIR
from ..errors import MigrateError, NotFound, Refused
from ..node import Node, Runner, command_line
from ..procedure import InstanceLock, Journal
from ..report import Report
from ..triton import UUID_RE, Triton, admin_ip

USAGE = __doc__
MARK = "@@ sdc-migrate @@"
# One round trip: the zone's state, its XML, its index line, the pool's datasets.
PROBE = ('zoneadm -z "$1" list -p 2>/dev/null; echo "%s"; '
         'cat "/etc/zones/$1.xml" 2>/dev/null; echo "%s"; '
         'grep -e "$1" /etc/zones/index; echo "%s"; %s' % (
             MARK, MARK, MARK, command_line(zfs.list_command(snapshots=True))))
DNI_RE = re.compile(r'<attr\b[^>]*\bname="do-not-inventory"[^>]*>')


class Copy:
    """What a compute node holds of one instance."""

    def __init__(self, node, uuid, out):
        self.node, self.uuid = node, uuid
        parts = out.split(MARK + "\n")
        if len(parts) != 4:
            raise MigrateError("%s: unexpected output probing %s" % (node.hostname, uuid))
        zone, xml, index, listing = parts
        fields = zone.strip().split(":")
        self.state = fields[2] if len(fields) > 2 and fields[1] == uuid else None
        self.xml = bool(xml.strip())
        attr = DNI_RE.search(xml)
        self.hidden = bool(attr and 'value="true"' in attr.group(0))
        self.index = None
        self.index_state = None     # the state field of that line
        for line in index.splitlines():
            f = line.split(":")
            if f[0] == uuid:
                self.index, self.index_state = "live", f[1] if len(f) > 1 else None
            elif f[0] == "#" + uuid and self.index is None:
                self.index, self.index_state = "commented", f[1] if len(f) > 1 else None
        self.datasets = zfs.instance_datasets(listing, uuid)
        self.indestructible = zfs.indestructible_snapshots(listing, self.datasets)
        self.cores = any(l.split("\t")[0] == "zones/cores/" + uuid for l in listing.splitlines())

    @property
    def present(self):
        return bool(self.xml or self.index or self.datasets or self.cores)

    def describe(self):
        what = [self.state or "not configured"]
        if self.hidden:
            what.append("hidden from inventory (do-not-inventory)")
        if self.index == "commented":
            what.append("commented out of /etc/zones/index")
        what.append("%d dataset%s" % (len(self.datasets), "" if len(self.datasets) == 1 else "s"))
        return ", ".join(what)


def probe(node, uuid):
    return Copy(node, uuid, node.run(["sh", "-c", PROBE, "sh", uuid], readonly=True))


def sources(uuid, state_dir=STATE_DIR):
    """(hostname, ip, record) of each source that a finished migration or
    rollback of uuid left a hidden copy on, newest first: from its journal
    (the begin record names the source), else from a log that has no journal,
    one of migrator.sh's (its closing block names it)."""
    found, journaled = [], set()
    for j in Journal.all(uuid, state_dir=state_dir):
        journaled.add(j.path[:-len(".journal")])
        src = j.begin.get("src") or {}
        if j.outcome == "done" and src.get("hostname") and src.get("ip"):
            found.append((j.begin.get("epoch", 0), src["hostname"], src["ip"], j.path))
    for epoch, host, ip, path in _sources_in_logs(uuid, state_dir):
        if path[:-len(".log")] not in journaled:
            found.append((epoch, host, ip, path))
    return [(h, ip, p) for _, h, ip, p in sorted(found, reverse=True)]


def _sources_in_logs(uuid, state_dir):
    found = []
    for path in paths.runs(uuid, "*", ".log", state_dir):
        try:
            with open(path, errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        host = re.search(r"^To remove it on (\S+):$", text, re.M)
        ip = re.search(r'^\s*\* /usr/bin/ssh (\S+) "/usr/sbin/zonecfg -z %s delete -F"$'
                       % re.escape(uuid), text, re.M)
        if host and ip:
            epoch = path.rsplit("-", 1)[-1][:-len(".log")]
            found.append((int(epoch) if epoch.isdigit() else 0, host.group(1), ip.group(1), path))
    return found


def removal_commands(copy, comment_out):
    """The argv lists that remove (or comment out) copy, in the seed's order."""
    u = copy.uuid
    if comment_out:
        if copy.index != "live":
            return []
        return [["sed", "-i.bak", "s/^%s:/#%s:/" % (u, u), "/etc/zones/index"],
                ["rm", "-f", "/etc/zones/index.bak"]]
    cmds = []
    if copy.index == "commented":
        # zonecfg knows only zones the index lists: give it its line back first.
        cmds += [["sed", "-i.bak", "s/^#%s:/%s:/" % (u, u), "/etc/zones/index"],
                 ["rm", "-f", "/etc/zones/index.bak"]]
    if copy.index and copy.index_state == "installed":
        # illumos zonecfg refuses to delete an installed zone (zonecfg_destroy:
        # Z_BAD_ZONE_STATE, -F or not): detach it first. Its datasets stay.
        # (A migration leaves its copy detached; migrator.sh's stay installed.)
        cmds.append(["zoneadm", "-z", u, "detach"])
    if copy.xml or copy.index:
        cmds.append(["zonecfg", "-z", u, "delete", "-F"])
    if copy.cores:
        cmds.append(["zfs", "destroy", "zones/cores/" + u])
    # indestructible_zoneroot/_delegated: lift the hold (VM.js makeDestructible)
    # on this old copy, or zfs refuses to destroy it
    cmds += [["zfs", "release", zfs.HOLD_TAG, s] for s in copy.indestructible]
    cmds += [["zfs", "destroy", "-r", d.name] for d in copy.datasets if d.name.count("/") == 1]
    return cmds


def seed_line(ip, argv):
    """The closing block's way of writing a command: /usr/bin/ssh IP "/usr/sbin/..."."""
    path = "/usr/sbin/" if argv[0] in ("zonecfg", "zoneadm", "zfs") else "/usr/bin/"
    return '   * /usr/bin/ssh %s "%s%s"' % (ip, path, command_line(argv))


class Cleanup:
    def __init__(self, uuid, yes=False, comment_out=False, report=None, runner=None,
                 state_dir=STATE_DIR):
        self.uuid, self.yes, self.comment_out = uuid, yes, comment_out
        self.r = report or Report()
        self.hn = runner or Runner()
        self.api = Triton(self.hn)
        self.state_dir = state_dir
        self.nodes = []

    def node(self, server):
        n = Node(server["hostname"], server["uuid"], admin_ip(server), trace=self.hn.trace)
        self.nodes.append(n)
        return n

    def run(self):
        if not UUID_RE.match(self.uuid or ""):
            raise Refused("'%s' is not an instance UUID" % self.uuid)
        self._take_lock()
        try:
            live, copies = self.gather()
            return self.act(live, copies)
        finally:
            for n in self.nodes:
                n.close()
            self.lock.release()

    def _take_lock(self):
        """The migration's own lock: never clean up while the instance is moving."""
        try:
            self.lock = InstanceLock(self.uuid, self.state_dir)
        except Refused as e:
            raise Refused("%s: nothing removed" % e) from None
        # After its switch an interrupted migration still has work on the source.
        unfinished = Journal.unfinished(self.uuid)
        if unfinished:
            self.lock.release()
            raise Refused("a migration of %s did not finish (journal %s): run it again to"
                          " finish it first; nothing removed" % (self.uuid, unfinished[-1].path))

    def gather(self):
        r, u = self.r, self.uuid
        vm = self.api.vm(u)
        self.alias = vm.get("alias") or "-"
        r.line("* Looking for what migrations left of %s (%s)..." % (u, self.alias))
        if vm.get("state") in ("destroyed", "failed") or not vm.get("server_uuid"):
            raise Refused("VMAPI shows instance %s %s, on no compute node: there is no live"
                          " copy to keep; nothing removed" % (u, vm.get("state")))
        live_server = self.api.server(vm["server_uuid"])
        live = probe(self.node(live_server), u)
        if live.state not in ("installed", "running", "ready") or not live.datasets \
                or live.hidden:
            raise Refused("VMAPI shows %s on %s, but %s does not have it installed (%s);"
                          " nothing removed" % (u, live.node.hostname, live.node.hostname,
                                                live.describe()))
        r.line("    + VMAPI shows it on %s (%s), which has it %s" % (
            live.node.hostname, live.node.uuid, live.state))
        copies = self.find_copies(live)
        return live, copies

    def find_copies(self, live):
        """The hidden copies: on the sources the journals (or migrator.sh's
        logs) name, else on every CN."""
        r, u = self.r, self.uuid
        copies, seen = [], {live.node.uuid}
        for host, ip, record in sources(u, self.state_dir):
            r.line("    + %s names %s (%s) as the source" % (record, host, ip))
            try:
                server = self.api.server_by_hostname(host)
            except NotFound:
                r.line("      > %s is not in CNAPI any more" % host)
                continue
            if server["uuid"] in seen:
                continue
            seen.add(server["uuid"])
            copy = probe(self.node(server), u)
            if copy.present:
                copies.append(copy)
            else:
                r.line("      > %s holds nothing of %s any more" % (host, u))
        if not copies:
            r.line("    + looking for a hidden copy on every compute node...")
            for server in self.api.servers():
                if server["uuid"] in seen or server.get("headnode") or not server.get("setup"):
                    continue
                seen.add(server["uuid"])
                copy = probe(self.node(server), u)
                if copy.present:
                    copies.append(copy)
        if not copies:
            raise Refused("no compute node but %s holds %s: it never moved, or its old copy is"
                          " gone already; nothing removed" % (live.node.hostname, u))
        for copy in copies:
            r.line("    + %s holds a copy: %s" % (copy.node.hostname, copy.describe()))
            if copy.node.uuid == live.node.uuid or copy.node.ip == live.node.ip:
                raise Refused("%s is where the instance lives; nothing removed"
                              % copy.node.hostname)
            if (copy.xml or copy.index) and not copy.hidden:
                raise Refused("the copy on %s is not hidden from inventory (no do-not-inventory"
                              " attr): it may be live; nothing removed" % copy.node.hostname)
            if copy.state == "running":
                raise Refused("the copy on %s is running; nothing removed" % copy.node.hostname)
        return copies

    # ---- act ----------------------------------------------------------------

    def act(self, live, copies):
        r, u = self.r, self.uuid
        plans = [(c, removal_commands(c, self.comment_out)) for c in copies]
        if not any(cmds for _, cmds in plans):
            r.line("  - %s is commented out of /etc/zones/index already on %s: nothing to do"
                   % (u, ", ".join(c.node.hostname for c in copies)))
            return 0
        r.line()
        for copy, cmds in plans:
            if self.comment_out:
                r.line("To comment out %s on %s in /etc/zones/index:" % (u, copy.node.hostname))
            else:
                r.line("To remove it on %s:" % copy.node.hostname)
            for argv in cmds:
                r.line(seed_line(copy.node.ip, argv))
        r.line()
        if not self.yes and not r.ask("Are you ready to proceed? [y|n]"):
            raise Refused("not confirmed: nothing was removed")
        for copy, cmds in plans:
            node = copy.node
            r.line("* %s %s on %s..." % ("Commenting out" if self.comment_out else "Removing",
                                         u, node.hostname))
            for argv in cmds:
                r.step("    + %s" % command_line(argv))
                try:
                    node.run(argv)
                except MigrateError:
                    r.failed()
                    raise
                r.done()
            self.check(probe(node, u))
        if not self.comment_out:
            # the last migration's snapshot, kept for `sdc-migrate rollback`:
            # with the old copy gone there is nothing to roll back to
            r.step("* Removing the migration snapshots kept on %s for a rollback..."
                   % live.node.hostname)
            live.node.run(["sh", "-c", zfs.DESTROY_MIGRATION_SNAPSHOTS, "sh", ""]
                          + [d.name for d in live.datasets])
            r.done()
        r.line()
        r.line("%s (%s) lives on %s only." % (u, self.alias, live.node.hostname)
               if not self.comment_out else
               "%s (%s) is commented out on %s; `sdc-migrate cleanup-source %s` removes it."
               % (u, self.alias, ", ".join(c.node.hostname for c in copies), u))
        return 0

    def check(self, after):
        """zfs and zonecfg exit codes have lied before: look again."""
        host = after.node.hostname
        if self.comment_out:
            if after.index != "commented":
                raise MigrateError("%s: the index line of %s is not commented out"
                                   % (host, self.uuid))
            self.r.line("  - %s: /etc/zones/index line commented out" % host)
            return
        left = ([d.name for d in after.datasets] + (["zones/cores/" + self.uuid] if after.cores
                                                     else [])
                + (["/etc/zones/%s.xml" % self.uuid] if after.xml else [])
                + (["its /etc/zones/index line"] if after.index else []))
        if left:
            raise MigrateError("%s still holds %s" % (host, ", ".join(left)))
        self.r.line("  - %s holds nothing of %s any more" % (host, self.uuid))


def main(args):
    c = Cleanup(args["INST_UUID"], yes=args["-y"], comment_out=args["--comment-out"])
    return c.run()
