"""PAPI: packages, what an instance's billing_id names (sdc-papi
lib/papi.js). Placement reads a package's traits (sdc-designation
hard-filter-traits.js: the VM's traits, else its package's, merged with its
image's)."""
from .base import ApiError, Response, missing_param, new_uuid, not_found, route, to_bool
from .store import STORE

PKG_VERSION = 1
# sdc-papi docs/index.md: the attributes a package must have
REQUIRED = ("name", "version", "max_physical_memory", "quota", "max_swap", "max_lwps",
            "zfs_io_priority")


def papi_ping(req):
    return Response(200, {"pid": 1, "backend": "up"})


def papi_list(req):
    p = req.params
    out = []
    for pkg in STORE.list("package"):
        if p.get("name") and pkg.get("name") != p["name"]:
            continue
        if "active" in p and to_bool(p["active"]) is not None and \
                bool(pkg.get("active")) != to_bool(p["active"]):
            continue
        out.append(dict(pkg, v=PKG_VERSION))
    return Response(200, out)


def papi_create(req):
    body = req.body if isinstance(req.body, dict) else {}
    errs = [missing_param(f) for f in REQUIRED if body.get(f) in (None, "")]
    if errs:
        raise ApiError(409, "InvalidArgument", "Missing required parameters", errs)
    pkg = dict(body)
    pkg["uuid"] = body.get("uuid") or new_uuid()
    pkg.setdefault("active", True)
    if STORE.get("package", pkg["uuid"]):
        raise ApiError(409, "InvalidArgument", "Package uuid already exists")
    STORE.put("package", pkg["uuid"], pkg)
    return Response(201, dict(pkg, v=PKG_VERSION))


def papi_get(req):
    pkg = STORE.get("package", req.match["uuid"])
    if pkg is None:
        # lib/papi.js getPkg
        raise not_found("Package %s does not exist" % req.match["uuid"])
    return Response(200, dict(pkg, v=PKG_VERSION))


ROUTES = [
    ("GET", route("/ping"), papi_ping),
    ("GET", route("/packages"), papi_list),
    ("POST", route("/packages"), papi_create),
    ("GET", route("/packages/:uuid"), papi_get),
]
