"""The simulated datacenter does what the tests of sdc-migrate rely on."""
import json
import os
import subprocess
import time


from conftest import SIMDC, Datacenter

CNS = ["source-server", "dest-server", "spare-server", "old-server"]


def test_five_hosts_are_up_with_their_own_names_and_sshd(dc):
    status = json.loads(dc.simdc("status", "-j").stdout)
    assert status["up"]
    assert [h["host"] for h in status["hosts"]] == ["headnode"] + CNS
    for h in status["hosts"]:
        assert h["namespace"] and h["sshd"], h
        assert dc.exec(h["host"], "hostname").stdout.strip() == h["host"]


# what the head node's OpenSSH must allow to reach old-server's SunSSH
# (illumos usr/src/cmd/ssh/include/myproposal.h: SHA-1 key exchanges, ssh-rsa)
LEGACY = ["-o", "KexAlgorithms=+diffie-hellman-group-exchange-sha1", "-o",
          "HostKeyAlgorithms=+ssh-rsa", "-o", "PubkeyAcceptedAlgorithms=+ssh-rsa"]


def test_head_node_reaches_every_cn_with_its_triton_key(dc):
    hosts = dc.hosts()
    for cn in CNS:
        out = dc.exec("headnode", "ssh", "-i", "/root/.ssh/sdc.id_rsa", "-o", "BatchMode=yes",
                      *LEGACY, hosts[cn]["admin_ip"],
                      "hostname; zpool list -H -o name").stdout.split()
        assert out == [cn, "zones"]
    # without them, old-server's sshd (SunSSH's offer) has nothing in common with it
    p = dc.exec("headnode", "ssh", "-o", "BatchMode=yes", hosts["old-server"]["admin_ip"],
                "true", check=False)
    assert p.returncode == 255 and "no matching key exchange method found" in p.stderr


def test_cnapi_knows_the_servers_and_old_server_runs_an_older_platform(dc):
    status, _, servers = dc.api("cnapi", "/servers")
    assert status == 200
    by_name = {s["hostname"]: s for s in servers}
    assert set(CNS) <= set(by_name)
    assert by_name["old-server"]["current_platform"] < by_name["source-server"]["current_platform"]
    assert by_name["dest-server"]["current_platform"] == by_name["source-server"]["current_platform"]
    one = dc.api("cnapi", "/servers/" + by_name["dest-server"]["uuid"])[2]
    assert one["sysinfo"]["Live Image"] == one["current_platform"]
    assert one["sysinfo"]["Hostname"] == "dest-server"


def test_provisioned_zone_shows_in_vmapi_with_the_header_block(dc):
    uuid = dc.provision("--alias", "kirby", "--size", "2")
    out = dc.exec("headnode", "sdc-vmapi", "/vms/" + uuid).stdout
    head, sep, body = out.partition("\r\n\r\n")
    assert sep and head.startswith("HTTP/1.1 200 OK\r\n")
    assert "Content-Type: application/json" in head
    assert body.startswith("{\n  \"")          # indented by 2, as json(1) prints it
    vm = json.loads(body)
    hosts = dc.hosts()
    assert (vm["uuid"], vm["alias"], vm["state"], vm["brand"]) == (uuid, "kirby", "running", "joyent")
    assert vm["server_uuid"] == hosts["source-server"]["uuid"]
    # json -Ha, as the seed's operators use it
    line = dc.exec("headnode", "sh", "-c",
                   "sdc-vmapi /vms/%s | json -Ha server_uuid alias state" % uuid).stdout.split()
    assert line == [hosts["source-server"]["uuid"], "kirby", "running"]


def test_zone_datasets_are_a_clone_of_the_image_on_a_real_pool(dc):
    uuid = dc.provision("--size", "3")
    vm = dc.vm(uuid)
    out = dc.exec("source-server", "zfs", "list", "-H", "-p", "-o", "name,origin,used").stdout
    rows = {l.split("\t")[0]: l.split("\t") for l in out.splitlines()}
    assert rows["zones/" + uuid][1] == "zones/%s@final" % vm["image_uuid"]
    assert int(rows["zones/" + uuid][2]) >= 3 * 1048576
    assert "zones/cores/" + uuid in rows
    # the pool is zfs-fuse's
    assert dc.exec("source-server", "sh", "-c", "mount | grep -c 'zones on /zones type fuse'").stdout.strip() != "0"
    index = dc.exec("source-server", "cat", "/etc/zones/index").stdout
    assert "%s:installed:/zones/%s:%s" % (uuid, uuid, uuid) in index.splitlines()


