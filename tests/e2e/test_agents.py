"""The destination copy stays hidden until the switch; vm-agent, net-agent,
zones and autoboot around a migration behave as on SmartOS.

What Triton's agents would do to a copy they can see (sdc-vm-agent reports a
vanished zone destroyed; sdc-net-agent deletes its NICs in NAPI and removes
from a zone, with a reboot, a NIC NAPI no longer has) must never reach the
instance: the destination's copy is do-not-inventory from its first file on,
and kvm/bhyve boot by vm-autoboot only where the instance lives.
"""
import base64
import json
import subprocess
import time

from conftest import SDC_MIGRATE, SIMDC

SRC, DST = "source-server", "dest-server"


def reports(dc, uuid, since):
    """The server_uuid of every vm-agent report (PUT /vms) that held uuid."""
    return [e["argv"][1].split("server_uuid=")[1] for e in dc.log("vmapi")
            if e["start"] >= since and e["argv"][0] == "PUT" and uuid in e.get("vms", [])]


def vmadm_get(dc, host, uuid):
    return json.loads(dc.exec(host, "vmadm", "get", uuid).stdout)


def nics(dc, uuid):
    return sorted((n["mac"], n["ip"]) for n in
                  dc.api("napi", "/nics?belongs_to_uuid=%s" % uuid)[2])


def test_late_failure_rolls_back_without_the_destination_ever_showing(dc):
    """Attach fails: VMAPI never had the instance on the destination, and the
    source keeps its NICs in NAPI and in its zone, without a reboot."""
    uuid = dc.provision("--size", "1")
    dst_uuid = dc.hosts()[DST]["uuid"]
    before = nics(dc, uuid)
    assert before
    since = time.time()
    p = dc.migrate_with_fault([DST, "--", "zoneadm", "-z", uuid, "attach"], "-y", uuid, DST)
    assert p.returncode == 4, p.stdout + p.stderr
    assert "* Rolling back:" in p.stdout
    booted = vmadm_get(dc, SRC, uuid)["boot_timestamp"]
    # long enough for every net-agent to look at NAPI again (SIMDC_NETAGENT_REFRESH 5 s)
    time.sleep(6)
    assert dst_uuid not in reports(dc, uuid, since)
    assert nics(dc, uuid) == before
    vm = vmadm_get(dc, SRC, uuid)
    assert sorted((n["mac"], n["ip"]) for n in vm["nics"]) == before
    assert vm["state"] == "running" and vm["boot_timestamp"] == booted
    assert dc.vm(uuid)["server_uuid"] == dc.hosts()[SRC]["uuid"]


def test_kvm_boots_by_vm_autoboot_where_it_lives_only(dc):
    """After the migration the destination zone keeps autoboot=false and
    vm-autoboot as the VM had it; a destination reboot boots it once, a source
    reboot never boots the hidden source copy."""
    uuid = dc.provision("--brand", "kvm", "--size", "1")
    since = time.time()
    p = dc.migrate("-y", uuid, DST)
    assert p.returncode == 0, p.stdout + p.stderr
    hosts = dc.hosts()
    # VMAPI had it on the destination only once the source was hidden
    seen = reports(dc, uuid, since)
    assert hosts[DST]["uuid"] in seen
    first_dst = seen.index(hosts[DST]["uuid"])
    assert hosts[SRC]["uuid"] not in seen[first_dst:]
    dst_xml = dc.exec(DST, "cat", "/etc/zones/%s.xml" % uuid).stdout
    assert 'autoboot="false"' in dst_xml
    assert 'name="vm-autoboot" type="string" value="true"' in dst_xml
    assert "do-not-inventory" not in dst_xml
    src_xml = dc.exec(SRC, "cat", "/etc/zones/%s.xml" % uuid).stdout
    assert 'autoboot="false"' in src_xml
    assert 'name="vm-autoboot" type="string" value="false"' in src_xml
    assert 'name="do-not-inventory" type="string" value="true"' in src_xml
    assert vmadm_get(dc, DST, uuid)["autoboot"] is True

    booted = vmadm_get(dc, DST, uuid)["boot_timestamp"]
    out = dc.simdc("reboot", DST).stdout.split("\n")
    assert out.count("%s vmadmd" % uuid) == 1
    vm = vmadm_get(dc, DST, uuid)
    assert vm["state"] == "running" and vm["boot_timestamp"] != booted

    out = dc.simdc("reboot", SRC).stdout
    assert uuid not in out
    # detached at the switch: svc:/system/zones and vmadmd boot installed zones only
    assert dc.exec(SRC, "zoneadm", "-z", uuid, "list", "-p").stdout.split(":")[2] == "configured"
    time.sleep(0.5)     # what the source's vm-agent would say, it has said
    vm = dc.vm(uuid)
    assert vm["server_uuid"] == hosts[DST]["uuid"] and vm["state"] == "running"


def test_incremental_copies_the_state_and_config_of_after_the_rounds(dc):
    """-i: stopped and renamed by its owner between rounds, the instance lands
    stopped, with the new alias."""
    uuid = dc.provision("--size", "1", "--alias", "before-rounds")
    cmd = [SIMDC, "exec", "headnode", "--", SDC_MIGRATE, "-y", "-i", "--interval", "1",
           uuid, DST]
    tool = subprocess.Popen(cmd, env=dc.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    state = None
    deadline = time.time() + 90
    while time.time() < deadline and state is None:
        ls = dc.exec("headnode", "sh", "-c", "ls /var/tmp/migrator-%s-%s-*.st "
                     "/var/tmp/migrator-%s-%s-*.log 2>/dev/null" % (uuid, DST, uuid, DST),
                     check=False).stdout.split()
        logs = [f for f in ls if f.endswith(".log")]
        if logs and "Sleeping for 1 seconds" in dc.exec("headnode", "cat", logs[0]).stdout:
            state = [f for f in ls if f.endswith(".st")][0]
        time.sleep(0.3)
    assert state, "no incremental round happened"
    dc.exec(SRC, "vmadm", "stop", uuid)
    dc.exec(SRC, "vmadm", "update", uuid, "alias=after-rounds")
    dc.exec("headnode", "rm", state)
    out, _ = tool.communicate(timeout=180)
    assert tool.returncode == 0, out
    vm = dc.vm(uuid)
    assert vm["server_uuid"] == dc.hosts()[DST]["uuid"]
    assert vm["state"] == "stopped" and vm["alias"] == "after-rounds"
    assert dc.exec(DST, "zoneadm", "-z", uuid, "list", "-p").stdout.split(":")[2] == "installed"
    xml = dc.exec(DST, "cat", "/etc/zones/%s.xml" % uuid).stdout
    assert base64.b64encode(b"after-rounds").decode() in xml
    # the owner stopped it: it stays stopped after a CN reboot too
    assert 'autoboot="false"' in xml
