"""VMAPI: VMs (list, get, the vm-agent's reports), the CreateVm and
DeleteVm jobs, the start, stop and reboot actions' jobs (behind CNAPI's
waitlist), RFD 34 migration records."""
import datetime
import json
import os
import re
import threading
import time

from .. import common
from .base import (ApiError, Response, invalid_param, js_str, missing_param, new_uuid, norm_ts,
                   not_found, now_iso, route, valid_uuid, vmapi_validation)
from . import cnapi
from .cnapi import server_out
from .napi import napi_delete_nics_of
from .store import STORE


VM_BASE_FIELDS = [
    "uuid", "alias", "autoboot", "brand", "billing_id", "cpu_cap", "cpu_shares",
    "create_timestamp", "customer_metadata", "datasets", "destroyed",
    "firewall_enabled", "internal_metadata", "last_modified", "limit_priv",
    "max_locked_memory", "max_lwps", "max_physical_memory", "max_swap", "nics",
    "owner_uuid", "platform_buildstamp", "quota", "ram", "resolvers", "server_uuid",
    "snapshots", "state", "tags", "zfs_filesystem", "zfs_io_priority", "zone_state",
    "zonepath", "zpool",
]
VM_OPTIONAL_FIELDS = [
    "boot_timestamp", "docker", "dns_domain", "hostname", "delegate_dataset",
    "exit_status", "exit_timestamp", "filesystems", "fs_allowed",
    "indestructible_delegated", "indestructible_zoneroot", "init_name",
    "internal_metadata_namespaces", "kernel_version", "limit_priv",
    "maintain_resolvers", "mdata_exec_timeout", "package_name", "package_version",
    "pid", "tmpfs", "zfs_data_compression", "flexible_disk_size",
]
HW_BRANDS = ("kvm", "bhyve")


def translate_vm(obj):
    """A stored VM as VMAPI returns it (sdc-vmapi translateVm, fullObject)."""
    vm = {}
    for k in VM_BASE_FIELDS:
        vm[k] = obj.get(k)
    for k in ("create_timestamp", "last_modified", "destroyed"):
        if vm[k]:
            vm[k] = norm_ts(vm[k])
    for k in VM_OPTIONAL_FIELDS:
        v = obj.get(k)
        if v or v == 0 or v is False:
            vm[k] = v
    if obj.get("brand") in HW_BRANDS:
        vm["vcpus"] = obj.get("vcpus")
        vm["cpu_type"] = obj.get("cpu_type")
        vm["disks"] = obj.get("disks")
        if obj.get("hostname"):
            vm["hostname"] = obj["hostname"]
        # The docs' KVM sample carries the boot disk's image at top level too.
        img = obj.get("image_uuid")
        if not img:
            for d in obj.get("disks") or []:
                if d.get("image_uuid"):
                    img = d["image_uuid"]
                    break
        vm["image_uuid"] = img
    else:
        vm["image_uuid"] = obj.get("image_uuid")
    if vm.get("ram") is None and vm.get("max_physical_memory") is not None:
        vm["ram"] = vm["max_physical_memory"]
    if vm.get("firewall_enabled") is None:
        vm["firewall_enabled"] = False
    for k in list(vm):
        if vm[k] is None:
            if k in ("customer_metadata", "internal_metadata", "tags"):
                vm[k] = {}
            elif k in ("nics", "snapshots", "datasets"):
                vm[k] = []
    return vm


def vm_fields(vm, fields):
    if not fields or fields == "*" or "*" in fields.split(","):
        return vm
    want = [f for f in fields.split(",") if f]
    return {k: vm[k] for k in want if k in vm}


VMS_LIST_PARAMS = {
    "alias", "billing_id", "brand", "create_timestamp", "docker", "fields",
    "image_uuid", "owner_uuid", "package_name", "package_version", "uuid", "ram",
    "server_uuid", "state", "uuids", "limit", "offset", "sort", "marker",
    "predicate", "query", "sync",
}


def _glob_match(pattern, value):
    if value is None:
        return False
    if "*" in pattern:
        rx = "^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "$"
        return re.match(rx, js_str(value)) is not None
    return js_str(value) == pattern


