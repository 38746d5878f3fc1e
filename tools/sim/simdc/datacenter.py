"""What a fresh datacenter holds once its hosts are up: servers in CNAPI,
networks in NAPI, images in IMGAPI, the sdc application and its nat service in
SAPI. Written to $SIMDC_DIR/dc.json for provision and the tests."""
import json
import os
import subprocess
import time
import urllib.request
import uuid as uuidlib

from . import common
from .common import path, HEADNODE, CNS

ADMIN_UUID = "930896af-bf8c-48d4-885c-6573a94b1853"   # Triton's admin user

# name, version, os, type, brands: one stream each, built once per datacenter.
IMAGES = {
    "base-64-lts": ("4e3b8c1a-0b9f-4f5e-9c41-1d2f0a7b6e01", "24.4.1", "smartos", "zone-dataset"),
    "minimal-64-lts": ("5a1c7d2e-3f4b-4a6c-8d9e-2b3c4d5e6f02", "24.4.1", "smartos", "zone-dataset"),
    "ubuntu-24.04": ("6b2d8e3f-4a5c-4b7d-9e0f-3c4d5e6f7003", "20250101", "linux", "lx-dataset"),
    "ubuntu-certified-24.04": ("7c3e9f4a-5b6d-4c8e-8f1a-4d5e6f708104", "20250101", "linux", "zvol"),
}
IMAGE_FOR_BRAND = {"joyent": "base-64-lts", "joyent-minimal": "minimal-64-lts",
                   "lx": "ubuntu-24.04", "kvm": "ubuntu-certified-24.04",
                   "bhyve": "ubuntu-certified-24.04"}


def load():
    with open(path("dc.json")) as f:
        return json.load(f)


def _run(host, argv, input=None):
    from .control import run_on
    return run_on(host, argv, input=input).stdout


def _check(status, body, what):
    if status >= 300:
        raise RuntimeError("simdc: %s failed: %s %s" % (what, status, body))
    return body


def register_server(name, h):
    """The host's sysinfo into CNAPI (ServerSysinfo), as a CN's boot or
    `sysinfo -u` sends it."""
    if name == HEADNODE:
        env = dict(os.environ, SIMDC_HOST=HEADNODE, SIMDC_DIR=common.sim_dir())
        out = subprocess.run([os.path.join(common.SIM_ROOT, "cn", "sysinfo")], env=env,
                             stdout=subprocess.PIPE, check=True, text=True).stdout
        sysinfo = json.loads(out)
        sysinfo.setdefault("Boot Parameters", {})["headnode"] = "true"
    else:
        sysinfo = json.loads(_run(name, ["sysinfo"]))
    _check(*common.api("cnapi", "POST", "/servers/%s/sysinfo" % h["uuid"],
                       {"sysinfo": sysinfo}), "CNAPI sysinfo of " + name)


def _register_servers(hosts):
    for name, h in hosts.items():
        register_server(name, h)


def _networks(owner):
    net = common.NET
    nets = {}
    for tag in ("admin", "external", "sdc_overlay", "sdc_underlay"):
        common.api("napi", "POST", "/nic_tags", {"name": tag})
    specs = {
        "admin": dict(name="admin", subnet="127.0.%d.0/24" % net, nic_tag="admin",
                      vlan_id=0, provision_start_ip="127.0.%d.100" % net,
                      provision_end_ip="127.0.%d.250" % net, owner_uuids=[ADMIN_UUID]),
        "external": dict(name="external", subnet="127.16.%d.0/24" % net, nic_tag="external",
                         vlan_id=0, gateway="127.16.%d.1" % net,
                         provision_start_ip="127.16.%d.10" % net,
                         provision_end_ip="127.16.%d.250" % net,
                         resolvers=["127.0.%d.1" % net]),
        "fabric": dict(name="My-Fabric-Network", subnet="127.17.%d.0/24" % net,
                       nic_tag="sdc_overlay", vlan_id=2, fabric=True, vnet_id=7000 + net,
                       mtu=1400, gateway="127.17.%d.1" % net, gateway_provisioned=False,
                       internet_nat=True, owner_uuids=[owner],
                       provision_start_ip="127.17.%d.2" % net,
                       provision_end_ip="127.17.%d.250" % net,
                       resolvers=["127.0.%d.1" % net]),
    }
    for key, spec in specs.items():
        body = _check(*common.api("napi", "POST", "/networks", spec), "NAPI network " + key)
        nets[key] = body["uuid"]
    return nets


