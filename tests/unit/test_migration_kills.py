"""The real migration procedure (migrate.FULL and INCREMENTAL) on a fake
runner: two compute nodes and a VMAPI/NAPI kept as sets of facts that the
commands the steps send change. The run is SIGKILLed at every command that
changes something, once before the command takes effect and once after,
and the same command is run again: it must finish the migration (past the
switch) or undo the killed run and migrate anew, ending in exactly the
world an uninterrupted migration ends in. And a failure at every command
before the switch must roll back to exactly the world before.

The e2e suite does this in the simulated datacenter at the points its
faults can reach; this one reaches every point of the engine."""
import contextlib
import json
import re
import shlex
import tempfile
import zlib

import pytest

from sdc_migrate import cnlink, paths, zfs
from sdc_migrate.commands import migrate
from sdc_migrate.errors import NeedsOperator, RemoteError, RolledBack
from sdc_migrate.node import Runner
from sdc_migrate.steps import preparation, transfer, zone

UUID = "5ca5b3dc-48fe-6f75-ed8c-8d8fbd77e2aa"
DS = "zones/" + UUID
IMAGE = "ef22b182-3d7a-11e2-a7a9-af27913943e2"
NET = "1fc0dc23-bd47-4e21-9c5e-d3e4a2f4e1c5"
IP = "10.1.1.33"


def guid(snapshot):
    """A snapshot's GUID: the same on both CNs for the same snapshot."""
    return zlib.crc32(snapshot.encode())


# what cnlink.FACTS prints on a current platform
FACTS = ("OpenSSH_9.1p1, LibreSSL 3.7.3\n--- sdc-migrate: host keys ---\n"
         "ssh-ed25519 HOSTKEY root@cn\nssh-rsa RSAKEY root@cn\n--- sdc-migrate: zfs ---\n"
         "resumable\n--- sdc-migrate: net-agent ---\n"
         '{"name": "net-agent", "version": "2.3.6"}\n\n' + cnlink.FACTS_END + "\n")


# old-server's platform (2015): SunSSH, an rsa host key, no resumable receive
OLD_FACTS = ("Sun_SSH_1.5, SSH protocols 1.5/2.0, OpenSSL 0x1000204f\n"
             "--- sdc-migrate: host keys ---\nssh-rsa RSAKEY root@cn\n--- sdc-migrate: zfs ---\n"
             "not-resumable\n--- sdc-migrate: net-agent ---\n"
             '{"name": "net-agent", "version": "2.3.6"}\n\n' + cnlink.FACTS_END + "\n")


class Killed(BaseException):
    """SIGKILL: nothing of the run's own handling runs after it."""


class World:
    """What an operator would look at: facts on each CN and in the APIs."""

    def __init__(self, src_facts=FACTS):
        self.facts_text = {"src": src_facts, "dst": FACTS}   # what cnlink.FACTS prints
        self.ran = set()            # (CN, what) of the streams and keys: where they ran
        self.facts = {"src": {"running", "visible", "autoboot"}, "dst": set(), "napi": set()}
        self.tickets = []           # CNAPI's waitlist: {uuid, server, status, extra}
        self.snaps = {"src": {DS: []}, "dst": {}}     # dataset -> snapshots, oldest first
        self.changes = 0            # commands that changed something, so far
        self.kill = None            # (n, "before" | "after"): die at the nth change
        self.fail = None            # n: the nth change fails (exit 1)
        self.fail_also = None       # and this one too

    def changing(self, effect):
        """Count a command that changes something; kill or fail it as told."""
        self.changes += 1
        n = self.changes
        if self.kill == (n, "before"):
            raise Killed()
        if n in (self.fail, self.fail_also):
            return False
        effect()
        if self.kill == (n, "after"):
            raise Killed()
        return True

    def state(self):
        held = sorted((t["server"], t["status"]) for t in self.tickets
                      if t["status"] in ("active", "queued"))
        return ({k: sorted(v) for k, v in self.facts.items()},
                {k: {d: list(s) for d, s in v.items()} for k, v in self.snaps.items()}, held)