def test_kvm_and_bhyve_disks_are_laid_out_as_on_smartos(dc):
    kvm = dc.provision("--brand", "kvm", "--disks", "2", "--state", "stopped")
    bhyve = dc.provision("--brand", "bhyve", "--disks", "2", "--state", "stopped")
    out = dc.exec("source-server", "zfs", "list", "-H", "-o", "name,type").stdout
    types = dict(l.split("\t") for l in out.splitlines())
    assert types["zones/%s-disk0" % kvm] == "volume"
    assert types["zones/%s-disk1" % kvm] == "volume"
    assert types["zones/%s/disk0" % bhyve] == "volume"
    assert types["zones/%s/disk1" % bhyve] == "volume"
    assert dc.vm(kvm)["state"] == "stopped" and dc.vm(bhyve)["brand"] == "bhyve"


def test_running_instance_writes_a_growing_gap_free_sequence(dc):
    uuid = dc.provision("--state", "running")
    first = dc.seq("source-server", uuid)
    time.sleep(1.0)
    second = dc.seq("source-server", uuid)
    assert second > first
    numbers = [int(l[0]) for l in dc.seq_lines("source-server", uuid)]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))


def test_log_records_emulated_commands_and_api_calls(dc):
    before = time.time()
    dc.exec("source-server", "zfs", "list", "-H", "-o", "name", "zones")
    recs = [r for r in dc.log("source-server") if r["start"] >= before]
    zl = [r for r in recs if r["argv"][:2] == ["zfs", "list"]]
    assert zl and zl[-1]["rc"] == 0 and zl[-1]["end"] >= zl[-1]["start"]
    assert any(r["host"] == "vmapi" for r in dc.log())


def test_faults_fail_commands_stop_sshd_and_fill_pools(dc):
    dc.simdc("fault", "add", "dest-server", "zfs", "create", "--exit", "7")
    p = dc.exec("dest-server", "zfs", "create", "zones/faulted", check=False)
    assert p.returncode == 7
    assert dc.exec("dest-server", "zfs", "create", "zones/faulted").returncode == 0   # once only
    dc.exec("dest-server", "zfs", "destroy", "zones/faulted")
    ip = dc.hosts()["spare-server"]["admin_ip"]
    dc.simdc("sshd", "spare-server", "stop")
    p = dc.exec("headnode", "ssh", "-o", "ConnectTimeout=3", ip, "true", check=False)
    assert p.returncode == 255
    dc.simdc("sshd", "spare-server", "start")
    assert dc.exec("headnode", "ssh", ip, "true").returncode == 0
    dc.simdc("fill", "spare-server")
    avail = int(dc.exec("spare-server", "zfs", "get", "-Hp", "-o", "value", "available", "zones").stdout)
    assert avail < 4 * 1048576       # nothing an instance could be received into
    dc.simdc("fault", "clear")
    avail = int(dc.exec("spare-server", "zfs", "get", "-Hp", "-o", "value", "available", "zones").stdout)
    assert avail > 100 * 1048576