def _vm_value(vm, field):
    if field.startswith("tag."):
        return (vm.get("tags") or {}).get(field[4:])
    if field.startswith("tags."):
        return (vm.get("tags") or {}).get(field[5:])
    if field.startswith("internal_metadata."):
        return (vm.get("internal_metadata") or {}).get(field[len("internal_metadata."):])
    return vm.get(field)


def _state_match(want, vm):
    state = vm.get("state")
    if want == "active":
        return state not in ("destroyed", "failed")
    return state == want


def _eval_predicate(pred, vm):
    if not isinstance(pred, dict) or len(pred) != 1:
        raise vmapi_validation([invalid_param("predicate", "Invalid predicate")])
    op, arg = next(iter(pred.items()))
    if op in ("and", "or"):
        results = [_eval_predicate(p, vm) for p in arg]
        return all(results) if op == "and" else any(results)
    if op in ("eq", "ne", "le", "ge") and isinstance(arg, list) and len(arg) == 2:
        field, value = arg
        if field == "state" and op in ("eq", "ne"):
            r = _state_match(value, vm)
            return r if op == "eq" else not r
        have = _vm_value(vm, field)
        if op in ("eq", "ne"):
            r = _glob_match(js_str(value), have) if isinstance(value, str) else have == value
            return r if op == "eq" else not r
        try:
            a, b = float(have), float(value)
        except (TypeError, ValueError):
            a, b = js_str(have), js_str(value)
        return a <= b if op == "le" else a >= b
    raise vmapi_validation([invalid_param("predicate", "Invalid predicate")])


def vmapi_list_vms(req):
    params = req.params
    bad = [k for k in params if k not in VMS_LIST_PARAMS and not k.startswith("tag.")
           and not k.startswith("internal_metadata.")]
    if bad:
        raise vmapi_validation([invalid_param(k) for k in sorted(bad)])
    for k in ("uuid", "owner_uuid", "server_uuid", "image_uuid", "billing_id"):
        if params.get(k) and not valid_uuid(params[k]):
            raise vmapi_validation([invalid_param(k, "Invalid UUID")])
    vms = [translate_vm(v) for v in STORE.list("vm")]
    out = []
    uuids = set(params["uuids"].split(",")) if params.get("uuids") else None
    pred = None
    if params.get("predicate"):
        try:
            pred = json.loads(params["predicate"])
        except ValueError:
            raise vmapi_validation([invalid_param("predicate", "Invalid JSON")])
    for vm in vms:
        ok = True
        for k in ("uuid", "owner_uuid", "server_uuid", "brand", "image_uuid", "billing_id",
                  "package_name", "package_version"):
            if params.get(k) and js_str(vm.get(k)) != params[k]:
                ok = False
        if params.get("alias") and not _glob_match(params["alias"], vm.get("alias")):
            ok = False
        if params.get("ram") and js_str(vm.get("ram")) != params["ram"]:
            ok = False
        if params.get("state") and not _state_match(params["state"], vm):
            ok = False
        if uuids is not None and vm["uuid"] not in uuids:
            ok = False
        for k, v in params.items():
            if k.startswith("tag."):
                have = (vm.get("tags") or {}).get(k[4:])
                if have is None or (v != "*" and js_str(have) != v):
                    ok = False
            elif k.startswith("internal_metadata."):
                have = (vm.get("internal_metadata") or {}).get(k[len("internal_metadata."):])
                if have is None or js_str(have) != v:
                    ok = False
        if ok and pred is not None:
            ok = _eval_predicate(pred, vm)
        if ok:
            out.append(vm)
    sort = params.get("sort") or "uuid.desc"
    field, _, order = sort.partition(".")
    order = (order or "desc").lower()
    out.sort(key=lambda v: (v.get(field) is None, js_str(v.get(field))),
             reverse=(order == "desc"))
    try:
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 1000)
    except ValueError:
        raise vmapi_validation([invalid_param("limit")])
    out = out[offset:offset + min(limit, 1000)]
    return Response(200, [vm_fields(v, params.get("fields")) for v in out])


def _load_vm(req):
    vid = req.match["uuid"]
    if not valid_uuid(vid):
        raise vmapi_validation([invalid_param("uuid", "Invalid UUID")])
    raw = STORE.get("vm", vid)
    if raw is None:
        raise not_found("VM not found")
    if req.params.get("owner_uuid") and raw.get("owner_uuid") != req.params["owner_uuid"]:
        raise not_found("VM not found")
    return raw