class FakeCN(Runner):
    """A compute node answering the commands the steps send, as SmartOS does."""

    def __init__(self, world, which, hostname, uuid, ip):
        super().__init__()
        self.world, self.which = world, which
        self.name = self.hostname = hostname
        self.uuid, self.ip = uuid, ip

    @property
    def facts(self):
        return self.world.facts[self.which]

    @property
    def snaps(self):
        return self.world.snaps[self.which]

    def close(self):
        pass

    def stream(self, argv, on_line, readonly=False, input=None):
        return self.call(argv, readonly, input)

    def call(self, argv, readonly=False, input=None):
        argv = [str(a) for a in argv]
        if argv[:2] == ["/bin/sh", "-c"]:          # Runner.script: A && B && ...
            out = ""
            for part in argv[2].split(" && "):
                status, o, err = self.call(shlex.split(part), readonly, input)
                out += o
                if status:
                    return status, out, err
            return 0, out, ""
        return self.answer(argv, input)

    def change(self, effect, out=""):
        if not self.world.changing(effect):
            return 1, "", "injected failure"
        return 0, out, ""

    def listing(self, snapshots):
        lines = []
        for name, snaps in self.snaps.items():
            lines.append("\t".join([name, "filesystem", "zones/%s@final" % IMAGE, "1000000",
                                    "1000000", "none", "1000000", "0", "0", "none", "none",
                                    "0"]))
            if snapshots:
                lines += ["\t".join(["%s@%s" % (name, s), "snapshot", "-", "0", "0", "-",
                                     "0", "0", "0", "-", "-", "-"]) for s in snaps]
        return "".join(l + "\n" for l in lines)

    def guid_lines(self, names):
        out = ""
        for n in names:
            ds, _, snap = n.partition("@")
            if snap in self.snaps.get(ds, []) or n == "zones/%s@final" % IMAGE:
                out += "%s\t%d\n" % (n, guid(n))
        return out

    def answer(self, argv, input):
        facts, w = self.facts, self.world
        script = argv[2] if argv[:2] == ["sh", "-c"] else None
        args = argv[4:] if script else []
        if script == migrate.GATHER_SOURCE:
            return 0, (w.facts_text["src"] + self.listing(True) + args[0] + "\n100000000000\n\n"
                       + args[0] + "\noff\n"), ""
        if argv == zfs.list_command(snapshots=True):       # a resumed run's look
            return 0, self.listing(True), ""
        if script == migrate.GATHER_DEST:
            return 0, w.facts_text["dst"] + "100000000000\noff\n" + self.listing(False), ""
        if script == cnlink.MAKE_KEY:
            w.ran.add((self.which, "key " + args[5]))
            return self.change(lambda: facts.add("key"), "ssh-%s PUBKEY %s" % (args[5], args[1]))
        if script == cnlink.AUTHORIZE:
            return self.change(lambda: facts.add("authorized"))
        if script == cnlink.UNAUTHORIZE:
            return self.change(lambda: facts.discard("authorized"))
        if argv[:2] == ["rm", "-f"]:
            return self.change(lambda: facts.discard("key"))
        if script == preparation.NDD_GET:
            tuned = "tuned" in facts or self.which == "src"
            return 0, "2097152\n1048576\n1048576\n" if tuned else "1048576\n1048576\n49152\n", ""
        if script == preparation.NDD_SET:
            wanted = args[1] == "2097152" if args[0] == "tcp_max_buf" else args[1] == "1048576"
            return self.change(lambda: facts.add("tuned") if wanted else facts.discard("tuned"))
        if argv[:2] == ["zfs", "get"] and "guid" in argv:
            return 0, self.guid_lines([a for a in argv if "@" in a]), ""
        if argv[:1] == ["cat"]:
            if argv[1].endswith(".xml"):
                return 0, '<zone><attr name="create-timestamp"/><attr name="dataset-uuid"/>', ""
            return 0, "%s:installed:/zones/%s:%s\n" % (UUID, UUID, UUID), ""
        if argv[:2] == ["vmadm", "get"]:
            return 0, json.dumps({"state": "running" if "running" in facts else "stopped",
                                  "autoboot": "autoboot" in facts}), ""
        if script == zone.STOP_AND_EXPORT:
            return self.change(lambda: facts.discard("running"),
                               "0:%s:installed:/zones/%s\n%s\ncreate -b\nset autoboot=true\n"
                               % (UUID, UUID, zone.EXPORT_MARK))
        if script == zone.START_AND_REPORT:
            return self.change(lambda: facts.add("running"))
        if argv[:2] == ["zfs", "snapshot"]:
            def take():
                for s in argv[2:]:
                    self.snaps[s.split("@")[0]].append(s.split("@")[1])
            return self.change(take)
        if argv[:3] == ["zfs", "get", "-Hp"] and "written" in argv:
            return 0, "".join("1000\n" for a in argv if "@" in a), ""
        if argv[:2] == ["zfs", "list"] and "createtxg" in argv:
            return 0, "".join("%s@%s\n" % (d, s) for d in argv if d in self.snaps
                              for s in self.snaps[d]), ""
        if argv[:2] == ["zfs", "list"] and "name,guid" in argv:
            return 0, "".join("%s@%s\t%d\n" % (d, s, guid("%s@%s" % (d, s)))
                              for d in self.snaps for s in self.snaps[d]), ""
        if argv[:2] == ["bash", "-o"]:          # zfs send ... | ssh DEST zfs recv ...
            to = re.findall(r"%s@(\S+)" % re.escape(DS), argv[-1].split("|")[0])[-1]
            to = to.rstrip("'\"")                # ssh SRC 'zfs send ...' | zfs recv: pulled
            w.ran.add((self.which, "stream " + " ".join(
                word for word in ("aes128-ctr", "aes128-gcm@openssh.com", "recv -s")
                if word in argv[-1])))
            dst = w.snaps["dst"]

            def receive():
                dst.setdefault(DS, [])
                if to not in dst[DS]:
                    dst[DS].append(to)
            return self.change(receive)
        if argv[:3] == ["zfs", "get", "-H"] and "receive_resume_token" in argv:
            return 0, "".join("%s\t-\n" % d for d in argv[6:]), ""
        if script == zfs.MOUNT_DATASETS or script == zfs.RECEIVE_WAITER:
            return 0, "", ""
        if script == zfs.DESTROY_TREES:
            def destroy():
                for d in args:
                    self.snaps.pop(d, None)
                    if d.startswith("zones/cores/"):
                        facts.discard("cores")
            return self.change(destroy)
        if script == zfs.DESTROY_MIGRATION_SNAPSHOTS:
            def destroy():
                for d in args[1:]:
                    self.snaps[d] = [s for s in self.snaps.get(d, []) if s == args[0]]
            return self.change(destroy)
        if argv[:2] == ["zfs", "create"]:
            return self.change(lambda: facts.add("cores"))
        if script == zone.IMPORT_CONFIG:
            assert "do-not-inventory" in input and 'set autoboot="false"' in input
            return self.change(lambda: facts.update({"config"}),
                               '<zone><attr name="do-not-inventory" value="true"/></zone>')
        if argv[:1] == ["zonecfg"] and argv[3:] == ["delete", "-F"]:
            return self.change(lambda: facts.discard("config"))
        if script == zone.HIDE_SOURCE:
            if "running" in facts:
                return 3, "", "the copy of %s is running, not installed and stopped" % UUID
            if "detached" in facts:
                return 0, "", ""
            return self.change(lambda: facts.difference_update({"autoboot", "visible"}))
        if script == zone.DETACH_SOURCE:
            if "running" in facts:
                return 3, "", "the old copy of %s is running: stop it there" % UUID
            if "detached" in facts:
                return 0, "", ""
            return self.change(lambda: facts.add("detached"))
        if script == zone.SHOW_SOURCE:
            def show():
                facts.discard("detached")
                facts.add("visible")
                (facts.add if args[1] == "true" else facts.discard)("autoboot")
            return self.change(show)
        if script == zone.DEST_COPY:
            if "config" not in facts:
                return 0, "@@\n", ""
            hidden = "visible" not in facts
            return 0, "0:%s:%s:/zones/%s\n@@\n<attr name=\"do-not-inventory\" value=\"%s\"/>" % (
                UUID, "installed" if "attached" in facts else "configured", UUID,
                "true" if hidden else "false"), ""
        if argv[:3] == ["zoneadm", "-z", UUID] and argv[3] in ("attach", "detach"):
            return self.change(lambda: (facts.add if argv[3] == "attach" else facts.discard)(
                "attached"))
        if argv[:2] == ["vmadm", "update"]:
            def update():
                for a in argv[3:]:
                    key, _, value = a.partition("=")
                    name = {"autoboot": "autoboot", "do_not_inventory": "visible"}[key]
                    on = (value == "true") != (key == "do_not_inventory")
                    (facts.add if on else facts.discard)(name)
            return self.change(update)
        if argv[:2] == ["vmadm", "start"]:
            return self.change(lambda: facts.add("running"))
        if argv[:2] == ["svcadm", "restart"]:
            return 0, "", ""
        if argv[:2] == ["zoneadm", "-z"] and argv[3:] == ["list", "-p"]:
            return 0, "0:%s:%s:/zones/%s\n" % (UUID, "running" if "running" in facts
                                                else "installed", UUID), ""
        if script == zone.HEALTH:
            return 0, "0:%s:running:/zones/%s\nonline\n" % (UUID, UUID), ""
        raise AssertionError("the fake CN has no answer for %s" % argv)


