"""The simulated head node's tools (tools/sim/hn): the sdc-* API wrappers,
json, sdc-oneachnode and sdc-server, against the Triton samples.

The API service runs alone on the host (private SIMDC_DIR, SIMDC_NET 61, a
free port). sdc-oneachnode's ssh is replaced by a fake (SIMDC_SSH) that runs
the remote command locally with FAKE_SSH_HOST set to the target address; a
compute node "answers discovery" when something listens on its admin IP at
SIMDC_SSH_PORT (real ssh end to end is the lead's integration test).
"""
import copy
import json
import os
import re
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
HN = SIM / "hn"
SAMPLES = ROOT / "tests" / "fixtures" / "triton-samples"
NET = "61"
IPS = {"vmapi": "127.0.61.2", "cnapi": "127.0.61.3", "napi": "127.0.61.4",
       "imgapi": "127.0.61.5", "sapi": "127.0.61.6"}
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

HN_UUID = "44454c4c-3700-1051-8038-b3c04f4e3131"
SRC_UUID = "44454c4c-3700-1051-8038-b3c04f4e3132"
DST_UUID = "44454c4c-3700-1051-8038-b3c04f4e3133"
SPARE_UUID = "44454c4c-3700-1051-8038-b3c04f4e3134"
OWNER = "930896af-bf8c-48d4-885c-6573a94b1853"
NODES = {  # hostname: (uuid, admin ip, answers discovery)
    "headnode": (HN_UUID, "127.0.61.1", True),
    "source-server": (SRC_UUID, "127.0.61.11", True),
    "dest-server": (DST_UUID, "127.0.61.12", True),
    "spare-server": (SPARE_UUID, "127.0.61.13", False),
}


def sample(name):
    with open(SAMPLES / name) as f:
        return json.load(f)


def free_port(ip):
    s = socket.socket()
    s.bind((ip, 0))
    port = s.getsockname()[1]
    s.close()
    return port


FAKE_SSH = r"""#!/bin/bash
# A stand-in for ssh: run the remote command here, naming the target host.
target=""
while [ $# -gt 1 ]; do
    case "$1" in
        -i|-o|-p|-l) shift 2 ;;
        root@*) target="${1#root@}"; shift ;;
        *) shift ;;
    esac
done
export FAKE_SSH_HOST="$target"
exec /bin/sh -c "$1"
"""


class DC:
    def __init__(self, d, port, env):
        self.dir = Path(d)
        self.port = port
        self.env = env

    def call(self, api, method, path, body=None):
        url = "http://%s:%d%s" % (IPS[api], self.port, path)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw, status = r.read(), r.status
        except urllib.error.HTTPError as e:
            raw, status = e.read(), e.code
        return status, (json.loads(raw) if raw else None)

    def run(self, *argv, stdin=None, env=None, timeout=30):
        e = dict(self.env)
        e.update(env or {})
        argv = [str(a) for a in argv]
        if not argv[0].startswith("/"):
            argv[0] = str(HN / argv[0])
        return subprocess.run(argv, input=stdin, capture_output=True, env=e,
                              timeout=timeout)

    def sh(self, script, timeout=30):
        return subprocess.run(["/bin/bash", "-c", script], capture_output=True,
                              env=self.env, timeout=timeout)


def sysinfo_for(uuid, hostname, admin_ip, headnode=False):
    si = copy.deepcopy(sample("sysinfo-cn.json"))
    si["UUID"] = uuid
    si["Hostname"] = hostname
    si["Boot Parameters"]["hostname"] = hostname
    if headnode:
        si["Boot Parameters"]["headnode"] = "true"
    si["Network Interfaces"]["ixgbe0"]["ip4addr"] = admin_ip
    return si


def vmadm_obj(uuid, alias, ips, state="running"):
    o = copy.deepcopy(sample("vmadm-get.json"))
    nics = []
    for i, ip in enumerate(ips):
        nics.append({"interface": "net%d" % i, "mac": "90:b8:d0:00:%02x:%02x" % (
            int(uuid[-2:], 16), i), "vlan_id": 0, "nic_tag": "admin",
            "netmask": "255.255.255.0", "ip": ip, "primary": i == 0})
    o.update(uuid=uuid, zonename=uuid, alias=alias, nics=nics, state=state,
             zone_state="running" if state == "running" else "installed")
    return o


