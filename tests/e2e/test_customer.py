"""A customer acts on the instance while it moves, and nothing else starts the
copy it leaves: exactly one copy runs, on the side VMAPI shows, with every
write.

A customer's start, stop or reboot is a VMAPI job that takes the instance's
CNAPI waitlist ticket on the server VMAPI shows when the job is made, waits
for it, checks the state in VMAPI and has that server run vmadm (sdc-vmapi
lib/apis/wfapi.js createStartJob, lib/workflows/start.js, job-common.js
acquireVMTicket/waitOnVMTicket/ensureVmState; sdc-cnapi lib/models/waitlist.js).
sdc-migrate holds the ticket on both CNs from before the stop to after the
boot, as Triton's migrate-switch.js holds it around its switch, checks the
source copy is installed and stopped right before the switch (its
ensureSourceVmStopped), and detaches that copy: svc:/system/zones boots
installed zones only (illumos-joyent usr/src/cmd/zoneadm/svc-zones), vmadm
start refuses a zone that is not stopped (smartos-live VM.js start).
"""
import subprocess
import time

from checks import assert_sequence_continues
from conftest import SIMDC
from test_failures import (DST, SRC, fault, no_fault_left, running_instance, start_tool,
                           wait_for_the_fault)

DELAY = "3"


def zone_state(dc, host, uuid):
    return dc.exec(host, "zoneadm", "-z", uuid, "list", "-p").stdout.split(":")[2]


def assert_one_copy(dc, uuid, where, state="running"):
    """The instance's zone runs on `where` only (or nowhere), and VMAPI shows it there."""
    running = [h for h in (SRC, DST) if uuid in dc.exec(h, "zoneadm", "list").stdout.split()]
    assert running == ([where] if state == "running" else []), running
    vm = dc.vm(uuid)
    assert (vm["server_uuid"], vm["state"]) == (dc.hosts()[where]["uuid"], state), vm