class FakeAPI:
    """VMAPI, CNAPI and NAPI as the steps ask them."""

    def __init__(self, world):
        self.world = world

    def vm(self, uuid):
        f = self.world.facts
        there = "config" in f["dst"] and "visible" in f["dst"]
        on = f["dst" if there else "src"]
        return {"uuid": UUID, "alias": "web0", "brand": "joyent", "ram": 256,
                "state": "running" if "running" in on else "stopped",
                "server_uuid": SERVERS["dst" if there else "src"]["uuid"],
                "autoboot": True, "image_uuid": IMAGE, "owner_uuid": "930896af",
                "create_timestamp": "2026-12-01T00:00:00.000Z",
                "nics": [{"ip": IP, "network_uuid": NET}]}

    def migration(self, uuid):
        return None

    def found(self, api, path):
        return {}       # a package and an image without traits

    def server(self, uuid):
        return [s for s in SERVERS.values() if s["uuid"] == uuid][0]

    def server_by_hostname(self, name):
        return [s for s in SERVERS.values() if s["hostname"] == name][0]

    def vms(self, **filters):
        return []

    def ip(self, net, ip):
        return {"reserved": "reserved" in self.world.facts["napi"]}

    # CNAPI's waitlist: one queue per server (scope vm, id UUID)
    def create_ticket(self, server, scope, ident, expires_at, action, extra):
        made = {}

        def create():
            busy = any(t["server"] == server and t["status"] == "active"
                       for t in self.world.tickets)
            made.update(uuid="t%d" % len(self.world.tickets), server=server, scope=scope,
                        id=ident, extra=extra, status="queued" if busy else "active")
            self.world.tickets.append(made)
        if not self.world.changing(create):
            raise RemoteError("headnode", ["sdc-cnapi"], 1, "injected failure")
        return {"uuid": made["uuid"], "queue": [dict(made)]}

    def tickets(self, server):
        return [dict(t) for t in self.world.tickets if t["server"] == server]

    def wait_ticket(self, uuid, seconds):
        t = [t for t in self.world.tickets if t["uuid"] == uuid][0]
        return None if t["status"] == "active" else "timeout"

    def release_ticket(self, uuid):
        def release():
            for t in self.world.tickets:
                if t["uuid"] == uuid:
                    t["status"] = "finished"
        if not self.world.changing(release):
            raise RemoteError("headnode", ["sdc-cnapi"], 1, "injected failure")
        return True

    def set_ip_reserved(self, net, ip, reserved):
        napi = self.world.facts["napi"]
        if not self.world.changing(lambda: (napi.add if reserved else napi.discard)("reserved")):
            raise RemoteError("headnode", ["sdc-napi"], 1, "injected failure")


