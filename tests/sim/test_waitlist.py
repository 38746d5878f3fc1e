"""CNAPI's waitlist and VMAPI's start, stop and reboot jobs behind it, in the
simulated API service (tools/sim/simdc/api/cnapi.py, vmapi.py), as Triton has
them:

- sdc-cnapi docs/README.md "Waitlist", lib/endpoints/waitlist.js and
  lib/models/waitlist.js: tickets queue per server, scope and id
  (getServerQueue), the oldest queued one becomes active when none is
  (activateOneTicket), release marks it finished, delete removes it, the
  WaitlistDirector expires a ticket past its expires_at; the endpoints'
  statuses (202 create, 204 wait/release/delete, 404 unknown ticket).
- sdc-vmapi lib/endpoints/vms.js updateVm, lib/apis/wfapi.js
  createStartJob/createStopJob (params.server_uuid: the VM's when the job is
  created), lib/workflows/start.js, stop.js and job-common.js
  (acquireVMTicket, waitOnVMTicket, ensureVmState, releaseVMTicket, the
  onerror release).

The service runs alone (private SIMDC_DIR, SIMDC_NET 61, a free port): no CN
answers, so a job that gets as far as its compute node fails there.
"""
import datetime
import threading
import time

import pytest

from test_api import (CN1_UUID, CN2_UUID, HN_UUID, sample, free_port, start_service,
                      stop_service, sysinfo_for, vmadm_obj)

VM = "0b4ad2ab-8f2c-4c0e-9d5d-3c1d5e0b8a11"


@pytest.fixture(scope="module")
def dc(tmp_path_factory):
    d = tmp_path_factory.mktemp("simdc-waitlist")
    proc, dc = start_service(d, free_port())
    for uuid, name, ip, hn in ((HN_UUID, "headnode", "10.99.99.7", True),
                               (CN1_UUID, "cn1", "10.99.99.8", False),
                               (CN2_UUID, "cn2", "10.99.99.9", False)):
        st, _, _ = dc.call("cnapi", "POST", "/servers/%s/sysinfo" % uuid,
                           {"sysinfo": sysinfo_for(uuid, name, ip, hn)})
        assert st == 200
    yield dc
    assert stop_service(proc, d) == 0


def iso(seconds_from_now):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds_from_now)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)


def take(dc, server, tid, scope="vm", expires=600, action="migrate"):
    st, body, _ = dc.call("cnapi", "POST", "/servers/%s/tickets" % server,
                          {"scope": scope, "id": tid, "expires_at": iso(expires),
                           "action": action})
    assert st == 202, body
    return body["uuid"], body["queue"]


def ticket(dc, uuid):
    st, body, _ = dc.call("cnapi", "GET", "/tickets/" + uuid)
    assert st == 200, body
    return body


def test_tickets_queue_per_server_scope_and_id(dc):
    tid = "queue-" + VM
    a, queue = take(dc, CN1_UUID, tid)
    assert [(t["uuid"], t["status"]) for t in queue] == [(a, "active")]
    assert set(queue[0]) == {"action", "created_at", "expires_at", "extra", "id", "reqid",
                             "scope", "server_uuid", "status", "updated_at", "uuid"}
    b, queue = take(dc, CN1_UUID, tid)
    assert [(t["uuid"], t["status"]) for t in queue] == [(a, "active"), (b, "queued")]
    # another server's queue, another id's, another scope's: each its own
    assert take(dc, CN2_UUID, tid)[1][0]["status"] == "active"
    assert take(dc, CN1_UUID, tid + "-other")[1][0]["status"] == "active"
    assert take(dc, CN1_UUID, tid, scope="dataset")[1][0]["status"] == "active"
    c, _ = take(dc, CN1_UUID, tid)
    st, _, _ = dc.call("cnapi", "PUT", "/tickets/%s/release" % a)
    assert st == 204
    assert ticket(dc, a)["status"] == "finished"
    assert ticket(dc, b)["status"] == "active" and ticket(dc, c)["status"] == "queued"
    # a deleted ticket is gone, and the next one goes
    st, _, _ = dc.call("cnapi", "DELETE", "/tickets/" + b)
    assert st == 204
    assert dc.call("cnapi", "GET", "/tickets/" + b)[0] == 404
    assert ticket(dc, c)["status"] == "active"
    # the server's list: every status, oldest first
    st, listed, _ = dc.call("cnapi", "GET", "/servers/%s/tickets" % CN1_UUID)
    mine = [(t["uuid"], t["status"]) for t in listed if t["id"] == tid and t["scope"] == "vm"]
    assert mine == [(a, "finished"), (c, "active")]
    assert [t["created_at"] for t in listed] == sorted(t["created_at"] for t in listed)