@pytest.fixture(scope="module")
def dc(tmp_path_factory):
    d = tmp_path_factory.mktemp("simdc-hn")
    port = free_port(IPS["vmapi"])
    ssh_port = free_port("127.0.61.11")
    fake = d / "fake-ssh"
    fake.write_text(FAKE_SSH)
    fake.chmod(0o755)
    env = dict(os.environ, SIMDC_DIR=str(d), SIMDC_NET=NET, SIMDC_API_PORT=str(port),
               SIMDC_HOST="headnode", SIMDC_SSH=str(fake), SIMDC_SSH_PORT=str(ssh_port),
               PATH="%s:%s" % (HN, os.environ.get("PATH", "/usr/bin:/bin")),
               PYTHONPATH=str(SIM))
    env.pop("FAKE_SSH_HOST", None)
    out = open(d / "api.out", "w")
    proc = subprocess.Popen([PYTHON, "-m", "simdc.api"], cwd=str(SIM), env=env,
                            stdout=out, stderr=subprocess.STDOUT)
    dc = DC(d, port, env)
    deadline = time.time() + 10
    while True:
        try:
            if all(dc.call(api, "GET", "/ping")[0] == 200 for api in IPS):
                break
        except OSError:
            pass
        assert proc.poll() is None, (d / "api.out").read_text()
        assert time.time() < deadline, "api service did not answer"
        time.sleep(0.05)
    # "sshd" of the compute nodes that answer discovery
    listeners = []
    for host, (uuid, ip, up) in NODES.items():
        dc.call("cnapi", "POST", "/servers/%s/sysinfo" % uuid,
                {"sysinfo": sysinfo_for(uuid, host, ip, host == "headnode")})
        if up and host != "headnode":
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((ip, ssh_port))
            s.listen(128)
            listeners.append(s)
    # A network and some VMs for the json tests.
    dc.call("napi", "POST", "/nic_tags", {"name": "admin"})
    st, net = dc.call("napi", "POST", "/networks", {
        "name": "admin", "subnet": "10.99.99.0/24", "provision_start_ip": "10.99.99.37",
        "provision_end_ip": "10.99.99.253", "gateway": "10.99.99.7", "nic_tag": "admin",
        "vlan_id": 0})
    assert st == 200
    dc.net = net
    vms = {
        "11111111-0000-4000-8000-000000000001": vmadm_obj(
            "11111111-0000-4000-8000-000000000001", "dhcpd0", ["10.99.99.9"]),
        "11111111-0000-4000-8000-000000000002": vmadm_obj(
            "11111111-0000-4000-8000-000000000002", "imgapi0", ["10.99.99.21", "10.88.88.4"]),
        "11111111-0000-4000-8000-000000000003": vmadm_obj(
            "11111111-0000-4000-8000-000000000003", "stopped0", ["10.99.99.30"],
            state="stopped"),
    }
    st, _ = dc.call("vmapi", "PUT", "/vms?server_uuid=" + SRC_UUID, {"vms": vms})
    assert st == 200
    dc.vms = vms
    yield dc
    for s in listeners:
        s.close()
    pid = int((d / "pids" / "api.pid").read_text().split()[0])
    assert pid == proc.pid
    os.kill(pid, signal.SIGTERM)
    assert proc.wait(10) == 0


# ---- sdc-vmapi & co ------------------------------------------------------------

def _split_response(raw):
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, raw
    lines = head.decode().split("\r\n")
    return lines[0], [line.split(": ", 1) for line in lines[1:]], body