def test_a_keys_own_forced_command_runs_as_on_a_real_cn(dc):
    """A CN's sshd runs a key's command= in place of what the client asked
    (given in SSH_ORIGINAL_COMMAND), and restrict takes the pty away (sshd(8)
    AUTHORIZED_KEYS FILE FORMAT; openssh-portable session.c do_exec). A
    ForceCommand in sshd_config would run instead of it (do_exec takes
    options.adm_forced_command first), hiding a broken forced command: no
    host's sshd has one, and the remote-fault hook is the head node key's
    own command=, which still fails the head node's command lines."""
    hosts = dc.hosts()
    src_ip, dst_ip = hosts["source-server"]["admin_ip"], hosts["dest-server"]["admin_ip"]
    for host in hosts:
        with open(os.path.join(dc.env["SIMDC_DIR"], "hosts", host, "ssh", "sshd_config")) as f:
            assert "ForceCommand" not in f.read()
    key = "/root/.ssh/simdc-test-key"
    ak = dc.exec("dest-server", "cat", "/root/.ssh/authorized_keys").stdout
    pub = dc.exec("source-server", "sh", "-c", 'rm -f "$1" "$1.pub"; ssh-keygen -q -t ed25519 '
                  '-N "" -f "$1" && cat "$1.pub"', "sh", key).stdout.strip()
    entry = 'restrict,command="echo forced: $SSH_ORIGINAL_COMMAND",from="%s" %s' % (src_ip, pub)
    dc.exec("dest-server", "sh", "-c", 'cat >> /root/.ssh/authorized_keys', input=entry + "\n")
    try:
        ssh = ["ssh", "-i", key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
               "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
               "-o", "BindAddress=" + src_ip, "root@" + dst_ip]
        p = dc.exec("source-server", *ssh, "hostname; id", check=False)
        assert (p.returncode, p.stdout) == (0, "forced: hostname; id\n"), p.stderr
        p = dc.exec("source-server", "ssh", "-tt", *ssh[1:], "tty", check=False)
        assert p.returncode == 255 and "PTY allocation request failed" in p.stderr
    finally:
        dc.exec("dest-server", "sh", "-c", 'cat > /root/.ssh/authorized_keys', input=ak)
        dc.exec("source-server", "rm", "-f", key, key + ".pub")
    # the head node's key: its command lines still meet the remote faults
    dc.simdc("fault", "add", "dest-server", "--remote", "--exit", "7", "--", "hostname")
    try:
        p = dc.exec("headnode", "ssh", dst_ip, "hostname", check=False)
    finally:
        dc.simdc("fault", "clear")
    assert p.returncode == 7 and "simulated failure" in p.stderr
    assert dc.exec("headnode", "ssh", dst_ip, "hostname").stdout == "dest-server\n"


def test_exec_passes_stdin_stdout_and_exit_status(dc):
    p = dc.exec("dest-server", "sh", "-c", "cat; exit 42", input="hello\n", check=False)
    assert (p.returncode, p.stdout) == (42, "hello\n")


def test_down_ends_everything_and_up_again_is_fresh():
    env = dict(os.environ, SIMDC_DIR="/var/tmp/simdc-down-test", SIMDC_NET="31")
    d = Datacenter(env)
    try:
        d.simdc("up")
        uuid = d.provision("--state", "running")
        assert d.vm(uuid)["state"] == "running"
        piddir = os.path.join(env["SIMDC_DIR"], "pids")
        pids = [int(open(os.path.join(piddir, f)).read().split()[0]) for f in os.listdir(piddir)]
        assert any(f.startswith("workload-") for f in os.listdir(piddir))
    finally:
        d.simdc("down")
    alive = []
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.append(pid)
        except OSError:
            pass
    assert alive == []
    assert not os.path.exists(env["SIMDC_DIR"])


def test_svcs_z_answers_for_a_zone_as_illumos_does(dc):
    """svcs -z from the global zone (illumos usr/src/cmd/svc/svcs/svcs.c): a
    running joyent zone's services are online; a zone not running has no
    repository server to bind to; an unknown zone is invalid."""
    uuid = dc.provision("--size", "1")
    host = "source-server"
    p = dc.exec(host, "svcs", "-z", uuid, "-H", "-o", "state", "milestone/multi-user")
    assert p.stdout == "online\n"
    dc.exec(host, "vmadm", "stop", uuid)
    p = dc.exec(host, "svcs", "-z", uuid, "-H", "-o", "state", "milestone/multi-user",
                check=False)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr == ("svcs: Could not bind to repository server for zone %s: repository"
                        " server unavailable\n" % uuid)
    p = dc.exec(host, "svcs", "-z", "no-such-zone", check=False)
    assert (p.returncode, p.stderr) == (1, "svcs: invalid zone 'no-such-zone'\n")