def _build_images(builder):
    """Each image is one zfs stream in IMGAPI, so @final has one GUID everywhere."""
    zfs = path("realbin", "zfs")
    images = {}
    for name, (uuid, version, os_, type_) in IMAGES.items():
        ds = "zones/" + uuid
        _run(builder, [zfs, "create", ds])
        _run(builder, ["sh", "-c",
                       "mkdir -p /zones/%s/root/etc && echo '%s %s' > /zones/%s/root/etc/release"
                       " && head -c 262144 /dev/urandom > /zones/%s/root/image-data"
                       % (uuid, name, version, uuid, uuid)])
        _run(builder, [zfs, "snapshot", ds + "@final"])
        stream = path("imgapi", uuid + ".build")
        _run(builder, ["sh", "-c", "%s send %s@final > %s" % (zfs, ds, stream)])
        # unmounted first: zfs-fuse calls a just-written mounted dataset busy
        _run(builder, [zfs, "umount", ds])
        _run(builder, [zfs, "destroy", "-r", ds])
        manifest = {"v": 2, "uuid": uuid, "owner": ADMIN_UUID, "name": name,
                    "version": version, "state": "unactivated", "disabled": False,
                    "public": True, "os": os_, "type": type_,
                    "description": "simulated %s image" % name,
                    "requirements": {"brand": "bhyve"} if type_ == "zvol" else {}}
        if type_ == "zvol":
            manifest["image_size"] = 10240
        _check(*common.api("imgapi", "POST", "/images", manifest), "IMGAPI image " + name)
        with open(stream, "rb") as f:
            data = f.read()
        os.unlink(stream)
        req = urllib.request.Request(common.api_url("imgapi", "/images/%s/file" % uuid),
                                     data=data, method="PUT",
                                     headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(req, timeout=30) as r:
            if r.status >= 300:
                raise RuntimeError("simdc: IMGAPI file upload failed: %s" % r.status)
        images[name] = uuid
    return images


def _sapi(images, networks):
    _, app = common.api("sapi", "POST", "/applications",
                        {"name": "sdc", "owner_uuid": ADMIN_UUID,
                         "params": {"datacenter_name": common.DATACENTER}})
    _, svc = common.api("sapi", "POST", "/services",
                        {"name": "nat", "application_uuid": app["uuid"],
                         "params": {"image_uuid": images["base-64-lts"], "brand": "joyent-minimal",
                                    "ram": 128, "tags": {"smartdc_role": "nat",
                                                         "smartdc_type": "core"}}})
    return {"application": app["uuid"], "nat_service": svc["uuid"]}


def _adminui(hosts, networks, images):
    """AdminUI, a core zone of its own on the head node (sdc-headnode's zones:
    adminui0, tags smartdc_role=adminui, smartdc_type=core) with a NIC on the
    admin network: the address an operator opens. The head node runs no
    zones here (no pool), so VMAPI has its record as the head node's vm-agent
    would report it, and nothing reports it away."""
    from . import workflow, zones
    vm_uuid = str(uuidlib.uuid4())
    nic = workflow.nic(networks["admin"], vm_uuid, ADMIN_UUID, True)
    hn = hosts[HEADNODE]["uuid"]
    vm = {"uuid": vm_uuid, "zonename": vm_uuid, "alias": "adminui0", "brand": "joyent-minimal",
          "state": "running", "zone_state": "running", "owner_uuid": ADMIN_UUID,
          "image_uuid": images["minimal-64-lts"], "ram": 1024, "max_physical_memory": 1024,
          "quota": 25, "autoboot": True, "server_uuid": hn,
          "tags": {"smartdc_role": "adminui", "smartdc_type": "core"}, "nics": [nic],
          "create_timestamp": zones.iso(time.time())}
    _check(*common.api("vmapi", "PUT", "/vms?server_uuid=" + hn, {"vms": {vm_uuid: vm}}),
           "VMAPI adminui0")
    return {"uuid": vm_uuid, "ip": nic["ip"]}


def populate(hosts):
    owner = str(uuidlib.uuid4())
    _register_servers(hosts)
    networks = _networks(owner)
    images = _build_images("source-server")
    sapi = _sapi(images, networks)
    adminui = _adminui(hosts, networks, images)
    dc = {"datacenter": common.DATACENTER, "owner_uuid": owner, "admin_uuid": ADMIN_UUID,
          "networks": networks, "images": images, "sapi": sapi, "adminui": adminui}
    with open(path("dc.json"), "w") as f:
        json.dump(dc, f, indent=2)
    return dc