def vmapi_get_vm(req):
    raw = _load_vm(req)
    return Response(200, vm_fields(translate_vm(raw), req.params.get("fields")))


def _heartbeat_vm(vm):
    t = translate_vm(vm)
    return {k: t.get(k) for k in ("uuid", "owner_uuid", "quota", "max_physical_memory",
                                   "zone_state", "state", "brand", "cpu_cap",
                                   "last_modified")}


def _mark_destroyed(raw):
    ts = now_iso()
    raw["state"] = "destroyed"
    raw["zone_state"] = "destroyed"
    raw["destroyed"] = ts
    raw["last_modified"] = ts
    STORE.put("vm", raw["uuid"], raw)


def vmapi_put_vms(req):
    server_uuid = req.params.get("server_uuid")
    if not server_uuid:
        raise vmapi_validation([missing_param("server_uuid")])
    if not valid_uuid(server_uuid):
        raise vmapi_validation([invalid_param("server_uuid", "Invalid UUID")])
    vms = req.body.get("vms") if isinstance(req.body, dict) else None
    if vms is None or not isinstance(vms, dict):
        raise vmapi_validation([missing_param("vms")])
    # the log says which VMs a CN reported: a test sees where VMAPI placed them
    req.log["vms"] = sorted(vms)
    for vid, obj in vms.items():
        if not isinstance(obj, dict):
            raise vmapi_validation([invalid_param("vms")])
        old = STORE.get("vm", vid)
        new = dict(obj)
        new["uuid"] = vid
        new["server_uuid"] = server_uuid
        new.pop("destroyed", None)
        if old:
            if not new.get("create_timestamp") and old.get("create_timestamp"):
                new["create_timestamp"] = old["create_timestamp"]
        if not new.get("last_modified"):
            new["last_modified"] = now_iso()
        STORE.put("vm", vid, new)
    # VMs this server held that it no longer reports are gone. VMAPI records
    # it and leaves NAPI alone: the NICs are net-agent's (simdc/netagent.py).
    for raw in STORE.list("vm"):
        if raw.get("server_uuid") == server_uuid and raw["uuid"] not in vms \
                and raw.get("state") not in ("destroyed", "provisioning", "failed"):
            _mark_destroyed(raw)
    server = STORE.get("server", server_uuid)
    if server is not None:
        server["vms"] = {vid: _heartbeat_vm(STORE.get("vm", vid)) for vid in vms}
        STORE.put("server", server_uuid, server)
    return Response(200, None)


def _sim_workflow():
    """simdc.workflow, imported late: the API also runs alone (tests/sim) without it."""
    from .. import workflow
    return workflow


def _new_job(name, vm_uuid, params, execution="running", timeout=None):
    ts = now_iso()
    job = {"name": name, "uuid": new_uuid(), "execution": execution,
           "params": dict(params, vm_uuid=vm_uuid), "exec_after": ts, "created_at": ts,
           "timeout": timeout or (3600 if name.startswith("provision") else 180),
           "chain_results": [], "vm_uuid": vm_uuid}
    STORE.put("job", job["uuid"], job)
    return job


def _run_job(job_uuid, steps, on_failure=None):
    """Run a job's steps in a thread, as the workflow runner does, without the
    store lock (the CN's vm-agent reports to VMAPI in the middle of it).

    steps: [(name, fn)]; each fn returns the step's result text.
    """
    def record(name, result, error, started):
        with STORE:
            job = STORE.get("job", job_uuid)
            job["chain_results"].append({"name": name, "result": result, "error": error,
                                         "started_at": started, "finished_at": now_iso()})
            if error:
                job["execution"] = "failed"
            STORE.put("job", job_uuid, job)

    def run():
        for name, fn in steps:
            started = now_iso()
            try:
                result = fn()
            except Exception as e:  # noqa: BLE001 - a failed task fails the job
                record(name, "", "%s" % e, started)
                if on_failure:
                    try:
                        on_failure()
                    except Exception:  # noqa: BLE001
                        pass
                return
            record(name, result or "OK", "", started)
        with STORE:
            job = STORE.get("job", job_uuid)
            job["execution"] = "succeeded"
            STORE.put("job", job_uuid, job)
    threading.Thread(target=run, daemon=True).start()


