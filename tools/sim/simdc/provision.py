"""simdc provision: create an instance the way Triton would.

NAPI provisions the NICs, the CN imports the image and runs `vmadm create`,
and VMAPI learns of the instance from the CN's vm-agent, as in Triton.
"""
import shlex
import sys
import time
import uuid as uuidlib

from . import common, datacenter, workflow
from .control import run_on, traits_arg


def _nic(network_uuid, vm_uuid, owner, primary, ip=None):
    try:
        return workflow.nic(network_uuid, vm_uuid, owner, primary, ip)
    except workflow.WorkflowError as e:
        sys.exit("simdc provision: %s" % e)


def package(payload, traits):
    """The PAPI package the instance is provisioned with (its billing_id), with
    these traits if any: what sdc-designation hard-filter-traits.js reads."""
    pkg = {"name": "sim-%dM" % payload["max_physical_memory"], "version": "1.0.0",
           "active": True, "max_physical_memory": payload["max_physical_memory"],
           "quota": payload["quota"] * 1024, "max_swap": 2 * payload["max_physical_memory"],
           "max_lwps": 4000, "zfs_io_priority": 100, "cpu_cap": payload["cpu_cap"]}
    if payload.get("vcpus"):
        pkg["vcpus"] = payload["vcpus"]
    if traits:
        pkg["traits"] = traits
    status, body = common.api("papi", "POST", "/packages", pkg)
    if status != 201:
        sys.exit("simdc provision: PAPI: %s %s" % (status, body))
    return body["uuid"]


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
        # whose fabric it serves, as VMAPI's provisionFabricNats passes it
        internal["com.joyent:ipnat_owner"] = dc["owner_uuid"]
    elif args.core:
        alias = alias or "imgapi0"
        tags.update(smartdc_role="imgapi", smartdc_type="core")
    if args.encrypted:
        # what VMAPI's CreateVm makes of `encrypted: true` (sdc-vmapi
        # lib/endpoints/vms.js): internal_metadata.encrypted, which
        # sdc-designation hard-filter-zpool-encryption.js places by
        internal["encrypted"] = True
    traits = traits_arg("provision", args.traits)
    for kv in args.tag or []:
        key, sep, value = kv.partition("=")
        if not sep or not key:
            sys.exit("simdc provision: --tag takes KEY=VALUE, not %r" % kv)
        tags[key] = value
    alias = alias if alias is not None else "%s-%s" % (brand, vm_uuid[:8])
    image = dc["images"][datacenter.IMAGE_FOR_BRAND[brand]]

    # NICs first, as Triton's provision workflow does.
    nics = []
    if args.nat:
        _, fabric = common.api("napi", "GET", "/networks/" + nets["fabric"])
        try:
            nics = workflow.nics_for([{"uuid": nets["external"], "primary": True,
                                       "allow_ip_spoofing": True},
                                      {"uuid": nets["fabric"], "ip": fabric["gateway"],
                                       "allow_ip_spoofing": True}], vm_uuid, owner)
        except workflow.WorkflowError as e:
            sys.exit("simdc provision: %s" % e)
    elif args.fabric:
        nics.append(_nic(nets["fabric"], vm_uuid, owner, True))
    else:
        nics.append(_nic(nets["external"], vm_uuid, owner, True))

    host = args.server
    payload = workflow.payload(vm_uuid, brand, alias, owner, image, nics, tags=tags,
                               customer_metadata={"simdc:note": "provisioned by simdc"},
                               internal_metadata=internal)
    if brand in ("kvm", "bhyve"):
        n = args.disks or 2
        del payload["image_uuid"]
        payload["disks"] = [{"image_uuid": image, "boot": True, "size": 10240, "model": "virtio"}]
        payload["disks"] += [{"size": 1024, "model": "virtio"} for _ in range(n - 1)]
        payload["ram"] = payload["max_physical_memory"] = 1024
    if args.ram:
        payload["ram"] = payload["max_physical_memory"] = args.ram
    if args.vcpus:      # (vmadm gives kvm and bhyve 1 by default, as VM.js does)
        if brand not in ("kvm", "bhyve"):
            sys.exit("simdc provision: --vcpus is for kvm and bhyve")
        payload["vcpus"] = args.vcpus
    payload["billing_id"] = package(payload, traits)
    if args.docker:
        payload["docker"] = True
    if args.delegate:
        payload["delegate_dataset"] = True
    if args.qemu_extra_opts is not None:
        if brand != "kvm":
            # proptable.js allows qemu_extra_opts on kvm only; VM.js would drop it
            sys.exit("simdc provision: --qemu-extra-opts is a kvm property (VM.js drops it "
                     "from a %s payload)" % brand)
        payload["qemu_extra_opts"] = args.qemu_extra_opts
    try:
        workflow.create_on_cn(host, payload, image)
    except workflow.WorkflowError as e:
        sys.exit("simdc provision: %s" % e)
    datadirs = run_on(host, ["simdc-datadir", "--all", vm_uuid]).stdout.split()
    if args.size:
        # SIZE MB where the workload writes, a quarter of it (1 MB at least) on
        # every other disk and the delegated dataset: a migration that forgot
        # one would lose data a test can see. A snapshot makes zfs-fuse commit
        # its transaction group, so that `used` counts the data now, as it
        # would on illumos a few seconds later.
        sizes = [args.size * 1048576] + [max(1, args.size // 4) * 1048576] * (len(datadirs) - 1)
        writes = " && ".join("head -c %d /dev/urandom > %s/simdc-data" % (n, shlex.quote(d))
                             for n, d in zip(sizes, datadirs))
        # (a transaction group is the whole pool's: one snapshot commits it all)
        run_on(host, ["sh", "-c", writes + " && zfs snapshot zones/%s@simdc-settle && "
                      "zfs destroy zones/%s@simdc-settle" % (vm_uuid, vm_uuid)])
    workflow.boot_and_report(host, vm_uuid, args.state == "running")
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
        # exists: the zone is there already; SAPI adopts it (as sdcadm does)
        # instead of deploying another one.
        common.api("sapi", "POST", "/instances",
                   {"uuid": vm_uuid, "service_uuid": dc["sapi"]["nat_service"], "exists": True,
                    "params": {"alias": alias, "server_uuid": common.load_hosts()[host]["uuid"]},
                    "metadata": {"com.joyent:ipnat_subnet": "127.17.%d.0/24" % common.NET}})
    print(vm_uuid)
    return 0
