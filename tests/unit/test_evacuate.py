"""evacuate's planning and its running of migrations (fake ones), list's
reading of journals, finish, and --max-delta's convergence rule: no datacenter."""
import io
import json
import os
import signal
import threading
import time

import pytest

from sdc_migrate import admission, batch, drain, placement
from sdc_migrate.cli import parse_size
from sdc_migrate.commands import evacuate, finish, inflight
from sdc_migrate.commands.migrate import Migration
from sdc_migrate.steps.transfer import converged
from sdc_migrate.errors import NeedsOperator, NotFound, Refused, RolledBack, Usage
from sdc_migrate.node import Node
from sdc_migrate.report import Report

MB = 1 << 20


def server(name, ram_mb=32768, platform="20250326T000000Z", tags=("admin", "external"),
           underlay=True):
    nics = {"e1000g0": {"NIC Names": list(tags)}}
    vnics = {"sdc_underlay0": {"NIC Names": ["sdc_underlay"]}} if underlay else {}
    return {"hostname": name, "uuid": name + "-uuid", "unreserved_ram": ram_mb,
            "current_platform": platform,
            "sysinfo": {"Network Interfaces": nics, "Virtual Network Interfaces": vnics}}


def item(uuid, mb, ram_mb=1024, kind="migrate", tags=("external",)):
    return {"uuid": uuid, "alias": uuid, "kind": kind, "dest": None, "reason": None,
            "bytes": mb * MB, "pool": mb * MB, "ram": ram_mb, "tags": set(tags)}


def test_biggest_first_each_on_the_destination_with_most_free_ram():
    cands = [placement.Destination(server("a", ram_mb=4096), 10000 * MB),
             placement.Destination(server("b", ram_mb=3072), 10000 * MB)]
    items = [item("small", 10), item("big", 500), item("mid", 100)]
    plan = placement.place(items, cands, "20250326T000000Z")
    where = {i["uuid"]: i["dest"] for i in plan}
    # big takes a (more RAM); a and b tie on RAM, b has more pool: mid; then a again
    assert where == {"big": "a", "mid": "b", "small": "a"}
    assert [i["uuid"] for i in plan] == ["big", "mid", "small"]


def test_no_instance_goes_where_net_agent_would_delete_a_hidden_copys_nics():
    """sdc-net-agent before 2.3.2 (TRITON-1814) deletes the NICs of a zone
    turning do_not_inventory, as a rolled back migration leaves its copy: no
    instance is placed there; a NAT zone, recreated and never hidden, is."""
    from sdc_migrate import cnlink
    old = cnlink.Facts("old", "Sun_SSH_1.5", net_agent="2.3.0")
    cands = [evacuate.AgentBlocked(server("old", ram_mb=65536), 10 ** 12, old)]
    plan = placement.place([item("zone", 1), item("nat", 1, kind="nat")], cands, "2015")
    where = {i["uuid"]: i for i in plan}
    assert where["nat"]["dest"] == "old"
    assert where["zone"]["dest"] is None
    assert "old's net-agent 2.3.0 would delete the NICs" in where["zone"]["reason"]
    cands.append(placement.Destination(server("new", ram_mb=1024), 10 ** 12))
    plan = placement.place([item("zone2", 1)], cands, "2015")
    assert plan[0]["dest"] == "new"


def test_a_placement_uses_up_ram_and_pool_for_the_next():
    cands = [placement.Destination(server("a", ram_mb=1536), 150 * MB)]
    plan = placement.place([item("one", 100), item("two", 80)], cands, "2025")
    placed = {i["uuid"]: i for i in plan}
    assert placed["one"]["dest"] == "a"
    assert placed["two"]["dest"] is None
    assert "a has 512 MB of unreserved RAM" in placed["two"]["reason"]


def test_platform_nic_tags_and_underlay_decide_where_it_fits():
    old = placement.Destination(server("old", platform="20230105T000000Z"), 10 ** 12)
    bare = placement.Destination(server("bare", tags=("admin",), underlay=False), 10 ** 12)
    items = [item("ext", 1), item("fabric", 1, tags=("sdc_underlay",))]
    plan = placement.place(items, [old, bare], "20250326T000000Z")
    for i in plan:
        assert i["dest"] is None
        assert "old runs an older platform" in i["reason"] and "-D allows it" in i["reason"]
    assert "bare lacks NIC tag external" in plan[0]["reason"] + plan[1]["reason"]
    assert "bare lacks NIC tag sdc_underlay" in plan[0]["reason"] + plan[1]["reason"]
    plan = placement.place([item("ext2", 1)], [old], "20250326T000000Z", allow_older=True)
    assert plan[0]["dest"] == "old"