def wait_job(job_uuid, timeout=300.0):
    """The job once it ended (succeeded or failed), polled without the lock."""
    deadline = time.time() + timeout
    while True:
        with STORE:
            job = STORE.get("job", job_uuid)
        if job is None or job["execution"] in ("succeeded", "failed", "canceled"):
            return job
        if time.time() > deadline:
            return job
        time.sleep(0.1)


def _simulated_cn(server_uuid):
    """The simulated CN holding server_uuid when it is up, else None (the API alone)."""
    host = common.host_by_uuid(server_uuid) if server_uuid else None
    if host is None:
        return None
    return host if _sim_workflow().host_up(host) else None


def destroy_vm(raw):
    """DeleteVm's work: a job that destroys the VM on its CN (then VMAPI marks it
    destroyed and frees its NICs), or, with no CN to run it on, at once."""
    host = _simulated_cn(raw.get("server_uuid")) if raw.get("state") != "destroyed" else None
    params = {"owner_uuid": raw.get("owner_uuid"), "uuid": raw["uuid"],
              "server_uuid": raw.get("server_uuid"), "task": "destroy"}
    if host is None:
        if raw.get("state") != "destroyed":
            _mark_destroyed(raw)
        napi_delete_nics_of(raw["uuid"])
        job = _new_job("destroy-%s" % raw["uuid"], raw["uuid"], params, "succeeded")
        ts = now_iso()
        job["chain_results"] = [{"result": "Machine destroyed", "error": "",
                                 "started_at": ts, "finished_at": ts}]
        STORE.put("job", job["uuid"], job)
        return job
    job = _new_job("destroy-%s" % raw["uuid"], raw["uuid"], params)
    wf = _sim_workflow()

    def mark():
        with STORE:
            vm = STORE.get("vm", raw["uuid"])
            if vm and vm.get("state") != "destroyed":
                _mark_destroyed(vm)
        return "Machine destroyed"

    def nics():
        # sdc-vmapi lib/workflows/destroy.js: the job deletes the VM's NICs in NAPI
        with STORE:
            napi_delete_nics_of(raw["uuid"])
        return "NICs removed"
    _run_job(job["uuid"], [("cnapi.machine_destroy",
                            lambda: wf.destroy_on_cn(host, raw["uuid"]) or "vmadm delete"),
                           ("vmapi.mark_destroyed", mark), ("napi.remove_nics", nics)])
    return job


def vmapi_delete_vm(req):
    raw = _load_vm(req)
    job = destroy_vm(raw)
    return Response(202, {"vm_uuid": raw["uuid"], "job_uuid": job["uuid"]},
                    headers=[("workflow-api", "http://workflow.%s.sim" % common.DATACENTER)])


def _placement(params):
    """DAPI, in short: the named server, else the setup, running, unreserved
    compute node (never the head node) with the most unreserved RAM."""
    ram = int(params.get("ram") or 0)
    if params.get("server_uuid"):
        s = STORE.get("server", params["server_uuid"])
        if s is None:
            raise vmapi_validation([invalid_param("server_uuid", "Server not found")])
        return s
    fits = []
    for s in STORE.list("server"):
        out = server_out(s)
        if out.get("headnode") or out.get("reserved") or not out.get("setup") \
                or out.get("status") != "running" or out["unreserved_ram"] < ram:
            continue
        fits.append((-out["unreserved_ram"], s["uuid"], s))
    if not fits:
        raise ApiError(409, "NoAllocatableServersError", "No compute resources available")
    return min(fits)[2]