def test_wait_returns_once_active_and_an_expired_ticket_lets_the_next_go(dc):
    tid = "wait-" + VM
    a, _ = take(dc, CN1_UUID, tid, expires=1.5)
    b, _ = take(dc, CN1_UUID, tid)
    got = {}

    def wait():
        start = time.time()
        got["status"] = dc.call("cnapi", "GET", "/tickets/%s/wait" % b)[0]
        got["after"] = time.time() - start
    t = threading.Thread(target=wait)
    t.start()
    t.join(0.5)
    assert t.is_alive(), "the wait returned while an earlier ticket was active"
    t.join(10)
    # a's expires_at passed: the director (every 500 ms) expired it, b went
    assert got["status"] == 204 and 0.8 < got["after"] < 4, got
    assert ticket(dc, a)["status"] == "expired" and ticket(dc, b)["status"] == "active"
    # waiting on an active ticket returns at once; on an expired one is an error
    assert dc.call("cnapi", "GET", "/tickets/%s/wait" % b)[0] == 204
    st, body, _ = dc.call("cnapi", "GET", "/tickets/%s/wait" % a)
    assert st == 500 and "expired" in body["message"], body
    st, body, _ = dc.call("cnapi", "GET", "/tickets/%s/wait" % ("f" * 8 + "-ffff-4fff-8fff-"
                                                                + "f" * 12))
    assert st == 404 and body["code"] == "ResourceNotFound", body


def test_waitlist_refusals(dc):
    st, body, _ = dc.call("cnapi", "POST", "/servers/%s/tickets" % CN1_UUID,
                          {"id": VM, "expires_at": iso(60)})
    assert st == 500 and body["message"] == "opts.scope (string) is required", body
    st, body, _ = dc.call("cnapi", "POST", "/servers/%s/tickets" % VM,
                          {"scope": "vm", "id": VM, "expires_at": iso(60)})
    assert st == 404, body
    st, body, _ = dc.call("cnapi", "PUT", "/tickets/%s/release" % VM)
    assert st == 404 and body["code"] == "ResourceNotFound", body
    st, body, _ = dc.call("cnapi", "DELETE", "/servers/%s/tickets" % CN2_UUID)
    assert st == 412, body
    st, _, _ = dc.call("cnapi", "DELETE", "/servers/%s/tickets?force=true" % CN2_UUID)
    assert st == 204
    assert dc.call("cnapi", "GET", "/servers/%s/tickets" % CN2_UUID)[1] == []


# ---- VMAPI's actions behind the ticket ------------------------------------------

def report(dc, server, uuid, state):
    st, _, _ = dc.call("vmapi", "PUT", "/vms?server_uuid=" + server, {"vms": {
        uuid: vmadm_obj(uuid, "customer", state=state,
                        zone_state="installed" if state == "stopped" else state)}})
    assert st == 200


def job(dc, uuid):
    st, body, _ = dc.call("vmapi", "GET", "/jobs/" + uuid)
    assert st == 200
    return body


