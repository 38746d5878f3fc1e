"""vmadm(8) of a simulated SmartOS compute node.

  vmadm get UUID
  vmadm list [-p] [-H] [-o field,...] [-s field,...] [field=value ...]
  vmadm lookup [-j|-1] [-o field,...] [field=value ...]
  vmadm start|boot UUID     vmadm stop|halt UUID [-F]     vmadm reboot UUID [-F]
  vmadm update UUID [-f FILE] | UUID property=value [property=value ...]
  vmadm create [-f FILE]    (JSON payload on stdin without -f)
  vmadm delete|destroy UUID

As smartos-live src/vm/sbin/vmadm.js: results on stdout, the
"Successfully ..." messages and errors on stderr; 1 on error, 2 on bad usage.
Every dataset operation goes through the CN's zfs (the shim).
"""
import base64
import functools
import json
import os
import random
import re
import sys
import time
import uuid as uuidlib

from .. import nopt, zones
from ..zones import GiB, MiB


class VmadmError(Exception):
    pass


class Usage(Exception):
    pass


USAGE = """Usage: /usr/vm/sbin/vmadm <command> [options]

create [-f <filename>]
create-snapshot <uuid> <snapname>
console <uuid>
delete <uuid>
delete-snapshot <uuid> <snapname>
get <uuid>
info <uuid> [type,...]
install <uuid>
list [-p] [-H] [-o field,...] [-s field,...] [field=value ...]
lookup [-j|-1] [-o field,...] [field=value ...]
reboot <uuid> [-F]
receive [-f <filename>]
reprovision [-f <filename>]
rollback-snapshot <uuid> <snapname>
send <uuid> [target]
start <uuid> [option=value ...]
stop <uuid> [-F]
sysrq <uuid> <nmi|screenshot>
update <uuid> [-f <filename>]
 -or- update <uuid> property=value [property=value ...]
validate create [-f <filename>]
validate update <brand> [-f <filename>]

For more detailed information on the use of this command,type 'man vmadm'.
"""

# ---- list / lookup (vmadm.js LIST_FIELDS, outputVMListLine, sortVM) -------------

LIST_FIELDS = {
    "alias": ("ALIAS", 10), "autoboot": ("AUTOBOOT", 8), "billing_id": ("BILLING_ID", 36),
    "boot_timestamp": ("BOOT_TIMESTAMP", 24), "brand": ("BRAND", 14),
    "cpu_cap": ("CPU_CAP", 7), "cpu_shares": ("CPU_SHARE", 9), "cpu_type": ("CPU_TYPE", 8),
    "create_timestamp": ("CREATE_TIMESTAMP", 24), "dns_domain": ("DOMAIN", 32),
    "do_not_inventory": ("DNI", 5), "docker": ("DOCKER", 6),
    "firewall_enabled": ("FIREWALL_ENABLED", 16), "hostname": ("HOSTNAME", 32),
    "image_uuid": ("IMAGE_UUID", 36), "indestructible_delegated": ("INDESTR_DATA", 12),
    "indestructible_zoneroot": ("INDESTR_ROOT", 12), "ram": ("RAM", 7),
    "max_locked_memory": ("MAX_LOCKED", 10), "max_lwps": ("MAX_LWP", 7),
    "max_physical_memory": ("MAX_PHYS", 8), "max_swap": ("MAX_SWAP", 8),
    "owner_uuid": ("OWNER_UUID", 36), "package_name": ("PACKAGE_NAME", 32),
    "package_version": ("PACKAGE_VER", 11), "pid": ("PID", 6),
    "qemu_extra_opts": ("QEMU_EXTRA_OPTS", 15), "quota": ("QUOTA", 5),
    "zone_state": ("ZONE_STATE", 10), "state": ("STATE", 16), "tmpfs": ("TMPFS", 5),
    "type": ("TYPE", 4), "uuid": ("UUID", 36), "vcpus": ("VCPUS", 5),
    "zfs_io_priority": ("IO_PRIORITY", 11), "zpool": ("ZPOOL", 12),
    "zonename": ("ZONENAME", 12), "zonepath": ("ZONEPATH", 40), "zoneid": ("ZONEID", 6),
}
DEFAULT_SORT = "ram,uuid"
DEFAULT_ORDER = "uuid,type,ram,state,alias"
FLATTENABLE_ARRAY_HASH_KEYS = ("disks", "nics", "filesystems", "pci_devices")
FLATTENABLE_HASH_KEYS = ("customer_metadata", "internal_metadata", "tags", "routes")
FLATTENABLE_ARRAYS = ("resolvers", "datasets")
DISK_RE = re.compile(r"^disks\.[*0-9]*\.(boot|image_name|image_size|image_uuid|size|media|"
                     r"model|zpool)$")
NIC_RE = re.compile(r"nics\.[*0-9]*\.(dhcp_server|gateway|interface|ip|mac|model|netmask|"
                    r"nic_tag|vlan_id)$")


def js_str(v):
    """JavaScript's String(v) of a JSON value."""
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, list):
        return ",".join("" if x is None else js_str(x) for x in v)
    if isinstance(v, dict):
        return "[object Object]"
    return str(v)


def truthy(v):
    return v not in (None, False, 0, "") and v == v


def flatten(obj, key):
    t = key.split(".")
    try:
        if len(t) == 3 and t[0] in FLATTENABLE_ARRAY_HASH_KEYS:
            return obj[t[0]][int(t[1])].get(t[2])
        if len(t) == 2 and t[0] in FLATTENABLE_HASH_KEYS:
            return obj[t[0]].get(t[1])
        if len(t) == 2 and t[0] in FLATTENABLE_ARRAYS:
            return obj[t[0]][int(t[1])]
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        return None
    return obj.get(key)


def add_fake_fields(m):
    m["type"] = zones.BRANDS.get(m.get("brand"), {}).get("type", "OS")
    if m.get("brand") != "kvm":
        # when we do not normally have 'ram', set it for consistency
        m["ram"] = m.get("max_physical_memory")


def valid_filter_key(key):
    return (key in LIST_FIELDS or DISK_RE.match(key) or NIC_RE.match(key)
            or re.match(r"^(tags|customer_metadata|internal_metadata)\..*", key))


def list_props(field):
    if field in LIST_FIELDS:
        return LIST_FIELDS[field]
    t = field.split(".")
    if (len(t) == 3 and t[0] in FLATTENABLE_ARRAY_HASH_KEYS) or \
            (len(t) == 2 and t[0] in FLATTENABLE_HASH_KEYS):
        return (field.upper(), 20)
    return None