def customer(dc, action, uuid):
    """`simdc customer ACTION UUID`, running: its job waits as long as it must."""
    return subprocess.Popen([SIMDC, "customer", action, uuid], env=dc.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def job_of(dc, out):
    """The VMAPI job `simdc customer` printed, as VMAPI has it now."""
    return dc.api("vmapi", "/jobs/" + out.split()[1].rstrip(":"))[2]


def task(job, name):
    return [r for r in job["chain_results"] if r["name"] == name][0]


def vmapi_shows(dc, uuid, state):
    deadline = time.time() + 10
    while dc.vm(uuid)["state"] != state:
        assert time.time() < deadline, "VMAPI never showed %s %s" % (uuid, state)
        time.sleep(0.1)


def migrate_with_a_customer(dc, uuid, action, host, prefix, extra=(), args=(), status=0):
    """Migrate with a step made slow; once it has begun and VMAPI shows the
    instance stopped, the customer acts (`simdc customer ACTION`), or with
    action a callable, whoever it stands for. (tool's output, what the
    customer's command said)."""
    fault(dc, host, prefix, ["--delay", DELAY, "--exit", "0"] + list(extra), uuid)
    tool = start_tool(dc, "-y", *args, uuid, DST)
    who = None
    try:
        wait_for_the_fault(dc, tool)
        vmapi_shows(dc, uuid, "stopped")
        if callable(action):
            action()
        else:
            who = customer(dc, action, uuid)
        out = tool.communicate(timeout=180)[0].decode()
        said = who.communicate(timeout=180)[0] if who else None
    finally:
        for p in (tool, who):
            if p is not None and p.poll() is None:
                p.kill()
        dc.simdc("fault", "clear")
    assert tool.returncode == status, out
    return out, said


def test_a_start_during_the_transfer_waits_and_nothing_starts_the_old_copy(dc):
    """Full migration of a running instance: stopped, its data on the wire; the
    customer's start waits for the migration, then finds it running on the
    destination. After it an operator's vmadm start and a reboot of the source
    CN leave the old copy down."""
    uuid = running_instance(dc)
    out, said = migrate_with_a_customer(dc, uuid, "start", SRC, ["zfs", "send"])
    assert_one_copy(dc, uuid, DST)
    assert "Cannot start a VM from a 'running' state" in said, said
    booted = dc.exec(DST, "vmadm", "get", uuid).stdout.split('"boot_timestamp": "')[1][:24]
    assert task(job_of(dc, said), "common.ensure_vm_state")["started_at"] > booted
    # the copy left behind: detached, so vmadm refuses it and a reboot skips it
    assert zone_state(dc, SRC, uuid) == "configured"
    p = dc.exec(SRC, "vmadm", "start", uuid, check=False)
    assert p.returncode != 0 and "configured" in p.stderr, p.stderr
    assert uuid not in dc.simdc("reboot", SRC).stdout
    assert_one_copy(dc, uuid, DST)
    assert_sequence_continues(dc, uuid)


def test_a_start_during_the_last_send_of_an_incremental_waits(dc):
    """-a: two live rounds, the stop, the last increment on the wire (the third
    send): the start waits as above."""
    uuid = running_instance(dc)
    out, said = migrate_with_a_customer(dc, uuid, "start", SRC, ["zfs", "send"],
                                        ["--skip", "2"], ["-a", "--interval", "0"])
    assert "# dataset increments:  3" in out, out
    assert_one_copy(dc, uuid, DST)
    assert "Cannot start a VM from a 'running' state" in said, said
    assert_sequence_continues(dc, uuid)


def test_a_start_after_the_switch_waits_for_the_boot(dc):
    """VMAPI shows the destination, the boot is slow: the customer's job, made
    for the destination, waits for the migration's boot there."""
    uuid = running_instance(dc)
    out, said = migrate_with_a_customer(dc, uuid, "start", DST, ["vmadm", "start"])
    assert_one_copy(dc, uuid, DST)
    job = job_of(dc, said)
    assert job["params"]["server_uuid"] == dc.hosts()[DST]["uuid"]
    booted = dc.exec(DST, "vmadm", "get", uuid).stdout.split('"boot_timestamp": "')[1][:24]
    assert task(job, "common.ensure_vm_state")["started_at"] > booted, "the job did not wait"
    assert "Cannot start a VM from a 'running' state" in said, said
    assert_sequence_continues(dc, uuid)


def test_a_start_made_for_the_source_finds_the_old_copy_detached(dc):
    """An instance that ran, then its owner stopped it: migrated stopped. The
    start asked during the transfer is a job for the source (VMAPI showed it
    there): it waits for the migration, then the source's copy refuses to
    boot. Nothing runs; asked again, it runs on the destination, every write
    there."""
    uuid = dc.provision("--size", "1")
    assert dc.simdc("customer", "stop", uuid).returncode == 0
    out, said = migrate_with_a_customer(dc, uuid, "start", SRC, ["zfs", "send"])
    assert "Instance downtime:  0 seconds (it was not running)" in out
    assert_one_copy(dc, uuid, DST, "stopped")
    job = job_of(dc, said)
    assert job["params"]["server_uuid"] == dc.hosts()[SRC]["uuid"]
    assert job["execution"] == "failed" and "configured" in task(job, "cnapi.wait_task")["error"]
    assert zone_state(dc, SRC, uuid) == "configured"
    p = dc.simdc("customer", "start", uuid)
    assert p.stdout.endswith("succeeded\n"), p.stdout
    assert_one_copy(dc, uuid, DST)
    assert_sequence_continues(dc, uuid)


def test_a_source_copy_started_since_the_stop_fails_the_migration_before_the_switch(dc):
    """An operator's vmadm start on the source during the transfer (the
    ticket holds only VMAPI's jobs): right before the switch the migration
    finds the copy running and rolls back; it runs on where it is, every
    write kept."""
    uuid = running_instance(dc)
    out, _ = migrate_with_a_customer(
        dc, uuid, lambda: dc.exec(SRC, "vmadm", "start", uuid), SRC, ["zfs", "send"], status=4)
    assert "is running, not installed and stopped" in out and "not switching" in out, out
    assert_one_copy(dc, uuid, SRC)
    assert not [n for n in dc.zfs_names(DST) if uuid in n]
    numbers = [int(l[0]) for l in dc.seq_lines(SRC, uuid)]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
