"""old-server as the SmartOS platform of 2015 it stands for (common.OLD_PLATFORM):
SunSSH's sshd and client (tools/sim/simdc/sunssh.py), and the agents a host
has, where sysinfo reads them (simdc/agents.py). Its zfs without resumable
receives is in test_zfs.py, its net-agent from before TRITON-1814 in
test_zones.py.

The sshd runs for real, in a mount namespace of its own (its host keys on
/var/ssh, root's authorized_keys on /root/.ssh), on 127.0.63.14, a free port.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SIM = ROOT / "tools" / "sim"
sys.path.insert(0, str(SIM))
from simdc import agents, common, control, sunssh  # noqa: E402

IP = "127.0.63.14"


def _have_ns():
    return os.geteuid() == 0 and all(shutil.which(t) for t in ("unshare", "sshd", "ssh"))


def _free_port():
    with socket.socket() as s:
        s.bind((IP, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    """A datacenter folder with an old host and a current one, and the
    SunSSH client's real ssh (simdc up copies it to realbin)."""
    d = tmp_path_factory.mktemp("simdc")
    (d / "realbin").mkdir()
    for b in ("ssh", "ssh-keygen"):
        shutil.copy2(shutil.which(b), d / "realbin" / b)
    (d / "hosts.json").write_text(json.dumps({
        "oldcn": {"uuid": "1b4c1f52-0d3c-4b3e-9a43-3f7e2c5d6a01", "admin_ip": IP,
                  "platform": common.OLD_PLATFORM, "ram_mb": 8192, "headnode": False},
        "newcn": {"uuid": "2c5d2a63-1e4d-4c4f-8b54-4a8f3d6e7b02", "admin_ip": IP,
                  "platform": common.PLATFORM, "ram_mb": 8192, "headnode": False}}))
    yield d


def test_each_platform_has_what_smartos_of_its_date_has(hosts, monkeypatch):
    monkeypatch.setenv("SIMDC_DIR", str(hosts))
    # smartos-live OS-4688 (2015-08-14): OpenSSH; illumos 2605 (openzfs 9c3fd1216f): resumable
    assert common.sunssh("oldcn") and not common.resumable_zfs("oldcn")
    assert not common.sunssh("newcn") and common.resumable_zfs("newcn")
    assert common.platform_of("old-server") == common.OLD_PLATFORM < common.PLATFORM
    # SunSSH's sshd had rsa and dsa host keys; OpenSSH's SmartOS makes ed25519 too
    # (smartos-live lib/svc/method/sshd after OS-4688)
    assert control.host_key_kinds("oldcn") == ("rsa",)
    assert "ed25519" in control.host_key_kinds("newcn")


# ---- authorized_keys as SunSSH's sshd reads them ------------------------------------

def test_sunssh_denies_a_key_with_an_option_it_does_not_know(tmp_path):
    """illumos usr/src/cmd/ssh/sshd/auth-options.c auth_parse_options: the
    options it knows (no-port-forwarding, no-agent-forwarding,
    no-X11-forwarding, no-pty, command=, from=, permitopen=; environment=
    only with PermitUserEnvironment); any other is "Bad options" and denies
    the key. Keys: ssh-rsa and ssh-dss only (myproposal.h)."""
    assert sunssh.options_ok('from="127.0.10.11",no-pty,no-agent-forwarding,'
                             'no-port-forwarding,no-X11-forwarding')
    assert sunssh.options_ok('command="echo \\"hi\\"",no-pty')
    assert not sunssh.options_ok('from="127.0.10.11",no-pty,no-user-rc')
    assert not sunssh.options_ok("restrict")
    assert not sunssh.options_ok('environment="A=1"')
    assert not sunssh.options_ok('from="127.0.10.11')       # missing end quote
    ak = tmp_path / "authorized_keys"
    ak.write_text("ssh-rsa AAAAplain root@hn\n"
                  'from="127.0.10.11",no-pty ssh-rsa AAAAfrom tag\n'
                  'from="127.0.10.11",no-pty,no-user-rc ssh-rsa AAAAuserrc tag\n'
                  "ssh-ed25519 AAAAed root@x\n"
                  "# a comment\n")
    assert sunssh.authorized_keys(str(ak)) == [
        "ssh-rsa AAAAplain root@hn", 'from="127.0.10.11",no-pty ssh-rsa AAAAfrom tag']


