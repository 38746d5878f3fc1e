"""The destination check a migration and an evacuation share
(sdc_migrate/placement.py), on the real CNAPI sample
(tests/fixtures/triton-samples/cnapi-server.json: 2 GB of free memory and an
unreserved_ram of -42863 MB, overprovisioned)."""
import copy
import json
import os

import pytest

from sdc_migrate import placement
from sdc_migrate.errors import Refused

SAMPLE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "triton-samples",
                      "cnapi-server.json")


def cn(**over):
    with open(SAMPLE) as f:
        s = json.load(f)
    s.update(headnode=False, hostname="dest-server",
             sysinfo={"Network Interfaces": {"e1000g0": {"NIC Names": ["admin", "external"]}}})
    s.update(over)
    return s


VM = {"uuid": "u", "ram": 256, "nics": [{"nic_tag": "external"}]}


def test_free_memory_is_not_room_unreserved_ram_is():
    s = cn()
    assert s["memory_available_bytes"] > 1 << 30       # 2 GB free ...
    why = placement.Destination(s).why_not(placement.need_of(VM))
    assert why == ("dest-server has -42863 MB of unreserved RAM; the instance needs 256 MB")
    assert placement.Destination(cn(unreserved_ram=512)).why_not(placement.need_of(VM)) is None


def test_unreserved_disk_and_pool_are_checked():
    d = placement.Destination(cn(unreserved_ram=4096, unreserved_disk=10))
    assert "unreserved disk" in d.why_not(placement.need_of(VM, 20 << 20))
    assert d.why_not(placement.need_of(VM, 5 << 20)) is None
    d = placement.Destination(cn(unreserved_ram=4096), pool_free=1 << 20)
    assert "free in zones" in d.why_not(placement.need_of(VM, 2 << 20))


def test_a_reserved_cn_is_a_destination_a_missing_nic_tag_is_not():
    s = cn(unreserved_ram=4096, reserved=True)
    assert placement.Destination(s).why_not(placement.need_of(VM)) is None
    bare = cn(unreserved_ram=4096, sysinfo={"Network Interfaces": {
        "e1000g0": {"NIC Names": ["admin"]}}})
    with pytest.raises(Refused, match="lacks NIC tag external"):
        placement.Destination(bare).check(placement.need_of(VM))
    fabric = dict(VM, nics=[{"nic_tag": "sdc_overlay/7001"}])
    assert "sdc_underlay" in placement.Destination(bare).why_not(placement.need_of(fabric))


def test_head_node_and_not_running_are_never_destinations():
    assert "head node" in placement.Destination(cn(headnode=True)).unusable()
    assert "not running" in placement.Destination(cn(status="unknown")).unusable()


@pytest.mark.parametrize("tags,role", [
    ({"manta_role": "storage"}, None),                       # Manta: the operator's
    ({"manta_role": "moray", "smartdc_role": "manta"}, None),
    ({"smartdc_role": "imgapi", "smartdc_type": "core"}, "imgapi"),
    ({"smartdc_type": "core"}, "core"),
    ({}, None),
])
def test_core_zones_are_told_from_manta_zones(tags, role):
    assert placement.core_role({"tags": copy.deepcopy(tags)}) == role


NAT_NET = "e9a808dd-fb03-4097-9411-89ac8d557872"


@pytest.mark.parametrize("vm, kind", [
    ({"alias": "nat-" + NAT_NET, "tags": {"smartdc_role": "nat", "smartdc_type": "core"}},
     ("nat", NAT_NET)),
    # a destroyed NAT zone's last record may have lost its tags, not its alias
    ({"alias": "nat-" + NAT_NET, "state": "destroyed", "tags": {}}, ("nat", NAT_NET)),
    ({"alias": "gateway", "tags": {"smartdc_role": "nat"}}, ("nat", None)),
    ({"alias": "nat-" + NAT_NET, "state": "running", "tags": {}}, ("instance", None)),
    ({"alias": "imgapi0", "tags": {"smartdc_role": "imgapi", "smartdc_type": "core"}},
     ("core", "imgapi")),
    ({"alias": "storage-1", "tags": {"manta_role": "storage", "smartdc_role": "storage"}},
     ("instance", None)),
    ({"alias": "kirby", "tags": {}}, ("instance", None)),
])
def test_one_rule_says_what_an_instance_is(vm, kind):
    assert placement.kind_of(vm) == kind