def server(which, hostname, ip):
    return {"uuid": "%s-0000-0000-0000-000000000000" % which.ljust(8, "0"),
            "hostname": hostname, "current_platform": "20261201T000000Z", "status": "running",
            "unreserved_ram": 65536, "unreserved_disk": 1000000, "reserved": False,
            "sysinfo": {"Admin IP": ip, "SDC Version": "7.0"}}


SERVERS = {"src": server("src", "source-server", "127.0.0.11"),
           "dst": server("dst", "dest-server", "127.0.0.12")}


@contextlib.contextmanager
def datacenter(w, state):
    """The fake datacenter in place of the real one; the head node's files in state."""
    real_runs, real_lock = paths.runs, paths.lock
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(paths, "run_base", lambda uuid, dest, epoch, state_dir=None:
                   "%s/migrator-%s-%s-%d" % (state, uuid, dest, epoch))
        mp.setattr(paths, "runs", lambda uuid="*", dest="*", ext=".journal", state_dir=None:
                   real_runs(uuid, dest, ext, state))
        mp.setattr(paths, "lock", lambda uuid, state_dir=None: real_lock(uuid, state))
        mp.setattr(migrate, "Node", lambda hostname, uuid, ip, **k: FakeCN(
            w, "src" if hostname == "source-server" else "dst", hostname, uuid, ip))
        mp.setattr(zone, "HEALTH_POLL", 0)
        yield mp