def test_core_zones_nat_zones_and_fabric_nics_are_told_apart():
    listing = ""
    core = placement.item_for({"uuid": "c", "state": "running", "tags": {
        "smartdc_role": "imgapi", "smartdc_type": "core"}}, listing)
    assert core["kind"] == "core" and "not moved by sdc-migrate" in core["reason"]
    nat = placement.item_for({"uuid": "n", "state": "running",
                             "alias": "nat-9f2d4c2e-2f83-4c8e-9a7e-0d1c2b3a4f5e",
                             "tags": {"smartdc_role": "nat", "smartdc_type": "core"},
                             "nics": [{"nic_tag": "external"},
                                      {"nic_tag": "sdc_overlay/7030"}]}, listing)
    assert nat["kind"] == "nat" and nat["tags"] == {"external", "sdc_underlay"}
    # a core zone is never given a destination
    plan = placement.place([core], [placement.Destination(server("a"), 10 ** 12)], "2025")
    assert plan[0]["dest"] is None


def test_each_item_is_moved_in_process_with_the_options():
    i = dict(item("u", 1), dest="spare-server", alias="x; rm -rf / $(id)")
    m = evacuate.mover(i, {"max_delta": 10 * MB, "allow_older": True, "bwlimit": 5 * MB},
                       Report())
    assert isinstance(m, Migration)
    o = m.opts
    assert (o.uuid, o.dest, o.incremental, o.auto, o.yes, o.interval) == \
        ("u", "spare-server", True, True, True, 0)
    assert (o.max_delta, o.bwlimit, o.allow_older) == (10 * MB, 5 * MB, True)
    nat = evacuate.mover(dict(i, kind="nat"), {}, Report())
    assert isinstance(nat, evacuate.NatMove) and nat.nat.yes


class FakeMigration:
    """A migration as evacuate drives it: run() returns 0 or raises an error
    with an exit status, its events go to its report; interrupt() and
    release() are recorded."""

    def __init__(self, item, report, behave, log):
        self.item, self.r, self.behave, self.log = item, report, behave, log
        self.interrupted = threading.Event()
        self.why = None

    def run(self):
        self.r.line("* migrating %s" % self.item["uuid"])
        return self.behave(self)

    def interrupt(self, why):
        self.why = why
        self.log.append(("interrupt", self.item["uuid"], why))
        self.interrupted.set()

    def release(self):
        self.log.append(("release", self.item["uuid"]))


def evacuation(tmp_path, behaviours, concurrency=2):
    """An Evacuation of items a, b, ... (biggest first) whose migrations are
    FakeMigrations behaving as behaviours says; -j events in its output."""
    out = io.StringIO()
    log = []

    def mover(item, opts, report):
        log.append(("start", item["uuid"]))
        return FakeMigration(item, report, behaviours[item["uuid"]], log)
    e = evacuate.Evacuation("source-server", concurrency=concurrency, as_json=True, yes=True,
                            report=Report(out), state_dir=str(tmp_path), mover=mover)
    e.items = [dict(item(u, 100 - k), dest="dest-server") for k, u in enumerate(behaviours)]
    e.outdir = str(tmp_path / "out")
    os.makedirs(e.outdir)
    return e, out, log


def events(out, name):
    return [ev for ev in map(json.loads, out.getvalue().splitlines()) if ev["event"] == name]


def moved(m):
    m.r.event("summary", outcome="done", exit_status=0, downtime_s=1.5)
    return 0


def not_running(m):
    m.r.event("summary", outcome="done", exit_status=0, downtime_s=0)
    return 0


def rolled_back(m):
    m.r.event("failure", "* Migration failed: attach", error="attach")
    m.r.event("summary", outcome="rolled-back", exit_status=4, downtime_s=0)
    raise RolledBack("migration of b failed and was rolled back: attach\n"
                     "  The instance is on source-server, running, as before.")