def matches(vm, search):
    for key, target in search.items():
        regex = None
        if target.startswith("~"):
            regex = re.compile(target[1:], re.I)
        fields = key.split(".")
        keys = [key]
        if len(fields) == 3 and fields[1] == "*" and fields[0] in FLATTENABLE_ARRAY_HASH_KEYS:
            keys = ["%s.%d.%s" % (fields[0], i, fields[2])
                    for i in range(len(vm.get(fields[0]) or []))]
        found = False
        for k in keys:
            value = flatten(vm, k)
            targ = target
            if regex is None and re.match(r"^nics\..*\.mac$", k):
                targ = zones.fix_mac(targ)
            if value is None:
                continue
            if regex is not None and regex.search(js_str(value)):
                found = True
            elif regex is None and js_str(value) == targ:
                found = True
        if not found:
            return False
    return True


def _js_gt(a, b):
    try:
        return a > b
    except TypeError:
        return js_str(a) > js_str(b)


def sort_vms(vms, sort_fields):
    def cmp(a, b):
        for field in sort_fields:
            direction = 1
            if field[:1] in "+-":
                direction = -1 if field[0] == "-" else 1
                field = field[1:]
            av, bv = flatten(a, field), flatten(b, field)
            if (av is not None and bv is not None and _js_gt(av, bv)) or \
                    (not truthy(av) and truthy(bv)) or (av is None and bv is not None):
                return direction
            if (av is not None and bv is not None and _js_gt(bv, av)) or \
                    (truthy(av) and not truthy(bv)) or (av is not None and bv is None):
                return -direction
        return 0
    return sorted(vms, key=functools.cmp_to_key(cmp))


def list_line(order_fields, m, parsable):
    values = []
    for field in order_fields:
        width = list_props(field)[1]
        if m is None:
            value = list_props(field)[0]
        else:
            v = flatten(m, field)
            value = js_str(v) if truthy(v) else ("" if parsable else "-")
        values.append(value if parsable else "%-*s" % (width, value))
    return (":" if parsable else "  ").join(values).rstrip()


def format_list(vms, order, sortby, parsable=False, header=True):
    sort_fields = sortby.split(",")
    for f in sort_fields:
        if not list_props(f[1:] if f[:1] in "+-" else f):
            raise VmadmError("invalid sort field: %s" % f)
    order_fields = order.split(",")
    for f in order_fields:
        if not list_props(f):
            raise VmadmError("invalid order field: %s" % f)
    out = []
    if header:
        out.append(list_line(order_fields, None, parsable))
    for m in sort_vms(vms, sort_fields):
        out.append(list_line(order_fields, m, parsable))
    return "".join(l + "\n" for l in out)


def parse_kv(args):
    """vmadm.js parseKeyEqualsValue(): KEY=VALUE words; a word without '='
    is KEY with an empty value. Its guard `if (kv < 2)` compares the split
    array, as a string, with 2: only a word that reads as a number below 2
    (or an empty word) is refused."""
    out = {}
    for a in args:
        parts = a.split("=")
        if nopt.js_number(",".join(parts)) < 2:
            raise Usage("Bad arguments: unable to split " + a)
        out[parts[0]] = "=".join(parts[1:])
    return out


def all_vms():
    vms = zones.vm_objects()
    for m in vms:
        add_fake_fields(m)
    return vms


# ---- payload helpers ----------------------------------------------------------------

BOOL_PROPS = {"autoboot", "do_not_inventory", "firewall_enabled", "archive_on_delete",
              "maintain_resolvers", "restart_init", "docker", "delegate_dataset",
              "indestructible_zoneroot", "indestructible_delegated"}
INT_PROPS = {"quota", "ram", "max_physical_memory", "max_locked_memory", "max_swap",
             "max_shm_memory", "cpu_shares", "zfs_io_priority", "max_lwps", "max_msg_ids",
             "max_sem_ids", "max_shm_ids", "cpu_cap", "vcpus", "tmpfs", "flexible_disk_size"}
LIST_PROPS = {"resolvers", "internal_metadata_namespaces"}
# (attr, payload key) in the order VM.js buildZonecfgUpdate sets them
SET_ATTRS = (("billing-id", "billing_id"), ("owner-uuid", "owner_uuid"),
             ("package-name", "package_name"), ("package-version", "package_version"),
             ("tmpfs", "tmpfs"), ("hostname", "hostname"), ("dns-domain", "dns_domain"),
             ("default-gateway", "default_gateway"), ("do-not-inventory", "do_not_inventory"),
             ("docker", "docker"), ("archive-on-delete", "archive_on_delete"),
             ("firewall-enabled", "firewall_enabled"), ("restart-init", "restart_init"),
             ("init-name", "init_name"), ("disk-driver", "disk_driver"),
             ("nic-driver", "nic_driver"), ("maintain-resolvers", "maintain_resolvers"),
             ("kernel-version", "kernel_version"), ("zlog-max-size", "zlog_max_size"))
# VM.js keeps these base64 in the zone XML, "since these can contain characters
# zonecfg doesn't like" (smartos-live src/vm/node_modules/VM.js, the zonecfg it
# builds); proptable.js allows each on these brands only, and VM.js drops a
# property a brand does not allow, with a warning.
B64_PROPS = (("vnc-password", "vnc_password", ("kvm", "bhyve")),
             ("spice-password", "spice_password", ("kvm",)),
             ("spice-opts", "spice_opts", ("kvm",)),
             ("qemu-opts", "qemu_opts", ("kvm",)),
             ("qemu-extra-opts", "qemu_extra_opts", ("kvm",)))
RCTL_PROPS = (("cpu_shares", "zone.cpu-shares", 1, "none"),
              ("max_lwps", "zone.max-lwps", 1, "deny"),
              ("max_msg_ids", "zone.max-msg-ids", 1, "deny"),
              ("max_sem_ids", "zone.max-sem-ids", 1, "deny"),
              ("max_shm_ids", "zone.max-shm-ids", 1, "deny"),
              ("max_shm_memory", "zone.max-shm-memory", MiB, "deny"),
              ("zfs_io_priority", "zone.zfs-io-priority", 1, "none"))
MEM_RCTLS = (("max_physical_memory", "zone.max-physical-memory"),
             ("max_locked_memory", "zone.max-locked-memory"),
             ("max_swap", "zone.max-swap"))
MEM_OVERHEAD = {"kvm": 1024, "bhyve": 1280}     # MiB over ram for the VMM process
LIMITPRIV = {"kvm": "default,-file_link_any,-net_access,-proc_fork,-proc_info,-proc_session",
             "bhyve": "default,-file_link_any,-net_access,-proc_fork,-proc_info,-proc_session"}