def test_sunssh_reads_a_forced_command_with_quotes_in_it(tmp_path):
    """sshd/auth2-pubkey.c user_key_allowed2 skips a \\" inside the options
    ("Skip both") and auth-options.c turns it into a quote of command=: a
    forced command holding quotes and blanks (the migration's SEND_ONLY) is
    one option, its key granted."""
    line = ('no-pty,command="/bin/sh -c \'a=\\"$1 x\\"; echo \\"$a\\"\' sh",'
            'from="127.0.10.12" ssh-rsa AAAAforced sdc-migrate-U')
    opts, rest = sunssh.split_options(line)
    assert rest == "ssh-rsa AAAAforced sdc-migrate-U" and sunssh.options_ok(opts)
    ak = tmp_path / "authorized_keys"
    ak.write_text(line + "\n")
    assert sunssh.authorized_keys(str(ak)) == [line]


# ---- SunSSH's client ------------------------------------------------------------------

def shim(hosts, name, *argv):
    env = dict(os.environ, SIMDC_DIR=str(hosts), SIMDC_HOST="oldcn")
    return subprocess.run([str(SIM / "sunssh" / name)] + list(argv), env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)


def test_sunssh_client_is_sunssh_1_5(hosts, tmp_path):
    """illumos usr/src/cmd/ssh/ssh/ssh.c: -V on stderr; an unknown cipher, exit 1;
    readconf.c: an option of a later OpenSSH is a bad configuration option;
    ssh-keygen/ssh-keygen.c: types rsa1, rsa, dsa, else "unknown key type"."""
    p = shim(hosts, "ssh", "-V")
    assert p.returncode == 0 and p.stderr.startswith("Sun_SSH_1.5, SSH protocols 1.5/2.0, ")
    p = shim(hosts, "ssh", "-c", "aes128-gcm@openssh.com", "root@" + IP, "true")
    assert (p.returncode, p.stderr) == (1, "Unknown cipher type 'aes128-gcm@openssh.com'\n")
    p = shim(hosts, "ssh", "-o", "KexAlgorithms=+diffie-hellman-group14-sha1", IP, "true")
    assert p.returncode == 1 and "Bad configuration option: KexAlgorithms" in p.stderr
    for kind in ("ed25519", "ecdsa"):
        p = shim(hosts, "ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(tmp_path / kind))
        assert (p.returncode, p.stderr) == (1, "unknown key type %s\n" % kind)
        assert not (tmp_path / kind).exists()
    p = shim(hosts, "ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f",
             str(tmp_path / "rsa"))
    assert p.returncode == 0 and (tmp_path / "rsa.pub").read_text().startswith("ssh-rsa ")


# ---- the sshds, for real ----------------------------------------------------------------

@pytest.fixture(scope="module")
def sshds(hosts, tmp_path_factory):
    """oldcn's sshd (SunSSH's offer) and newcn's (OpenSSH's), each in a mount
    namespace with its host keys and root's authorized_keys; and a client key."""
    if not _have_ns():
        pytest.skip("needs root, unshare, sshd and ssh")
    tmp = tmp_path_factory.mktemp("sshd")
    client = tmp / "client"
    saved = os.environ.get("SIMDC_DIR")
    os.environ["SIMDC_DIR"] = str(hosts)       # the hosts' platforms, the sshd's SetEnv
    for kind in ("rsa", "ed25519"):
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(client) + "-" + kind,
                        "-C", "client"], check=True)
    running, ports, logs = [], {}, {}
    try:
        for host in ("oldcn", "newcn"):
            h = tmp / host
            for sub in ("ssh", "root-ssh", "run"):
                (h / sub).mkdir(parents=True)
            (h / "root-ssh").chmod(0o700)
            for kind in control.host_key_kinds(host):
                subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f",
                                str(h / "ssh" / ("ssh_host_%s_key" % kind))], check=True)
            ports[host] = _free_port()
            env = control.host_env(host)
            (h / "sshd_config").write_text(control.sshd_config(host, IP, str(h), env,
                                                                ports[host]))
            logs[host] = h / "run" / "sshd.log"
            setup = "; ".join([
                "set -e", "mount --make-rprivate /",
                "mount --bind %s /var/ssh" % (h / "ssh"),
                "mount --bind %s /root/.ssh" % (h / "root-ssh"),
                "exec /usr/sbin/sshd -D -f %s -E %s" % (h / "sshd_config", logs[host])])
            os.makedirs("/var/ssh", exist_ok=True)
            running.append(subprocess.Popen(["unshare", "--mount", "--propagation", "private",
                                             "--", "sh", "-c", setup], env=env,
                                            start_new_session=True))
        deadline = time.time() + 10
        for host in ports:
            while True:
                try:
                    socket.create_connection((IP, ports[host]), timeout=0.5).close()
                    break
                except OSError:
                    assert time.time() < deadline, logs[host].read_text() if \
                        logs[host].exists() else "sshd did not start"
                    time.sleep(0.05)
        yield {"tmp": tmp, "ports": ports, "client": str(client), "logs": logs}
    finally:
        if saved is None:
            os.environ.pop("SIMDC_DIR", None)
        else:
            os.environ["SIMDC_DIR"] = saved
        for p in running:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def authorize(sshds, host, line):
    (sshds["tmp"] / host / "root-ssh" / "authorized_keys").write_text(line + "\n")


