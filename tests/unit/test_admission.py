"""admission: which of a plan's moves start when, within --concurrency and
--per-cn; and the plan that feeds it (placement.place over two sources):
no datacenter, no threads."""
import itertools

from sdc_migrate import admission, placement

MB = 1 << 20


def server(name, ram_mb=65536):
    return {"hostname": name, "uuid": name + "-uuid", "unreserved_ram": ram_mb,
            "current_platform": "20250326T000000Z",
            "sysinfo": {"Network Interfaces": {"e0": {"NIC Names": ["admin", "external"]}}}}


def item(uuid, mb, source, owner=None):
    return {"uuid": uuid, "alias": uuid, "kind": "migrate", "dest": None, "reason": None,
            "blockers": [], "bytes": mb * MB, "pool": mb * MB, "ram": 1024,
            "tags": {"external"}, "source": source, "owner": owner}


def two_onto_three(n=10):
    """Two CNs of n instances each (sizes 10..n*10 MB), planned onto three."""
    items = [item("%s%02d" % (src, k), 10 * (k + 1), src) for src in ("a", "b")
             for k in range(n)]
    dests = [placement.Destination(server(d), 10 ** 12) for d in ("x", "y", "z")]
    return placement.place(items, dests, "20250326T000000Z")


def check_budgets(log, concurrency, per_cn):
    """Every moment: no CN over per_cn, no more than concurrency in all, and
    no queued move that both its CNs had a slot for left waiting."""
    for now, what, item, running in log:
        load = admission.load(running)
        assert len(running) <= concurrency
        assert max(load.values(), default=0) <= per_cn, (now, dict(load))
    # after the admissions of each instant, nothing more could have started
    by_time = itertools.groupby(log, key=lambda e: e[0])
    started = set()
    everything = {e[2]["uuid"]: e[2] for e in log}
    for now, events in by_time:
        events = list(events)
        started |= {e[2]["uuid"] for e in events if e[1] == "start"}
        running = events[-1][3]
        queue = [i for u, i in everything.items() if u not in started]
        load = admission.load(running)
        if len(running) < concurrency:
            could = [i["uuid"] for i in queue if all(load[cn] < per_cn for cn in (i["source"],
                                                                                 i["dest"]))]
            assert could == [], (now, could, dict(load))


def test_two_cns_onto_three_never_exceed_per_cn_and_never_idle_a_cn_that_could_take_one():
    plan = two_onto_three()
    assert {i["dest"] for i in plan} == {"x", "y", "z"}
    for concurrency, per_cn in ((4, 2), (6, 2), (3, 1), (8, 3)):
        seconds = lambda i: i["bytes"] / MB     # noqa: E731 - 1 MB a second
        end, log = admission.simulate(plan, seconds, concurrency, per_cn)
        check_budgets(log, concurrency, per_cn)
        assert sum(1 for e in log if e[1] == "end") == len(plan)
        # each source sends per_cn at a time all along: the sources bound it
        total = sum(seconds(i) for i in plan)
        assert end <= total / min(concurrency, 2 * per_cn) * 1.3, (concurrency, per_cn, end)


def test_a_full_destination_does_not_hold_back_a_smaller_move_whose_cns_are_free():
    big = [dict(item("big%d" % k, 100 - k, "a"), dest="x") for k in range(3)]
    small = dict(item("small", 1, "b"), dest="y")
    first = admission.admit(big + [small], [], concurrency=4, per_cn=2)
    assert [i["uuid"] for i in first] == ["big0", "big1", "small"]
    # the queue's head waits for x; the move to y and from b does not
    assert admission.waiting_for(big[2], first, per_cn=2) == ["a", "x"]


def test_interrupted_moves_first_then_biggest_first():
    resumed = dict(item("r", 1, "a"), dest="x", resume=True)
    queue = [dict(item("m", 50, "a"), dest="y"), dict(item("l", 90, "b"), dest="z"), resumed]
    assert [i["uuid"] for i in admission.order(queue)] == ["r", "l", "m"]
    assert [i["uuid"] for i in admission.admit(queue, [], 2, 2)] == ["r", "l"]


