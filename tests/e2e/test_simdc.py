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


def test_head_node_reaches_every_cn_with_its_triton_key(dc):
    hosts = dc.hosts()
    for cn in CNS:
        out = dc.exec("headnode", "ssh", "-i", "/root/.ssh/sdc.id_rsa", "-o", "BatchMode=yes",
                      hosts[cn]["admin_ip"], "hostname; zpool list -H -o name").stdout.split()
        assert out == [cn, "zones"]


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
