"""SAPI: applications, services and instances; an instance is deployed as
a VM through VMAPI's CreateVm."""
from .base import (ApiError, Request, Response, js_str, missing_param, new_uuid, not_found,
                   route, to_bool)
from .store import STORE
from .vmapi import destroy_vm, vmapi_create_vm, wait_job


def _sapi_obj(kind, body, fields):
    obj = {"uuid": body.get("uuid") or new_uuid()}
    for k in fields:
        if k in body:
            obj[k] = body[k]
    for k in ("params", "metadata", "manifests"):
        obj[k] = body.get(k) if isinstance(body.get(k), dict) else {}
    return obj


def _sapi_list(kind, p, filters):
    out = []
    for o in STORE.list(kind):
        if all(not p.get(f) or js_str(o.get(f)) == p[f] for f in filters):
            out.append(o)
    return out


def sapi_list_apps(req):
    return Response(200, _sapi_list("application", req.params, ("name", "owner_uuid")))


def sapi_create_app(req):
    body = req.body if isinstance(req.body, dict) else {}
    errs = [missing_param(f) for f in ("name", "owner_uuid") if not body.get(f)]
    if errs:
        raise ApiError(409, "MissingParameter", "missing parameters", errs)
    app = _sapi_obj("application", body, ("name", "owner_uuid"))
    STORE.put("application", app["uuid"], app)
    return Response(200, app)


def sapi_get_app(req):
    o = STORE.get("application", req.match["uuid"])
    if o is None:
        raise not_found("application %s not found" % req.match["uuid"])
    return Response(200, o)


def sapi_list_services(req):
    return Response(200, _sapi_list("service", req.params, ("name", "application_uuid", "type")))


def sapi_create_service(req):
    body = req.body if isinstance(req.body, dict) else {}
    errs = [missing_param(f) for f in ("name", "application_uuid") if not body.get(f)]
    if errs:
        raise ApiError(409, "MissingParameter", "missing parameters", errs)
    svc = _sapi_obj("service", body, ("name", "application_uuid"))
    svc["type"] = body.get("type", "vm")
    STORE.put("service", svc["uuid"], svc)
    return Response(200, svc)


def sapi_get_service(req):
    o = STORE.get("service", req.match["uuid"])
    if o is None:
        raise not_found("service %s not found" % req.match["uuid"])
    return Response(200, o)


def sapi_list_instances(req):
    return Response(200, _sapi_list("instance", req.params, ("service_uuid", "type")))


def _assemble(app, svc, inst, field):
    """SAPI's attributes.assemble: instance over service over application."""
    out = {}
    for o in (app, svc, inst):
        out.update((o or {}).get(field) or {})
    return out


# What SAPI passes on to the zone's customer_metadata (sanitizeMetadata); the
# rest of the metadata is config-agent's, read from SAPI.
SAPI_ZONE_METADATA = ("SAPI_URL", "sapi_url", "SAPI-URL", "sapi-url", "user-script",
                      "assets-ip")


def sapi_create_instance(req):
    """CreateInstance: the record, then the zone through VMAPI's CreateVm (as
    SAPI's deployInstance does), unless `exists` adopts a zone already there.
    Waits for the provision unless ?async=true (then the job_uuid is returned)."""
    body = req.body if isinstance(req.body, dict) else {}
    with STORE:
        if not body.get("service_uuid"):
            raise ApiError(409, "MissingParameter", "missing parameters",
                           [missing_param("service_uuid")])
        svc = STORE.get("service", body["service_uuid"])
        if svc is None:
            raise not_found("no such service: %s" % body["service_uuid"])
        inst = _sapi_obj("instance", body, ("service_uuid",))
        inst["type"] = body.get("type", "vm")
        if body.get("exists") or svc.get("type", "vm") != "vm":
            STORE.put("instance", inst["uuid"], inst)
            return Response(200, inst)
        app = STORE.get("application", svc.get("application_uuid")) or {}
        params = _assemble(app, svc, inst, "params")
        metadata = _assemble(app, svc, inst, "metadata")
        params.update(owner_uuid=app.get("owner_uuid"), uuid=inst["uuid"],
                      brand="joyent-minimal",
                      customer_metadata={k: metadata[k] for k in SAPI_ZONE_METADATA
                                         if metadata.get(k)})
        vmreq = Request("POST", "/vms", "", {}, params, {}, {})
        created = vmapi_create_vm(vmreq).body
        STORE.put("instance", inst["uuid"], inst)
    if to_bool(req.params.get("async")):
        return Response(200, dict(inst, job_uuid=created["job_uuid"]))
    job = wait_job(created["job_uuid"])
    if job is None or job["execution"] != "succeeded":
        with STORE:
            STORE.delete("instance", inst["uuid"])
        errors = [r["error"] for r in (job or {}).get("chain_results", []) if r.get("error")]
        raise ApiError(500, "InternalError", "failed to provision instance %s: %s"
                       % (inst["uuid"], "; ".join(errors) or "job did not finish"))
    return Response(200, inst)


def sapi_get_instance(req):
    o = STORE.get("instance", req.match["uuid"])
    if o is None:
        raise not_found("instance %s not found" % req.match["uuid"])
    return Response(200, o)


def sapi_delete_instance(req):
    """DeleteInstance: the zone through VMAPI (waiting for the job), then the record."""
    with STORE:
        o = STORE.get("instance", req.match["uuid"])
        if o is None:
            raise not_found("instance %s not found" % req.match["uuid"])
        vm = STORE.get("vm", o["uuid"])
        job = destroy_vm(vm) if vm and vm.get("state") != "destroyed" else None
    if job is not None:
        job = wait_job(job["uuid"])
        if job is None or job["execution"] != "succeeded":
            errors = [r["error"] for r in (job or {}).get("chain_results", []) if r.get("error")]
            raise ApiError(500, "InternalError", "failed to delete VM %s: %s"
                           % (o["uuid"], "; ".join(errors) or "job did not finish"))
    with STORE:
        STORE.delete("instance", o["uuid"])
    return Response(204, None)


# Handlers that wait for a job: they take the store lock themselves, for short
# moments, so that the job (and the CN's vm-agent) can use the store meanwhile.
UNLOCKED = (sapi_create_instance, sapi_delete_instance)


def sapi_ping(req):
    return Response(200, {"mode": "full", "storType": "MorayStore", "storAvailable": True})


ROUTES = [
    ("GET", route("/ping"), sapi_ping),
    ("GET", route("/applications"), sapi_list_apps),
    ("POST", route("/applications"), sapi_create_app),
    ("GET", route("/applications/:uuid"), sapi_get_app),
    ("GET", route("/services"), sapi_list_services),
    ("POST", route("/services"), sapi_create_service),
    ("GET", route("/services/:uuid"), sapi_get_service),
    ("GET", route("/instances"), sapi_list_instances),
    ("POST", route("/instances"), sapi_create_instance),
    ("GET", route("/instances/:uuid"), sapi_get_instance),
    ("DELETE", route("/instances/:uuid"), sapi_delete_instance),
]