def test_wrapper_header_block_like_sample(dc):
    u = "22222222-0000-4000-8000-000000000001"
    dc.call("vmapi", "PUT", "/vms?server_uuid=" + DST_UUID,
            {"vms": {u: vmadm_obj(u, "doomed", [])}})
    r = dc.run("sdc-vmapi", "/vms/" + u, "-X", "DELETE")
    assert r.returncode == 0, r.stderr
    status, headers, body = _split_response(r.stdout)
    with open(SAMPLES / "vmapi-delete-vm-response.txt") as f:
        s_head, s_body = f.read().split("\n\n", 1)
    s_lines = s_head.splitlines()
    assert status == s_lines[0] == "HTTP/1.1 202 Accepted"
    assert {h[0] for h in headers} == {line.split(":")[0] for line in s_lines[1:]}
    assert all(not v.endswith("\r") for _, v in headers)
    obj = json.loads(body)
    assert set(obj) == set(json.loads(s_body))
    # body: 2-space indented JSON and a newline, exactly as json(1) prints it
    assert body.decode() == json.dumps(obj, indent=2) + "\n"
    assert b"\n  \"vm_uuid\": " in body
    d = dict(headers)
    assert int(d["Content-Length"]) == len(json.dumps(obj, separators=(",", ":")))
    assert d["Server"] == "VMAPI"


def test_wrapper_exit_status(dc):
    r = dc.run("sdc-vmapi", "/vms/33333333-0000-4000-8000-000000000009")
    assert r.returncode == 0
    status, headers, body = _split_response(r.stdout)
    assert status == "HTTP/1.1 404 Not Found"
    assert json.loads(body) == {"code": "ResourceNotFound", "message": "VM not found"}
    r = dc.run("sdc-napi", "/nope")
    assert r.returncode == 0
    assert json.loads(_split_response(r.stdout)[2]) == sample("vmapi-error-notfound.json")
    r = dc.run("sdc-cnapi", "/servers", env={"SIMDC_API_PORT": str(free_port(IPS["cnapi"]))})
    assert r.returncode == 7 and r.stdout == b""
    assert b"curl: (7)" in r.stderr
    r = dc.run("sdc-sapi")
    assert r.returncode == 1 and b"no PATH argument given" in r.stdout
    # the command log has the call
    recs = [json.loads(line) for line in (dc.dir / "log.jsonl").read_text().splitlines()]
    assert any(x["host"] == "headnode" and x["argv"][:2] == ["sdc-napi", "/nope"]
               and x["rc"] == 0 for x in recs)


def test_wrapper_cost_of_triton_wrapper(dc):
    """`simdc wrapcost S`: each sdc-* call first spends what Triton's wrapper
    spends (sdc-sdc lib/libdc.sh: bash, `json -f` of config.json, curl), so a
    benchmark can be run with and without it."""
    def timed():
        t = time.time()
        r = dc.run("sdc-vmapi", "/ping")
        assert r.returncode == 0 and r.stdout.startswith(b"HTTP/1.1 200")
        return time.time() - t
    def wrapcost(seconds):
        subprocess.run([str(ROOT / "tools" / "simdc"), "wrapcost", seconds], check=True,
                       env=dict(os.environ, SIMDC_DIR=str(dc.dir), SIMDC_NET=NET))
    wrapcost("1.5")
    try:
        costly = timed()
        assert costly >= 1.5
    finally:
        wrapcost("0")
    # what is left is the call itself (curl, and node for the real json),
    # however loaded the machine: the 1.5 s are gone
    assert min(timed(), timed()) < costly - 1.0


def test_wrapper_data_options(dc, tmp_path):
    body = tmp_path / "tag.json"
    body.write_text('{\n  "name": "from_file"\n}\n')
    r = dc.run("sdc-napi", "/nic_tags", "-X", "POST", "-d", "@%s" % body)
    assert json.loads(_split_response(r.stdout)[2])["name"] == "from_file"
    r = dc.run("sdc-napi", "/nic_tags", "-X", "POST", "-d@-",
               stdin=b'{\n    "name": "from_stdin"\n}\n')
    assert json.loads(_split_response(r.stdout)[2])["name"] == "from_stdin"
    r = dc.run("sdc-napi", "/nic_tags", "--data-binary", '{"name": "implicit_post"}')
    assert json.loads(_split_response(r.stdout)[2])["name"] == "implicit_post"
    r = dc.run("sdc-napi", "--no-headers", "/nic_tags")
    names = [t["name"] for t in json.loads(r.stdout)]
    assert {"from_file", "from_stdin", "implicit_post"} <= set(names)
    assert not r.stdout.startswith(b"HTTP/")
    ip = "10.99.99.99"
    r = dc.run("sdc-napi", "/networks/%s/ips/%s" % (dc.net["uuid"], ip), "-X", "PUT",
               "-d", '{"reserved": true}')
    got = json.loads(_split_response(r.stdout)[2])
    assert got["reserved"] is True and got["free"] is False
    r = dc.sh("sdc-cnapi /servers/%s -X POST -d '{\"reserved\": true}' | head -1" % SPARE_UUID)
    assert r.stdout.decode().strip() == "HTTP/1.1 204 No Content"


