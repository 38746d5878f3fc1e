"""sdc-migrate UUID DEST, checked from outside the tool: VMAPI, both CNs'
pools and zone configuration, and the workload's own records."""
import subprocess
import time

from checks import assert_migrated, assert_sequence_continues, dc_state, in_delegated, net_agent
from conftest import SDC_MIGRATE, SIMDC


def test_running_zone_on_a_fabric_network_whose_image_is_not_on_dest(dc):
    uuid = dc.provision("--fabric", "--size", "4", "--alias", "fabric-kirby")
    before = dc.vm(uuid)
    image = before["image_uuid"]
    # a CN no earlier test has moved a zone of that image to (this module runs
    # first on its datacenter: dest-server)
    dest = [h for h in ("dest-server", "spare-server")
            if "zones/%s@final" % image not in dc.zfs_names(h)][0]
    time.sleep(0.5)
    p = dc.migrate("-y", uuid, dest)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "origin DS doesn't exist on %s, will need to try import" % dest in p.stdout
    assert "Image imported successfully!" in p.stdout
    vm = assert_migrated(dc, uuid, before, p.stdout, dst=dest)
    assert_sequence_continues(dc, uuid, dst=dest)
    # still a clone of its image on the destination, and the same NIC and IP
    origin = dc.exec(dest, "zfs", "get", "-H", "-o", "value", "origin",
                     "zones/" + uuid).stdout.strip()
    assert origin == "zones/%s@final" % image
    assert [(n["ip"], n["mac"]) for n in vm["nics"]] == [(n["ip"], n["mac"]) for n in before["nics"]]
    nic = before["nics"][0]
    ip = dc.api("napi", "/networks/%s/ips/%s" % (nic["network_uuid"], nic["ip"]))[2]
    assert ip["belongs_to_uuid"] == uuid and not ip["reserved"] and not ip.get("free")


def test_running_joyent_zone_full(dc):
    uuid = dc.provision("--size", "8", "--alias", "kirby")
    before = dc.vm(uuid)
    time.sleep(0.5)
    p = dc.migrate("-y", uuid, "dest-server")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "migration type:  Non-Incremental" in p.stdout
    assert "# dataset increments:  1" in p.stdout
    assert_migrated(dc, uuid, before, p.stdout)
    assert_sequence_continues(dc, uuid)


def test_stopped_lx_docker_container_full(dc):
    uuid = dc.provision("--brand", "lx", "--docker", "--state", "stopped", "--size", "2")
    before = dc.vm(uuid)
    p = dc.migrate("-y", uuid, "dest-server")
    assert p.returncode == 0, p.stdout + p.stderr
    assert 'Leaving in "installed" state.' in p.stdout
    vm = assert_migrated(dc, uuid, before, p.stdout)
    assert vm["state"] == "stopped" and vm["docker"] is True
    assert dc.exec("dest-server", "zoneadm", "-z", uuid, "list", "-p").stdout.split(":")[2] == "installed"