def ssh(sshds, host, *options, key="rsa", command="echo ok", client="ssh", hosts=None):
    argv = ([str(SIM / "sunssh" / "ssh")] if client == "sunssh" else ["ssh"]) + [
        "-v", "-i", "%s-%s" % (sshds["client"], key), "-p", str(sshds["ports"][host]),
        "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5"] + list(options) + \
        ["root@" + IP, command]
    env = dict(os.environ, SIMDC_DIR=str(hosts), SIMDC_HOST="oldcn") if hosts else None
    return subprocess.run(argv, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=env, timeout=30)


LEGACY = ["-o", "KexAlgorithms=+diffie-hellman-group-exchange-sha1", "-o",
          "HostKeyAlgorithms=+ssh-rsa", "-o", "PubkeyAcceptedAlgorithms=+ssh-rsa"]


def test_the_old_sshd_offers_what_sunssh_offered(sshds):
    """illumos usr/src/cmd/ssh/include/myproposal.h (KEX_DEFAULT_KEX,
    KEX_DEFAULT_PK_ALG, KEX_DEFAULT_ENCRYPT, KEX_DEFAULT_MAC) with SmartOS's
    sshd_config before OS-4788 (HostKey rsa and dsa, no algorithm set): a
    current OpenSSH client finds no key exchange in common; told to allow
    SunSSH's SHA-1 ones and ssh-rsa, it gets aes-ctr and hmac-sha1, and no
    aes128-gcm."""
    pub = (sshds["tmp"] / "client-rsa.pub").read_text().strip()
    authorize(sshds, "oldcn", pub)
    p = ssh(sshds, "oldcn")
    assert p.returncode == 255 and "no matching key exchange method found" in p.stderr
    assert "Their offer: diffie-hellman-group-exchange-sha1,diffie-hellman-group1-sha1" \
        in p.stderr
    p = ssh(sshds, "oldcn", *LEGACY, "-c", "aes128-gcm@openssh.com")
    assert p.returncode == 255 and "no matching cipher found" in p.stderr
    p = ssh(sshds, "oldcn", *LEGACY)
    assert p.returncode == 0 and p.stdout == "ok\n", p.stderr
    for expected in ("kex: algorithm: diffie-hellman-group-exchange-sha1",
                     "kex: host key algorithm: ssh-rsa",
                     "kex: client->server cipher: aes128-ctr MAC: hmac-sha1"):
        assert expected in p.stderr, expected