def test_wrapper_image_upload_download(dc, tmp_path):
    manifest = {"uuid": "44444444-0000-4000-8000-000000000001", "name": "base-64",
                "version": "1.0.0", "type": "zone-dataset", "os": "smartos"}
    r = dc.run("sdc-imgapi", "/images", "-X", "POST", "-d", json.dumps(manifest))
    assert json.loads(_split_response(r.stdout)[2])["state"] == "unactivated"
    f = tmp_path / "image.zfs"
    data = os.urandom(70000)
    f.write_bytes(data)
    r = dc.run("sdc-imgapi", "/images/%s/file" % manifest["uuid"], "-T", f,
               "-H", "Content-Type: application/octet-stream")
    img = json.loads(_split_response(r.stdout)[2])
    assert img["state"] == "active" and img["files"][0]["size"] == len(data)
    r = dc.run("sdc-imgapi", "--no-headers", "/images/%s/file" % manifest["uuid"])
    assert r.returncode == 0 and r.stdout == data
    r = dc.run("sdc-imgapi", "/images/%s" % manifest["uuid"])
    status, headers, body = _split_response(r.stdout)
    assert dict(headers)["Server"] == "IMGAPI/1.0.0"


# ---- json ------------------------------------------------------------------------

def js(argv, text):
    """The head node's /opt/smartdc/bin/json (trentm's json 9.0.2, as
    sdc-headnode tools/bin/json ships it) on text."""
    p = subprocess.run([str(HN / "json")] + argv, input=text.encode(), capture_output=True,
                       timeout=30)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_json_hga_like_sample(dc):
    # The sample: `sdc-vmapi /vms?state=running | json -H -ga alias nics.0.ip nics.1.ip`
    r = dc.sh("sdc-vmapi /vms?state=running | json -H -ga alias nics.0.ip nics.1.ip")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    # node-json prints the delimiter after a missing non-last value too, so a
    # one-NIC VM's line ends in a space (the doc transcript lost it).
    assert sorted(lines) == ["dhcpd0 10.99.99.9 ", "imgapi0 10.99.99.21 10.88.88.4"]
    lines = [x.rstrip() for x in lines]
    with open(SAMPLES / "sdc-vmapi-json-Hga-output.txt") as f:
        sample_lines = [x for x in f.read().splitlines()[1:] if re.match(r"^\w+0 ", x)]
    pat = re.compile(r"^[a-z0-9]+ \d+\.\d+\.\d+\.\d+( \d+\.\d+\.\d+\.\d+)?$")
    assert all(pat.match(x) for x in sample_lines + lines)
    r = dc.sh("sdc-vmapi /vms | json -Ha alias state | sort")
    assert r.stdout.decode().splitlines() == ["dhcpd0 running", "doomed destroyed",
                                              "imgapi0 running", "stopped0 stopped"]


def test_json_conditions(dc):
    r = dc.sh("sdc-vmapi /vms | json -H -c 'this.state===\"running\"' -a alias | sort")
    assert r.stdout.decode().split() == ["dhcpd0", "imgapi0"]
    r = dc.sh("sdc-vmapi /vms | json -H -c 'this.alias==\"stopped0\"' 0.state")
    assert r.stdout.decode() == "stopped\n"
    r = dc.sh("sdc-napi /nic_tags | json -H -c 'this.name===\"sdc_underlay\"'")
    assert r.stdout.decode() == "[]\n"          # the sample's "no such tag" test
    rc, out, _ = js(["-c", "this.age>21"], '[{"age":38},{"age":4}]')
    assert json.loads(out) == [{"age": 38}]
    rc, out, _ = js(["-c", "this.nics.length > 1 && /^img/.test(this.alias)", "-a", "alias"],
                    json.dumps([translate for translate in
                                [{"alias": "imgapi0", "nics": [1, 2]},
                                 {"alias": "img1", "nics": [1]},
                                 {"alias": "x", "nics": [1, 2]}]]))
    assert out == "imgapi0\n"
    rc, out, _ = js(["-c", "this.tags.role === 'db' || this.ram >= 1024", "-a", "uuid"],
                    '[{"uuid":"a","tags":{"role":"db"},"ram":1},'
                    '{"uuid":"b","tags":{},"ram":2048},{"uuid":"c","tags":{},"ram":8}]')
    assert out == "a\nb\n"
    rc, out, _ = js(["-c", "this.alias.indexOf('web') === 0 && !this.destroyed", "-a",
                     "alias"], '[{"alias":"web1"},{"alias":"db"},'
                               '{"alias":"web2","destroyed":"2020"}]')
    assert out == "web1\n"
    rc, out, err = js(["-c", "require('fs')"], "{}")
    assert rc != 0 and "not defined" in err
    rc, out, err = js(["-e", "this.a = this.b + 1; delete this.b"], '{"b": 1, "c": 2}')
    assert json.loads(out) == {"c": 2, "a": 2}