def vmapi_create_vm(req):
    """CreateVm (POST /vms): validate, place, then a provision job that asks NAPI
    for the NICs and creates the VM on its CN; 202 with the job at once."""
    body = dict(req.body) if isinstance(req.body, dict) else {}
    errs = [missing_param(f) for f in ("owner_uuid", "networks", "brand")
            if not body.get(f)]
    if body.get("brand") not in (None, "") and body["brand"] not in \
            ("joyent", "joyent-minimal", "lx"):
        errs.append(invalid_param("brand", "Only zone brands are provisioned here"))
    if not body.get("image_uuid"):
        errs.append(missing_param("image_uuid"))
    if body.get("networks") and (not isinstance(body["networks"], list) or not all(
            isinstance(n, dict) and valid_uuid(n.get("uuid")) for n in body["networks"])):
        errs.append(invalid_param("networks", "Invalid networks"))
    for k in ("uuid", "owner_uuid", "server_uuid", "image_uuid"):
        if body.get(k) and not valid_uuid(body[k]):
            errs.append(invalid_param(k, "Invalid UUID"))
    if errs:
        raise vmapi_validation(errs)
    vm_uuid = body.get("uuid") or new_uuid()
    if STORE.get("vm", vm_uuid):
        raise vmapi_validation([invalid_param("uuid", "Already exists")])
    for n in body["networks"]:
        if STORE.get("network", n["uuid"]) is None:
            raise vmapi_validation([invalid_param("networks", "Network %s not found"
                                                  % n["uuid"])])
    if STORE.get("image", body["image_uuid"]) is None:
        raise vmapi_validation([invalid_param("image_uuid", "Image not found")])
    server = _placement(body)
    host = _simulated_cn(server["uuid"])
    if host is None:
        raise ApiError(409, "NoAllocatableServersError",
                       "Server %s cannot be reached" % server["uuid"])
    ts = now_iso()
    # The placeholder VMAPI shows until the CN's vm-agent reports the real one.
    STORE.put("vm", vm_uuid, {"uuid": vm_uuid, "alias": body.get("alias"),
                              "brand": body["brand"], "owner_uuid": body["owner_uuid"],
                              "image_uuid": body["image_uuid"], "server_uuid": server["uuid"],
                              "state": "provisioning", "zone_state": "provisioning",
                              "ram": body.get("ram"), "tags": body.get("tags") or {},
                              "create_timestamp": ts, "last_modified": ts})
    job = _new_job("provision-%s" % vm_uuid, vm_uuid,
                   {"owner_uuid": body["owner_uuid"], "server_uuid": server["uuid"],
                    "task": "provision"})
    wf = _sim_workflow()
    made = {}

    def nics():
        made["nics"] = wf.nics_for(body["networks"], vm_uuid, body["owner_uuid"])
        return "NICs " + ", ".join(n["ip"] for n in made["nics"])

    def create():
        payload = wf.payload(vm_uuid, body["brand"], body.get("alias"), body["owner_uuid"],
                             body["image_uuid"], made["nics"], ram=int(body.get("ram") or 256),
                             tags=body.get("tags"),
                             customer_metadata=body.get("customer_metadata"),
                             internal_metadata=body.get("internal_metadata"),
                             quota=int(body.get("quota") or 10))
        wf.create_on_cn(host, payload, body["image_uuid"])
        return "vmadm create on " + host

    def boot():
        wf.boot_and_report(host, vm_uuid, body.get("autoboot", True) is not False)
        return "VM provisioned"

    def failed():
        wf.delete_nics(made.get("nics") or [])
        with STORE:
            vm = STORE.get("vm", vm_uuid)
            if vm and vm.get("state") == "provisioning":
                vm["state"] = vm["zone_state"] = "failed"
                STORE.put("vm", vm_uuid, vm)
    _run_job(job["uuid"], [("napi.provision_nics", nics), ("cnapi.machine_create", create),
                           ("cnapi.machine_boot", boot)], on_failure=failed)
    return Response(202, {"vm_uuid": vm_uuid, "job_uuid": job["uuid"]},
                    headers=[("workflow-api", "http://workflow.%s.sim" % common.DATACENTER)])


# ---- VM actions: start, stop, reboot ----------------------------------------------
# sdc-vmapi lib/endpoints/vms.js updateVm (POST /vms/:uuid?action=...), whose
# jobs lib/apis/wfapi.js createStartJob/createStopJob/createRebootJob create
# with the server_uuid VMAPI shows at that moment, and lib/workflows/start.js,
# stop.js, reboot.js with job-common.js: take the VM's CNAPI waitlist ticket on
# that server (acquireVMTicket: scope vm, id the VM, expires in 600 s), wait for
# it (waitOnVMTicket, a task of 120 s), check the VM's state in VMAPI
# (ensureVmState), have that server's cn-agent do it (zoneAction, waitTask:
# sdc-cn-agent machine_boot / machine_shutdown / machine_reboot run vmadm
# there), put the VM it loaded into VMAPI (putVm), release the ticket; a failed
# job releases it too (onerror: releaseVMTicketIgnoringErr).
VALID_VM_ACTIONS = ("start", "stop", "kill", "reboot", "reprovision", "update", "add_nics",
                    "update_nics", "remove_nics", "create_snapshot", "rollback_snapshot",
                    "delete_snapshot", "create_disk", "resize_disk", "delete_disk", "migrate")
