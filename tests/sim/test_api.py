"""The simulated datacenter's API service (tools/sim/simdc/api/) against the
Triton samples in tests/fixtures/triton-samples: shapes, errors, headers, the NAPI IP
rules and the vm-agent destroy/return rule.

The service runs alone on the host on a private SIMDC_DIR and SIMDC_NET 61
(127.0.61.x), on a free high port.
"""
import copy
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SIM = ROOT / "tools" / "sim"
SAMPLES = ROOT / "tests" / "fixtures" / "triton-samples"
NET = "61"
IPS = {"vmapi": "127.0.61.2", "cnapi": "127.0.61.3", "napi": "127.0.61.4",
       "imgapi": "127.0.61.5", "sapi": "127.0.61.6", "papi": "127.0.61.7"}
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable



def sample(name):
    with open(SAMPLES / name) as f:
        return json.load(f)


def free_port():
    s = socket.socket()
    s.bind((IPS["vmapi"], 0))
    port = s.getsockname()[1]
    s.close()
    return port


class DC:
    def __init__(self, d, port):
        self.dir = Path(d)
        self.port = port

    def call(self, api, method, path, body=None, raw=None, headers=None):
        url = "http://%s:%d%s" % (IPS[api], self.port, path)
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        req = urllib.request.Request(url, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, hdrs, payload = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            status, hdrs, payload = e.code, e.headers, e.read()
        ctype = hdrs.get("Content-Type") or ""
        if "json" in ctype and payload:
            return status, json.loads(payload), hdrs
        return status, payload, hdrs


def start_service(d, port):
    env = dict(os.environ, SIMDC_DIR=str(d), SIMDC_NET=NET, SIMDC_API_PORT=str(port),
               SIMDC_HOST="headnode", PYTHONPATH=str(SIM))
    out = open(Path(d) / "api.out", "w")
    proc = subprocess.Popen([PYTHON, "-m", "simdc.api"], cwd=str(SIM), env=env,
                            stdout=out, stderr=subprocess.STDOUT)
    dc = DC(d, port)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            if all(dc.call(api, "GET", "/ping")[0] == 200 for api in IPS):
                break
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("api service died: %s" % (Path(d) / "api.out").read_text())
        time.sleep(0.05)
    else:
        proc.kill()
        raise RuntimeError("api service did not answer")
    return proc, dc


def stop_service(proc, d):
    pid = int((Path(d) / "pids" / "api.pid").read_text().split()[0])
    assert pid == proc.pid
    os.kill(pid, signal.SIGTERM)
    try:
        return proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


@pytest.fixture(scope="module")
def dc(tmp_path_factory):
    d = tmp_path_factory.mktemp("simdc-api")
    proc, dc = start_service(d, free_port())
    yield dc
    assert stop_service(proc, d) == 0, "service did not exit cleanly on SIGTERM"


# ---- helpers building Triton-shaped inputs -------------------------------------

HN_UUID = "44454c4c-3700-1051-8038-b3c04f4e3131"
CN1_UUID = "44454c4c-3700-1051-8038-b3c04f4e3132"
CN2_UUID = "44454c4c-3700-1051-8038-b3c04f4e3133"
OWNER = "930896af-bf8c-48d4-885c-6573a94b1853"


def sysinfo_for(uuid, hostname, admin_ip, headnode=False):
    si = copy.deepcopy(sample("sysinfo-cn.json"))
    si["UUID"] = uuid
    si["Hostname"] = hostname
    si["Boot Parameters"]["hostname"] = hostname
    if headnode:
        si["Boot Parameters"]["headnode"] = "true"
    si["Network Interfaces"]["ixgbe0"]["ip4addr"] = admin_ip
    return si


def vmadm_obj(uuid, alias, nics=(), brand="joyent-minimal", **over):
    o = copy.deepcopy(sample("vmadm-get.json"))
    o.update(uuid=uuid, zonename=uuid, alias=alias, brand=brand,
             zonepath="/zones/" + uuid, zfs_filesystem="zones/" + uuid, nics=list(nics))
    o.update(over)
    return o


def nic(mac, ip, primary=True, netmask="255.255.255.0"):
    return {"interface": "net0", "mac": mac, "vlan_id": 0, "nic_tag": "admin",
            "netmask": netmask, "ip": ip, "ips": [ip + "/24"], "primary": primary}


def ensure_admin_network(dc):
    st, nets, _ = dc.call("napi", "GET", "/networks?name=admin")
    if nets:
        return nets[0]
    dc.call("napi", "POST", "/nic_tags", {"name": "admin"})
    st, net, _ = dc.call("napi", "POST", "/networks", {
        "name": "admin", "subnet": "10.99.99.0/24", "provision_start_ip": "10.99.99.37",
        "provision_end_ip": "10.99.99.253", "gateway": "10.99.99.7",
        "resolvers": ["10.99.99.11"], "nic_tag": "admin", "vlan_id": 0})
    assert st == 200, net
    return net


# ---- generic -----------------------------------------------------------------

def test_ping_all_apis(dc):
    for api in IPS:
        st, body, hdrs = dc.call(api, "GET", "/ping")
        assert st == 200 and isinstance(body, dict)
    st, body, hdrs = dc.call("vmapi", "GET", "/ping")
    assert body["status"] == "OK" and body["healthy"] is True


def test_headers_like_restify(dc):
    expected_server = {"vmapi": "VMAPI", "cnapi": "Compute Node API",
                       "napi": "SmartDataCenter Networking API", "imgapi": "IMGAPI/1.0.0",
                       "sapi": "SAPI"}
    # Header names of the real VMAPI response sample (all but workflow-api,
    # which only the job-creating endpoints send).
    with open(SAMPLES / "vmapi-delete-vm-response.txt") as f:
        head = f.read().split("\n\n")[0].splitlines()[1:]
    names = {h.split(":")[0].lower() for h in head} - {"workflow-api"}
    for api, server in expected_server.items():
        st, body, hdrs = dc.call(api, "GET", "/ping")
        assert hdrs["Server"] == server
        have = {k.lower() for k in hdrs.keys()}
        assert names <= have, names - have
        raw = json.dumps(body, separators=(",", ":")).encode()
        assert int(hdrs["Content-Length"]) == len(raw)
        assert hdrs["Content-Type"] == "application/json"


def test_unknown_route_is_sample_404(dc):
    st, body, _ = dc.call("vmapi", "GET", "/no/such/route")
    assert st == 404
    assert body == sample("vmapi-error-notfound.json")


def test_requests_are_logged(dc):
    dc.call("sapi", "GET", "/ping?x=1")
    dc.call("vmapi", "GET", "/vms/" + "0" * 8 + "-0000-0000-0000-" + "0" * 12)
    recs = [json.loads(line) for line in (dc.dir / "log.jsonl").read_text().splitlines()]
    ping = [r for r in recs if r["host"] == "sapi" and r["argv"] == ["GET", "/ping?x=1"]]
    assert ping and ping[-1]["rc"] == 0 and ping[-1]["status"] == 200
    nf = [r for r in recs if r["host"] == "vmapi" and r["status"] == 404]
    assert nf and nf[-1]["rc"] == 404 and nf[-1]["end"] >= nf[-1]["start"]


# ---- VMAPI -------------------------------------------------------------------

def test_vm_shapes(dc):
    ensure_admin_network(dc)
    u = "6d7d6f4b-4553-49f1-bc0b-7fd16dcf0f2c"
    kvm = copy.deepcopy(sample("vmadm-vmload-kvm-from-xml.json"))
    kvm.update(uuid="5a02245a-422c-4e0a-c5f8-fd6fac1ac04e", state="running",
               zone_state="running", quota=10)
    st, body, _ = dc.call("vmapi", "PUT", "/vms?server_uuid=" + CN1_UUID, {"vms": {
        u: vmadm_obj(u, "testvm", [nic("92:88:1a:79:75:71", "10.99.99.40")]),
        kvm["uuid"]: kvm}})
    assert st == 200
    st, vm, _ = dc.call("vmapi", "GET", "/vms/" + u)
    assert st == 200
    assert set(sample("vmapi-vm-minimal-defaults.json")) <= set(vm)
    assert set(sample("vmapi-vm-joyent.json")) - {"dataset_uuid"} <= set(vm)
    assert vm["server_uuid"] == CN1_UUID
    assert vm["create_timestamp"] == "2015-11-27T05:01:25.838Z"
    assert vm["ram"] == 128 and vm["max_physical_memory"] == 128 and vm["quota"] == 25
    assert vm["image_uuid"] == "cd2d08a0-83f1-11e5-8684-f383641a9854"
    assert vm["nics"][0]["ip"] == "10.99.99.40"
    assert vm["tags"] == {} and vm["datasets"] == [] and vm["destroyed"] is None
    for k in ("customer_metadata", "internal_metadata", "state", "zone_state",
              "last_modified"):
        assert k in vm
    st, kv, _ = dc.call("vmapi", "GET", "/vms/" + kvm["uuid"])
    assert set(sample("vmapi-vm-kvm.json")) <= set(kv)
    assert kv["disks"][0]["image_uuid"] == kv["image_uuid"]
    assert kv["ram"] == 1024 and kv["vcpus"] == 2
    st, sub, _ = dc.call("vmapi", "GET", "/vms/%s?fields=uuid,alias,ram,state,nics" % u)
    assert set(sub) == {"uuid", "alias", "ram", "state", "nics"}


def test_vm_errors(dc):
    st, body, _ = dc.call("vmapi", "GET", "/vms/not-a-uuid")
    assert st == 409 and body["code"] == "ValidationFailed"
    assert body["errors"][0]["field"] == "uuid"
    st, body, _ = dc.call("vmapi", "GET", "/vms/00000000-1111-2222-3333-444444444444")
    assert st == 404 and body == {"code": "ResourceNotFound", "message": "VM not found"}
    st, body, _ = dc.call("vmapi", "PUT", "/vms", {"vms": {}})
    assert st == 409 and body["errors"][0] == {"field": "server_uuid",
                                                "code": "MissingParameter",
                                                "message": "Missing parameter"}
    st, body, _ = dc.call("vmapi", "GET", "/vms?bogus=1")
    assert st == 409 and body["code"] == "ValidationFailed"


def test_list_vms_filters(dc):
    a = "aaaaaaaa-0000-4000-8000-000000000001"
    b = "aaaaaaaa-0000-4000-8000-000000000002"
    server = "44454c4c-3700-1051-8038-b3c04f4e31ff"
    st, _, _ = dc.call("vmapi", "PUT", "/vms?server_uuid=" + server, {"vms": {
        a: vmadm_obj(a, "web0", tags={"role": "web"}),
        b: vmadm_obj(b, "db0", state="stopped", zone_state="installed",
                     tags={"role": "db"})}})
    assert st == 200

    def uuids(q):
        st, vms, _ = dc.call("vmapi", "GET", "/vms?" + q)
        assert st == 200, vms
        return [v["uuid"] for v in vms]
    assert uuids("server_uuid=" + server) == [b, a]          # uuid DESC by default
    assert uuids("server_uuid=%s&state=running" % server) == [a]
    assert uuids("server_uuid=%s&tag.role=db" % server) == [b]
    assert uuids("server_uuid=%s&tag.role=*" % server) == [b, a]
    assert uuids("alias=web0") == [a]
    assert uuids("alias=web*") == [a]
    assert uuids("uuids=%s,%s&sort=uuid.asc" % (a, b)) == [a, b]
    # destroyed VMs are listed unless a state filter excludes them
    st, _, _ = dc.call("vmapi", "PUT", "/vms?server_uuid=" + server,
                       {"vms": {a: vmadm_obj(a, "web0", tags={"role": "web"})}})
    assert uuids("server_uuid=" + server) == [b, a]
    assert uuids("server_uuid=%s&state=active" % server) == [a]
    assert uuids("server_uuid=%s&state=destroyed" % server) == [b]
    st, vms, _ = dc.call("vmapi", "GET", "/vms?server_uuid=%s&fields=uuid,state" % server)
    assert vms == [{"uuid": b, "state": "destroyed"}, {"uuid": a, "state": "running"}]


def test_delete_vm_marks_destroyed(dc):
    u = "bbbbbbbb-0000-4000-8000-000000000001"
    dc.call("vmapi", "PUT", "/vms?server_uuid=" + CN2_UUID, {"vms": {u: vmadm_obj(u, "gone")}})
    st, body, hdrs = dc.call("vmapi", "DELETE", "/vms/" + u)
    assert st == 202 and set(body) == {"vm_uuid", "job_uuid"} and body["vm_uuid"] == u
    assert "workflow-api" in {k.lower() for k in hdrs.keys()}
    st, vm, _ = dc.call("vmapi", "GET", "/vms/" + u)
    assert vm["state"] == "destroyed" and vm["destroyed"]
    st, job, _ = dc.call("vmapi", "GET", "/jobs/" + body["job_uuid"])
    assert st == 200 and set(sample("vmapi-job.json")) <= set(job)


def test_vm_agent_destroy_and_return(dc):
    """CONTRACT 'vm-agent': a VM missing from its server's report is destroyed;
    reported again by any CN it comes back there. VMAPI leaves NAPI alone
    (sdc-vmapi has no NIC work on a vm-agent PUT; the NICs are net-agent's)."""
    net = ensure_admin_network(dc)
    for uuid, host, ip in ((CN1_UUID, "source-server", "127.0.61.11"),
                           (CN2_UUID, "dest-server", "127.0.61.12")):
        st, _, _ = dc.call("cnapi", "POST", "/servers/%s/sysinfo" % uuid,
                           {"sysinfo": sysinfo_for(uuid, host, ip)})
        assert st == 200
    vm1 = "cccccccc-0000-4000-8000-000000000001"   # plain IP
    vm2 = "cccccccc-0000-4000-8000-000000000002"   # reserved IP
    nics = {}
    for vm in (vm1, vm2):
        st, n, _ = dc.call("napi", "POST", "/nics", {
            "owner_uuid": OWNER, "belongs_to_uuid": vm, "belongs_to_type": "zone",
            "network_uuid": net["uuid"], "primary": True})
        assert st == 200, n
        nics[vm] = n
    ip1, ip2 = nics[vm1]["ip"], nics[vm2]["ip"]
    st, r, _ = dc.call("napi", "PUT", "/networks/%s/ips/%s" % (net["uuid"], ip2),
                       {"reserved": True})
    assert r["reserved"] is True
    objs = {vm: vmadm_obj(vm, "v" + vm[-1], [nic(nics[vm]["mac"], nics[vm]["ip"])])
            for vm in (vm1, vm2)}
    st, _, _ = dc.call("vmapi", "PUT", "/vms?server_uuid=" + CN1_UUID,
                       {"vms": dict(objs)})
    st, srv, _ = dc.call("cnapi", "GET", "/servers/" + CN1_UUID)
    assert set(srv["vms"]) >= {vm1, vm2}
    assert set(srv["vms"][vm1]) == {"uuid", "owner_uuid", "quota", "max_physical_memory",
                                    "zone_state", "state", "brand", "cpu_cap",
                                    "last_modified"}

    # The source reports without them (migrated away, dest not reported yet).
    dc.call("vmapi", "PUT", "/vms?server_uuid=" + CN1_UUID, {"vms": {}})
    for vm in (vm1, vm2):
        st, v, _ = dc.call("vmapi", "GET", "/vms/" + vm)
        assert v["state"] == "destroyed" and v["zone_state"] == "destroyed"
        assert v["destroyed"]
        # NAPI untouched: NICs and IPs as they were
        st, body, _ = dc.call("napi", "GET", "/nics/" + nics[vm]["mac"].replace(":", ""))
        assert st == 200 and body["belongs_to_uuid"] == vm
    st, r1, _ = dc.call("napi", "GET", "/networks/%s/ips/%s" % (net["uuid"], ip1))
    assert r1["free"] is False and r1["belongs_to_uuid"] == vm1
    st, srv, _ = dc.call("cnapi", "GET", "/servers/" + CN1_UUID)
    assert vm1 not in srv["vms"]

    # The destination reports them: they come back, on the destination.
    st, _, _ = dc.call("vmapi", "PUT", "/vms?server_uuid=" + CN2_UUID, {"vms": dict(objs)})
    for vm in (vm1, vm2):
        st, v, _ = dc.call("vmapi", "GET", "/vms/" + vm)
        assert v["state"] == "running" and v["destroyed"] is None
        assert v["server_uuid"] == CN2_UUID
        assert v["create_timestamp"] == "2015-11-27T05:01:25.838Z"
        st, back, _ = dc.call("napi", "GET", "/nics/" + nics[vm]["mac"])
        assert st == 200 and back["belongs_to_uuid"] == vm and back["ip"] == nics[vm]["ip"]


# ---- CNAPI -------------------------------------------------------------------

def test_server_from_sysinfo(dc):
    st, _, _ = dc.call("cnapi", "POST", "/servers/%s/sysinfo" % HN_UUID,
                       {"sysinfo": sysinfo_for(HN_UUID, "headnode", "127.0.61.1", True)})
    assert st == 200
    st, s, _ = dc.call("cnapi", "GET", "/servers/" + HN_UUID)
    assert st == 200
    assert set(sample("cnapi-server.json")) <= set(s)
    assert s["hostname"] == "headnode" and s["headnode"] is True
    assert s["ram"] == 49139 and s["memory_total_bytes"] == 49139 * 1024 * 1024
    assert s["current_platform"] == "20180128T233316Z"
    assert s["sysinfo"]["UUID"] == HN_UUID and s["datacenter"] == "sim-1"
    assert s["setup"] is True and s["reserved"] is False and s["status"] == "running"
    st, body, _ = dc.call("cnapi", "POST", "/servers/" + HN_UUID,
                          {"reserved": True, "traits": {"ssd": True},
                           "last_heartbeat": "2026-01-01T00:00:00Z",
                           "disk_pool_size_bytes": 123, "memory_available_bytes": 456})
    assert st == 204
    st, s, _ = dc.call("cnapi", "GET", "/servers/" + HN_UUID)
    assert s["reserved"] is True and s["traits"] == {"ssd": True}
    assert s["last_heartbeat"] == "2026-01-01T00:00:00.000Z"
    assert s["disk_pool_size_bytes"] == 123 and s["memory_available_bytes"] == 456
    assert s["status"] == "unknown"         # its heartbeats stopped long ago
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    dc.call("cnapi", "POST", "/servers/" + HN_UUID, {"last_heartbeat": now})
    st, s, _ = dc.call("cnapi", "GET", "/servers/" + HN_UUID)
    assert s["status"] == "running" and s["last_heartbeat"] == now
    dc.call("cnapi", "POST", "/servers/" + HN_UUID, {"reserved": False})
    st, body, _ = dc.call("cnapi", "GET", "/servers/00000000-1111-2222-3333-444444444444")
    assert st == 404 and body["code"] == "ResourceNotFound"


def test_server_agents_are_cn_agents_and_outlive_a_sysinfo_refresh(dc):
    """sdc-cnapi lib/models/server.js: a server's agents are what cn-agent
    posts (POST /servers/UUID {agents}, sdc-cn-agent lib/app.js updateAgents);
    sysinfo's "SDC Agents" fills them only while they are empty."""
    si = sysinfo_for(CN2_UUID, "dest-server", "127.0.61.12")
    dc.call("cnapi", "POST", "/servers/%s/sysinfo" % CN2_UUID, {"sysinfo": si})
    st, s, _ = dc.call("cnapi", "GET", "/servers/" + CN2_UUID)
    assert s["agents"] == si["SDC Agents"]
    posted = [{"name": "net-agent", "version": "2.3.6",
               "image_uuid": "4ed2d0b0-21de-5c8b-93a4-686541a728db"}]
    st, _, _ = dc.call("cnapi", "POST", "/servers/" + CN2_UUID, {"agents": posted})
    assert st == 204
    dc.call("cnapi", "POST", "/servers/%s/sysinfo" % CN2_UUID, {"sysinfo": si})
    st, s, _ = dc.call("cnapi", "GET", "/servers/" + CN2_UUID)
    assert s["agents"] == posted


def test_list_servers_filters_and_extras(dc):
    dc.call("cnapi", "POST", "/servers/%s/sysinfo" % HN_UUID,
            {"sysinfo": sysinfo_for(HN_UUID, "headnode", "127.0.61.1", True)})
    dc.call("cnapi", "POST", "/servers/%s/sysinfo" % CN1_UUID,
            {"sysinfo": sysinfo_for(CN1_UUID, "source-server", "127.0.61.11")})
    st, servers, _ = dc.call("cnapi", "GET", "/servers")
    assert [s["uuid"] for s in servers] == sorted(s["uuid"] for s in servers)
    assert all("sysinfo" not in s and "vms" not in s for s in servers)
    st, hn, _ = dc.call("cnapi", "GET", "/servers?headnode=true")
    assert [s["hostname"] for s in hn] == ["headnode"]
    st, one, _ = dc.call("cnapi", "GET", "/servers?hostname=source-server&extras=sysinfo,vms")
    assert len(one) == 1 and "sysinfo" in one[0] and "vms" in one[0]
    st, two, _ = dc.call("cnapi", "GET", "/servers?uuids=%s,%s" % (HN_UUID, CN1_UUID))
    assert {s["uuid"] for s in two} == {HN_UUID, CN1_UUID}
    st, cap, _ = dc.call("cnapi", "GET", "/servers?extras=capacity&uuids=" + HN_UUID)
    assert "unreserved_ram" in cap[0]


# ---- NAPI --------------------------------------------------------------------

def test_network_shapes(dc):
    net = ensure_admin_network(dc)
    assert set(sample("napi-network.json")) <= set(net)
    for s in sample("napi-networks-list.json"):
        assert set(s) <= set(net)
    st, got, _ = dc.call("napi", "GET", "/networks/" + net["uuid"])
    assert got == net
    st, body, _ = dc.call("napi", "POST", "/nic_tags", {"name": "sdc_overlay"})
    fab = sample("napi-network-fabric.json")
    params = {k: fab[k] for k in ("name", "subnet", "provision_start_ip", "provision_end_ip",
                                  "gateway", "nic_tag", "vlan_id", "resolvers", "vnet_id",
                                  "mtu")}
    params.update(fabric=True, owner_uuids=[fab["owner_uuid"]], internet_nat=True)
    st, fnet, _ = dc.call("napi", "POST", "/networks", params)
    assert st == 200, fnet
    assert set(fab) - {"owner_uuid"} <= set(fnet)
    assert fnet["gateway_provisioned"] is False and fnet["fabric"] is True
    st, upd, _ = dc.call("napi", "PUT", "/networks/" + fnet["uuid"],
                         {"gateway_provisioned": True})
    assert upd["gateway_provisioned"] is True
    st, lst, _ = dc.call("napi", "GET", "/networks?fabric=true")
    assert [n["uuid"] for n in lst] == [fnet["uuid"]]
    st, lst, _ = dc.call("napi", "GET", "/networks?owner_uuid=" + fab["owner_uuid"])
    assert [n["uuid"] for n in lst] == [fnet["uuid"]]
    st, lst, _ = dc.call("napi", "GET", "/networks?nic_tag=admin")
    assert [n["name"] for n in lst] == ["admin"]
    st, err, _ = dc.call("napi", "POST", "/networks", {"name": "x"})
    assert st == 422 and err["code"] == "InvalidParameters"
    assert {e["field"] for e in err["errors"]} >= {"subnet", "nic_tag", "vlan_id"}
    st, err, _ = dc.call("napi", "GET", "/networks/00000000-1111-2222-3333-444444444444")
    assert st == 404 and err["code"] == "ResourceNotFound"


def test_ip_reservation_round_trip(dc):
    net = ensure_admin_network(dc)
    base = "/networks/%s/ips/" % net["uuid"]
    st, ip, _ = dc.call("napi", "GET", base + "10.99.99.200")
    assert st == 200
    assert ip == {"ip": "10.99.99.200", "reserved": False, "free": True,
                  "network_uuid": net["uuid"]}
    st, ip, _ = dc.call("napi", "PUT", base + "10.99.99.200", {"reserved": True})
    assert set(sample("napi-ip-reserve-response-docs.json")) <= set(ip)
    assert ip["reserved"] is True and ip["free"] is False
    st, ips, _ = dc.call("napi", "GET", "/networks/%s/ips" % net["uuid"])
    listed = {i["ip"]: i for i in ips}
    assert "10.99.99.200" in listed
    assert listed["10.99.99.7"]["belongs_to_type"] == "other"   # gateway
    assert "10.99.99.255" in listed                              # broadcast
    st, ip, _ = dc.call("napi", "PUT", base + "10.99.99.200",
                        {"owner_uuid": OWNER, "belongs_to_uuid": HN_UUID,
                         "belongs_to_type": "server"})
    assert set(sample("napi-ip.json")) <= set(ip)
    st, ip, _ = dc.call("napi", "PUT", base + "10.99.99.200", {"free": True})
    assert ip == {"ip": "10.99.99.200", "reserved": False, "free": True,
                  "network_uuid": net["uuid"]}
    st, ips, _ = dc.call("napi", "GET", "/networks/%s/ips" % net["uuid"])
    assert "10.99.99.200" not in {i["ip"] for i in ips}
    st, found, _ = dc.call("napi", "GET", "/search/ips?ip=10.99.99.7")
    assert found[0]["belongs_to_type"] == "other"
    assert set(sample("napi-search-ips.json")[1]) <= set(found[0])
    st, body, _ = dc.call("napi", "GET", "/search/ips?ip=192.0.2.1")
    assert st == 404


def test_nic_provision_and_delete(dc):
    net = ensure_admin_network(dc)
    owner = "aaaaaaaf-bf8c-48d4-885c-6573a94b1853"
    vm = "eeeeeeee-0000-4000-8000-000000000001"
    st, n, _ = dc.call("napi", "POST", "/nics", {"owner_uuid": owner, "belongs_to_uuid": vm,
                                                 "belongs_to_type": "zone",
                                                 "network_uuid": net["uuid"]})
    assert st == 200, n
    assert set(sample("napi-nic-provision-response.json")) <= set(n)
    assert set(sample("napi-nic.json")) <= set(n)
    assert n["state"] == "running" and n["primary"] is False
    assert n["mac"].startswith("90:b8:d0:") and n["gateway"] == "10.99.99.7"
    assert n["netmask"] == "255.255.255.0" and n["network_uuid"] == net["uuid"]
    first_free = n["ip"]
    st, same, _ = dc.call("napi", "GET", "/nics/" + n["mac"].replace(":", ""))
    assert same == n
    st, lst, _ = dc.call("napi", "GET", "/nics?belongs_to_uuid=" + vm)
    assert [x["mac"] for x in lst] == [n["mac"]]
    st, ip, _ = dc.call("napi", "GET", "/networks/%s/ips/%s" % (net["uuid"], n["ip"]))
    assert ip["belongs_to_uuid"] == vm and ip["owner_uuid"] == owner
    st, upd, _ = dc.call("napi", "PUT", "/nics/" + n["mac"], {"state": "stopped",
                                                              "primary": True})
    assert upd["state"] == "stopped" and upd["primary"] is True
    # Explicit MAC and IP; a taken IP is refused.
    st, n2, _ = dc.call("napi", "POST", "/networks/%s/nics" % net["uuid"],
                        {"owner_uuid": owner, "belongs_to_uuid": vm, "belongs_to_type": "zone",
                         "mac": "90b8d0575370", "ip": "10.99.99.250"})
    assert st == 200 and n2["mac"] == "90:b8:d0:57:53:70" and n2["ip"] == "10.99.99.250"
    st, err, _ = dc.call("napi", "POST", "/nics", {"owner_uuid": owner,
                                                   "belongs_to_uuid": "x",
                                                   "belongs_to_type": "zone",
                                                   "network_uuid": net["uuid"],
                                                   "ip": "10.99.99.250"})
    assert st == 422 and err["errors"][0]["field"] == "ip"
    st, err, _ = dc.call("napi", "POST", "/nics", {"owner_uuid": owner, "belongs_to_uuid": vm,
                                                   "belongs_to_type": "zone",
                                                   "mac": "90:b8:d0:57:53:70"})
    assert st == 422 and err["errors"][0]["code"] == "Duplicate"
    # Delete: a plain IP is freed, a reserved one stays reserved with its owner.
    dc.call("napi", "PUT", "/networks/%s/ips/10.99.99.250" % net["uuid"], {"reserved": True})
    st, body, _ = dc.call("napi", "DELETE", "/nics/" + n["mac"].replace(":", ""))
    assert st == 204
    st, body, _ = dc.call("napi", "DELETE", "/nics/90b8d0575370")
    assert st == 204
    st, ip, _ = dc.call("napi", "GET", "/networks/%s/ips/%s" % (net["uuid"], first_free))
    assert ip["free"] is True
    st, ip, _ = dc.call("napi", "GET", "/networks/%s/ips/10.99.99.250" % net["uuid"])
    assert ip["reserved"] is True and ip["owner_uuid"] == owner
    assert "belongs_to_uuid" not in ip
    # The freed IP is not handed out again before never-used ones.
    st, n3, _ = dc.call("napi", "POST", "/nics", {"owner_uuid": owner, "belongs_to_uuid": vm,
                                                  "belongs_to_type": "zone",
                                                  "network_uuid": net["uuid"]})
    assert n3["ip"] != first_free
    dc.call("napi", "DELETE", "/nics/" + n3["mac"])
    st, body, _ = dc.call("napi", "GET", "/nics/001122334455")
    assert st == 404 and body["code"] == "ResourceNotFound"


def test_nic_tags(dc):
    st, t, _ = dc.call("napi", "POST", "/nic_tags", {"name": "external"})
    assert st == 200 and list(t) == ["mtu", "name", "uuid"]
    st, body, _ = dc.call("napi", "POST", "/nic_tags", {"name": "external"})
    assert st == 422
    st, tags, _ = dc.call("napi", "GET", "/nic_tags")
    assert "external" in [x["name"] for x in tags]


# ---- IMGAPI ------------------------------------------------------------------

def test_image_create_upload_download(dc):
    manifest = sample("imgapi-image.json")
    body = {k: v for k, v in manifest.items() if k not in ("state", "files",
                                                           "published_at")}
    st, img, _ = dc.call("imgapi", "POST", "/images", body)
    assert st == 200 and img["state"] == "unactivated" and img["uuid"] == manifest["uuid"]
    st, imgs, _ = dc.call("imgapi", "GET", "/images?name=smartos")
    assert imgs == []                                  # only active ones by default
    data = os.urandom(100000)
    st, img, _ = dc.call("imgapi", "PUT", "/images/%s/file" % manifest["uuid"], raw=data,
                         headers={"Content-Type": "application/octet-stream"})
    assert st == 200, img
    assert img["state"] == "active"
    assert img["files"] == [{"sha1": hashlib.sha1(data).hexdigest(), "size": len(data),
                             "compression": "none"}]
    assert (dc.dir / "imgapi" / (manifest["uuid"] + ".zfs")).read_bytes() == data
    st, got, _ = dc.call("imgapi", "GET", "/images/" + manifest["uuid"])
    assert set(manifest) <= set(got)
    st, imgs, _ = dc.call("imgapi", "GET", "/images?name=smartos&os=smartos&type=zone-dataset")
    assert [i["uuid"] for i in imgs] == [manifest["uuid"]]
    st, raw, hdrs = dc.call("imgapi", "GET", "/images/%s/file" % manifest["uuid"])
    assert st == 200 and raw == data
    assert hdrs["Content-Type"] == "application/octet-stream"
    st, err, _ = dc.call("imgapi", "GET", "/images/00000000-1111-2222-3333-444444444444")
    assert st == 404 and err["code"] == "ResourceNotFound"


# ---- SAPI --------------------------------------------------------------------

def test_sapi(dc):
    st, app, _ = dc.call("sapi", "POST", "/applications",
                         {"name": "sdc", "owner_uuid": OWNER,
                          "metadata": {"datacenter_name": "sim-1"}})
    assert st == 200 and app["metadata"]["datacenter_name"] == "sim-1"
    st, apps, _ = dc.call("sapi", "GET", "/applications?name=sdc")
    assert [a["uuid"] for a in apps] == [app["uuid"]]
    st, svc, _ = dc.call("sapi", "POST", "/services",
                         {"name": "vmapi", "application_uuid": app["uuid"]})
    assert st == 200 and svc["type"] == "vm"
    st, svcs, _ = dc.call("sapi", "GET", "/services?name=vmapi&application_uuid=" + app["uuid"])
    assert [s["uuid"] for s in svcs] == [svc["uuid"]]
    st, got, _ = dc.call("sapi", "GET", "/services/" + svc["uuid"])
    assert got == svc
    # exists: only the record (a service with no zone params cannot deploy one)
    st, inst, _ = dc.call("sapi", "POST", "/instances",
                          {"service_uuid": svc["uuid"], "exists": True})
    st, insts, _ = dc.call("sapi", "GET", "/instances?service_uuid=" + svc["uuid"])
    assert [i["uuid"] for i in insts] == [inst["uuid"]]
    st, _, _ = dc.call("sapi", "DELETE", "/instances/" + inst["uuid"])
    assert st == 204
    st, _, _ = dc.call("sapi", "GET", "/instances/" + inst["uuid"])
    assert st == 404


# ---- PAPI --------------------------------------------------------------------

def test_papi_packages_carry_the_traits_placement_reads(dc):
    """sdc-papi lib/papi.js: POST /packages (201), GET /packages/UUID, and
    "Package UUID does not exist" (ResourceNotFound) for one it lacks; traits
    are a package's free-form hash (docs/index.md), what sdc-designation
    hard-filter-traits.js matches against a server's."""
    pkg = {"name": "sample-1G", "version": "1.0.0", "max_physical_memory": 1024,
           "quota": 10240, "max_swap": 2048, "max_lwps": 4000, "zfs_io_priority": 100,
           "traits": {"ssd": True, "hw": ["richmond-a"]}}
    st, made, _ = dc.call("papi", "POST", "/packages", pkg)
    assert st == 201 and made["traits"] == pkg["traits"] and made["active"] is True
    st, got, _ = dc.call("papi", "GET", "/packages/" + made["uuid"])
    assert st == 200 and got["traits"] == {"ssd": True, "hw": ["richmond-a"]}
    st, listed, _ = dc.call("papi", "GET", "/packages?name=sample-1G")
    assert [p["uuid"] for p in listed] == [made["uuid"]]
    st, body, _ = dc.call("papi", "GET", "/packages/" + OWNER)
    assert st == 404 and body == {"code": "ResourceNotFound",
                                  "message": "Package %s does not exist" % OWNER}
    st, body, _ = dc.call("papi", "POST", "/packages", {"name": "no-ram"})
    assert st == 409


def test_create_vm_validates_and_needs_a_reachable_server(dc):
    """CreateVm refuses bad input with VMAPI's ValidationFailed, and a server
    the simulator cannot run the provision on with NoAllocatableServersError
    (the API runs alone here: no CN is up); nothing is left behind."""
    st, body, _ = dc.call("vmapi", "POST", "/vms", {"brand": "joyent"})
    assert st == 409 and body["code"] == "ValidationFailed"
    assert {e["field"] for e in body["errors"]} >= {"owner_uuid", "networks", "image_uuid"}
    net = ensure_admin_network(dc)
    st, body, _ = dc.call("vmapi", "POST", "/vms", {
        "owner_uuid": OWNER, "brand": "joyent-minimal", "networks": [{"uuid": net["uuid"]}],
        "image_uuid": "4e3b8c1a-0b9f-4f5e-9c41-1d2f0a7b6e01"})
    assert st == 409 and body["errors"][0]["field"] == "image_uuid"
    st, _, _ = dc.call("imgapi", "POST", "/images", {
        "uuid": "4e3b8c1a-0b9f-4f5e-9c41-1d2f0a7b6e01", "name": "base", "version": "1",
        "type": "zone-dataset", "os": "smartos", "owner": OWNER})
    st, _, _ = dc.call("cnapi", "POST", "/servers/%s/sysinfo" % CN2_UUID,
                       {"sysinfo": sysinfo_for(CN2_UUID, "dest-server", "127.0.61.12")})
    vm = "c4eac4ea-0000-4000-8000-000000000001"
    st, body, _ = dc.call("vmapi", "POST", "/vms", {
        "uuid": vm, "owner_uuid": OWNER, "brand": "joyent-minimal",
        "networks": [{"uuid": net["uuid"]}], "server_uuid": CN2_UUID,
        "image_uuid": "4e3b8c1a-0b9f-4f5e-9c41-1d2f0a7b6e01"})
    assert st == 409 and body["code"] == "NoAllocatableServersError", body
    assert dc.call("vmapi", "GET", "/vms/" + vm)[0] == 404


def test_sapi_instance_of_a_vm_service_is_deployed_through_vmapi(dc):
    """Without `exists`, CreateInstance provisions the zone: here VMAPI refuses
    it (no image in the service params), so SAPI answers with that error and
    keeps no record."""
    st, app, _ = dc.call("sapi", "POST", "/applications", {"name": "sdc2", "owner_uuid": OWNER})
    st, svc, _ = dc.call("sapi", "POST", "/services",
                         {"name": "nat", "application_uuid": app["uuid"],
                          "params": {"tags": {"smartdc_role": "nat"}}})
    st, body, _ = dc.call("sapi", "POST", "/instances", {"service_uuid": svc["uuid"]})
    assert st == 409 and body["code"] == "ValidationFailed"
    st, insts, _ = dc.call("sapi", "GET", "/instances?service_uuid=" + svc["uuid"])
    assert insts == []
    st, body, _ = dc.call("sapi", "POST", "/instances",
                          {"service_uuid": "dddddddd-0000-4000-8000-000000000001"})
    assert st == 404


def test_state_survives_restart(tmp_path):
    proc, dc = start_service(tmp_path, free_port())
    try:
        st, t, _ = dc.call("napi", "POST", "/nic_tags", {"name": "persist"})
        assert st == 200
    finally:
        assert stop_service(proc, tmp_path) == 0
    proc, dc = start_service(tmp_path, free_port())
    try:
        st, tags, _ = dc.call("napi", "GET", "/nic_tags")
        assert [x["name"] for x in tags] == ["persist"]
    finally:
        assert stop_service(proc, tmp_path) == 0


# ---- CNAPI capacity and VMAPI migrations (issue 13) -----------------------------

CN3_UUID = "44454c4c-3700-1051-8038-b3c04f4e3134"


def test_unreserved_ram_and_disk_apart_from_free_memory(dc):
    """The sample server (cnapi-server.json) is overprovisioned: 2 GB of free
    memory, unreserved_ram -42863 MB. sdc-designation
    lib/algorithms/calculate-server-unreserved.js: total RAM in MiB times
    (1 - reservation_ratio), less every VM's max_physical_memory but failed
    ones, stopped ones too; the sample's unreserved_disk is the pool less the
    images in it. Provisions and destroys (the vm-agent's reports) move them."""
    s = sample("cnapi-server.json")
    si = sysinfo_for(CN3_UUID, "full-server", "127.0.61.13")
    dc.call("cnapi", "POST", "/servers/%s/sysinfo" % CN3_UUID, {"sysinfo": si})
    figures = {k: s[k] for k in ("memory_available_bytes", "memory_total_bytes",
                                 "reservation_ratio", "disk_pool_size_bytes",
                                 "disk_installed_images_used_bytes")}
    assert dc.call("cnapi", "POST", "/servers/" + CN3_UUID, figures)[0] == 204
    st, srv, _ = dc.call("cnapi", "GET", "/servers/" + CN3_UUID)
    base = int(s["memory_total_bytes"] / 1048576 * (1 - s["reservation_ratio"]))
    assert srv["unreserved_ram"] == base
    assert srv["unreserved_disk"] == s["unreserved_disk"]
    # VMs reserving as much RAM as the sample's: 46336 MB, one of them stopped
    big = vmadm_obj("eeeeeeee-0000-4000-8000-000000000001", "big", state="stopped",
                    zone_state="installed", max_physical_memory=40000)
    small = vmadm_obj("eeeeeeee-0000-4000-8000-000000000002", "small",
                      max_physical_memory=6336)
    failed = vmadm_obj("eeeeeeee-0000-4000-8000-000000000003", "broken", state="failed",
                       max_physical_memory=99999)
    dc.call("vmapi", "PUT", "/vms?server_uuid=" + CN3_UUID,
            {"vms": {v["uuid"]: v for v in (big, small, failed)}})
    st, srv, _ = dc.call("cnapi", "GET", "/servers/" + CN3_UUID)
    assert srv["unreserved_ram"] == s["unreserved_ram"] == base - 46336
    assert srv["memory_available_bytes"] == s["memory_available_bytes"]   # free: 2 GB
    st, listed, _ = dc.call("cnapi", "GET", "/servers?extras=capacity&uuids=" + CN3_UUID)
    assert listed[0]["unreserved_ram"] == s["unreserved_ram"]
    # the big one destroyed: its RAM is unreserved again
    dc.call("vmapi", "PUT", "/vms?server_uuid=" + CN3_UUID,
            {"vms": {v["uuid"]: v for v in (small, failed)}})
    st, srv, _ = dc.call("cnapi", "GET", "/servers/" + CN3_UUID)
    assert srv["unreserved_ram"] == base - 6336


def test_vmapi_migration_records(dc):
    """sdc-vmapi lib/endpoints/vms.js: ListMigrations, GetMigration (the record
    whose source is the VM's server; 404 without one), StoreMigrationRecord
    (a successful abort deletes it); translateVmMigration's fields."""
    vm = vmadm_obj("eeeeeeee-0000-4000-8000-0000000000aa", "moving")
    dc.call("vmapi", "PUT", "/vms?server_uuid=" + CN3_UUID, {"vms": {vm["uuid"]: vm}})
    st, body, _ = dc.call("vmapi", "GET", "/migrations/" + vm["uuid"])
    assert st == 404 and body["code"] == "ResourceNotFound"
    rec = {"id": "ffffffff-0000-4000-8000-000000000001", "vm_uuid": vm["uuid"],
           "source_server_uuid": CN3_UUID, "target_server_uuid": CN2_UUID,
           "automatic": False, "phase": "sync", "state": "running",
           "created_timestamp": "2026-12-01T10:00:00.000Z",
           "progress_history": [{"phase": "begin", "state": "successful",
                                 "started_timestamp": "2026-12-01T10:00:00.000Z",
                                 "finished_timestamp": "2026-12-01T10:00:02.500Z",
                                 "current_progress": 100, "total_progress": 100}]}
    st, _, _ = dc.call("vmapi", "POST", "/migrations/%s/store" % vm["uuid"], rec)
    assert st == 200
    st, got, _ = dc.call("vmapi", "GET", "/migrations/" + vm["uuid"])
    assert st == 200 and (got["phase"], got["state"]) == ("sync", "running")
    assert "source_server_uuid" not in got and "id" not in got      # not exposed
    assert got["progress_history"][0]["type"] == "progress"
    assert got["progress_history"][0]["duration_ms"] == 2500
    st, raw, _ = dc.call("vmapi", "GET", "/migrations/%s?format=raw" % vm["uuid"])
    assert raw["source_server_uuid"] == CN3_UUID
    st, listed, _ = dc.call("vmapi", "GET", "/migrations?vm_uuid=" + vm["uuid"])
    assert [m["vm_uuid"] for m in listed] == [vm["uuid"]]
    dc.call("vmapi", "POST", "/migrations/%s/store" % vm["uuid"],
            dict(rec, phase="abort", state="successful"))
    st, _, _ = dc.call("vmapi", "GET", "/migrations/" + vm["uuid"])
    assert st == 404
