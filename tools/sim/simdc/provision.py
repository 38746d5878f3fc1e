"""simdc provision: create an instance the way Triton would.

NAPI provisions the NICs, the CN imports the image and runs `vmadm create`,
and VMAPI learns of the instance from the CN's vm-agent, as in Triton.
"""
import json
import sys
import time
import uuid as uuidlib

from . import common, datacenter
from .control import run_on


def _nic(network_uuid, vm_uuid, owner, primary, ip=None):
    body = {"network_uuid": network_uuid, "belongs_to_uuid": vm_uuid,
            "belongs_to_type": "zone", "owner_uuid": owner, "primary": primary}
    if ip:
        body["ip"] = ip
    status, nic = common.api("napi", "POST", "/nics", body)
    if status >= 300:
        sys.exit("simdc provision: NAPI refused a NIC: %s" % nic)
    status, net = common.api("napi", "GET", "/networks/" + network_uuid)
    return {"interface": "net%d" % (0 if primary else 1), "mac": nic["mac"], "ip": nic["ip"],
            "netmask": nic.get("netmask") or net.get("netmask"),
            "gateway": nic.get("gateway") or net.get("gateway"),
            "nic_tag": nic.get("nic_tag") or net.get("nic_tag"),
            "vlan_id": nic.get("vlan_id", net.get("vlan_id", 0)),
            "network_uuid": network_uuid, "primary": primary,
            "mtu": net.get("mtu", 1500)}


def main(args):
    dc = datacenter.load()
    if args.server not in common.CNS:
        sys.exit("simdc provision: --server must be one of %s" % ", ".join(common.CNS))
    vm_uuid = str(uuidlib.uuid4())
    brand = args.brand
    owner = dc["owner_uuid"]
    tags, internal = {}, {}
    alias = args.alias
    nets = dc["networks"]
    if args.nat or args.core:
        owner = dc["admin_uuid"]
        if brand == "joyent":
            brand = "joyent-minimal"
    if args.docker:
        if brand != "lx":
            brand = "lx"
        tags["sdc_docker"] = True
        internal["docker:id"] = vm_uuid.replace("-", "") * 2
        internal["docker:cmd"] = '["/bin/sh"]'
    if args.nat:
        alias = alias or "nat-" + nets["fabric"]
        tags.update(smartdc_role="nat", smartdc_type="core")
    elif args.core:
        alias = alias or "imgapi0"
        tags.update(smartdc_role="imgapi", smartdc_type="core")
    alias = alias if alias is not None else "%s-%s" % (brand, vm_uuid[:8])
    image = dc["images"][datacenter.IMAGE_FOR_BRAND[brand]]

    # NICs first, as Triton's provision workflow does.
    nics = []
    if args.nat:
        _, fabric = common.api("napi", "GET", "/networks/" + nets["fabric"])
        nics.append(_nic(nets["external"], vm_uuid, owner, True))
        nics.append(_nic(nets["fabric"], vm_uuid, owner, False, ip=fabric["gateway"]))
    elif args.fabric:
        nics.append(_nic(nets["fabric"], vm_uuid, owner, True))
    else:
        nics.append(_nic(nets["external"], vm_uuid, owner, True))

    host = args.server
    run_on(host, ["imgadm", "import", "-q", image])
    payload = {"uuid": vm_uuid, "brand": brand, "alias": alias, "owner_uuid": owner,
               "ram": 256, "max_physical_memory": 256, "cpu_cap": 100,
               "quota": 10, "nics": nics, "tags": tags,
               "customer_metadata": {"simdc:note": "provisioned by simdc"},
               "internal_metadata": internal, "autoboot": False,
               "billing_id": str(uuidlib.uuid4()),
               "create_timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())}
    if brand in ("kvm", "bhyve"):
        n = args.disks or 2
        payload["disks"] = [{"image_uuid": image, "boot": True, "size": 10240, "model": "virtio"}]
        payload["disks"] += [{"size": 1024, "model": "virtio"} for _ in range(n - 1)]
        payload["ram"] = payload["max_physical_memory"] = 1024
    else:
        payload["image_uuid"] = image
    if args.docker:
        payload["docker"] = True
    if args.delegate:
        payload["delegate_dataset"] = True
    p = run_on(host, ["vmadm", "create"], input=json.dumps(payload), check=False)
    if p.returncode != 0:
        sys.exit("simdc provision: vmadm create failed on %s: %s" % (host, p.stderr.strip()))
    datadir = run_on(host, ["simdc-datadir", vm_uuid]).stdout.strip()
    if args.size:
        run_on(host, ["sh", "-c", "head -c %d /dev/urandom > %s/simdc-data"
                      % (args.size * 1048576, datadir)])
    if args.state == "running":
        run_on(host, ["vmadm", "update", vm_uuid, "autoboot=true"])
        run_on(host, ["vmadm", "start", vm_uuid])
    run_on(host, ["svcadm", "restart", "vm-agent"])
    want = "running" if args.state == "running" else "stopped"
    deadline = time.time() + 30
    while True:
        status, vm = common.api("vmapi", "GET", "/vms/" + vm_uuid)
        if status == 200 and vm.get("state") == want:
            break
        if time.time() > deadline:
            sys.exit("simdc provision: VMAPI does not show %s %s (%s)" % (vm_uuid, want, vm))
        time.sleep(0.2)
    if args.nat:
        common.api("napi", "PUT", "/networks/" + nets["fabric"], {"gateway_provisioned": True})
        common.api("sapi", "POST", "/instances",
                   {"uuid": vm_uuid, "service_uuid": dc["sapi"]["nat_service"],
                    "params": {"alias": alias, "server_uuid": common.load_hosts()[host]["uuid"]},
                    "metadata": {"com.joyent:ipnat_subnet": "127.17.%d.0/24" % common.NET}})
    print(vm_uuid)
    return 0
