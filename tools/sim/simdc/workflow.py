"""What Triton's provision and destroy workflows do on a compute node, shared
by `simdc provision` and the simulated VMAPI's CreateVm/DeleteVm jobs.

In Triton a VMAPI job asks NAPI for the NICs and CNAPI's cn-agent runs
`imgadm import` and `vmadm create` on the chosen CN; VMAPI learns of the new
VM from the CN's vm-agent. Here the CN commands run inside the CN's
namespaces (as cn-agent would run them there), so they show up in
`simdc log` under the CN's name.
"""
import json
import time
import uuid as uuidlib

from . import common
from .control import holder_pid, run_on


class WorkflowError(Exception):
    pass


def host_up(host):
    return host in common.CNS and holder_pid(host) is not None


def nic(network_uuid, vm_uuid, owner, primary, ip=None, interface=None,
        allow_ip_spoofing=False):
    """A NIC from NAPI, as the vmadm payload's nics[] entry wants it."""
    body = {"network_uuid": network_uuid, "belongs_to_uuid": vm_uuid,
            "belongs_to_type": "zone", "owner_uuid": owner, "primary": primary}
    if ip:
        body["ip"] = ip
    if allow_ip_spoofing:
        body["allow_ip_spoofing"] = True
    status, n = common.api("napi", "POST", "/nics", body)
    if status >= 300:
        raise WorkflowError("NAPI refused a NIC on %s: %s" % (network_uuid, n))
    status, net = common.api("napi", "GET", "/networks/" + network_uuid)
    out = {"interface": interface or "net%d" % (0 if primary else 1), "mac": n["mac"],
           "ip": n["ip"], "netmask": n.get("netmask") or net.get("netmask"),
           "gateway": n.get("gateway") or net.get("gateway"),
           "nic_tag": n.get("nic_tag") or net.get("nic_tag"),
           "vlan_id": n.get("vlan_id", net.get("vlan_id", 0)),
           "network_uuid": network_uuid, "primary": primary, "mtu": net.get("mtu", 1500)}
    if allow_ip_spoofing:
        out["allow_ip_spoofing"] = True
    return out


def nics_for(networks, vm_uuid, owner):
    """NAPI NICs for VMAPI's `networks` parameter ([{uuid, ip?, primary?, ...}])."""
    if not any(n.get("primary") for n in networks):
        networks = [dict(networks[0], primary=True)] + list(networks[1:])
    made = []
    try:
        for i, n in enumerate(networks):
            made.append(nic(n["uuid"], vm_uuid, owner, bool(n.get("primary")), n.get("ip"),
                            interface="net%d" % i,
                            allow_ip_spoofing=bool(n.get("allow_ip_spoofing"))))
    except WorkflowError:
        delete_nics(made)
        raise
    return made


def delete_nics(nics):
    for n in nics:
        common.api("napi", "DELETE", "/nics/" + n["mac"].replace(":", ""))


def payload(vm_uuid, brand, alias, owner, image, nics, ram=256, tags=None,
            customer_metadata=None, internal_metadata=None, quota=10):
    """The `vmadm create` payload Triton's provisioner builds, in the simulator's subset."""
    return {"uuid": vm_uuid, "brand": brand, "alias": alias, "owner_uuid": owner,
            "image_uuid": image, "ram": ram, "max_physical_memory": ram, "cpu_cap": 100,
            "quota": quota, "nics": nics, "tags": tags or {},
            "customer_metadata": customer_metadata or {},
            "internal_metadata": internal_metadata or {}, "autoboot": False,
            "billing_id": str(uuidlib.uuid4()),
            "create_timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())}


def create_on_cn(host, vm_payload, image):
    """cn-agent's machine_create: import the image, `vmadm create`."""
    run_on(host, ["imgadm", "import", "-q", image])
    p = run_on(host, ["vmadm", "create"], input=json.dumps(vm_payload), check=False)
    if p.returncode != 0:
        raise WorkflowError("vmadm create failed on %s: %s" % (host, p.stderr.strip()))


def boot_and_report(host, vm_uuid, running):
    """Boot it if it should run, then let vm-agent tell VMAPI."""
    if running:
        run_on(host, ["vmadm", "update", vm_uuid, "autoboot=true"])
        run_on(host, ["vmadm", "start", vm_uuid])
    run_on(host, ["svcadm", "restart", "vm-agent"])


def destroy_on_cn(host, vm_uuid):
    """cn-agent's machine_destroy, then vm-agent's report (which frees the NICs)."""
    p = run_on(host, ["vmadm", "delete", vm_uuid], check=False)
    if p.returncode != 0 and "not found" not in p.stderr:
        raise WorkflowError("vmadm delete failed on %s: %s" % (host, p.stderr.strip()))
    run_on(host, ["svcadm", "restart", "vm-agent"])