def ended(dc, uuid, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        j = job(dc, uuid)
        if j["execution"] != "running":
            return j
        time.sleep(0.1)
    raise AssertionError("job %s did not end: %s" % (uuid, j))


def test_an_action_waits_for_the_vms_ticket_and_checks_the_state_after(dc):
    report(dc, CN1_UUID, VM, "running")
    held, _ = take(dc, CN1_UUID, VM)            # as a migration holds it
    st, body, hdrs = dc.call("vmapi", "POST", "/vms/%s?action=start" % VM)
    assert st == 202 and body["vm_uuid"] == VM and hdrs["workflow-api"], body
    time.sleep(0.5)
    j = job(dc, body["job_uuid"])
    assert j["execution"] == "running" and j["name"] == "start-7.0.8"
    assert [r["name"] for r in j["chain_results"]] == ["common.validate_params",
                                                       "cnapi.acquire_vm_ticket"]
    mine = j["params"]["vmTicket"]
    assert j["params"]["server_uuid"] == CN1_UUID and j["params"]["current_state"] == "running"
    assert (mine["server_uuid"], mine["scope"], mine["id"]) == (CN1_UUID, "vm", VM)
    assert ticket(dc, mine["uuid"])["status"] == "queued"
    dc.call("cnapi", "PUT", "/tickets/%s/release" % held)
    j = ended(dc, body["job_uuid"])
    # a job as VMAPI shows one (the sample's fields), one result a task
    shape = sample("vmapi-job.json")
    assert set(shape) <= set(j)
    assert all(set(shape["chain_results"][0]) <= set(r) for r in j["chain_results"])
    # the state is checked once the ticket is the job's: running, no start
    assert j["execution"] == "failed"
    assert j["chain_results"][-1]["name"] == "common.ensure_vm_state"
    assert j["chain_results"][-1]["error"] == "Cannot start a VM from a 'running' state"
    assert ticket(dc, mine["uuid"])["status"] == "finished"      # onerror released it


def test_the_job_acts_on_the_server_vmapi_showed_when_it_was_made(dc):
    uuid = VM[:-1] + "2"
    report(dc, CN1_UUID, uuid, "running")
    held, _ = take(dc, CN1_UUID, uuid)
    st, body, _ = dc.call("vmapi", "POST", "/vms/%s?action=stop" % uuid)
    assert st == 202
    # meanwhile the instance moves: VMAPI shows it on cn2
    report(dc, CN2_UUID, uuid, "running")
    assert dc.call("vmapi", "GET", "/vms/" + uuid)[1]["server_uuid"] == CN2_UUID
    dc.call("cnapi", "PUT", "/tickets/%s/release" % held)
    j = ended(dc, body["job_uuid"])
    assert j["name"] == "stop-7.0.8" and j["execution"] == "failed"
    names = [r["name"] for r in j["chain_results"]]
    assert names == ["common.validate_params", "common.setup_request",
                     "cnapi.acquire_vm_ticket", "cnapi.wait_on_vm_ticket",
                     "common.ensure_vm_state", "cnapi.stop_vm"]
    # still cn1's (wfapi.js: params.server_uuid = req.vm.server_uuid), where no
    # cn-agent answers here
    assert CN1_UUID in j["chain_results"][-1]["error"]
    assert j["params"]["vmTicket"]["server_uuid"] == CN1_UUID


def test_action_refusals(dc):
    report(dc, CN1_UUID, VM, "running")
    st, body, _ = dc.call("vmapi", "POST", "/vms/" + VM)
    assert st == 409 and body["errors"][0]["field"] == "action", body
    st, body, _ = dc.call("vmapi", "POST", "/vms/%s?action=fly" % VM)
    assert st == 409 and body["code"] == "ValidationFailed", body
    st, body, _ = dc.call("vmapi", "POST", "/vms/%s?action=kill" % VM)
    assert st == 501, body
    missing = "1" * 8 + "-1111-4111-8111-" + "1" * 12
    st, body, _ = dc.call("vmapi", "POST", "/vms/%s?action=start" % missing)
    assert st == 404 and body["code"] == sample("vmapi-error-notfound.json")["code"], body
    # sync=true answers once the job ended
    st, body, _ = dc.call("vmapi", "POST", "/vms/%s?action=start&sync=true" % VM)
    assert st == 500 and "Cannot start a VM from a 'running' state" in body["message"], body
