"""The head node as an operator finds it, and what sdc-migrate decides there
before it changes anything: which sdc-migrate PATH finds, Triton's tools by
absolute path, AdminUI's own address, DAPI's figures for room, NIC tags,
Triton's own migrations."""
import json

from checks import dc_state
from conftest import SDC_MIGRATE

SRC, SPARE = "source-server", "spare-server"
TRITONS = "/opt/smartdc/bin/sdc-migrate"


def test_which_sdc_migrate_path_finds_is_said_once(dc):
    # root's PATH (smartos-live's root .profile) has /opt/smartdc/bin, not
    # /opt/custom/bin: `sdc-migrate` there is Triton's RFD 34 client
    triton = dc.exec("headnode", "sdc-migrate", check=False)
    assert triton.returncode == 1 and "RFD 34" in triton.stderr
    assert dc.exec("headnode", "sh", "-c", "command -v sdc-migrate").stdout.strip() == TRITONS
    # ours by its full path: shadowed, it says how to call it
    p = dc.exec("headnode", SDC_MIGRATE, "--version")
    assert p.stdout == "sdc-migrate 0.1.0\n"
    assert p.stderr == ("sdc-migrate: note: `sdc-migrate` on PATH is %s (Triton's RFD 34"
                        " migrations client), not this one; call this one as %s\n"
                        % (TRITONS, SDC_MIGRATE))
    # ours first on PATH: it hides Triton's, and says so
    p = dc.exec("headnode", "sh", "-c", "PATH=/opt/custom/bin:$PATH sdc-migrate --version")
    assert p.stderr.count("\n") == 1 and "comes before Triton's %s" % TRITONS in p.stderr
    # a script (-y) is not told
    p = dc.migrate("-y", "not-a-uuid", "dest-server")
    assert p.returncode == 2 and "note:" not in p.stderr


def test_runs_from_cron_path_and_names_adminui_zone(dc):
    """cron and `ssh headnode CMD` have no /opt/smartdc/bin on PATH; the closing
    block's AdminUI link is the adminui zone's admin IP, not the head node's."""
    uuid = dc.provision("--size", "1", "--state", "stopped")
    adminui = dc.api("vmapi", "/vms?tag.smartdc_role=adminui&state=active")[2]
    assert len(adminui) == 1
    ip = [n["ip"] for n in adminui[0]["nics"] if n["nic_tag"] == "admin"][0]
    assert ip != dc.hosts()["headnode"]["admin_ip"]
    p = dc.exec("headnode", "env", "PATH=/usr/bin:/bin", SDC_MIGRATE, "-y", uuid, SPARE,
                check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert dc.vm(uuid)["server_uuid"] == dc.hosts()[SPARE]["uuid"]
    assert " Please validate in AdminUI:  https://%s/vms/%s" % (ip, uuid) in p.stdout


def test_room_is_dapis_unreserved_ram_not_free_memory(dc):
    """A stopped instance reserves RAM it does not use: the CN has free memory
    and no unreserved RAM (the CNAPI sample is such a CN). DAPI would not place
    the instance there; neither does sdc-migrate."""
    spare = dc.hosts()[SPARE]["uuid"]
    left = dc.api("cnapi", "/servers/" + spare)[2]["unreserved_ram"]
    hog = dc.provision("--server", SPARE, "--state", "stopped", "--size", "1",
                       "--ram", str(left - 100))
    try:
        s = dc.api("cnapi", "/servers/" + spare)[2]
        assert s["unreserved_ram"] == 100
        assert s["memory_available_bytes"] > 1 << 30          # free memory aplenty
        uuid = dc.provision("--size", "1", "--state", "stopped")   # 256 MB
        before = dc_state(dc, uuid)
        p = dc.migrate("-y", uuid, SPARE)
        assert p.returncode == 2, p.stdout + p.stderr
        assert p.stderr == ("sdc-migrate: error (Refused): destination %s has 100 MB of unreserved RAM;"
                            " the instance needs 256 MB\n" % SPARE)
        assert dc_state(dc, uuid) == before
    finally:
        dc.api("vmapi", "/vms/" + hog, "-X", "DELETE")


def test_a_destination_without_the_nic_tag_is_refused(dc):
    """Without the external tag the instance would boot there without its
    network (sdc-designation hard-filter-nic-tags keeps DAPI off such a CN)."""
    uuid = dc.provision("--size", "1", "--state", "stopped")
    before = dc_state(dc, uuid)
    dc.simdc("nictag", SPARE, "remove", "external")
    try:
        p = dc.migrate("-y", uuid, SPARE)
    finally:
        dc.simdc("nictag", SPARE, "add", "external")
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stderr == ("sdc-migrate: error (Refused): destination %s lacks NIC tag external that the"
                        " instance's NICs need\n" % SPARE)
    assert dc_state(dc, uuid) == before


def test_an_instance_in_a_triton_migration_is_refused(dc):
    """VMAPI's own migration (RFD 34, sdc-vmapi /migrations) holds the instance
    until it is finished or aborted."""
    uuid = dc.provision("--size", "1", "--state", "stopped")
    before = dc_state(dc, uuid)
    # as the migration workflow stores it (POST /migrations/UUID/store)
    record = {"id": "ffffffff-0000-4000-8000-" + uuid[-12:], "vm_uuid": uuid, "source_server_uuid": dc.hosts()[SRC]["uuid"],
              "phase": "sync", "state": "paused", "automatic": False, "progress_history": []}
    dc.api("vmapi", "/migrations/%s/store" % uuid, "-X", "POST", "-d", json.dumps(record))
    assert dc.exec("headnode", "sdc-migrate", "get", uuid).stdout.startswith("State        : paused")
    p = dc.migrate("-y", uuid, SPARE)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "has a Triton migration (sdc-vmapi /migrations/%s) in phase sync, state paused" \
        % uuid in p.stderr
    assert dc_state(dc, uuid) == before
    # aborted, it is the operator's again
    dc.api("vmapi", "/migrations/%s/store" % uuid, "-X", "POST", "-d",
           json.dumps(dict(record, phase="abort", state="successful")))
    assert dc.migrate("--dry-run", uuid, SPARE).returncode == 0


def test_manta_zones_are_moved_core_zones_are_not(dc):
    manta = dc.provision("--size", "1", "--state", "stopped", "--tag", "manta_role=storage")
    p = dc.migrate("--dry-run", manta, SPARE)
    assert p.returncode == 0, p.stdout + p.stderr
    core = dc.provision("--core", "--size", "1", "--state", "stopped")
    p = dc.migrate("-y", core, SPARE)
    assert p.returncode == 2 and "is a Triton core zone (imgapi)" in p.stderr, p.stderr