def needs_operator(m):
    raise NeedsOperator("VMAPI shows c on dest-server already: run it again")


def refused(m):
    raise Refused("destination dest-server has no room")


def test_results_come_from_exit_statuses_and_events(tmp_path):
    e, out, log = evacuation(tmp_path, {"a": moved, "b": rolled_back, "c": needs_operator,
                                        "d": refused, "e": not_running})
    e.execute(e.items)
    assert e.summary() == 5
    done = {ev["uuid"]: ev for ev in events(out, "finished")}
    assert {u: (d["result"], d["exit_status"]) for u, d in done.items()} == {
        "a": ("moved", 0), "b": ("rolled back", 4), "c": ("needs operator", 5),
        "d": ("refused", 2), "e": ("moved", 0)}
    # the downtime is the summary event's; an instance that was not running has none
    assert (done["a"]["downtime_s"], done["e"]["downtime_s"]) == (1.5, None)
    # the detail is the first line of the error, as `sdc-migrate` alone prints it
    assert done["b"]["detail"] == "migration of b failed and was rolled back: attach"
    assert done["d"]["detail"] == "destination dest-server has no room"
    assert done["a"]["detail"] is None
    # each item's output file holds its own lines and, after a failure, its error line
    started = {ev["uuid"]: ev["output"] for ev in events(out, "started")}
    b = open(started["b"]).read()
    assert "* migrating b\n" in b and "* Migration failed: attach\n" in b
    assert b.endswith("sdc-migrate: error (RolledBack): migration of b failed and was rolled"
                      " back: attach\n  The instance is on source-server, running, as before.\n")
    assert open(started["a"]).read() == "* migrating a\n"
    assert sorted(u for what, u, *_ in log if what == "release") == list("abcde")
    assert events(out, "summary")[0]["exit_status"] == 5


def test_a_bug_in_one_migration_fails_it_alone(tmp_path):
    def broken(m):
        return {}["no such key"]
    e, out, log = evacuation(tmp_path, {"a": broken, "b": moved})
    e.execute(e.items)
    assert e.summary() == 4
    done = {ev["uuid"]: ev for ev in events(out, "finished")}
    assert (done["a"]["result"], done["a"]["exit_status"]) == ("failed", 1)
    assert done["b"]["result"] == "moved"
    assert "Traceback" in open(events(out, "started")[0]["output"]).read()


def test_at_most_concurrency_migrations_run_at_once(tmp_path):
    lock = threading.Lock()
    now = []
    most = []

    def busy(m):
        with lock:
            now.append(m)
            most.append(len(now))
        time.sleep(0.3)
        with lock:
            now.remove(m)
        return 0
    e, out, log = evacuation(tmp_path, {u: busy for u in "abcde"}, concurrency=2)
    e.execute(e.items)
    assert max(most) == 2 and len(most) == 5
    assert e.summary() == 0
    assert [ev["uuid"] for ev in events(out, "started")] == list("abcde")


@pytest.fixture
def evacuate_signals(monkeypatch):
    """evacuate's handlers of ^C, SIGHUP and SIGTERM, as its main() sets them; this
    process's own after. The main thread looks up often (it takes a signal then)."""
    monkeypatch.setattr(batch, "POLL", 0.02)
    before = {sig: signal.getsignal(sig) for sig in evacuate.SIGNALS}
    evacuate.on_signals()
    yield
    for sig, handler in before.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("name", ["SIGINT", "SIGHUP", "SIGTERM"])
