"""sysinfo(8) of a simulated SmartOS host.

  sysinfo        the host as a JSON object (shaped like a real CN's, see
                 /work/shared/triton-samples/sysinfo-cn.json)
  sysinfo -p     the same as parsable KEY='value' lines (what
                 /tmp/.sysinfo.parsable holds on SmartOS)
  sysinfo -f|-u  accepted (there is no cache to refresh)

Identity comes from $SIMDC_DIR/hosts.json (uuid, admin_ip, ram_mb,
headnode), the platform from common.host_platform, the agents from their
package.json files (agents.py), the pool size from the host's own zpool.
"""
import hashlib
import json
import os
import sys

from .. import agents, common, zfslib


def mac_for(uuid, n):
    h = hashlib.sha1(("%s-%d" % (uuid, n)).encode()).digest()
    return "00:10:fe:%02x:%02x:%02x" % (h[0], h[1], h[2])


def cpu_type():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "Intel(R) Xeon(R) CPU"


def boot_time(host):
    """When this host's namespace came up (its holder pid file), else the machine's."""
    for p in (common.path("pids", "ns-%s.pid" % host), common.host_dir(host, "run")):
        try:
            return int(os.stat(p).st_mtime)
        except OSError:
            pass
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("btime"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def zpool_facts():
    r = zfslib.zfs("get", "-Hp", "-o", "property,value", "used,available,creation",
                   zfslib.POOL)
    vals = dict(line.split("\t", 1) for line in r.stdout.splitlines() if "\t" in line)
    try:
        size = int(vals["used"]) + int(vals["available"])
        return size, int(vals["creation"])
    except (KeyError, ValueError):
        return None, None


# What smartos-live src/sysinfo get_bhyve_capability() reports where
# bhhwcompat passes: bhyve capable, its max vcpus (`bhhwcompat -c`, illumos
# bhyve's VM_MAXCPU), and HVM API (kvm and bhyve side by side). `simdc
# capability HOST ...` takes them away (hosts.json "capabilities").
HVM_DEFAULTS = {"Bhyve Capable": True, "Bhyve Max Vcpus": 32, "HVM API": True}


def hvm_facts(h):
    """The HVM fields of a CN's sysinfo. A platform from before HVM API (bhyve
    without it) is one whose "HVM API" is set false alone."""
    facts = dict(HVM_DEFAULTS)
    given = h.get("capabilities") or {}
    if given.get("Bhyve Capable") is False:
        # the script's values where bhhwcompat fails: no bhyve, no HVM API
        facts.update({"Bhyve Max Vcpus": 0, "HVM API": False})
    facts.update(given)
    return facts


def sysinfo(host):
    hosts = common.load_hosts()
    h = hosts.get(host, {})
    uuid = h.get("uuid") or "00000000-0000-0000-0000-000000000000"
    admin_ip = h.get("admin_ip") or common.ADMIN_IPS.get(host, "")
    headnode = bool(h.get("headnode", host == common.HEADNODE))
    ram = h.get("ram_mb") or 32768
    admin_mac = mac_for(uuid, 0)
    external_mac = mac_for(uuid, 1)
    size, created = (zpool_facts() if not headnode and os.path.exists(zfslib.real_zfs())
                     else (None, None))
    info = {
        "Live Image": common.host_platform(host),
        "System Type": "SunOS",
        "Boot Time": str(boot_time(host)),
        "Datacenter Name": common.DATACENTER,
        "SDC Version": common.SDC_VERSION,
        "Manufacturer": "Joyent",
        "Product": "SimDC Compute Node",
        "Serial Number": "SIM-" + uuid[:8].upper(),
        "SKU Number": "",
        "HW Version": "",
        "HW Family": "",
        "Setup": "true",
        "VM Capable": True,
        "CPU Type": cpu_type(),
        "CPU Virtualization": "vmx",
        "CPU Physical Cores": 1,
        "Admin NIC Tag": "admin",
        "Admin IP": admin_ip,
        "UUID": uuid,
        "Hostname": host,
        "CPU Total Cores": os.cpu_count() or 1,
        "CPU Online Count": os.cpu_count() or 1,
        "MiB of Memory": str(ram),
        "Zpool": zfslib.POOL,
        "Zpool Disks": "c1t0d0",
        "Zpool Profile": "striped",
    }
    if not headnode:
        info.update(hvm_facts(h))
    if created is not None:
        # smartos-live src/sysinfo: anything but encryption=off is true
        info["Zpool Encrypted"] = zfslib.pool_encryption(host) != "off"
        info["Zpool Creation"] = created
        info["Zpool Size in GiB"] = size // (1 << 30)
        info["Disks"] = {"c1t0d0": {"Size in GB": max(1, size // 1000 ** 3)}}
    boot = {
        "hostname": host,
        "rabbitmq": "guest:guest:%s:5672" % common.ADMIN_IPS.get(common.HEADNODE, ""),
        "rabbitmq_dns": "guest:guest:rabbitmq.%s.sim:5672" % common.DATACENTER,
        "admin_nic": admin_mac,
        "external_nic": external_mac,
        "console": "ttyb",
        "boot_args": "",
        "bootargs": "",
    }
    if headnode:
        boot["headnode"] = "true"
    info["Boot Parameters"] = boot
    # every agent's package.json name and version (smartos-live src/sysinfo);
    # no key where the host has no agents
    sdc_agents = agents.sdc_agents(host)
    if sdc_agents is not None:
        info["SDC Agents"] = sdc_agents
    info["Network Interfaces"] = {
        "e1000g0": {"MAC Address": admin_mac, "ip4addr": admin_ip,
                    "Link Status": "up", "NIC Names": ["admin"]},
        "e1000g1": {"MAC Address": external_mac, "ip4addr": "",
                    "Link Status": "up", "NIC Names": ["external"]},
    }
    # A CN that carries fabric networks has the underlay vnic `sdcadm post-setup
    # underlay-nics` gives it: fabric (sdc_overlay) NICs can only live there.
    info["Virtual Network Interfaces"] = {} if headnode else {
        "sdc_underlay0": {"MAC Address": mac_for(uuid, 2), "ip4addr": "",
                          "Link Status": "up", "Host Interface": "e1000g1",
                          "NIC Names": ["sdc_underlay"]}}
    info["Link Aggregations"] = {}
    # `simdc nictag HOST remove TAG`: a CN not cabled for that tag
    gone = set(h.get("nic_tags_removed") or [])
    for key in ("Network Interfaces", "Virtual Network Interfaces"):
        for nic in info[key].values():
            nic["NIC Names"] = [n for n in nic["NIC Names"] if n not in gone]
    return info


def quote(v):
    if isinstance(v, bool):
        v = "true" if v else "false"
    return "'%s'" % str(v).replace("'", "'\\''")


# smartos-live src/sysinfo's -p output prints these bare, and has no
# Zpool_Encrypted line (the JSON alone carries it).
UNQUOTED = {"Bhyve Max Vcpus", "CPU Online Count"}
NOT_PARSABLE = {"Zpool Encrypted"}


def parsable(info):
    """KEY='value' lines; spaces in keys become underscores, as sysinfo -p."""
    out = []
    for k, v in info.items():
        key = k.replace(" ", "_")
        if k == "Boot Parameters":
            for bk, bv in v.items():
                out.append("Boot_Parameter_%s=%s" % (bk, quote(bv)))
        elif k == "Network Interfaces":
            for nic, d in v.items():
                out.append("Network_Interface_%s_MAC_Address=%s" % (nic, quote(d["MAC Address"])))
                out.append("Network_Interface_%s_IPv4_Address=%s" % (nic, quote(d["ip4addr"])))
                out.append("Network_Interface_%s_Link_Status=%s" % (nic, quote(d["Link Status"])))
                out.append("Network_Interface_%s_NIC_Names=%s" % (nic, quote(",".join(d["NIC Names"]))))
        elif k == "Disks":
            for disk, d in v.items():
                out.append("Disk_%s_size_in_GB=%s" % (disk, quote(d["Size in GB"])))
        elif k == "SDC Agents":
            out.append("SDC_Agents=%s" % quote(",".join(
                "%s:%s" % (a["name"], a["version"]) for a in v)))
        elif isinstance(v, (dict, list)) or k in NOT_PARSABLE:
            continue
        elif k in UNQUOTED:
            out.append("%s=%s" % (key, v))
        else:
            out.append("%s=%s" % (key, quote(v)))
    return "\n".join(out) + "\n"


def main(argv):
    opts = [a for a in argv if a.startswith("-")]
    for o in opts:
        if o not in ("-p", "-f", "-u", "-?", "-h"):
            sys.stderr.write("Usage: sysinfo [-f] [-p] [-u]\n")
            return 1
    if "-h" in opts or "-?" in opts:
        print("Usage: sysinfo [-f] [-p] [-u]")
        return 0
    info = sysinfo(common.this_host())
    if "-u" in opts and "-p" not in opts and "-f" not in opts:
        return 0
    if "-p" in opts:
        sys.stdout.write(parsable(info))
    else:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
    return 0

