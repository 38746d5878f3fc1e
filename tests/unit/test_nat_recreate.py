"""sdc-migrate nat-recreate: which zones are NAT zones, the --list table, the
SAPI instance it asks for, and refusals before anything changes."""
import subprocess
import sys

from sdc_migrate.commands import nat_recreate as nr

NET = "e9a808dd-fb03-4097-9411-89ac8d557872"
EXT = "9a22eca6-4153-4c04-8f83-aca85ad6615d"
NAT = "f1555267-0630-449d-b0eb-a727ad5fafd1"
OWNER = "5ca5b3dc-48fe-6f75-ed8c-8d8fbd77e2aa"
CN = "00000000-0000-0000-0000-d43d7ef73056"


def nat_vm(ip="192.168.128.1", alias="nat-" + NET, role="nat"):
    return {"uuid": NAT, "alias": alias, "state": "running", "server_uuid": CN,
            "tags": {"smartdc_role": role, "smartdc_type": "core"},
            "internal_metadata": {"com.joyent:ipnat_owner": OWNER},
            "nics": [{"network_uuid": EXT, "ip": "10.88.88.5", "primary": True},
                     {"network_uuid": NET, "ip": ip}]}


NETWORK = {"uuid": NET, "name": "My-Fabric-Network", "subnet": "192.168.128.0/22",
           "gateway": "192.168.128.1", "fabric": True, "gateway_provisioned": True}


def test_a_nat_zone_is_known_by_its_tag_and_alias():
    assert nr.network_of(nat_vm()) == NET
    assert nr.network_of(nat_vm(role="imgapi")) is None
    assert nr.network_of(nat_vm(alias="kirby")) is None
    assert nr.network_of(nat_vm(alias="nat-not-a-uuid")) is None


def test_list_rows():
    rows = nr.nat_rows([nat_vm()], {NET: NETWORK}, {CN: "source-server"})
    assert rows == [[NAT, NET, "192.168.128.1", "source-server", "running"]]
    # a NAT zone that holds another address than its network's gateway says so
    rows = nr.nat_rows([nat_vm(ip="192.168.128.9")], {NET: NETWORK}, {CN: "source-server"})
    assert rows[0][2] == "192.168.128.1 (holds 192.168.128.9)"


def test_the_successor_is_asked_of_sapi_as_vmapis_fabric_workflow_asks():
    body = nr.new_instance({"uuid": "svc"}, nat_vm(), NETWORK, EXT, None)
    assert body["service_uuid"] == "svc"
    assert body["metadata"] == {"com.joyent:ipnat_subnet": "192.168.128.0/22"}
    p = body["params"]
    assert p["alias"] == "nat-" + NET
    assert p["networks"] == [{"uuid": EXT, "primary": True, "allow_ip_spoofing": True},
                             {"uuid": NET, "ip": "192.168.128.1", "allow_ip_spoofing": True}]
    assert p["internal_metadata"] == {"com.joyent:ipnat_owner": OWNER}
    assert "server_uuid" not in p                      # where Triton places it
    assert nr.new_instance({"uuid": "svc"}, nat_vm(), NETWORK, EXT, CN)["params"][
        "server_uuid"] == CN


class FakeApi:
    def __init__(self, vm, network):
        self._vm, self._network = vm, network
        self.changes = []

    def vm(self, uuid):
        return self._vm

    def network(self, uuid):
        return self._network

    def call(self, *a, **k):
        self.changes.append(a)
        raise AssertionError("nothing may change")


def gather(vm, network):
    n = nr.NatRecreate(yes=True)
    n.api = FakeApi(vm, network)
    try:
        n.gather(NAT, None)
    except Exception as e:   # noqa: BLE001 - the refusal is what is tested
        return e, n.api.changes
    return None, n.api.changes


def test_refusals_change_nothing():
    from sdc_migrate.errors import Refused
    err, changes = gather(nat_vm(role="imgapi"), NETWORK)
    assert isinstance(err, Refused) and "not a fabric NAT zone" in str(err) and not changes
    err, changes = gather(nat_vm(ip="192.168.128.9"), NETWORK)
    assert isinstance(err, Refused) and "does not hold the gateway" in str(err)
    gone = dict(nat_vm(), state="destroyed")
    err, changes = gather(gone, NETWORK)                  # someone recreated it already
    assert isinstance(err, Refused) and "another NAT zone serves it" in str(err)
    err, changes = gather(nat_vm(), dict(NETWORK, fabric=False))
    assert isinstance(err, Refused) and not changes


def run(*args):
    return subprocess.run([sys.executable, "-m", "sdc_migrate", "nat-recreate"] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_usage():
    assert run().returncode == 2
    assert run("--list", "a", "b").returncode == 2
    p = run("-h")
    assert p.returncode == 0
    assert "sdc-migrate nat-recreate [-y] (--list [CN_NAME] | NAT_UUID [DEST_CN_NAME])" \
        in p.stdout


def test_a_malformed_uuid_is_refused_in_one_line():
    p = run("-y", "$(reboot)")
    assert p.returncode == 2
    assert p.stderr == "sdc-migrate nat-recreate: error (Refused): '$(reboot)' is not an instance UUID\n"