DEFAULT_QUOTA = 10          # GiB
DEFAULT_BHYVE_QUOTA = 1     # GiB
MINIMUM_MAX_SWAP = 256      # MiB
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


def fix_types(payload):
    for k, v in list(payload.items()):
        if k in BOOL_PROPS and isinstance(v, str):
            payload[k] = v in ("true", "1")
        elif k in INT_PROPS and isinstance(v, str):
            if v == "":
                payload[k] = None
            else:
                try:
                    payload[k] = int(v) if re.match(r"^-?\d+$", v) else float(v)
                except ValueError:
                    raise VmadmError("Invalid value for %s: %s:string" % (k, json.dumps(v)))
        elif k in LIST_PROPS and isinstance(v, str):
            payload[k] = [x for x in v.split(",") if x]
    return payload


def attr_string(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    return str(v)


def generate_mac():
    # VM.js utils.generateMAC(): Joyent's 90:b8:d0 prefix, random rest
    return "90:b8:d0:%02x:%02x:%02x" % tuple(random.randint(0, 255) for _ in range(3))


def netmask_bits(mask):
    try:
        return sum(bin(int(o)).count("1") for o in mask.split("."))
    except ValueError:
        return 32


def bits_netmask(bits):
    n = (0xffffffff << (32 - bits)) & 0xffffffff if bits else 0
    return ".".join(str((n >> s) & 255) for s in (24, 16, 8, 0))


def normalize_nics(nics, brand):
    """VM.js normalizeNics + mod_nic.upgradeNicAdds: mac, interface, ips, gateways."""
    out, used = [], set()
    for n in nics:
        if "interface" in n:
            used.add(n["interface"])
    idx = 0
    primary_seen = any(n.get("primary") in (True, "true", 1, "1") for n in nics)
    for i, n in enumerate(nics):
        n = dict(n)
        n.pop("index", None)
        n["mac"] = zones.fix_mac(n["mac"]) if n.get("mac") else generate_mac()
        if "interface" not in n:
            while "net%d" % idx in used:
                idx += 1
            n["interface"] = "net%d" % idx
            used.add(n["interface"])
        if n.get("primary") in (True, "true", 1, "1"):
            n["primary"] = True
        else:
            n.pop("primary", None)
        if not primary_seen and i == 0:
            n["primary"] = True
        if "ips" not in n and "ip" in n:
            if n["ip"] in ("dhcp", "addrconf"):
                n["ips"] = [n["ip"]]
            else:
                n["ips"] = ["%s/%d" % (n["ip"], netmask_bits(n.get("netmask", "255.255.255.255")))]
        if "gateways" not in n and n.get("gateway"):
            n["gateways"] = [n["gateway"]]
        if brand in zones.HVM_BRANDS and "model" not in n:
            n["model"] = "virtio"
        if "vlan_id" in n:
            n["vlan_id"] = int(n["vlan_id"])
        if "nic_tag" not in n:
            raise VmadmError("invalid or missing .nic_tag option for NIC: " + json.dumps(n))
        out.append(n)
    return out


def nic_element(n):
    e = zones.el("network", physical=n["interface"], mac_addr=n["mac"])
    if n.get("vlan_id"):
        e.set("vlan-id", str(n["vlan_id"]))
    e.set("global-nic", n["nic_tag"])
    gateways = n.get("gateways") or []
    if gateways:
        v4 = [g for g in gateways if re.match(r"^\d+\.\d+\.\d+\.\d+$", g)]
        if v4:
            zones.net_attr(e, "gateway", v4[0])
        zones.net_attr(e, "gateways", ",".join(gateways))
    elif n.get("gateway"):
        zones.net_attr(e, "gateway", n["gateway"])
    ips = n.get("ips") or []
    if ips:
        repr_ = [ip for ip in ips if re.match(r"^\d+\.\d+\.\d+\.\d+/\d+$", ip)]
        if repr_:
            ip, bits = repr_[0].split("/")
            zones.net_attr(e, "netmask", bits_netmask(int(bits)))
            zones.net_attr(e, "ip", ip)
        elif "dhcp" in ips:
            zones.net_attr(e, "ip", "dhcp")
        zones.net_attr(e, "ips", ",".join(ips))
    for k in ("allowed_ips",):
        if n.get(k):
            zones.net_attr(e, k, ",".join(n[k]))
    for k in ("network_uuid", "model", "dhcp_server", "allow_dhcp_spoofing",
              "blocked_outgoing_ports", "allow_ip_spoofing", "allow_mac_spoofing",
              "allow_restricted_traffic", "allow_unfiltered_promisc", "vrrp_vrid",
              "vrrp_primary_ip", "mtu"):
        if k in n:
            v = n[k]
            zones.net_attr(e, k, ",".join(str(x) for x in v) if isinstance(v, list)
                           else attr_string(v))
    if n.get("primary"):
        zones.net_attr(e, "primary", "true")
    return e


def zfs_set(ds, prop, value):
    zones.zfs("set", "%s=%s" % (prop, value), ds)


def set_quota(cfg, quota):
    """vmadm's quota: zfs quota on the zone root; for bhyve setQuotaBhyve.

    smartos-live src/vm/node_modules/VM.js setQuotaBhyve (RFD 148 snapspace):
    the root's refreservation off and its refquota the quota (1 GiB at
    least); every volume below it refreservation=auto; the root's quota and
    reservation the refquota plus those refreservations (or the quota asked
    for, if larger), its refreservation the refquota less 1 MiB (room for
    makeIndestructible's snapshot). One `zfs set` each, as VM.js runs them.
    """
    ds = cfg.zonepath.lstrip("/")
    if cfg.brand != "bhyve":
        zfs_set(ds, "quota", "none" if not quota else "%sg" % quota)
        return
    max_quota = max(DEFAULT_BHYVE_QUOTA, quota or 0) * GiB
    zones.zfs("set", "refreservation=none", "refquota=%d" % max_quota, ds)
    out = zones.zfs("list", "-Hrpt", "volume", "-o", "name,volsize", ds).stdout
    volumes = [line.split("\t")[0] for line in out.splitlines() if line.strip()]
    for vol in volumes:
        zones.zfs("set", "refreservation=auto", vol)
    volrefres = 0
    if volumes:
        out = zones.zfs("list", "-Hpr", "-t", "volume", "-o", "refreservation", ds).stdout
        volrefres = sum(int(v) for v in out.split())
    total = volrefres + max_quota
    value = "%sg" % quota if (quota or 0) * GiB > total else str(total)
    zones.zfs("set", "quota=%s" % value, "reservation=%s" % value,
              "refreservation=%d" % max(0, max_quota - MiB), ds)


def image_volsize_mib(image_uuid):
    p = zones.zfs("get", "-H", "-p", "-o", "value", "volsize", "zones/" + image_uuid,
                  check=False)
    v = p.stdout.strip() if p.returncode == 0 else ""
    return int(v) // MiB if v.isdigit() and int(v) > 0 else None


def destroy_dataset(ds):
    if not zones.dataset_exists(ds):
        return
    p = zones.zfs("destroy", "-rf", ds, check=False)
    if p.returncode == 0 or not zones.dataset_exists(ds):
        return
    zones.zfs("umount", "-f", ds, check=False)
    zones.zfs("destroy", "-r", ds)


def write_json(path, obj):
    zones.write_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False))