# action: (workflow name, job timeout, the state ensureVmState wants, the cn-agent
# task, vmadm's command there, whether the request is set up before the ticket)
VM_ACTIONS = {
    "start": ("start-7.0.8", 410, "stopped", "machine_boot", "start", False),
    "stop": ("stop-7.0.8", 530, "running", "machine_shutdown", "stop", True),
    "reboot": ("reboot-7.0.6", 590, "running", "machine_reboot", "reboot", True),
}
VM_TICKET_LIFE = 600        # acquireVMTicket's expires_at: now + 600 s
VM_TICKET_WAIT = 120        # cnapi.wait_on_vm_ticket's task timeout, seconds
TASK_TIMEOUT = "task timeout error"     # node-workflow's word for a task out of time


class TaskError(Exception):
    pass


def vm_action_job(raw, action, idempotent=False, req_id=None):
    """The job of a start, stop or reboot of VM raw (a stored VM), started."""
    name, timeout, desired, cn_task, verb, setup_first = VM_ACTIONS[action]
    vm_uuid = raw["uuid"]
    params = {"task": action, "target": "/%s-%s" % (action, vm_uuid), "vm_uuid": vm_uuid,
              "owner_uuid": raw.get("owner_uuid"), "server_uuid": raw.get("server_uuid"),
              "current_state": translate_vm(raw).get("state"),
              "x-request-id": req_id or new_uuid()}
    if idempotent:
        params["idempotent"] = True
    job = _new_job(name, vm_uuid, params, timeout=timeout)
    server = params["server_uuid"]
    state = {"action": action if setup_first else None}   # job.action, once set up

    def set_param(key, value):
        with STORE:
            j = STORE.get("job", job["uuid"])
            j["params"][key] = value
            STORE.put("job", job["uuid"], j)

    def acquire():
        with STORE:
            if STORE.get("server", server) is None:
                raise TaskError("server %s not found" % server)
            expires = datetime.datetime.now(datetime.timezone.utc) + \
                datetime.timedelta(seconds=VM_TICKET_LIFE)
            ticket, _ = cnapi.create_ticket(
                server, {"scope": "vm", "id": vm_uuid, "action": state["action"],
                         "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.")
                         + "%03dZ" % (expires.microsecond // 1000)})
        state["ticket"] = ticket
        set_param("vmTicket", ticket)
        return "OK"

    def wait():
        if state["ticket"]["status"] == cnapi.TICKET_ACTIVE:
            return "OK"
        why = cnapi.wait_ticket(state["ticket"]["uuid"], VM_TICKET_WAIT)
        if why is not None:
            raise TaskError(TASK_TIMEOUT if why == "timeout" else why)
        return "OK"

    def ensure_state():
        with STORE:
            vm = STORE.get("vm", vm_uuid)
        now = translate_vm(vm).get("state") if vm else None
        if idempotent:
            return "VM is %s, action is idempotent" % now
        if now != desired:
            raise TaskError("Cannot %s a VM from a '%s' state" % (action, now))
        return "VM is %s" % now

    def setup():
        state["action"] = action
        set_param("jobid", job["uuid"])
        return ("Start request has been setup!" if action == "start"
                else "Request has been setup!")

    def zone_action():
        host = _simulated_cn(server)
        if host is None:
            raise TaskError("no cn-agent answers for server %s (the simulated API runs"
                            " alone)" % server)
        state["host"] = host
        state["task_id"] = new_uuid().split("-")[0]
        return "Task id: %s queued to CNAPI!" % state["task_id"]

    def wait_task():
        # cn-agent's task on the CN: vmadm there (its node module: an instance
        # already in the wanted state is an error unless idempotent), then the
        # VM as vmadm loads it
        wf = _sim_workflow()
        host = state["host"]
        p = wf.run_on(host, ["vmadm", verb, vm_uuid], check=False)
        said = [l for l in (p.stderr or "").splitlines() if l.strip()]
        already = p.returncode == 0 and said and ("already running" in said[-1]
                                                  or "already not 'running'" in said[-1])
        if p.returncode != 0 or (already and not idempotent):
            raise TaskError("vmadm.%s error: %s" % (verb, said[-1] if said else
                                                    "exit status %d" % p.returncode))
        got = wf.run_on(host, ["vmadm", "get", vm_uuid], check=False)
        if got.returncode != 0:
            raise TaskError("vmadm.load error: %s" % got.stderr.strip())
        state["finished_vm"] = json.loads(got.stdout)
        return "Job succeeded!"

    def put_vm():
        vm = state["finished_vm"]
        with STORE:
            old = STORE.get("vm", vm_uuid) or {}
            new = dict(vm, uuid=vm_uuid)
            if not new.get("create_timestamp") and old.get("create_timestamp"):
                new["create_timestamp"] = old["create_timestamp"]
            new.setdefault("last_modified", now_iso())
            STORE.put("vm", vm_uuid, new)
        return "put VM %s to VMAPI" % vm_uuid

    def release():
        with STORE:
            cnapi.release_ticket(state["ticket"]["uuid"])
        return "OK"

    def release_ignoring_err():
        if state.get("ticket"):
            with STORE:
                cnapi.release_ticket(state["ticket"]["uuid"])

    ticket_tasks = [("cnapi.acquire_vm_ticket", acquire), ("cnapi.wait_on_vm_ticket", wait)]
    setup_task = [("common.setup_request" if setup_first else "setup_start_request", setup)]
    steps = ([("common.validate_params", lambda: "All parameters OK!")]
             + (setup_task + ticket_tasks if setup_first else ticket_tasks)
             + [("common.ensure_vm_state", ensure_state)]
             + ([] if setup_first else setup_task)
             + [("cnapi.%s_vm" % action, zone_action), ("cnapi.wait_task", wait_task),
                ("vmapi.put_vm", put_vm), ("cnapi.release_vm_ticket", release)])
    _run_job(job["uuid"], steps, on_failure=release_ignoring_err)
    return job


def vmapi_update_vm(req):
    """UpdateVm (POST /vms/:uuid?action=ACTION): start, stop and reboot run as
    VMAPI runs them (vm_action_job); 202 {vm_uuid, job_uuid}, or with
    sync=true once the job ended."""
    p = dict(req.params)
    if isinstance(req.body, dict):
        p.update({k: v for k, v in req.body.items() if isinstance(v, (str, bool))})
    with STORE:
        raw = _load_vm(req)
        action = p.get("action")
        if not action:
            raise vmapi_validation([missing_param("action")])
        if action not in VALID_VM_ACTIONS:
            raise vmapi_validation([invalid_param("action")])
        sync = p.get("sync")
        if sync not in (None, "true", "false", True, False):
            raise vmapi_validation([invalid_param("sync")])
        idem = p.get("idempotent")
        if idem not in (None, True, "true"):
            raise vmapi_validation([invalid_param("idempotent")])
        if action not in VM_ACTIONS:
            raise ApiError(501, "NotImplemented", "action %s is not emulated by the simulated"
                           " VMAPI" % action)
        if raw.get("state") == "provisioning":
            raise ApiError(409, "UnallocatedVM", "Cannot call %s for a VM that has not been"
                           " provisioned yet" % action)
        job = vm_action_job(raw, action, idem in (True, "true"), req.headers.get("x-request-id"))
    if sync in (True, "true"):
        job = wait_job(job["uuid"], 3600)
        failed = [r for r in job["chain_results"] if r.get("error")]
        if job["execution"] != "succeeded":
            raise ApiError(500, "InternalError", "job %s %s: %s" % (
                job["uuid"], job["execution"], failed[-1]["error"] if failed else ""))
    return Response(202, {"vm_uuid": raw["uuid"], "job_uuid": job["uuid"]},
                    headers=[("workflow-api", "http://workflow.%s.sim" % common.DATACENTER)])


# UpdateVm waits for its job with sync=true: without the store's lock
UNLOCKED = (vmapi_update_vm,)


def _job_out(job):
    return {k: v for k, v in job.items() if k != "vm_uuid"}


def vmapi_get_job(req):
    job = STORE.get("job", req.match["uuid"])
    if job is None:
        raise not_found("Job not found")
    return Response(200, _job_out(job))


def vmapi_list_jobs(req):
    jobs = STORE.list("job")
    vm = req.params.get("vm_uuid")
    if vm:
        jobs = [j for j in jobs if j.get("vm_uuid") == vm]
    return Response(200, [_job_out(j) for j in jobs])


# ---- VMAPI migrations (RFD 34) ---------------------------------------------
# sdc-vmapi lib/endpoints/vms.js routes ListMigrations (GET /migrations),
# GetMigration (GET /migrations/:uuid, the record of the VM's current server)
# and StoreMigrationRecord (POST /migrations/:uuid/store, which the migration
# workflow calls); lib/vm-migration/migrate.js translateVmMigration shows these
# fields, and a stored successful abort or rollback deletes the record.
MIGRATION_FIELDS = ("automatic", "created_timestamp", "duration_ms", "error",
                    "finished_timestamp", "phase", "started_timestamp", "state", "vm_uuid")
PROGRESS_FIELDS = ("current_progress", "duration_ms", "finished_timestamp", "error", "message",
                   "phase", "state", "started_timestamp", "total_progress", "type")


def _ms_between(start, end=None):
    def t(v):
        return datetime.datetime.fromisoformat(str(v).replace("Z", "+00:00"))
    try:
        b = t(end) if end else datetime.datetime.now(datetime.timezone.utc)
        return int((b - t(start)).total_seconds() * 1000)
    except (TypeError, ValueError):
        return 0


def migration_out(rec, raw=False):
    history = []
    for e in rec.get("progress_history") or []:
        e = dict(e) if raw else dict({"type": "progress"}, **{k: e[k] for k in PROGRESS_FIELDS
                                                               if k in e})
        e.setdefault("duration_ms", _ms_between(e.get("started_timestamp"),
                                                e.get("finished_timestamp")))
        history.append(e)
    out = dict(rec) if raw else {k: rec[k] for k in MIGRATION_FIELDS if k in rec}
    out["progress_history"] = history
    out.setdefault("duration_ms", sum(e["duration_ms"] for e in history))
    return out


def vmapi_list_migrations(req):
    p = req.params
    recs = sorted(STORE.list("migration"), key=lambda r: r.get("created_timestamp") or "")
    for k in ("vm_uuid", "state", "phase", "source_server_uuid"):
        if p.get(k):
            recs = [r for r in recs if r.get(k) == p[k]]
    return Response(200, [migration_out(r, p.get("format") == "raw") for r in recs])


def vmapi_get_migration(req):
    vm = _load_vm(req)
    for r in STORE.list("migration"):
        if r.get("vm_uuid") == vm["uuid"] and r.get("source_server_uuid") == vm.get("server_uuid"):
            return Response(200, migration_out(r, req.params.get("format") == "raw"))
    raise not_found("migration not found")


def vmapi_store_migration(req):
    rec = dict(req.body) if isinstance(req.body, dict) else {}
    rec.setdefault("vm_uuid", req.match["uuid"])
    rec.setdefault("id", new_uuid())
    rec.setdefault("created_timestamp", now_iso())
    if rec.get("state") == "successful" and rec.get("phase") in ("abort", "rollback"):
        STORE.delete("migration", rec["id"])
    else:
        STORE.put("migration", rec["id"], rec)
    return Response(200, None)


def vmapi_ping(req):
    return Response(200, {"pingErrors": {}, "pid": os.getpid(), "status": "OK",
                          "healthy": True,
                          "services": {"wfapi": "online", "moray": "online"},
                          "initialization": {"moray": {"status": "BUCKETS_REINDEX_DONE"}}})


ROUTES = [
    ("GET", route("/ping"), vmapi_ping),
    ("GET", route("/vms"), vmapi_list_vms),
    ("PUT", route("/vms"), vmapi_put_vms),
    ("POST", route("/vms"), vmapi_create_vm),
    ("GET", route("/vms/:uuid"), vmapi_get_vm),
    ("POST", route("/vms/:uuid"), vmapi_update_vm),
    ("DELETE", route("/vms/:uuid"), vmapi_delete_vm),
    ("GET", route("/jobs"), vmapi_list_jobs),
    ("GET", route("/jobs/:uuid"), vmapi_get_job),
    ("GET", route("/migrations"), vmapi_list_migrations),
    ("GET", route("/migrations/:uuid"), vmapi_get_migration),
    ("POST", route("/migrations/:uuid/store"), vmapi_store_migration),
]