def test_json_lookups_and_modes(dc):
    r = dc.sh("sdc-cnapi /servers/%s | json -H 'sysinfo[\"Live Image\"]' hostname" % SRC_UUID)
    assert r.stdout.decode() == "20180128T233316Z\nsource-server\n"
    rc, out, _ = js(["nics.0.ip", "nics.-1.ip"], json.dumps(
        {"nics": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]}))
    assert out == "10.0.0.1\n10.0.0.2\n"
    rc, out, _ = js(["-k"], '{"b": 1, "a": 2}')
    assert json.loads(out) == ["b", "a"]
    rc, out, _ = js(["-o", "jsony-0"], '{"a": [1, 2], "b": "x"}')
    assert out == '{"a":[1,2],"b":"x"}\n'
    rc, out, _ = js(["-j", "b"], '{"a": [1, 2], "b": "x"}')
    assert out == '"x"\n'
    rc, out, _ = js(["b"], '{"a": [1, 2], "b": "x"}')
    assert out == "x\n"
    rc, out, _ = js(["-j0"], '{"a": 1.0}')
    assert out == '{"a":1}\n'
    rc, out, _ = js(["-i"], '{"a": "x"}')
    assert out == "{ a: 'x' }\n"
    rc, out, _ = js(["-ga", "uuid", "hostname"],
                    '{"uuid":"u1","hostname":"h1"}\n{"uuid":"u2","hostname":"h2"}\n')
    assert out == "u1 h1\nu2 h2\n"
    rc, out, _ = js(["-g"], '["a"]\n["b"]\n')
    assert json.loads(out) == ["a", "b"]
    rc, out, _ = js(["-a", "-d,", "a", "missing", "b"], '[{"a":1,"b":2}]')
    assert out == "1,,2\n"
    # headers pass through without -H, non-JSON input is echoed with an error
    text = "HTTP/1.1 200 OK\r\nServer: X\r\n\r\n{\"a\":1}\n"
    rc, out, _ = js(["a"], text)
    assert out == "HTTP/1.1 200 OK\r\nServer: X\r\n\r\n1\n"
    rc, out, err = js([], "not json\n")
    assert rc == 1 and out == "not json\n" and "is not JSON" in err
    rc, out, err = js(["-q"], "not json")
    assert rc == 1 and out == "not json\n" and err == ""
    rc, out, err = js(["-Z"], "{}")
    assert rc == 1 and "unknown option" in err


# ---- sdc-oneachnode --------------------------------------------------------------

def test_oneachnode_terse_all_nodes(dc):
    r = dc.run("sdc-oneachnode", "-a", "echo ${FAKE_SSH_HOST:-local-$SIMDC_HOST}")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    # format of the man page example (oneachnode-output.txt): "%-20s  %s"
    assert out == ("HOSTNAME              STATUS\n"
                   "dest-server           127.0.61.12\n"
                   "headnode              local-headnode\n"
                   "source-server         127.0.61.11\n")
    with open(SAMPLES / "oneachnode-output.txt") as f:
        assert f.read().splitlines()[1] == out.splitlines()[0]
    r = dc.run("sdc-oneachnode", "-c", "true")
    assert r.stdout.decode() == ("HOSTNAME              STATUS\n"
                                 "dest-server           \n"
                                 "source-server         \n")
    r = dc.run("sdc-oneachnode", "-n", "source-server,%s" % DST_UUID, "hostname >/dev/null; "
               "echo $FAKE_SSH_HOST")
    assert r.stdout.decode().splitlines()[1:] == ["dest-server           127.0.61.12",
                                                  "source-server         127.0.61.11"]