def write_metadata(zonepath, customer=None, internal=None, tags=None, routes=None):
    cfgdir = zones.on_cn(os.path.join(zonepath, "config"))
    os.makedirs(cfgdir, exist_ok=True)
    if customer is not None or internal is not None:
        # VM.js writeAllMetadata() puts internal_metadata first
        write_json(os.path.join(cfgdir, "metadata.json"),
                   {"internal_metadata": internal or {}, "customer_metadata": customer or {}})
    if tags is not None:
        write_json(os.path.join(cfgdir, "tags.json"), tags)
    if routes is not None:
        write_json(os.path.join(cfgdir, "routes.json"), routes)


# ---- create --------------------------------------------------------------------------------

def create(payload):
    if not isinstance(payload, dict):
        raise VmadmError("Invalid JSON payload: not an object")
    payload = fix_types(dict(payload))
    brand = payload.get("brand", "joyent")
    if brand not in zones.BRANDS:
        raise VmadmError("Invalid brand while validating payload: %s" % json.dumps(brand))
    uuid = payload.get("uuid") or str(uuidlib.uuid4())
    if not UUID_RE.match(uuid):
        raise VmadmError("Invalid value(s) for: uuid")
    uuid = uuid.lower()
    hvm = brand in zones.HVM_BRANDS
    with zones.lock():
        if zones.index_entry(uuid) is not None or zones.ZoneConfig.exists(uuid):
            raise VmadmError("VM with UUID %s already exists" % uuid)
        return _create_locked(payload, brand, uuid, hvm)


def _create_locked(payload, brand, uuid, hvm):
    zonepath = "/zones/" + uuid
    ds = "zones/" + uuid
    disks = [dict(d) for d in payload.get("disks", [])]
    image_uuid = payload.get("image_uuid")
    if hvm:
        if not disks:
            raise VmadmError("Missing required properties: disks")
    elif not image_uuid:
        raise VmadmError("Missing required properties: image_uuid")
    for img in [image_uuid] + [d.get("image_uuid") for d in disks]:
        if img and not zones.dataset_exists("zones/%s@final" % img):
            if img == image_uuid and not hvm:
                raise VmadmError("Invalid value(s) for: image_uuid (image %s is not installed)"
                                 % img)
            raise VmadmError("unable to find dataset: zones/%s" % img)
    nics = normalize_nics(payload.get("nics", []), brand)

    # memory, as VM.js fixPayloadMemory()/applyZoneDefaults()
    ram = payload.get("ram")
    max_phys = payload.get("max_physical_memory")
    if hvm:
        ram = ram or 256
        max_phys = max_phys or ram + MEM_OVERHEAD[brand]
    else:
        max_phys = max_phys or ram or 256
    max_locked = payload.get("max_locked_memory") or max_phys
    max_swap = payload.get("max_swap") or max(max_phys, MINIMUM_MAX_SWAP)
    default_quota = DEFAULT_BHYVE_QUOTA if brand == "bhyve" else DEFAULT_QUOTA
    quota = payload.get("quota")
    if quota is None:
        quota = default_quota
    props = {"cpu_shares": 100, "max_lwps": 2000, "max_msg_ids": 4096, "max_sem_ids": 4096,
             "max_shm_ids": 4096, "max_shm_memory": max_phys, "zfs_io_priority": 100}
    for k in props:
        if payload.get(k) is not None:
            props[k] = payload[k]

    created = []

    def run(*args):
        zones.zfs(*args)

    try:
        if not zones.dataset_exists("zones/cores"):
            run("create", "-o", "compression=gzip", "-o", "mountpoint=none", "zones/cores")
        if hvm:
            if brand == "bhyve":
                run("create", ds)
            else:
                run("create", "-o", "quota=%sg" % quota if quota else "quota=none", ds)
            created.append(ds)
        else:
            args = ["clone"]
            if quota:
                args += ["-o", "quota=%sg" % quota]
            run(*(args + ["zones/%s@final" % image_uuid, ds]))
            created.append(ds)
        run("create", "-o", "quota=100g", "-o", "mountpoint=%s/cores" % zonepath,
            "zones/cores/" + uuid)
        created.append("zones/cores/" + uuid)

        # disks: kvm zones/UUID-diskN, bhyve zones/UUID/diskN; disk0 clones the image
        for i, d in enumerate(disks):
            vol = ("%s/disk%d" if brand == "bhyve" else "%s-disk%d") % (ds, i)
            d["path"] = "/dev/zvol/rdsk/" + vol
            d.setdefault("model", "virtio")
            d.setdefault("media", "disk")
            if "boot" not in d:
                d["boot"] = i == 0 and bool(d.get("image_uuid"))
            # VM.js createVolume: refreservation=auto (zvol_volsize_to_reservation)
            # unless the payload gives disks.*.refreservation (MiB)
            resv = "auto" if d.get("refreservation") is None else "%dM" % d["refreservation"]
            if d.get("image_uuid"):
                image_mib = image_volsize_mib(d["image_uuid"])
                if "image_size" not in d:
                    d["image_size"] = image_mib or d.get("size") or 10240
                if image_mib is not None:
                    # RFD 154: a disk.size larger than the image grows the clone
                    run("clone", "-o", "volsize=%dM" % (d.get("size") or d["image_size"]),
                        "-o", "refreservation=" + resv,
                        "zones/%s@final" % d["image_uuid"], vol)
                else:
                    run("clone", "zones/%s@final" % d["image_uuid"], vol)
            else:
                if not d.get("size"):
                    raise VmadmError("Missing required properties: disks.%d.size" % i)
                args = ["create"]
                if d.get("block_size"):
                    args += ["-o", "volblocksize=%s" % d["block_size"]]
                if resv != "auto":
                    args += ["-o", "refreservation=" + resv]
                run(*(args + ["-V", "%dM" % d["size"], vol]))
            created.append(vol)
            if brand == "bhyve":
                d.setdefault("pci_slot", "0:4:%d" % i)
                d.setdefault("uuid", str(uuidlib.uuid4()))

        if payload.get("delegate_dataset"):
            run("create", ds + "/data")

        os.makedirs(zones.on_cn(zonepath + "/root"), exist_ok=True)
        os.makedirs(zones.on_cn(zonepath + "/config"), exist_ok=True)
        if brand == "bhyve":
            set_quota(zones.ZoneConfig.new(uuid, zonepath, brand), quota)

        cfg = build_config(payload, brand, uuid, zonepath, image_uuid, hvm, props,
                           max_phys, max_locked, max_swap, ram, disks, nics)
        if payload.get("delegate_dataset"):
            cfg.add_dataset(ds + "/data")
        cfg.save()
        zones.put_index(uuid, "installed", zonepath, uuid)

        internal = dict(payload.get("internal_metadata") or {})
        if payload.get("docker") and "docker:id" not in internal:
            internal["docker:id"] = uuid.replace("-", "") + uuidlib.uuid5(
                uuidlib.NAMESPACE_OID, uuid).hex
        write_metadata(zonepath, customer=payload.get("customer_metadata") or {},
                       internal=internal, tags=payload.get("tags") or {},
                       routes=payload.get("routes"))
    except Exception:
        for name in reversed(created):
            try:
                destroy_dataset(name)
            except zones.ZoneError:
                pass
        zones.remove_index(uuid)
        try:
            os.unlink(zones.xml_path(uuid))
        except FileNotFoundError:
            pass
        raise
    if payload.get("autoboot", True):
        zones.boot(uuid)
    return uuid


