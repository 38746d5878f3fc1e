"""evacuate's planning, list's reading of journals, finish, and --max-delta's
convergence rule: pure functions, no datacenter."""
import json
import os

import pytest

from sdc_migrate import placement
from sdc_migrate.cli import parse_size
from sdc_migrate.commands import evacuate, finish, inflight
from sdc_migrate.commands.migrate import converged
from sdc_migrate.errors import NotFound, Refused, Usage
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
    plan = evacuate.place(items, cands, "20250326T000000Z")
    where = {i["uuid"]: i["dest"] for i in plan}
    # big takes a (more RAM); a and b tie on RAM, b has more pool: mid; then a again
    assert where == {"big": "a", "mid": "b", "small": "a"}
    assert [i["uuid"] for i in plan] == ["big", "mid", "small"]


def test_a_placement_uses_up_ram_and_pool_for_the_next():
    cands = [placement.Destination(server("a", ram_mb=1536), 150 * MB)]
    plan = evacuate.place([item("one", 100), item("two", 80)], cands, "2025")
    placed = {i["uuid"]: i for i in plan}
    assert placed["one"]["dest"] == "a"
    assert placed["two"]["dest"] is None
    assert "a has 512 MB of unreserved RAM" in placed["two"]["reason"]


def test_platform_nic_tags_and_underlay_decide_where_it_fits():
    old = placement.Destination(server("old", platform="20230105T000000Z"), 10 ** 12)
    bare = placement.Destination(server("bare", tags=("admin",), underlay=False), 10 ** 12)
    items = [item("ext", 1), item("fabric", 1, tags=("sdc_underlay",))]
    plan = evacuate.place(items, [old, bare], "20250326T000000Z")
    for i in plan:
        assert i["dest"] is None
        assert "old runs an older platform" in i["reason"] and "-D allows it" in i["reason"]
    assert "bare lacks NIC tag external" in plan[0]["reason"] + plan[1]["reason"]
    assert "bare lacks NIC tag sdc_underlay" in plan[0]["reason"] + plan[1]["reason"]
    plan = evacuate.place([item("ext2", 1)], [old], "20250326T000000Z", allow_older=True)
    assert plan[0]["dest"] == "old"


def test_core_zones_nat_zones_and_fabric_nics_are_told_apart():
    listing = ""
    core = evacuate.item_for({"uuid": "c", "state": "running", "tags": {
        "smartdc_role": "imgapi", "smartdc_type": "core"}}, listing)
    assert core["kind"] == "core" and "not moved by sdc-migrate" in core["reason"]
    nat = evacuate.item_for({"uuid": "n", "state": "running",
                             "alias": "nat-9f2d4c2e-2f83-4c8e-9a7e-0d1c2b3a4f5e",
                             "tags": {"smartdc_role": "nat", "smartdc_type": "core"},
                             "nics": [{"nic_tag": "external"},
                                      {"nic_tag": "sdc_overlay/7030"}]}, listing)
    assert nat["kind"] == "nat" and nat["tags"] == {"external", "sdc_underlay"}
    # a core zone is never given a destination
    plan = evacuate.place([core], [placement.Destination(server("a"), 10 ** 12)], "2025")
    assert plan[0]["dest"] is None


def test_a_child_migration_is_a_plain_argv_with_the_options():
    i = dict(item("u", 1), dest="spare-server", alias="x; rm -rf / $(id)")
    argv = evacuate.child_argv(i, {"max_delta": 10 * MB, "allow_older": True})
    assert argv[-2:] == ["u", "spare-server"]
    assert "-a" in argv and "--max-delta=%d" % (10 * MB) in argv and "-D" in argv
    assert not any("rm -rf" in a for a in argv)
    nat = evacuate.child_argv(dict(i, kind="nat"), {"max_delta": None, "allow_older": False})
    assert nat[-4:] == ["nat-recreate", "-y", "u", "spare-server"]


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