@pytest.fixture
def world(tmp_path):
    w = World()
    with datacenter(w, str(tmp_path)):
        yield w


class Quiet:
    """A report that keeps what it was told (the seed's lines are test_report's)."""

    def __init__(self):
        self.lines, self.events = [], []

    def __getattr__(self, name):
        return lambda *a, **k: None

    def line(self, text=""):
        self.lines.append(text)

    def event(self, name, text=None, **fields):
        self.events.append((name, fields))

    def wants_progress(self):
        return False


def migration(world, incremental=False):
    opts = migrate.Options(uuid=UUID, dest="dest-server", yes=True, auto=incremental,
                           interval=0)
    m = migrate.Migration(opts, Quiet(), runner=Runner())
    m.api = FakeAPI(world)
    return m


def run(world, incremental=False):
    m = migration(world, incremental)
    try:
        return m.run()
    finally:
        m.release()


def uninterrupted(incremental=False, src_facts=FACTS):
    """The world an uninterrupted migration leaves, and the number of the
    change that showed the destination's copy (the switch)."""
    w, switch = World(src_facts), []
    real = World.changing

    def changing(self, effect):
        done = real(self, effect)
        if "config" in self.facts["dst"] and "visible" in self.facts["dst"] and not switch:
            switch.append(self.changes)
        return done
    with tempfile.TemporaryDirectory() as state, datacenter(w, state) as mp:
        mp.setattr(World, "changing", changing)
        assert run(w, incremental) == 0
    return w, switch[0]


MIGRATED, SWITCH = uninterrupted()
CHANGES = MIGRATED.changes
# -a: two live rounds (the second under no limit ends them), then the stop
MIGRATED_LIVE, _ = uninterrupted(incremental=True)
# from a CN of 2015 (SunSSH, no resumable receive): the destination pulls
PULLED, _ = uninterrupted(src_facts=OLD_FACTS)