def build_config(payload, brand, uuid, zonepath, image_uuid, hvm, props, max_phys, max_locked,
                 max_swap, ram, disks, nics):
    """The zone XML VM.js createZone() would have zonecfg write, in its order."""
    autoboot = payload.get("autoboot", True)
    cfg = zones.ZoneConfig.new(uuid, zonepath, brand,
                               autoboot=False if hvm else autoboot,
                               limitpriv=payload.get("limit_priv") or LIMITPRIV.get(brand, "default"),
                               debugid=zones.next_debugid())
    cfg.set_attr("vm-version", "1")
    cfg.set_attr("create-timestamp", payload.get("create_timestamp") or zones.iso(time.time()))
    if image_uuid and not hvm:
        cfg.set_attr("dataset-uuid", image_uuid)
    for key, rctl, mult, action in RCTL_PROPS:
        cfg.set_rctl(rctl, int(props[key]) * mult, action)
    cfg.set_rctl("zone.max-physical-memory", max_phys * MiB, "deny")
    cfg.set_rctl("zone.max-locked-memory", max_locked * MiB, "deny")
    cfg.set_rctl("zone.max-swap", max_swap * MiB, "deny")
    if payload.get("cpu_cap"):
        cfg.set_rctl("zone.cpu-cap", int(payload["cpu_cap"]), "deny")
    values = dict(payload)
    values.setdefault("billing_id", "00000000-0000-0000-0000-000000000000")
    values.setdefault("owner_uuid", "00000000-0000-0000-0000-000000000000")
    if not hvm:
        values.setdefault("tmpfs", max_phys)
        values.setdefault("dns_domain", "local")
    if values.get("docker"):
        values.setdefault("restart_init", False)
        ns = list(values.get("internal_metadata_namespaces") or [])
        if "docker" not in ns:
            ns.append("docker")
        values["internal_metadata_namespaces"] = ns
    for attr, key in SET_ATTRS:
        v = values.get(key)
        if key == "restart_init":
            if v is False:
                cfg.set_attr(attr, "false")
            continue
        if v in (None, "", False):
            continue
        cfg.set_attr(attr, attr_string(v))
    if values.get("resolvers"):
        cfg.set_attr("resolvers", ",".join(values["resolvers"]))
    if values.get("internal_metadata_namespaces"):
        cfg.set_attr("internal-metadata-namespaces", ",".join(values["internal_metadata_namespaces"]))
    if payload.get("alias"):
        cfg.set_attr("alias", b64(payload["alias"]))
    if hvm:
        cfg.set_attr("vm-autoboot", "true" if autoboot else "false")
        cfg.set_attr("ram", str(ram))
    if brand == "bhyve":
        cfg.set_attr("com1", payload.get("com1", "/dev/zconsole"))
        cfg.set_attr("com2", payload.get("com2", "socket,/tmp/vm.ttyb"))
        cfg.set_attr("zlog-mode", "g--")
        cfg.set_attr("zlog-name", "platform.log")
    if hvm:
        cfg.set_attr("vcpus", str(payload.get("vcpus") or 1))
    set_b64_attrs(cfg, brand, payload)
    for d in disks:
        e = zones.el("device", match=d["path"])
        zones.net_attr(e, "boot", "true" if d.get("boot") else "false")
        zones.net_attr(e, "model", d["model"])
        zones.net_attr(e, "media", d["media"])
        if d.get("image_size") is not None and d.get("image_uuid"):
            zones.net_attr(e, "image-size", str(d["image_size"]))
        elif d.get("size") is not None:
            zones.net_attr(e, "size", str(d["size"]))
        if d.get("image_uuid"):
            zones.net_attr(e, "image-uuid", d["image_uuid"])
        if d.get("image_name"):
            zones.net_attr(e, "image-name", d["image_name"])
        if d.get("pci_slot"):
            zones.net_attr(e, "pci-slot", d["pci_slot"])
        if d.get("uuid"):
            zones.net_attr(e, "uuid", d["uuid"])
        cfg.root.append(e)
    for n in nics:
        cfg.root.append(nic_element(n))
    return cfg


def b64(value):
    return base64.b64encode(str(value).encode()).decode()


def set_b64_attrs(cfg, brand, payload):
    """The B64_PROPS in payload, base64 (an empty one removed, as VM.js's setAttr does)."""
    for attr, key, brands in B64_PROPS:
        if key not in payload or brand not in brands:
            continue
        if payload[key]:
            cfg.set_attr(attr, b64(payload[key]))
        else:
            cfg.remove_attr(attr)


# ---- update ---------------------------------------------------------------------------------

