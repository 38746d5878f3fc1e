"""IMGAPI: image manifests and their files (one zfs send stream each,
under $SIMDC_DIR/imgapi)."""
import os

from .. import common
from .base import (ADMIN_UUID, ApiError, Response, invalid_param, js_str, missing_param,
                   new_uuid, not_found, now_iso, route, to_bool, valid_uuid)
from .store import STORE


IMAGE_ORDER = ["v", "uuid", "owner", "name", "version", "state", "disabled", "public",
               "published_at", "type", "os", "files", "description", "homepage", "urn",
               "requirements", "tags", "origin", "nic_driver", "disk_driver",
               "cpu_type", "image_size", "billing_tags", "traits", "channels"]


def image_out(img):
    out = {}
    for k in IMAGE_ORDER:
        if k in img and img[k] is not None:
            out[k] = img[k]
    for k, v in img.items():
        if k not in out and not k.startswith("_") and v is not None:
            out[k] = v
    if "files" in out:
        out["files"] = [{k: v for k, v in f.items() if not k.startswith("_")}
                        for f in out["files"]]
    return out


def imgapi_list_images(req):
    p = req.params
    state = p.get("state") or "active"
    out = []
    for img in STORE.list("image"):
        if state != "all" and img.get("state") != state:
            continue
        ok = True
        for k in ("name", "os", "type", "version", "owner"):
            if p.get(k) and js_str(img.get(k)) != p[k]:
                ok = False
        if p.get("public") and to_bool(p["public"]) is not None and \
                bool(img.get("public")) != to_bool(p["public"]):
            ok = False
        if ok:
            out.append(image_out(img))
    return Response(200, out)


def _load_image(uuid):
    img = STORE.get("image", uuid)
    if img is None:
        raise not_found('image "%s" was not found' % uuid)
    return img


def imgapi_get_image(req):
    return Response(200, image_out(_load_image(req.match["uuid"])))


def imgapi_create_image(req):
    body = req.body if isinstance(req.body, dict) else {}
    action = req.params.get("action")
    if action:
        raise ApiError(409, "InvalidParameter", "unknown action: %s" % action)
    errs = [missing_param(f) for f in ("name", "version") if not body.get(f)]
    if errs:
        raise ApiError(422, "ValidationFailed", "invalid image data", errs)
    uuid = body.get("uuid") or new_uuid()
    if not valid_uuid(uuid):
        raise ApiError(422, "ValidationFailed", "invalid image data",
                       [invalid_param("uuid", "invalid UUID")])
    if STORE.get("image", uuid):
        raise ApiError(409, "ImageUuidAlreadyExists", "image uuid \"%s\" already exists"
                       % uuid)
    img = {"v": 2, "uuid": uuid, "owner": body.get("owner") or ADMIN_UUID,
           "name": body["name"], "version": body["version"], "state": "unactivated",
           "disabled": bool(body.get("disabled", False)),
           "public": bool(body.get("public", False)), "type": body.get("type", "zone-dataset"),
           "os": body.get("os", "smartos"), "files": []}
    for k, v in body.items():
        if k not in img and k not in ("state", "files", "published_at"):
            img[k] = v
    STORE.put("image", uuid, img)
    return Response(200, image_out(img))


def imgapi_image_action(req):
    img = _load_image(req.match["uuid"])
    action = req.params.get("action")
    if action == "activate":
        if not img.get("files"):
            raise ApiError(422, "NoActivationNoFile",
                           'image "%s" cannot be activated: it has no file' % img["uuid"])
        img["state"] = "active"
        img.setdefault("published_at", now_iso())
    elif action in ("disable", "enable"):
        img["disabled"] = action == "disable"
        img["state"] = "disabled" if action == "disable" else "active"
    else:
        raise ApiError(409, "InvalidParameter", "unknown action: %s" % action)
    STORE.put("image", img["uuid"], img)
    return Response(200, image_out(img))


def imgapi_delete_image(req):
    img = _load_image(req.match["uuid"])
    STORE.delete("image", img["uuid"])
    try:
        os.unlink(common.path("imgapi", img["uuid"] + ".zfs"))
    except FileNotFoundError:
        pass
    return Response(204, None)


def imgapi_get_file(req):
    img = _load_image(req.match["uuid"])
    fpath = common.path("imgapi", img["uuid"] + ".zfs")
    if not img.get("files") or not os.path.exists(fpath):
        raise not_found('image "%s" has no file' % img["uuid"])
    f = img["files"][0]
    return Response(200, file=fpath, content_type="application/octet-stream",
                    headers=[("Content-MD5", f.get("_md5", ""))] if f.get("_md5") else [])


def imgapi_ping(req):
    return Response(200, {"ping": "pong", "pid": os.getpid(), "version": "4.13.0",
                          "imgapi": True})


ROUTES = [
    ("GET", route("/ping"), imgapi_ping),
    ("GET", route("/images"), imgapi_list_images),
    ("POST", route("/images"), imgapi_create_image),
    ("GET", route("/images/:uuid"), imgapi_get_image),
    ("POST", route("/images/:uuid"), imgapi_image_action),
    ("DELETE", route("/images/:uuid"), imgapi_delete_image),
    ("PUT", route("/images/:uuid/file"), "upload"),
    ("GET", route("/images/:uuid/file"), imgapi_get_file),
]