def test_total_concurrency_caps_even_when_every_cn_has_room():
    queue = [dict(item("i%d" % k, 10, "s%d" % k), dest="d%d" % k) for k in range(5)]
    assert len(admission.admit(queue, [], concurrency=3, per_cn=2)) == 3
    assert len(admission.admit(queue[3:], queue[:3], concurrency=3, per_cn=2)) == 0


def test_the_estimate_counts_the_per_cn_budget():
    plan = [dict(item("i%d" % k, 10, "a"), dest="x" if k % 2 else "y") for k in range(4)]
    one_each = lambda i: 10.0       # noqa: E731
    # one source: two at a time whatever --concurrency says
    assert admission.makespan(plan, one_each, concurrency=8, per_cn=2) == 20.0
    assert admission.makespan(plan, one_each, concurrency=8, per_cn=4) == 10.0


def test_an_owner_s_instances_from_two_cns_are_not_stacked_while_another_cn_fits():
    # x has the most RAM: without the spread both would go there
    x, y = (placement.Destination(server("x", 65536), 10 ** 12),
            placement.Destination(server("y", 32768), 10 ** 12))
    plan = placement.place([item("one", 20, "a", owner="o"), item("two", 10, "b", owner="o")],
                           [x, y], "20250326T000000Z")
    where = {i["uuid"]: i for i in plan}
    assert (where["one"]["dest"], where["two"]["dest"]) == ("x", "y")
    assert "apart from the owner's instances on x" in where["two"]["why"]
    # two of one owner from the same CN were together, and may stay so
    x, y = (placement.Destination(server("x", 65536), 10 ** 12),
            placement.Destination(server("y", 32768), 10 ** 12))
    plan = placement.place([item("one", 20, "a", owner="o"), item("two", 10, "a", owner="o")],
                           [x, y], "20250326T000000Z")
    assert {i["dest"] for i in plan} == {"x"}
    # an owner's instance on a CN already counts (CNAPI's vms, as DAPI reads them)
    busy = server("x", 65536)
    busy["vms"] = {"v": {"owner_uuid": "o", "brand": "joyent"}}
    plan = placement.place([item("three", 10, "a", owner="o")],
                           [placement.Destination(busy, 10 ** 12),
                            placement.Destination(server("y", 32768), 10 ** 12)], "2025")
    assert plan[0]["dest"] == "y"


def test_every_choice_has_its_reason_and_a_copy_there_already_is_one():
    old = dict(server("old"), current_platform="20151126T011339Z")
    dests = [placement.Destination(server("x"), 10 ** 12, copies={"i"}),
             placement.Destination(old, 10 ** 12),
             placement.Destination(server("y", 1024), 10 ** 12),
             placement.Destination(server("gone"), trouble="cannot read gone over ssh: no route")]
    plan = placement.place([item("i", 10, "a")], dests, {"a": "20250326T000000Z"})
    assert plan[0]["dest"] == "y"
    why = plan[0]["why"]
    assert why.startswith("the only one that fits")
    assert "x already has datasets of the instance" in why
    assert "old runs an older platform" in why and "cannot read gone over ssh" in why
    # fits nowhere: every destination's reason is a blocker
    plan = placement.place([item("i", 10, "a")], dests[:2], {"a": "20250326T000000Z"})
    assert plan[0]["dest"] is None and len(plan[0]["blockers"]) == 1
    assert "x already has datasets" in plan[0]["blockers"][0]
    assert "old runs an older platform" in plan[0]["blockers"][0]


def test_bwlimit_is_shared_by_the_most_that_can_run_at_once():
    one_source = [dict(item("i%d" % k, 10, "a"), dest="xyz"[k % 3]) for k in range(6)]
    assert admission.most_at_once(one_source, concurrency=4, per_cn=2) == 2
    two = one_source + [dict(item("j%d" % k, 10, "b"), dest="xyz"[k % 3]) for k in range(6)]
    assert admission.most_at_once(two, concurrency=4, per_cn=2) == 4
    assert admission.most_at_once(two[:1], concurrency=4, per_cn=2) == 1