def set_autoboot(cfg, value):
    if zones.BRANDS.get(cfg.brand, {}).get("vm_autoboot"):
        # kvm/bhyve keep zoneadm's autoboot off; vmadmd boots them by vm-autoboot
        cfg.set_attr("vm-autoboot", "true" if value else "false")
    else:
        cfg.root.set("autoboot", "true" if value else "false")


def update(uuid, payload):
    if not isinstance(payload, dict):
        raise VmadmError("Invalid JSON payload: not an object")
    payload = fix_types(dict(payload))
    with zones.lock():
        entry = zones.index_entry(uuid)
        if entry is None:
            raise VmadmError("VM %s not found in zoneadm" % uuid)
        cfg = zones.ZoneConfig.load(entry["name"])
        obj = zones.vm_object(entry["name"])
        hvm = cfg.brand in zones.HVM_BRANDS
        if "autoboot" in payload:
            set_autoboot(cfg, payload["autoboot"])
        # memory (fixPayloadMemory)
        if "ram" in payload and payload["ram"] is not None:
            if hvm:
                cfg.set_attr("ram", str(payload["ram"]))
                payload.setdefault("max_physical_memory",
                                   payload["ram"] + MEM_OVERHEAD[cfg.brand])
            else:
                payload.setdefault("max_physical_memory", payload["ram"])
        if payload.get("max_physical_memory") is not None:
            mp = payload["max_physical_memory"]
            payload.setdefault("max_locked_memory", mp)
            if payload.get("max_swap") is None:
                old_swap = obj.get("max_swap") or 0
                payload["max_swap"] = max(mp, MINIMUM_MAX_SWAP, old_swap if old_swap >= mp else 0)
        for key, rctl in MEM_RCTLS:
            if payload.get(key) is not None:
                cfg.set_rctl(rctl, int(payload[key]) * MiB, "deny")
        for key, rctl, mult, action in RCTL_PROPS:
            if payload.get(key) is not None:
                cfg.set_rctl(rctl, int(payload[key]) * mult, action)
        if "cpu_cap" in payload:
            if payload["cpu_cap"]:
                cfg.set_rctl("zone.cpu-cap", int(payload["cpu_cap"]), "deny")
            else:
                cfg.remove_rctl("zone.cpu-cap")
        for attr, key in SET_ATTRS:
            if key not in payload:
                continue
            v = payload[key]
            if key == "restart_init":
                if v is True or v in (None, ""):
                    cfg.remove_attr(attr)
                else:
                    cfg.set_attr(attr, "false")
            elif v in (None, "", False):
                cfg.remove_attr(attr)
            else:
                cfg.set_attr(attr, attr_string(v))
        for key, attr in (("resolvers", "resolvers"),
                          ("internal_metadata_namespaces", "internal-metadata-namespaces")):
            if key in payload:
                if payload[key]:
                    cfg.set_attr(attr, ",".join(payload[key]))
                else:
                    cfg.remove_attr(attr)
        if "alias" in payload:
            if payload["alias"]:
                cfg.set_attr("alias", b64(payload["alias"]))
            else:
                cfg.remove_attr("alias")
        if hvm and payload.get("vcpus"):
            cfg.set_attr("vcpus", str(payload["vcpus"]))
        set_b64_attrs(cfg, cfg.brand, payload)
        cfg.save(entry["name"])
        if "quota" in payload and obj.get("zfs_filesystem"):
            set_quota(cfg, payload["quota"] or 0)

        # tags, metadata, routes: set_* and remove_* (VM.js updateMetadata)
        def merged(current, set_key, remove_key):
            d = dict(current or {})
            for k in payload.get(remove_key) or []:
                d.pop(k, None)
            d.update(payload.get(set_key) or {})
            return d
        md = {}
        if any(k in payload for k in ("set_customer_metadata", "remove_customer_metadata",
                                      "set_internal_metadata", "remove_internal_metadata")):
            md["customer"] = merged(obj.get("customer_metadata"), "set_customer_metadata",
                                    "remove_customer_metadata")
            md["internal"] = merged(obj.get("internal_metadata"), "set_internal_metadata",
                                    "remove_internal_metadata")
        if "set_tags" in payload or "remove_tags" in payload:
            md["tags"] = merged(obj.get("tags"), "set_tags", "remove_tags")
        if "set_routes" in payload or "remove_routes" in payload:
            md["routes"] = merged(obj.get("routes"), "set_routes", "remove_routes")
        if md:
            write_metadata(cfg.zonepath, **md)
        update_indestructible(obj, payload)


# ---- start, stop, delete ----------------------------------------------------------------------

def _entry(uuid):
    entry = zones.index_entry(uuid)
    if entry is None or not zones.ZoneConfig.exists(entry["name"]):
        raise VmadmError("VM %s not found in zoneadm" % uuid)
    return entry


def start(uuid):
    with zones.lock():
        entry = _entry(uuid)
        state = zones.zone_state(entry)
        if state == "running":
            return "VM %s is already running" % uuid
        if state != "installed":
            raise VmadmError("Unable to start VM %s: Cannot start VM from state: %s, "
                             "must be \"stopped\"" % (uuid, state))
        zones.boot(entry["name"])
        cfg = zones.ZoneConfig.load(entry["name"])
        set_autoboot(cfg, True)
        cfg.save(entry["name"])
    return None


def stop(uuid, force=False):
    with zones.lock():
        entry = _entry(uuid)
        state = zones.zone_state(entry)
        if state != "running":
            return "VM %s is already not 'running' (currently: %s)" % (
                uuid, "stopped" if state == "installed" else state)
        # VM.stop() turns autoboot off first: a stopped VM stays stopped on CN reboot
        cfg = zones.ZoneConfig.load(entry["name"])
        set_autoboot(cfg, False)
        cfg.save(entry["name"])
        zones.halt(entry["name"])
    return None


def reboot(uuid, force=False):
    with zones.lock():
        entry = _entry(uuid)
        if zones.zone_state(entry) != "running":
            raise VmadmError("Cannot reboot vm which is not running")
        zones.halt(entry["name"])
        zones.boot(entry["name"])


def delete(uuid):
    with zones.lock():
        entry = _entry(uuid)
        obj = zones.vm_object(entry["name"])
        # VM.js delete: an indestructible instance is refused before anything changes
        for key in ("indestructible_zoneroot", "indestructible_delegated"):
            if obj.get(key):
                raise VmadmError("%s is set, cannot delete" % key)
        cfg = zones.ZoneConfig.load(entry["name"])
        set_autoboot(cfg, False)
        cfg.save(entry["name"])
        zones.halt(entry["name"])
        ds = (cfg.zonepath or entry["path"]).lstrip("/")
        destroy_dataset(ds)
        destroy_dataset("zones/cores/" + entry["name"])
        for path in cfg.disk_paths():
            destroy_dataset(path[len("/dev/zvol/rdsk/"):])
        zones.remove_index(entry["name"])
        try:
            os.unlink(zones.xml_path(entry["name"]))
        except FileNotFoundError:
            pass
        zones.clear_run_state(entry["name"])