def test_a_cn_is_given_what_placement_reads_and_cnapi_sees_it(dc):
    """`simdc capability` and `simdc encrypt` change what a CN's sysinfo says
    (smartos-live src/sysinfo: "Bhyve Capable", "Bhyve Max Vcpus", "HVM API",
    "Zpool Encrypted") and refresh CNAPI as `sysinfo -u` does; traits are
    CNAPI's (sdc-cnapi ServerUpdate); sdc-designation's hard filters
    (hard-filter-hvm.js, hard-filter-zpool-encryption.js,
    hard-filter-traits.js) read exactly these."""
    uuid = dc.hosts()["spare-server"]["uuid"]

    def seen():
        s = dc.api("cnapi", "/servers/" + uuid)[2]
        si = s["sysinfo"]
        return (si["Bhyve Capable"], si["Bhyve Max Vcpus"], si["HVM API"],
                si["Zpool Encrypted"], s["traits"])
    assert seen() == (True, 32, True, False, {})
    try:
        dc.simdc("capability", "spare-server", "--bhyve", "no", "--traits", '{"ssd": true}')
        dc.simdc("encrypt", "spare-server", "on")
        assert seen() == (False, 0, False, True, {"ssd": True})
        dc.simdc("capability", "spare-server", "--reset", "--hvm-api", "no",
                 "--max-vcpus", "8", "--traits", "{}")
        assert seen() == (True, 8, False, True, {})
    finally:
        dc.simdc("capability", "spare-server", "--reset", "--traits", "{}")
        dc.simdc("encrypt", "spare-server", "off")
    assert seen() == (True, 32, True, False, {})


def test_provision_marks_an_instance_encrypted_with_vcpus_and_package_traits(dc):
    """An encrypted instance carries internal_metadata.encrypted (sdc-vmapi
    lib/endpoints/vms.js, from CreateVm's encrypted=true); a bhyve its vcpus;
    its billing_id names a PAPI package whose traits sdc-designation
    hard-filter-traits.js matches (sdc-papi docs/index.md)."""
    uuid = dc.provision("--brand", "bhyve", "--state", "stopped", "--vcpus", "2",
                        "--encrypted", "--traits", '{"hw": ["richmond-a"]}')
    vm = dc.vm(uuid)
    assert vm["vcpus"] == 2 and vm["internal_metadata"]["encrypted"] is True
    status, _, pkg = dc.api("papi", "/packages/" + vm["billing_id"])
    assert status == 200 and pkg["traits"] == {"hw": ["richmond-a"]}
    plain = dc.vm(dc.provision("--state", "stopped"))
    assert "encrypted" not in plain["internal_metadata"] and "vcpus" not in plain
    assert "traits" not in dc.api("papi", "/packages/" + plain["billing_id"])[2]


def test_a_customer_acts_through_vmapi_on_the_instances_cn_behind_its_ticket(dc):
    """`simdc customer ACTION UUID`: VMAPI's job takes the instance's waitlist
    ticket on its server, waits while another holds it, checks the state, and
    the CN runs vmadm (sdc-vmapi lib/workflows/start.js, stop.js, job-common.js;
    sdc-cnapi lib/models/waitlist.js; sdc-cn-agent machine_boot.js,
    machine_shutdown.js)."""
    src = "source-server"
    uuid = dc.provision("--size", "1")
    server = dc.hosts()[src]["uuid"]

    def state():
        return dc.exec(src, "zoneadm", "-z", uuid, "list", "-p").stdout.split(":")[2]
    p = dc.simdc("customer", "stop", uuid)
    assert "cnapi.wait_on_vm_ticket: OK" in p.stdout and p.stdout.endswith("succeeded\n")
    assert state() == "installed" and dc.vm(uuid)["state"] == "stopped"
    # a ticket held on the instance (as a migration holds it): the start waits
    status, _, held = dc.api("cnapi", "/servers/%s/tickets" % server, "-X", "POST", "-d",
                             json.dumps({"scope": "vm", "id": uuid, "action": "test",
                                         "expires_at": "2099-01-01T00:00:00.000Z"}))
    assert status == 202
    customer = subprocess.Popen([SIMDC, "customer", "start", uuid], env=dc.env,
                                stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        assert customer.poll() is None and state() == "installed"
        dc.api("cnapi", "/tickets/%s/release" % held["uuid"], "-X", "PUT")
        out = customer.communicate(timeout=30)[0]
    finally:
        if customer.poll() is None:
            customer.kill()
    assert customer.returncode == 0, out
    assert state() == "running" and dc.vm(uuid)["state"] == "running"
    p = dc.simdc("customer", "start", uuid, check=False)
    assert p.returncode == 1
    assert "common.ensure_vm_state: error: Cannot start a VM from a 'running' state" in p.stdout
