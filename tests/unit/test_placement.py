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


# ---- DAPI's hard filters (sdc-designation lib/algorithms) ----------------------

def roomy(sysinfo=None, **over):
    """A CN with room, its sysinfo as smartos-live src/sysinfo writes it."""
    si = {"Network Interfaces": {"e1000g0": {"NIC Names": ["admin", "external"]}},
          "Zpool Encrypted": False, "Bhyve Capable": True, "Bhyve Max Vcpus": 32,
          "HVM API": True, "CPU Online Count": 48, "CPU Total Cores": 48}
    si.update(sysinfo or {})
    return cn(**dict(dict(unreserved_ram=65536, unreserved_disk=1 << 20, sysinfo=si, vms={},
                          traits={}), **over))


def why(server, vm, package=None, image=None, placed=()):
    d = placement.Destination(server)
    for brand in placed:
        d.take({"ram": 0, "pool": 0, "brand": brand})
    return d.why_not(placement.need_of(vm, 0, package, image))


ENCRYPTED = dict(VM, internal_metadata={"encrypted": True})


def test_an_encrypted_instance_goes_only_to_an_encrypted_pool():
    """hard-filter-zpool-encryption.js: internal_metadata.encrypted needs sysinfo
    "Zpool Encrypted"; any other value of it (a cipher) counts as true."""
    assert why(roomy(), ENCRYPTED) == (
        "dest-server's pool is not encrypted (sysinfo Zpool Encrypted) and the instance is"
        " (internal_metadata.encrypted)")
    assert why(roomy({"Zpool Encrypted": True}), ENCRYPTED) is None


def test_an_unencrypted_instance_never_goes_to_an_encrypted_pool():
    assert why(roomy({"Zpool Encrypted": True}), VM) == (
        "dest-server's pool is encrypted and the instance is not (no internal_metadata."
        "encrypted): DAPI places only encrypted instances there")
    # a CN whose sysinfo predates the field is unencrypted
    old = roomy()
    del old["sysinfo"]["Zpool Encrypted"]
    assert why(old, VM) is None and why(old, ENCRYPTED) is not None


BHYVE = dict(VM, brand="bhyve", vcpus=4)
KVM = dict(VM, brand="kvm", vcpus=4)


def test_bhyve_needs_a_bhyve_capable_cn():
    """hard-filter-hvm.js: "Bhyve Capable" must be true (not merely present)."""
    assert why(roomy({"Bhyve Capable": False}), BHYVE) == \
        "dest-server is not Bhyve Capable (sysinfo)"
    no_field = roomy()
    del no_field["sysinfo"]["Bhyve Capable"]
    assert why(no_field, BHYVE) == "dest-server is not Bhyve Capable (sysinfo)"
    assert why(roomy({"Bhyve Capable": False}), KVM) is None      # kvm does not need it


def test_bhyve_vcpus_within_max_vcpus_and_the_cpus_online():
    """hard-filter-hvm.js: 1 <= vcpus <= "Bhyve Max Vcpus" (16 where a platform
    predates it), capped by "CPU Online Count" (else "CPU Total Cores");
    no vcpus at all is refused."""
    assert why(roomy({"Bhyve Max Vcpus": 2}), BHYVE) == \
        "dest-server runs bhyve instances of 1 to 2 vcpus; the instance has 4"
    assert why(roomy({"Bhyve Max Vcpus": 4}), BHYVE) is None
    assert why(roomy({"CPU Online Count": 3}), BHYVE) == \
        "dest-server runs bhyve instances of 1 to 3 vcpus; the instance has 4"
    old = roomy({"CPU Total Cores": 2})
    del old["sysinfo"]["Bhyve Max Vcpus"], old["sysinfo"]["CPU Online Count"]
    assert "of 1 to 2 vcpus" in why(old, BHYVE)
    old["sysinfo"]["CPU Total Cores"] = 64
    assert "of 1 to 16 vcpus" in why(old, dict(BHYVE, vcpus=17))
    assert "the instance has None" in why(roomy(), dict(BHYVE, vcpus=None))


def test_without_hvm_api_kvm_and_bhyve_do_not_share_a_cn():
    """hard-filter-hvm.js: without "HVM API", a CN running (or given by this
    plan) an instance of the other HVM brand is refused; other brands and the
    same brand are fine."""
    kvm_there = {"vms": {"k1": {"brand": "kvm"}, "z1": {"brand": "joyent"}}}
    assert why(roomy({"HVM API": False}, **kvm_there), BHYVE) == (
        "dest-server has no HVM API (sysinfo) and runs kvm instance k1: bhyve and kvm"
        " instances do not share a CN without it")
    assert why(roomy({"HVM API": True}, **kvm_there), BHYVE) is None
    assert why(roomy({"HVM API": False}, **kvm_there), KVM) is None
    assert why(roomy({"HVM API": False}, **kvm_there), VM) is None
    assert "placed by this plan" in why(roomy({"HVM API": False}), KVM, placed=["bhyve"])


def test_traits_as_dapi_matches_them():
    """hard-filter-traits.js: the instance's package traits, its image's over
    them; a CN must have as many traits, each matching (booleans equal, a
    string equal or in the CN's array, arrays intersecting); a CN with traits
    takes none that ask for none."""
    pkg = {"traits": {"ssd": True, "hw": "richmond-a"}}
    assert why(roomy(traits={"ssd": True, "hw": ["richmond-a", "richmond-b"]}), VM, pkg,
               {}) is None
    assert why(roomy(traits={"ssd": False, "hw": "richmond-a"}), VM, pkg, {}) == (
        'dest-server has traits {"hw": "richmond-a", "ssd": false}; the instance asks for'
        ' {"hw": "richmond-a", "ssd": true} (its package and image): ssd comparison failed:'
        ' boolean did not match')
    assert "asks for" in why(roomy(traits={"ssd": True}), VM, pkg, {})     # one too few
    # the image's traits take precedence over the package's
    assert why(roomy(traits={"ssd": False, "hw": "richmond-a"}), VM, pkg,
               {"traits": {"ssd": False}}) is None
    assert why(roomy(traits={"hw": ["x", "y"]}), VM, {"traits": {"hw": ["y", "z"]}}, {}) \
        is None
    assert why(roomy(traits={"ssd": True}), VM, {}, {}) == (
        'dest-server has traits {"ssd": true}; the instance asks for none (its package and'
        ' image): DAPI places only instances that ask for them there')
    assert why(roomy(), VM, {}, {}) is None
    # unread (the gather's first look, before PAPI and IMGAPI answer): not judged
    assert why(roomy(traits={"ssd": True}), VM) is None