def test_the_old_sshd_grants_no_ed25519_key_nor_an_option_it_lacks(sshds):
    """auth-options.c: no-user-rc denies the key; myproposal.h: user keys
    ssh-rsa and ssh-dss only."""
    rsa = (sshds["tmp"] / "client-rsa.pub").read_text().strip()
    ed = (sshds["tmp"] / "client-ed25519.pub").read_text().strip()
    authorize(sshds, "oldcn", 'from="%s",no-pty,no-user-rc %s' % (IP, rsa))
    p = ssh(sshds, "oldcn", *LEGACY, "-o", "BindAddress=" + IP)
    assert p.returncode == 255 and "Permission denied (publickey)" in p.stderr
    authorize(sshds, "oldcn", 'from="%s",no-pty,no-agent-forwarding,no-port-forwarding,'
              'no-X11-forwarding %s' % (IP, rsa))
    p = ssh(sshds, "oldcn", *LEGACY, "-o", "BindAddress=" + IP)
    assert p.returncode == 0 and p.stdout == "ok\n", p.stderr
    authorize(sshds, "oldcn", ed)
    p = ssh(sshds, "oldcn", *LEGACY, key="ed25519")
    assert p.returncode == 255 and "Permission denied (publickey)" in p.stderr


def test_a_sunssh_client_cannot_reach_a_current_sshd_but_reaches_an_old_one(sshds, hosts):
    """SunSSH's key exchanges are SHA-1 only; OpenSSH 9's sshd offers none of
    them (its KEX_SERVER_KEX): the reason a SunSSH source is pulled from."""
    pub = (sshds["tmp"] / "client-rsa.pub").read_text().strip()
    authorize(sshds, "newcn", pub)
    authorize(sshds, "oldcn", pub)
    p = ssh(sshds, "newcn", client="sunssh", hosts=hosts)
    assert p.returncode == 255 and "no matching key exchange method found" in p.stderr
    p = ssh(sshds, "oldcn", client="sunssh", hosts=hosts)
    assert p.returncode == 0 and p.stdout == "ok\n", p.stderr
    # the current sshd, to a current client: ed25519 and aes128-gcm
    p = ssh(sshds, "newcn", "-c", "aes128-gcm@openssh.com")
    assert p.returncode == 0 and "kex: host key algorithm: ssh-ed25519" in p.stderr


# ---- agents -------------------------------------------------------------------------------

def test_agents_are_package_json_files_sysinfo_and_cnapi_read(hosts, monkeypatch):
    """smartos-live src/sysinfo: "SDC Agents" is every
    /opt/smartdc/agents/lib/node_modules/*/package.json's name and version;
    sdc-cn-agent lib/backends/smartos/index.js getAgents adds each one's
    image_uuid for CNAPI. old-server's net-agent is the last before TRITON-1814
    (sdc-net-agent 9077600^: 2.3.0)."""
    monkeypatch.setenv("SIMDC_DIR", str(hosts))
    assert agents.sdc_agents("oldcn") is None       # no agents: no key
    agents.install_all("old-server")
    agents.install_all("newcn")
    assert common.agent_version("old-server", "net-agent") == common.OLD_NET_AGENT == "2.3.0"
    assert common.agent_version("newcn", "net-agent") == common.NET_AGENT
    listed = agents.sdc_agents("old-server")
    assert listed == sorted(listed, key=lambda a: a["name"])
    assert {"name": "net-agent", "version": "2.3.0"} in listed
    pkg = json.loads((Path(common.agents_dir("old-server")) / "net-agent" /
                      "package.json").read_text())
    assert (pkg["name"], pkg["description"], pkg["version"]) == \
        ("net-agent", "Triton Network Agent", "2.3.0")
    agents.install("old-server", "net-agent", "2.3.6")
    (mine,) = [a for a in agents.cnapi_agents("old-server") if a["name"] == "net-agent"]
    assert mine == {"name": "net-agent", "version": "2.3.6",
                    "image_uuid": agents.image_uuid("net-agent", "2.3.6")}
    from simdc.cn import sysinfo
    assert {"name": "net-agent", "version": "2.3.6"} in sysinfo.sysinfo("old-server")["SDC Agents"]