def test_a_signal_reaches_every_running_migration_and_they_are_reported(
        tmp_path, evacuate_signals, name):
    both = threading.Barrier(2, timeout=10)

    def rolls_back_when_told(m):
        if both.wait() == 0:
            # to the process, as a terminal or kill sends it: the main thread handles it
            os.kill(os.getpid(), getattr(signal, name))
        assert m.interrupted.wait(10), "no interrupt reached %s" % m.item["uuid"]
        raise RolledBack("migration of %s failed and was rolled back: interrupted by %s"
                         % (m.item["uuid"], m.why))
    e, out, log = evacuation(tmp_path, {"a": rolls_back_when_told, "b": rolls_back_when_told,
                                        "c": moved})
    with pytest.raises(KeyboardInterrupt) as stopped:
        e.execute(e.items)
    assert str(stopped.value) == ("" if name == "SIGINT" else name)    # cli: interrupted by
    assert sorted(x for x in log if x[0] == "interrupt") == [
        ("interrupt", "a", name), ("interrupt", "b", name)]
    assert ("start", "c") not in log            # nothing new starts
    done = {ev["uuid"]: ev for ev in events(out, "finished")}
    assert sorted(done) == ["a", "b"]
    assert all(d["result"] == "rolled back" and d["detail"].endswith("interrupted by " + name)
               for d in done.values())
    assert sorted(u for what, u, *_ in log if what == "release") == ["a", "b"]
    # a second signal, while they roll back, is ignored
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_a_signal_while_a_migration_starts_is_taken_once_it_runs(tmp_path, evacuate_signals):
    # ^C while the main thread starts b (creates its migration, its thread):
    # b runs and is stopped and reported like a; nothing is half-started,
    # nothing after it starts
    def rolls_back_when_told(m):
        assert m.interrupted.wait(10), "no interrupt reached %s" % m.item["uuid"]
        raise RolledBack("migration of %s failed and was rolled back: interrupted by %s"
                         % (m.item["uuid"], m.why))
    e, out, log = evacuation(tmp_path, {"a": rolls_back_when_told, "b": rolls_back_when_told,
                                        "c": moved})
    make = e.mover

    def mover(item, opts, report):
        m = make(item, opts, report)
        if item["uuid"] == "b":
            os.kill(os.getpid(), signal.SIGINT)
        return m
    e.mover = mover
    with pytest.raises(KeyboardInterrupt):
        e.execute(e.items)
    assert sorted(u for what, u, *_ in log if what == "interrupt") == ["a", "b"]
    assert [ev["uuid"] for ev in events(out, "started")] == ["a", "b"]
    assert sorted(ev["uuid"] for ev in events(out, "finished")) == ["a", "b"]
    assert ("start", "c") not in log


def test_two_nodes_of_one_host_do_not_share_a_master():
    one, two = (Node("dest-server", "u", "127.0.0.1") for _ in range(2))
    assert one.control_path != two.control_path
    # %C is 40 hex digits; ssh adds 17 characters to it while it binds; 104: illumos' limit
    assert len(one.control_path.replace("%C", "x" * 40)) + 17 < 104


@pytest.mark.parametrize("deltas,done", [
    ([100], False),                     # only the full round
    ([100, 50], False),                 # still above the limit
    ([100, 50, 9], True),               # under 10
    ([100, 50, 40, 45, 41], False),     # 40 is the best; only two rounds since
    ([100, 50, 40, 45, 41, 42], True),  # three rounds without beating 40
    ([100, 50, 40, 30, 20, 19, 18, 17, 16, 15], True),   # ten rounds
])
def test_max_delta_convergence_rule(deltas, done):
    assert bool(converged(deltas, 10)) is done


def test_convergence_says_why():
    assert converged([100, 5], 10 * MB) == "under the limit of 10.00 MBytes"
    assert converged([1] * 10, 0) == "10 rounds have run"
    assert "not shrunk for 3 rounds" in converged([9, 5, 6, 7, 8], 1)


def test_sizes_parse_as_zfs_writes_them():
    assert parse_size("10M") == 10 * MB and parse_size("1g") == 1 << 30
    assert parse_size("512K") == 512 << 10 and parse_size("4096") == 4096
    for bad in ("ten", "-1M", "", "M"):
        with pytest.raises(Usage):
            parse_size(bad)