def test_running_kvm_with_two_disks_incremental(dc):
    uuid = dc.provision("--brand", "kvm", "--disks", "2", "--size", "4")
    before = dc.vm(uuid)
    cmd = [SIMDC, "exec", "headnode", "--", SDC_MIGRATE, "-y", "-i", "--interval", "2",
           uuid, "dest-server"]
    p = subprocess.Popen(cmd, env=dc.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    state = None
    deadline = time.time() + 120
    while time.time() < deadline:
        ls = dc.exec("headnode", "sh", "-c", "ls /var/tmp/migrator-%s-dest-server-*.st "
                     "/var/tmp/migrator-%s-dest-server-*.log 2>/dev/null" % (uuid, uuid),
                     check=False).stdout.split()
        st = [f for f in ls if f.endswith(".st")]
        logs = [f for f in ls if f.endswith(".log")]
        if st and logs:
            log = dc.exec("headnode", "cat", logs[0]).stdout
            if "snapshot 1 to dest-server" in log and log.count("Sleeping for 2 seconds") >= 2:
                state = st[0]
                break
        time.sleep(0.5)
    assert state, "two incremental rounds never happened"
    # the instance is still running on the source during the rounds
    assert dc.vm(uuid)["server_uuid"] == before["server_uuid"]
    assert dc.vm(uuid)["state"] == "running"
    dc.exec("headnode", "rm", state)
    out, _ = p.communicate(timeout=180)
    assert p.returncode == 0, out
    assert "migration type:  Incremental" in out
    assert "migration state file:" in out
    vm = assert_migrated(dc, uuid, before, out)
    for disk in ("disk0", "disk1"):
        assert "zones/%s-%s" % (uuid, disk) in dc.zfs_names("dest-server")
    assert vm["brand"] == "kvm"
    assert_sequence_continues(dc, uuid)


def test_running_bhyve_with_two_disks_automatic(dc):
    uuid = dc.provision("--brand", "bhyve", "--disks", "2", "--size", "4")
    before = dc.vm(uuid)
    quota = dc.exec("source-server", "zfs", "get", "-Hp", "-o", "value", "quota",
                    "zones/" + uuid).stdout.strip()
    p = dc.migrate("-y", "-a", "--interval", "1", uuid, "dest-server")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "# dataset increments:  3" in p.stdout
    assert_migrated(dc, uuid, before, p.stdout)
    for disk in ("disk0", "disk1"):
        assert "zones/%s/%s" % (uuid, disk) in dc.zfs_names("dest-server")
    for host in ("source-server", "dest-server"):
        assert dc.exec(host, "zfs", "get", "-Hp", "-o", "value", "quota",
                       "zones/" + uuid).stdout.strip() == quota
    assert_sequence_continues(dc, uuid)


def test_asks_for_what_is_missing_and_a_no_changes_nothing(dc):
    uuid = dc.provision("--size", "1")
    before = dc_state(dc, uuid)
    p = dc.migrate(input="%s\ndest-server\nn\n" % uuid)
    assert p.returncode == 2
    assert "UUID of Instance to Move:" in p.stdout and "Destination Server:" in p.stdout
    assert "Are you ready to proceed? [y|n]" in p.stdout
    # an operator at the prompt also hears which sdc-migrate root's PATH finds
    note, refused = p.stderr.splitlines()
    assert note.startswith("sdc-migrate: note: `sdc-migrate` on PATH is"), note
    assert "nothing was changed" in refused
    assert dc_state(dc, uuid) == before
    # a closed stdin is a no too
    p = dc.migrate(uuid, "dest-server", input="")
    assert p.returncode == 2 and dc_state(dc, uuid) == before


def test_older_platform_needs_D(dc):
    uuid = dc.provision("--size", "1", "--state", "stopped")
    before = dc_state(dc, uuid)
    p = dc.migrate("-y", uuid, "old-server")
    assert p.returncode == 2 and "older platform" in p.stderr
    assert dc_state(dc, uuid) == before
    # its agents updated: the net-agent old-server has at first is refused
    # (test_oldplatform)
    with net_agent(dc, "old-server", "2.3.6"):
        p = dc.migrate("-y", "-D", uuid, "old-server")
    assert p.returncode == 0, p.stdout + p.stderr
    assert dc.vm(uuid)["server_uuid"] == dc.hosts()["old-server"]["uuid"]


def test_delegated_dataset_travels_and_the_log_has_the_same_lines(dc):
    uuid = dc.provision("--delegate", "--size", "1", "--alias", "it's a \"test\"; $(touch /tmp/x) `id`")
    before = dc.vm(uuid)
    in_delegated(dc, "source-server", uuid, 'echo precious > "$1"', "/zones/%s/data/file" % uuid)
    p = dc.migrate("-y", uuid, "dest-server")
    assert p.returncode == 0, p.stdout + p.stderr
    assert_migrated(dc, uuid, before, p.stdout)
    assert in_delegated(dc, "dest-server", uuid, 'cat "$1"',
                        "/zones/%s/data/file" % uuid).stdout == "precious\n"
    assert dc.vm(uuid)["alias"] == before["alias"]
    logs = dc.exec("headnode", "sh", "-c", "ls /var/tmp/migrator-%s-*.log" % uuid).stdout.split()
    assert len(logs) == 1
    assert dc.exec("headnode", "stat", "-c", "%a", logs[0]).stdout.strip() == "600"
    assert dc.exec("headnode", "cat", logs[0]).stdout == p.stdout
    assert dc.exec("headnode", "sh", "-c", "ls /var/tmp/sdc-migrate-%s.lock 2>/dev/null || true"
                   % uuid).stdout == ""