def test_oneachnode_multiline_and_json(dc):
    r = dc.run("sdc-oneachnode", "-n", "headnode,source-server",
               "echo first; echo second; echo err >&2; exit 5")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == (
        "=== Output from %s (headnode):\nfirst\nsecond\nerr\n\n"
        "=== Output from %s (source-server):\nfirst\nsecond\nerr\n\n" % (HN_UUID, SRC_UUID))
    r = dc.run("sdc-oneachnode", "-N", "-n", "headnode", "echo first; echo second")
    assert r.stdout.decode().splitlines()[1] == "headnode              second"
    r = dc.run("sdc-oneachnode", "-j", "-n", "headnode,source-server",
               "echo out; echo err >&2; exit 5")
    assert r.stdout.count(b"\n") == 1
    recs = json.loads(r.stdout)
    want = sample("oneachnode-json-result-record.json")
    assert [x["hostname"] for x in recs] == ["headnode", "source-server"]
    for rec in recs:
        assert list(rec) == list(want)
        assert set(rec["result"]) == set(want["result"])
        assert rec["result"] == {"exit_status": 5, "stdout": "out\n", "stderr": "err\n"}
    r = dc.run("sdc-oneachnode", "-J", "-c", "echo hi")
    lines = r.stdout.decode().splitlines()
    assert sorted(json.loads(x)["hostname"] for x in lines) == ["dest-server",
                                                                "source-server"]


def test_oneachnode_list(dc):
    r = dc.run("sdc-oneachnode", "-al")
    with open(SAMPLES / "oneachnode-list.txt") as f:
        header = f.read().splitlines()[1]
    assert r.stdout.decode() == "\n".join([
        header,
        "%s  dest-server" % DST_UUID,
        "%s  headnode" % HN_UUID,
        "%s  source-server" % SRC_UUID]) + "\n"
    r = dc.run("sdc-oneachnode", "-cjl")
    assert json.loads(r.stdout) == [{"uuid": DST_UUID, "hostname": "dest-server"},
                                    {"uuid": SRC_UUID, "hostname": "source-server"}]
    assert set(sample("oneachnode-json-list-record.json")) == set(json.loads(r.stdout)[0])


def test_oneachnode_errors(dc):
    r = dc.run("sdc-oneachnode", "-n", "source-server,spare-server", "true")
    assert r.returncode == 10 and r.stdout == b""
    assert "missing nodes:\n    spare-server" in r.stderr.decode()
    r = dc.run("sdc-oneachnode", "-n", "source-server,%s" % SRC_UUID, "true")
    assert r.returncode == 1 and "same node" in r.stderr.decode()
    r = dc.run("sdc-oneachnode", "true")
    assert r.returncode == 2 and "exactly one of -a, -c or -n" in r.stderr.decode()
    r = dc.run("sdc-oneachnode", "-a", "-n", "headnode", "true")
    assert r.returncode == 2
    r = dc.run("sdc-oneachnode", "-n", "headnode,headnode", "true")
    assert r.returncode == 2 and "duplicate host" in r.stderr.decode()
    r = dc.run("sdc-oneachnode", "-T", "1", "-n", "source-server,headnode", "sleep 5")
    assert r.returncode == 20
    assert r.stdout.decode() == ("HOSTNAME              STATUS\n"
                                 "headnode              <ERROR: timeout for host %s>\n"
                                 "source-server         <ERROR: timeout for host %s>\n"
                                 % (HN_UUID, SRC_UUID))
    r = dc.run("sdc-oneachnode", "-j", "-T", "1", "-n", "source-server", "sleep 5")
    rec = json.loads(r.stdout)[0]
    assert rec["error"] == {"message": "timeout for host %s" % SRC_UUID, "name": "VError",
                            "code": None}
    assert set(sample("oneachnode-json-error-record.json")) == set(rec)