# ---- snapshots and indestructible datasets (VM.js) ----------------------------------------------
# smartos-live src/vm/node_modules/VM.js: create_snapshot, delete_snapshot,
# rollback_snapshot (zfs snapshots DS@vmsnap-NAME; for bhyve -r), validSnapshotName,
# and the indestructible_* update (DS@indestructible + `zfs hold do_not_destroy`).

MAX_SNAPNAME_LENGTH = 64
INDESTRUCTIBLE = "indestructible"
HOLD_TAG = "do_not_destroy"


def valid_snapshot_name(name):
    """VM.js validSnapshotName: 1..64 of zfs_namecheck.c's [a-zA-Z0-9-_.:%]."""
    return 0 < len(name) <= MAX_SNAPNAME_LENGTH and re.match(r"^[a-zA-Z0-9_.:%-]+$", name)


def _snapshot_vm(uuid, name):
    if not valid_snapshot_name(name):
        raise VmadmError("Invalid snapshot name")
    entry = _entry(uuid)
    obj = zones.vm_object(entry["name"])
    if obj.get("brand") == "kvm":
        raise VmadmError("snapshots for kvm VMs currently unsupported")
    if not obj.get("zfs_filesystem"):
        raise VmadmError("vmobj missing zfs_filesystem, cannot create snapshot")
    return obj, "%s@vmsnap-%s" % (obj["zfs_filesystem"], name)


def create_snapshot(uuid, name):
    with zones.lock():
        obj, snap = _snapshot_vm(uuid, name)
        if obj.get("datasets"):
            raise VmadmError("Cannot currently snapshot zones that have datasets")
        if any(s["name"] == name for s in obj.get("snapshots", [])):
            raise VmadmError('snapshot with name "%s" already exists.' % name)
        zones.zfs(*(["snapshot"] + (["-r"] if obj["brand"] == "bhyve" else []) + [snap]))


def delete_snapshot(uuid, name):
    with zones.lock():
        obj, snap = _snapshot_vm(uuid, name)
        if not any(s["name"] == name for s in obj.get("snapshots", [])):
            raise VmadmError('No snapshot named "%s" for %s' % (name, uuid))
        zones.zfs(*(["destroy"] + (["-r"] if obj["brand"] == "bhyve" else []) + [snap]))


def rollback_snapshot(uuid, name):
    """Stop (forced) if running, `zfs rollback -r` (later snapshots go), start."""
    obj, snap = _snapshot_vm(uuid, name)
    if not any(s["name"] == name for s in obj.get("snapshots", [])):
        raise VmadmError('No snapshot named "%s" for %s' % (name, uuid))
    snaps = [snap]
    if obj["brand"] == "bhyve":
        out = zones.zfs("list", "-o", "name", "-H", "-t", "snapshot", "-r",
                        obj["zfs_filesystem"]).stdout.split()
        snaps = [s for s in out if s.split("@vmsnap-", 1)[-1] == name and "@vmsnap-" in s]
    if obj.get("state") != "stopped":
        stop(uuid, force=True)
    for s in snaps:
        zones.zfs("rollback", "-r", s)
    start(uuid)


def set_indestructible(ds, on):
    """VM.js makeIndestructible / makeDestructible on one dataset."""
    snap = "%s@%s" % (ds, INDESTRUCTIBLE)
    exists = zones.zfs("list", "-H", "-o", "name", "-t", "snapshot", snap,
                       check=False).returncode == 0
    if on and not exists:
        zones.zfs("snapshot", snap)
        zones.zfs("hold", HOLD_TAG, snap)
    elif not on and exists:
        zones.zfs("release", HOLD_TAG, snap, check=False)
        zones.zfs("destroy", snap)


def update_indestructible(obj, payload):
    top = obj.get("zfs_filesystem")
    if not top:
        return
    if "indestructible_zoneroot" in payload:
        set_indestructible(top, payload["indestructible_zoneroot"])
    if "indestructible_delegated" in payload:
        if not zones.dataset_exists(top + "/data"):
            raise VmadmError("indestructible_delegated is set but VM has no delegated dataset")
        set_indestructible(top + "/data", payload["indestructible_delegated"])


SNAPSHOT_COMMANDS = {"create-snapshot": (create_snapshot, "Created snapshot %s for VM %s"),
                     "delete-snapshot": (delete_snapshot, "Deleted snapshot %s for VM %s"),
                     "rollback-snapshot": (rollback_snapshot,
                                           "Rolled back snapshot %s for VM %s")}


def snapshot_command(command, args):
    if len(args) != 2:
        raise Usage("Usage: vmadm %s <uuid> <snapname>" % command)
    uuid, name = args
    fn, done = SNAPSHOT_COMMANDS[command]
    fn(uuid, name)
    sys.stderr.write(done % (name, uuid) + "\n")
    return 0


# ---- main --------------------------------------------------------------------------------------

def read_payload(filename, what):
    if filename in (None, "-"):
        if sys.stdin.isatty():
            raise Usage("Will not %s from stdin when stdin is a tty." % what)
        data = sys.stdin.read()
        filename = "/dev/stdin"
    else:
        try:
            with open(filename) as f:
                data = f.read()
        except FileNotFoundError:
            raise VmadmError("File: %s does not exist." % filename)
        except OSError as e:
            raise VmadmError("Error reading: %s %s" % (filename, e))
    try:
        return json.loads(data)
    except ValueError as e:
        raise VmadmError("Invalid JSON payload: %s" % e)


COMMANDS = ("start", "boot", "console", "create", "create-snapshot", "delete", "destroy",
            "delete-snapshot", "stop", "halt", "help", "info", "install", "get", "json",
            "list", "lookup", "reboot", "receive", "recv", "reprovision",
            "rollback-snapshot", "send", "sysrq", "update", "validate")
B, S = nopt.BOOL, nopt.STRING