def write_journal(d, name, records):
    with open(os.path.join(d, name), "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))


def test_list_reads_phase_rounds_and_outcome_from_journals(tmp_path, capsys):
    d = str(tmp_path)
    begin = {"t": "begin", "uuid": "u1", "alias": "web", "dest": "dest-server",
             "started": "2026-12-01T10:00:00+00:00", "src": {"hostname": "source-server"}}
    write_journal(d, "migrator-u1-dest-server-1.journal", [
        begin, {"t": "round", "n": 0, "bytes": 5 * MB}, {"t": "round", "n": 1, "bytes": MB},
        {"t": "change", "undo": "stop", "what": "stop", "args": {}, "data": False},
        {"t": "switched"}, {"t": "end", "outcome": "done", "downtime": 1.5}])
    write_journal(d, "migrator-u2-dest-server-2.journal", [
        dict(begin, uuid="u2", alias=None, started="2026-12-01T11:00:00+00:00"),
        {"t": "round", "n": 0, "bytes": 7 * MB}])
    found = inflight.migrations(d)
    assert [m["uuid"] for m in found] == ["u1", "u2"]
    assert (found[0]["phase"], found[0]["rounds"], found[0]["outcome"],
            found[0]["downtime_s"]) == ("finished", 2, "done", 1.5)
    # no lock held: the second was interrupted, in its first round
    assert (found[1]["phase"], found[1]["outcome"], found[1]["last_delta_bytes"]) == \
        ("round 0", "interrupted", 7 * MB)
    inflight.main({"-j": False}, Report(), d)
    out = capsys.readouterr().out
    assert "1.00 MBytes" in out and "interrupted" in out and "December 01, 2026" in out


def test_finish_removes_the_state_file_or_says_there_is_none(tmp_path):
    d = str(tmp_path)
    uuid = "5ca5b3dc-48fe-6f75-ed8c-8d8fbd77e2aa"
    st = os.path.join(d, "migrator-%s-dest-server-1.st" % uuid)
    open(st, "w").close()
    assert finish.main({"INST_UUID": uuid}, Report(), d) == 0
    assert not os.path.exists(st)
    with pytest.raises(NotFound):
        finish.main({"INST_UUID": uuid}, Report(), d)
    with pytest.raises(Refused):
        finish.main({"INST_UUID": "5ca5b3dc"}, Report(), d)


def test_the_batch_keeps_per_cn_with_real_threads(tmp_path):
    lock = threading.Lock()
    now, most = [], {}

    def busy(m):
        with lock:
            now.append(m.item)
            for cn, k in admission.load(now).items():
                most[cn] = max(most.get(cn, 0), k)
        time.sleep(0.2)
        with lock:
            now.remove(m.item)
        return 0
    names = ["a%d" % k for k in range(4)] + ["b%d" % k for k in range(4)]
    e, out, log = evacuation(tmp_path, {u: busy for u in names}, concurrency=4)
    e.per_cn = 1
    for k, i in enumerate(e.items):
        i["source"], i["dest"] = i["uuid"][0], "xyz"[k % 3]
    e.execute(e.items)
    assert e.summary() == 0
    assert max(most.values()) == 1 and set(most) == {"a", "b", "x", "y", "z"}
    assert e.most == most


class FakeApi:
    """CNAPI's servers as a dict; every call recorded."""

    def __init__(self, reserved=False):
        self.calls = []
        self.reserved = reserved

    def call(self, api, path, method="GET", body=None):
        self.calls.append((api, path, method, body))
        self.reserved = body["reserved"]
        return 204, None


def test_the_drain_journals_the_flag_as_it_was_and_a_rerun_keeps_that(tmp_path):
    d = str(tmp_path)
    api = FakeApi()
    cn = {"hostname": "source-server", "uuid": "s-uuid", "reserved": False}
    rec = drain.drain(api, cn, d)
    assert rec["was"] is False and api.reserved is True
    assert api.calls == [("cnapi", "/servers/s-uuid", "POST", {"reserved": True})]
    # killed; the rerun reads the server reserved, and keeps what the journal says
    again = drain.drain(api, dict(cn, reserved=True), d)
    assert again["was"] is False and len(api.calls) == 1
    assert drain.lift(api, "source-server", "evacuate", d)["was"] is False
    assert api.reserved is False
    assert drain.open_drain(drain.journal("source-server", d).records) is None
    assert drain.lift(api, "source-server", "restore", d) is None      # nothing open
    # a CN the operator had reserved stays reserved after its evacuation
    api = FakeApi(reserved=True)
    drain.drain(api, dict(cn, reserved=True), d)
    assert api.calls == []
    drain.keep("source-server", d)
    assert drain.open_drain(drain.journal("source-server", d).records)["was"] is True
    drain.lift(api, "source-server", "restore", d)
    assert api.reserved is True