def test_oneachnode_files(dc, tmp_path):
    src = tmp_path / "payload.txt"
    src.write_text("hello\n")
    dest = tmp_path / "dest"
    dest.mkdir()
    r = dc.run("sdc-oneachnode", "-n", "source-server", "-g", src, "-d", dest)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == ("HOSTNAME              STATUS\n"
                                 "source-server         ok\n")
    assert (dest / "payload.txt").read_text() == "hello\n"
    r = dc.run("sdc-oneachnode", "-n", "source-server", "-g", src, "-d", dest)
    assert r.returncode == 20 and "<ERROR: file exists" in r.stdout.decode()
    src.write_text("hello again\n")
    r = dc.run("sdc-oneachnode", "-X", "-n", "source-server", "-g", src, "-d", dest)
    assert r.returncode == 0 and (dest / "payload.txt").read_text() == "hello again\n"
    got = tmp_path / "got"
    got.mkdir()
    r = dc.run("sdc-oneachnode", "-n", "source-server,headnode", "-p", src, "-d", got)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(got)) == sorted([SRC_UUID, HN_UUID])
    assert (got / SRC_UUID).read_text() == "hello again\n"
    r = dc.run("sdc-oneachnode", "-n", "headnode", "-p", src, "-d", tmp_path / "nope")
    assert r.returncode == 1 and "not a directory" in r.stderr.decode() or \
        "No such file" in r.stderr.decode()


# ---- sdc-server ----------------------------------------------------------------

def test_sdc_server(dc):
    # spare-server reserved, whatever ran before (under xdist, maybe nothing)
    r = dc.run("sdc-cnapi", "/servers/%s" % SPARE_UUID, "-X", "POST", "-d", '{"reserved": true}')
    assert r.returncode == 0
    r = dc.run("sdc-server", "lookup", "hostname=source-server")
    assert r.returncode == 0 and r.stdout.decode() == SRC_UUID + "\n"
    r = dc.run("sdc-server", "lookup", "-H", "headnode=false", "reserved=false")
    assert sorted(r.stdout.decode().split()) == ["dest-server", "source-server"]
    r = dc.run("sdc-server", "lookup", "-c", "hostname=~-server$", "reserved=false")
    assert sorted(r.stdout.decode().split(",")) == sorted([SRC_UUID, DST_UUID])
    r = dc.run("sdc-server", "lookup", "sysinfo.Hostname=dest-server")
    assert r.stdout.decode() == DST_UUID + "\n"
    r = dc.sh("sdc-server lookup -j headnode=true | json -ga uuid hostname")
    assert r.stdout.decode() == "%s headnode\n" % HN_UUID
    r = dc.run("sdc-server", "lookup", "-1", "headnode=false")
    assert r.returncode == 1 and "requested unique lookup" in r.stderr.decode()
    r = dc.run("sdc-server", "admin-ip", SRC_UUID)
    assert r.stdout.decode() == "127.0.61.11\n"
    r = dc.run("sdc-server", "list")
    lines = r.stdout.decode().splitlines()
    assert lines[0].split() == ["HOSTNAME", "UUID", "VERSION", "SETUP", "STATUS", "RAM",
                                "ADMIN_IP"]
    assert any(x.split()[:2] == ["headnode", HN_UUID] and x.split()[-1] == "127.0.61.1"
               for x in lines[1:])
    r = dc.run("sdc-server", "nics", SRC_UUID)
    assert json.loads(r.stdout) == []
    r = dc.run("sdc-server", "admin-ip", "nope")
    assert r.returncode == 1


def test_cn_global_zone_json_looks_up_as_the_head_nodes(dc):
    # a SmartOS global zone has /usr/bin/json (smartos-live src/json.js;
    # tools/sim/cnbin, overlaid on a host's /usr/bin): the operator's
    # `vmadm get UUID | json alias` works there as with the head node's
    vm = json.dumps({"alias": "web-1", "nics": [{"ip": "10.0.0.7"}]})
    cn_json = dc.run(str(SIM / "cnbin" / "json"), "alias", "nics.0.ip", stdin=vm.encode())
    assert (cn_json.returncode, cn_json.stdout) == (0, b"web-1\n10.0.0.7\n")
    assert dc.run("json", "alias", "nics.0.ip", stdin=vm.encode()).stdout == cn_json.stdout