def command_options(command):
    """vmadm.js addCommandOptions(): nopt's types and shorthands for command."""
    types = {"verbose": B, "debug": B}
    shorts = {"v": ["--verbose", "true"], "d": ["--debug", "true"]}
    if command == "lookup":
        types.update(json=B, output=S, unique=B)
        shorts.update({"j": ["--json"], "o": ["--output"], "1": ["--unique"]})
    elif command in ("create", "receive", "recv", "reprovision", "update", "validate"):
        # no type for "file": nopt takes the next word, typed as an unknown option's
        shorts["f"] = ["--file"]
    elif command == "list":
        types.update(order=S, sortby=S, parsable=[B, "false"], header=[B, "true"])
        shorts.update({"o": ["--order"], "s": ["--sortby"], "p": ["--parsable", "true"],
                       "h": ["--header", "true"], "H": ["--header", "false"]})
    elif command in ("halt", "reboot", "stop"):
        types["force"] = B
        shorts["F"] = ["--force", "true"]
    return types, shorts


def get_uuid(command, remain):
    if remain:
        u = remain.pop(0)
        if len(u) == 36 and u[8] == "-" and u[13] == "-" and u[18] == "-" and u[23] == "-":
            return u
    raise Usage("Invalid or missing UUID for " + command)


def payload_file(parsed):
    f = parsed.get("file", "-")
    return f if isinstance(f, str) else js_str(f)


def parse_start_args(remain):
    """vmadm.js parseStartArgs(): order=, disk=PATH,MODEL, cdrom=PATH,MODEL."""
    saw_order = False
    for a in remain:
        key, val = next(iter(parse_kv([a]).items()))
        if key == "order":
            if saw_order:
                raise Usage("You can only specify 'order' once when starting a VM")
            saw_order = True
        elif key in ("disk", "cdrom"):
            parts = val.split(",")
            if len(parts) < 2 or not parts[0] or not parts[1]:
                raise Usage("Parameter to %s must be: path,model" % key)
        else:
            raise Usage("Invalid argument to start: " + key)


def valid_column_key(key):
    # vmadm.js validColumnKey: the JavaScript string '^(...)\\.\\\\*\\.*' reads as
    # the RegExp ^(disks|filesystems|nics).\*.*  (any one character, then '*')
    return not re.match(r"^(disks|filesystems|nics).\*", key)


def main(argv):
    """vmadm.js main(): the command first, then nopt over the words after it."""
    args = list(argv)
    try:
        if not args:
            raise Usage(None)
        command = args.pop(0)
        if command in ("-h", "-?"):
            sys.stdout.write(USAGE)
            return 0
        if command not in COMMANDS:
            raise Usage('Invalid command: "%s".' % command)
        parsed, remain = nopt.parse(*command_options(command), args)
        return run(command, parsed, remain)
    except Usage as e:
        sys.stderr.write(("%s\n" % e if e.args[0] else "") + USAGE)
        return 2
    except (VmadmError, zones.ZoneError) as e:
        sys.stderr.write("%s\n" % e)
        return 1


def run(command, parsed, remain):
    if command == "help":
        sys.stdout.write(USAGE)
        return 0
    if command in ("get", "json"):
        uuid = get_uuid(command, remain)
        if zones.index_entry(uuid) is None:
            raise VmadmError("VM %s not found in zoneadm" % uuid)
        sys.stdout.write(json.dumps(zones.vm_object(uuid), indent=2, ensure_ascii=False) + "\n")
        return 0
    if command == "list":
        search = parse_kv(remain)
        sortby = parsed.get("sortby", DEFAULT_SORT)
        order = parsed.get("order", DEFAULT_ORDER)
        parsable = bool(parsed.get("parsable"))
        header = parsed.get("header", not parsable)
        for k in search:
            if not valid_filter_key(k):
                raise VmadmError('Invalid filter key: "%s"' % k)
        for k in order.split(","):
            if not valid_column_key(k):
                raise VmadmError('Invalid order key: "%s"' % k)
        for k in sortby.split(","):
            if not valid_column_key(k):
                raise VmadmError('Invalid sort key: "%s"' % k)
        vms = [m for m in all_vms() if matches(m, search)]
        sys.stdout.write(format_list(vms, order, sortby, parsable, header is True))
        return 0
    if command == "lookup":
        search = parse_kv(remain)
        as_json = bool(parsed.get("json"))
        fields = parsed.get("output")
        if fields is not None and not as_json:
            raise VmadmError("Cannot specify -o without -j")
        for k in search:
            if not valid_filter_key(k):
                raise VmadmError('Invalid lookup key: "%s"' % k)
        results = [m for m in all_vms() if matches(m, search)]
        if parsed.get("unique") and len(results) != 1:
            raise VmadmError("Requested unique lookup but found %d results." % len(results))
        if as_json:
            if fields is not None:
                want = fields.split(",")
                results = [{k: v for k, v in m.items() if k in want} for m in results]
                results = [m for m in results if m]
            sys.stdout.write(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        else:
            sys.stdout.write("".join(m["uuid"] + "\n" for m in results))
        return 0
    if command in ("start", "boot"):
        uuid = get_uuid(command, remain)
        parse_start_args(remain)
        msg = start(uuid)
        sys.stderr.write((msg or "Successfully started VM %s" % uuid) + "\n")
        return 0
    if command in ("stop", "halt", "reboot"):
        command = "stop" if command == "halt" else command
        force = bool(parsed.get("force"))
        uuid = get_uuid(command, remain)
        if command == "stop":
            msg = stop(uuid, force)
            if msg:
                sys.stderr.write(msg + "\n")
                return 0
        else:
            reboot(uuid, force)
        sys.stderr.write("Successfully completed %s for VM %s\n" % (command, uuid))
        return 0
    if command == "update":
        uuid = get_uuid(command, remain)
        extra = parse_kv(remain)
        payload = extra if extra else read_payload(payload_file(parsed), "update")
        if zones.index_entry(uuid) is None:
            raise VmadmError("VM %s not found in zoneadm" % uuid)
        update(uuid, payload)
        sys.stderr.write("Successfully updated VM %s\n" % uuid)
        return 0
    if command == "create":
        payload = read_payload(payload_file(parsed), "create")
        uuid = create(payload)
        sys.stderr.write("Successfully created VM %s\n" % uuid)
        return 0
    if command in ("delete", "destroy"):
        uuid = get_uuid(command, remain)
        try:
            delete(uuid)
        except (VmadmError, zones.ZoneError) as e:
            raise VmadmError("Failed to delete VM %s: %s" % (uuid, e))
        sys.stderr.write("Successfully deleted VM %s\n" % uuid)
        return 0
    if command in SNAPSHOT_COMMANDS:
        return snapshot_command(command, remain)
    raise VmadmError("vmadm %s is not simulated" % command)