def test_an_uninterrupted_migration_moves_the_instance_and_leaves_nothing(world):
    assert run(world) == 0
    facts, snaps, held = world.state()
    # on the destination: its data, running, visible; the source copy hidden,
    # stopped and detached, with no autoboot; no key, entry, reservation or
    # waitlist ticket anywhere
    assert held == []
    assert facts == {"src": ["detached"], "napi": [],
                     "dst": ["attached", "autoboot", "config", "cores", "running", "tuned",
                             "visible"]}
    # both CNs keep the final snapshot (for `sdc-migrate rollback`) and only it
    assert snaps["src"][DS] == snaps["dst"][DS] and len(snaps["dst"][DS]) == 1


def final_snapshot_only(state):
    """The state with the migration snapshot's name left out (each run has its own)."""
    facts, snaps, held = state
    return facts, {k: {d: len(s) for d, s in v.items()} for k, v in snaps.items()}, held


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("n", range(1, CHANGES + 1))
def test_killed_at_any_change_the_same_command_ends_the_migration(world, n, when):
    world.kill = (n, when)
    with pytest.raises(Killed):
        run(world)
    world.kill = None
    assert run(world) == 0          # finished, or undone and done anew
    assert final_snapshot_only(world.state()) == final_snapshot_only(MIGRATED.state())


@pytest.mark.parametrize("n", range(1, MIGRATED_LIVE.changes + 1))
def test_killed_at_any_change_of_an_incremental_one_the_same_command_ends_it(world, n):
    world.kill = (n, "after")
    with pytest.raises(Killed):
        run(world, incremental=True)
    world.kill = None
    assert run(world, incremental=True) == 0
    assert final_snapshot_only(world.state()) == final_snapshot_only(MIGRATED_LIVE.state())


@pytest.mark.parametrize("n", range(1, SWITCH + 1))
def test_a_failure_at_any_change_before_the_switch_rolls_back_to_the_world_before(world, n):
    before = world.state()
    world.fail = n
    with pytest.raises(RolledBack):
        run(world)
    assert world.state() == before


@pytest.mark.parametrize("n", range(1, SWITCH + 1))
def test_an_undo_that_fails_needs_an_operator_and_the_same_command_ends_it(world, n):
    """The change fails, then the first undo's command too (a destroy that a
    hold refuses): nothing failed is taken as undone; exit 5 names it; the
    rerun finishes that undo (it does not reuse what the failed run left) and
    migrates. (A change announced and never made needs no undo: rolled back.)"""
    before = world.state()
    world.fail, world.fail_also = n, n + 1
    try:
        run(world)
        pytest.fail("the failure was not reported")
    except RolledBack:
        assert world.state() == before
        return
    except NeedsOperator as e:
        assert "could not be undone completely: left to undo: " in str(e)
        assert "It needs an operator" in str(e)
    world.fail = world.fail_also = None
    assert run(world) == 0
    assert final_snapshot_only(world.state()) == final_snapshot_only(MIGRATED.state())


def test_a_sunssh_source_is_pulled_from_with_what_both_have():
    """cnlink.Link: the key (rsa) and the stream (aes128-ctr, recv without -s)
    on the destination, which pulls; the world it leaves, a current one's."""
    assert MIGRATED.ran == {("src", "key ed25519"), ("src", "stream aes128-gcm@openssh.com recv -s")}
    assert PULLED.ran == {("dst", "key rsa"), ("dst", "stream aes128-ctr")}
    assert final_snapshot_only(PULLED.state()) == final_snapshot_only(MIGRATED.state())


@pytest.mark.parametrize("n", range(1, PULLED.changes + 1))
def test_killed_at_any_change_of_a_pulled_one_the_same_command_ends_it(n, tmp_path):
    w = World(OLD_FACTS)
    with datacenter(w, str(tmp_path)):
        w.kill = (n, "after")
        with pytest.raises(Killed):
            run(w)
        w.kill = None
        assert run(w) == 0
    assert final_snapshot_only(w.state()) == final_snapshot_only(PULLED.state())


def test_the_fake_reaches_every_step_that_changes_something():
    """The kill points above cover the steps, not a few of them: every step
    with an undo made a change in the uninterrupted run."""
    assert CHANGES >= len([s for s in migrate.FULL if s.undo]) and SWITCH < CHANGES
