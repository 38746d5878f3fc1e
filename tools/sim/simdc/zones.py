"""The zones of a simulated SmartOS compute node, kept where SmartOS keeps them.

- /etc/zones/index: `UUID:STATE:/zones/UUID:UUID` lines after `global:installed:/`;
  lines starting with `#` are commented out and are not zones (the seed's
  "comment it out in /etc/zones/index").
- /etc/zones/UUID.xml: the zone configuration in libzonecfg's format, written
  back with the same layout (two-space indent, self-closed empty elements).
- run state: `common.host_dir(host, "run", UUID + ".state")`, JSON; a zone
  whose file says running is running (its workload was started by boot).
- the `vmadm get` object: XML, then zoneadm-style facts, then the JSON files
  under /zones/UUID/config/, then the numbers of the zfs shim.

Commands on the CN (zonecfg, zoneadm, vmadm, svcadm) and vm-agent use this
module. Paths get SIMDC_CN_ROOT in front (tests run outside a CN namespace);
SIMDC_ZFS names the zfs to run (default the CN's shim, /usr/sbin/zfs).
"""
import base64
import contextlib
import fcntl
import importlib
import json
import os
import re
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET

from . import common

ROOT = os.environ.get("SIMDC_CN_ROOT", "")
ZFS = os.environ.get("SIMDC_ZFS", "/usr/sbin/zfs")
POOL = "zones"
MiB = 1 << 20
GiB = 1 << 30

# brand -> what vmadm knows of it (smartos-live proptable BRAND_OPTIONS).
BRANDS = {
    "joyent": {"type": "OS", "vm_autoboot": False},
    "joyent-minimal": {"type": "OS", "vm_autoboot": False},
    "lx": {"type": "LX", "vm_autoboot": False},
    "kvm": {"type": "KVM", "vm_autoboot": True},
    "bhyve": {"type": "BHYVE", "vm_autoboot": True},
}
HVM_BRANDS = ("kvm", "bhyve")


class ZoneError(Exception):
    """A failure with the message the real tool prints (without its prefix)."""


class NoSuchZone(ZoneError):
    def __init__(self, name):
        ZoneError.__init__(self, "%s: No such zone configured" % name)
        self.name = name


class ZfsError(ZoneError):
    def __init__(self, argv, rc, stderr):
        ZoneError.__init__(self, (stderr or "").strip() or "zfs %s failed" % " ".join(argv))
        self.argv = argv
        self.rc = rc
        self.stderr = stderr or ""


# ---- where things are -------------------------------------------------------

def etc_zones(*parts):
    return ROOT + os.path.join("/etc/zones", *parts)


def index_path():
    return etc_zones("index")


def xml_path(name):
    return etc_zones(name + ".xml")


def on_cn(p):
    """A CN path (/zones/UUID/...) as this process sees it."""
    return ROOT + p


def host():
    return common.this_host()


def run_file(name, h=None):
    d = common.host_dir(h or host(), "run")
    os.makedirs(d, exist_ok=True)
    return os.path.join(d, name)


_lock_depth = 0


@contextlib.contextmanager
def lock():
    """One zone operation at a time on this CN ($SIMDC_DIR/zones-HOST.lock).

    A POSIX record lock (lockf), not flock: a workload forked while we hold
    it must not inherit it. Re-entrant within a process.
    """
    global _lock_depth
    if _lock_depth:
        _lock_depth += 1
        try:
            yield
        finally:
            _lock_depth -= 1
        return
    os.makedirs(common.sim_dir(), exist_ok=True)
    fd = os.open(common.path("zones-%s.lock" % host()), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        _lock_depth = 1
        try:
            yield
        finally:
            _lock_depth = 0
            fcntl.lockf(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def write_atomic(path, text, mode=0o644):
    d = os.path.dirname(path) or "."
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(path) + ".")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def iso(t):
    """JavaScript's Date.toISOString() of a unix time."""
    ms = int(round((t - int(t)) * 1000))
    if ms == 1000:
        t, ms = int(t) + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(t))) + ".%03dZ" % ms


def number(v):
    """A JSON number as vmadm prints it: 25, not 25.0."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


# ---- /etc/zones/index ---------------------------------------------------------

def parse_index_line(line):
    """{name, state, path, uuid} of one index line; None for comments and blanks."""
    line = line.rstrip("\n")
    if not line.strip() or line.lstrip().startswith("#"):
        return None
    parts = line.split(":", 2)
    if len(parts) < 3:
        return None
    name, state, rest = parts
    if rest.startswith('"'):
        end = rest.find('"', 1)
        path = rest[1:end] if end > 0 else rest[1:]
        rest = rest[end + 1:] if end > 0 else ""
        uuid = rest[1:] if rest.startswith(":") else ""
    else:
        path, _, uuid = rest.partition(":")
    return {"name": name, "state": state, "path": path, "uuid": uuid}


def format_index_line(name, state, path, uuid=""):
    # putzoneent() quotes a path that holds the field separator.
    q = '"' if ":" in path else ""
    if name == "global" and not uuid:
        return "%s:%s:%s%s%s" % (name, state, q, path, q)
    return "%s:%s:%s%s%s:%s" % (name, state, q, path, q, uuid)


def read_index_lines():
    try:
        with open(index_path()) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return ["global:installed:/"]


def write_index_lines(lines):
    write_atomic(index_path(), "".join(l + "\n" for l in lines))


def index_entries():
    """The zones of the index (not global, not commented-out lines), in order."""
    out = []
    for line in read_index_lines():
        e = parse_index_line(line)
        if e and e["name"] != "global":
            out.append(e)
    return out


def index_entry(name):
    for e in index_entries():
        if e["name"] == name or (e["uuid"] and e["uuid"] == name):
            return e
    return None


def put_index(name, state, path=None, uuid=None):
    """Set NAME's index line (adding it at the end when new)."""
    with lock():
        lines = read_index_lines()
        if not any(parse_index_line(l) and parse_index_line(l)["name"] == "global"
                   for l in lines):
            lines.insert(0, "global:installed:/")
        done = False
        for i, line in enumerate(lines):
            e = parse_index_line(line)
            if e and e["name"] == name:
                lines[i] = format_index_line(name, state, path or e["path"],
                                             uuid if uuid is not None else e["uuid"])
                done = True
        if not done:
            lines.append(format_index_line(name, state, path or "/zones/" + name,
                                           uuid if uuid is not None else name))
        write_index_lines(lines)


def remove_index(name):
    """Drop NAME's live line; commented-out lines stay as the operator left them."""
    with lock():
        lines = read_index_lines()
        kept = [l for l in lines if not (parse_index_line(l) and parse_index_line(l)["name"] == name)]
        if kept != lines:
            write_index_lines(kept)
            return True
        return False


# ---- /etc/zones/UUID.xml ------------------------------------------------------

DEFAULT_PROLOGUE = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<!DOCTYPE zone PUBLIC "-//Sun Microsystems Inc//DTD Zones//EN" '
    '"file:///usr/share/lib/xml/dtd/zonecfg.dtd.1">\n'
    '<!--\n    DO NOT EDIT THIS FILE.  Use zonecfg(8) instead.\n-->\n')


def _esc(v):
    return (str(v).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("\n", "&#10;").replace("\r", "&#13;")
            .replace("\t", "&#9;"))


def _serialize(elem, depth, out):
    ind = "  " * depth
    attrs = "".join(' %s="%s"' % (k, _esc(v)) for k, v in elem.attrib.items())
    children = list(elem)
    if not children:
        out.append("%s<%s%s/>" % (ind, elem.tag, attrs))
        return
    out.append("%s<%s%s>" % (ind, elem.tag, attrs))
    for c in children:
        _serialize(c, depth + 1, out)
    out.append("%s</%s>" % (ind, elem.tag))


def el(tag, **attrs):
    """An element with its attributes in the order given (libxml keeps order)."""
    e = ET.Element(tag)
    for k, v in attrs.items():
        e.set(k.replace("_", "-"), str(v))
    return e


def natural_key(s):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s or "")]


class ZoneConfig:
    """One zone's XML: the `zone` element, edited in place, saved whole."""

    def __init__(self, root, prologue=DEFAULT_PROLOGUE):
        self.root = root
        self.prologue = prologue

    # -- load / save
    @classmethod
    def parse(cls, text):
        i = text.find("<zone")
        if i < 0:
            raise ZoneError("not a zone configuration")
        try:
            root = ET.fromstring(text[i:])
        except ET.ParseError as e:
            raise ZoneError("invalid zone configuration: %s" % e)
        return cls(root, text[:i] or DEFAULT_PROLOGUE)

    @classmethod
    def load(cls, name):
        try:
            with open(xml_path(name)) as f:
                return cls.parse(f.read())
        except FileNotFoundError:
            raise NoSuchZone(name)

    @classmethod
    def exists(cls, name):
        return os.path.exists(xml_path(name))

    @classmethod
    def new(cls, name, zonepath, brand, autoboot=False, iptype="exclusive", limitpriv=None,
            debugid=None):
        root = el("zone", name=name, zonepath=zonepath,
                  autoboot="true" if autoboot else "false", brand=brand)
        if iptype:
            root.set("ip-type", iptype)
        if limitpriv:
            root.set("limitpriv", limitpriv)
        if debugid is not None:
            root.set("debugid", str(debugid))
        return cls(root)

    def text(self):
        out = []
        _serialize(self.root, 0, out)
        return self.prologue + "\n".join(out) + "\n"

    def save(self, name=None):
        write_atomic(xml_path(name or self.name), self.text())

    # -- the zone element
    @property
    def name(self):
        return self.root.get("name")

    @property
    def brand(self):
        return self.root.get("brand")

    @property
    def zonepath(self):
        return self.root.get("zonepath")

    @property
    def autoboot(self):
        return self.root.get("autoboot") == "true"

    # -- attr resources
    def attr_elems(self):
        return [e for e in self.root if e.tag == "attr"]

    def attr(self, name, default=None):
        for e in self.attr_elems():
            if e.get("name") == name:
                return e.get("value")
        return default

    def set_attr(self, name, value, type_="string"):
        for e in self.attr_elems():
            if e.get("name") == name:
                e.set("value", str(value))
                return e
        e = el("attr", name=name, type=type_, value=value)
        self.root.append(e)
        return e

    def remove_attr(self, name):
        found = [e for e in self.attr_elems() if e.get("name") == name]
        for e in found:
            self.root.remove(e)
        return bool(found)

    # -- rctls (the capped-memory and global-property aliases are rctls too)
    def rctl(self, name):
        for e in self.root:
            if e.tag == "rctl" and e.get("name") == name:
                for v in e:
                    if v.tag == "rctl-value":
                        return int(v.get("limit"))
        return None

    def set_rctl(self, name, limit, action="deny"):
        for e in self.root:
            if e.tag == "rctl" and e.get("name") == name:
                for v in list(e):
                    e.remove(v)
                e.append(el("rctl-value", priv="privileged", limit=int(limit), action=action))
                return e
        e = el("rctl", name=name)
        e.append(el("rctl-value", priv="privileged", limit=int(limit), action=action))
        self.root.append(e)
        return e

    def remove_rctl(self, name):
        found = [e for e in self.root if e.tag == "rctl" and e.get("name") == name]
        for e in found:
            self.root.remove(e)
        return bool(found)

    # -- other resources
    def children(self, tag):
        return [e for e in self.root if e.tag == tag]

    def datasets(self):
        return [e.get("name") for e in self.children("dataset")]

    def add_dataset(self, name):
        if name not in self.datasets():
            self.root.append(el("dataset", name=name))

    def disk_paths(self):
        return [e.get("match") for e in self.children("device")
                if (e.get("match") or "").startswith("/dev/zvol/")]


def net_attr(parent, name, value):
    parent.append(el("net-attr", name=name, value=value))


def res_props(elem):
    return [(p.get("name"), p.get("value")) for p in elem if p.tag == "net-attr"]


def next_debugid():
    """libzonecfg numbers zones as it creates them; so do we, per CN."""
    with lock():
        f = run_file("debugid")
        try:
            n = int(open(f).read().strip())
        except (OSError, ValueError):
            n = 0
            for e in index_entries():
                with contextlib.suppress(Exception):
                    n = max(n, int(ZoneConfig.load(e["name"]).root.get("debugid") or 0))
        n += 1
        write_atomic(f, "%d\n" % n)
        return n


# ---- run state ------------------------------------------------------------------

def state_path(uuid, h=None):
    return run_file(uuid + ".state", h)


def run_state(uuid, h=None):
    try:
        with open(state_path(uuid, h)) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return {}


def write_run_state(uuid, st, h=None):
    write_atomic(state_path(uuid, h), json.dumps(st) + "\n")


def clear_run_state(uuid, h=None):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(state_path(uuid, h))


def is_running(name):
    return run_state(name).get("state") == "running"


def zone_state(entry):
    """The zoneadm state of an index entry: the index's, or running when booted."""
    if entry["state"] == "installed" and is_running(entry["name"]):
        return "running"
    return entry["state"]


def _next_zoneid():
    with lock():
        f = run_file("zoneid")
        try:
            n = int(open(f).read().strip())
        except (OSError, ValueError):
            n = 0
        n += 1
        write_atomic(f, "%d\n" % n)
        return n


def _sim_module(name):
    try:
        return importlib.import_module("simdc." + name)
    except ImportError as e:
        raise ZoneError("the simulator's %s module is missing: %s" % (name, e))


def _workload():
    return _sim_module("workload")


def _zfslib():
    return _sim_module("zfslib")


def boot(name):
    """zoneadm boot: installed -> running, with the instance's workload started."""
    with lock():
        entry = index_entry(name)
        if entry is None or not ZoneConfig.exists(entry["name"]):
            raise NoSuchZone(name)
        state = zone_state(entry)
        if state == "running":
            raise ZoneError("zone '%s': zone is already booted" % entry["name"])
        if state != "installed":
            raise ZoneError("zone '%s': boot operation is invalid for zones in state '%s'."
                            % (entry["name"], state))
        uuid = entry["uuid"] or entry["name"]
        h = host()
        # A zone boots from its datasets: mounted, or the workload would write
        # beside them (zfs-fuse may leave a child unmounted after recv -F).
        zl = _zfslib()
        for ds in ("zones/" + uuid, zl.disk0_dataset(uuid, zl.brand_of(uuid))):
            if ds and not zl.ensure_mounted(ds):
                raise ZoneError("zone '%s': unable to boot zone: %s is not mounted"
                                % (entry["name"], ds))
        zone_datasets(entry["name"], ZoneConfig.load(entry["name"]).datasets())
        data_dir = zl.data_dir(uuid)
        try:
            pid = _workload().start(uuid, data_dir, h)
        except (OSError, RuntimeError) as e:
            raise ZoneError("zone '%s': unable to boot zone: %s" % (entry["name"], e))
        if not isinstance(pid, int):
            pid = None
            with contextlib.suppress(OSError, ValueError):
                pid = int(open(common.host_dir(h, "run", uuid + ".pid")).read().split()[0])
        st = {"state": "running", "zoneid": _next_zoneid(), "boot_timestamp": iso(time.time())}
        if pid:
            st["pid"] = pid
        write_run_state(entry["name"], st)
        return st


def zone_datasets(name, datasets):
    """zoneadmd's boot of a zone with delegated datasets (`add dataset`: VM.js
    delegate_dataset's zones/UUID/data): it sets zoned=on on each, checking
    first, as setting it again is EPERM (illumos-joyent
    usr/src/cmd/zoneadmd/vplat.c validate_datasets). Setting it unmounts the
    dataset in the global zone, and no zfs mount there takes it again
    (zfs_main.c share_mount_one: "dataset is exported to a local zone"); from
    now on `zfs send -p` carries it. The zone's own mount of it, inside, is
    not emulated: no process of a simulated zone uses it."""
    for ds in datasets:
        r = zfs("get", "-H", "-o", "value", "zoned", ds, check=False)
        if r.returncode != 0:
            raise ZoneError("zone '%s': cannot open ZFS dataset '%s'" % (name, ds))
        if r.stdout.strip() != "on" and zfs("set", "zoned=on", ds, check=False).returncode:
            raise ZoneError("zone '%s': cannot set 'zoned' property for ZFS dataset '%s'"
                            % (name, ds))


def halt(name):
    """zoneadm halt: running -> installed, the workload stopped. A halted zone stays halted."""
    with lock():
        entry = index_entry(name)
        if entry is None:
            raise NoSuchZone(name)
        if not is_running(entry["name"]):
            return False
        _workload().stop(entry["uuid"] or entry["name"], host())
        clear_run_state(entry["name"])
        return True


def power_cycle():
    """What a CN reboot does to its zones, each booted at most once: every
    workload ends as power loss ends it (the configuration stays as it is),
    then svc:/system/zones boots the installed zones with autoboot=true and
    vmadmd's autoboot boots the kvm/bhyve ones with vm-autoboot=true
    (smartos-live src/vm/README.vmadmd "Autoboot"; VM.js keeps their zone
    autoboot false). do-not-inventory changes nothing here. Returns
    [(uuid, who booted it)]."""
    booted = []
    with lock():
        for e in index_entries():
            if is_running(e["name"]):
                halt(e["name"])
        for e in index_entries():
            if e["state"] != "installed" or not ZoneConfig.exists(e["name"]):
                continue
            cfg = ZoneConfig.load(e["name"])
            if BRANDS.get(cfg.brand, {}).get("vm_autoboot"):
                by = "vmadmd" if cfg.attr("vm-autoboot") == "true" else None
            else:
                by = "zones" if cfg.autoboot else None
            if by:
                boot(e["name"])
                booted.append((e["uuid"] or e["name"], by))
    return booted


# ---- zfs (always through the CN's shim) ----------------------------------------

def zfs(*args, check=True, input=None):
    argv = [ZFS] + [str(a) for a in args]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       input=input)
    if check and p.returncode != 0:
        raise ZfsError(["zfs"] + list(args), p.returncode, p.stderr)
    return p


def dataset_exists(name):
    return zfs("list", "-H", "-o", "name", name, check=False).returncode == 0


ZFS_COLUMNS = ("name", "type", "used", "available", "quota", "refquota", "recordsize",
               "volsize", "refreservation", "compression", "creation", "mountpoint")


def _zfs_value(v):
    if v in ("-", ""):
        return None
    if v == "none":
        return 0
    try:
        return int(v)
    except ValueError:
        return v


def zfs_table(top=POOL):
    """Every dataset (and snapshot) under TOP: name -> {column: value} (bytes)."""
    cols = ",".join(ZFS_COLUMNS)
    p = zfs("list", "-H", "-p", "-t", "all", "-o", cols, "-r", top, check=False)
    if p.returncode != 0:
        p = zfs("list", "-H", "-p", "-o", cols, "-r", top, check=False)
    table = {}
    if p.returncode != 0:
        return table
    for line in p.stdout.splitlines():
        fields = line.split("\t")
        if len(fields) != len(ZFS_COLUMNS):
            continue
        row = {c: _zfs_value(v) for c, v in zip(ZFS_COLUMNS, fields)}
        row["name"] = fields[0]
        row["mountpoint"] = fields[-1]
        table[fields[0]] = row
    return table


# ---- the vmadm get object -------------------------------------------------------

BOOL_ATTRS = {"archive-on-delete", "do-not-inventory", "docker", "firewall-enabled",
              "maintain-resolvers", "restart-init", "never-booted", "vm-autoboot",
              "indestructible-zoneroot", "indestructible-delegated", "app-svc-dependent"}
INT_ATTRS = {"ram", "vcpus", "tmpfs", "vnc-port", "spice-port", "virtio-txtimer",
             "virtio-txburst", "vm-version", "zlog-max-size", "flexible-disk-size",
             "mdata-exec-timeout"}
LIST_ATTRS = {"resolvers", "internal-metadata-namespaces"}
B64_ATTRS = {"alias", "vnc-password", "spice-password", "spice-opts", "qemu-opts",
             "qemu-extra-opts"}
ATTR_KEYS = {"dataset-uuid": "image_uuid", "vm-version": "v", "vm-autoboot": "autoboot"}
RCTL_KEYS = {
    "zone.cpu-shares": ("cpu_shares", 1), "zone.cpu-cap": ("cpu_cap", 1),
    "zone.zfs-io-priority": ("zfs_io_priority", 1), "zone.max-lwps": ("max_lwps", 1),
    "zone.max-msg-ids": ("max_msg_ids", 1), "zone.max-sem-ids": ("max_sem_ids", 1),
    "zone.max-shm-ids": ("max_shm_ids", 1), "zone.max-shm-memory": ("max_shm_memory", MiB),
    "zone.max-physical-memory": ("max_physical_memory", MiB),
    "zone.max-locked-memory": ("max_locked_memory", MiB), "zone.max-swap": ("max_swap", MiB),
}
NIC_BOOLS = {"primary", "dhcp_server", "allow_dhcp_spoofing", "allow_ip_spoofing",
             "allow_mac_spoofing", "allow_restricted_traffic", "allow_unfiltered_promisc"}
NIC_INTS = {"vrrp_vrid", "mtu"}
NIC_LISTS = {"ips", "gateways", "allowed_ips", "allowed_dhcp_cids"}


def fix_mac(mac):
    try:
        return ":".join("%02x" % int(o, 16) for o in mac.split(":"))
    except ValueError:
        return mac


def _attr_value(name, value):
    if name in BOOL_ATTRS:
        return value == "true"
    if name in INT_ATTRS:
        with contextlib.suppress(ValueError):
            return int(value)
        return value
    if name in LIST_ATTRS:
        return [v for v in value.split(",") if v]
    if name in B64_ATTRS:
        with contextlib.suppress(Exception):
            return base64.b64decode(value).decode()
    return value


def _nic(elem):
    n = {"interface": elem.get("physical"), "mac": fix_mac(elem.get("mac-addr") or "")}
    if elem.get("vlan-id"):
        n["vlan_id"] = int(elem.get("vlan-id"))
    if elem.get("global-nic"):
        n["nic_tag"] = elem.get("global-nic")
    for k, v in res_props(elem):
        if k in NIC_BOOLS:
            n[k] = v == "true"
        elif k in NIC_INTS:
            n[k] = int(v) if v.isdigit() else v
        elif k in NIC_LISTS:
            n[k] = [x for x in v.split(",") if x]
        elif k == "blocked_outgoing_ports":
            n[k] = [int(x) for x in v.split(",") if x.isdigit()]
        else:
            n[k] = v
    return n


def _disk(elem):
    d = {"path": elem.get("match")}
    for k, v in res_props(elem):
        key = k.replace("-", "_")
        if key == "boot":
            d[key] = v == "true"
        elif key == "size":
            continue    # vmload takes the size from the volume, not the XML
        elif key == "image_size":
            d[key] = int(v) if v.isdigit() else v
        else:
            d[key] = v
    return d


def xml_vmobj(cfg):
    """What vmload derives from the XML alone, keys in the XML's order."""
    r = cfg.root
    obj = {"zonename": r.get("name"), "autoboot": r.get("autoboot") == "true",
           "brand": r.get("brand")}
    if r.get("limitpriv") is not None:
        obj["limit_priv"] = r.get("limitpriv")
    if r.get("fs-allowed") is not None:
        obj["fs_allowed"] = r.get("fs-allowed")
    vm_autoboot = BRANDS.get(cfg.brand, {}).get("vm_autoboot")
    if vm_autoboot:
        obj["autoboot"] = False
    for e in r:
        if e.tag == "attr":
            name, value = e.get("name"), e.get("value") or ""
            if name == "transition":
                parts = value.split(":")
                if len(parts) == 3:
                    obj["state"] = parts[0]
                    obj["transition_to"] = parts[1]
                    obj["transition_expire"] = int(parts[2]) if parts[2].isdigit() else parts[2]
                continue
            if name == "vm-autoboot" and not vm_autoboot:
                continue
            key = ATTR_KEYS.get(name, name.replace("-", "_"))
            obj[key] = _attr_value(name, value)
        elif e.tag == "rctl":
            if e.get("name") in RCTL_KEYS:
                key, div = RCTL_KEYS[e.get("name")]
                for v in e:
                    if v.tag == "rctl-value":
                        obj[key] = number(int(v.get("limit")) // div)
                        break
        elif e.tag == "network":
            obj.setdefault("nics", []).append(_nic(e))
        elif e.tag == "device":
            obj.setdefault("disks", []).append(_disk(e))
        elif e.tag == "dataset":
            obj.setdefault("datasets", []).append(e.get("name"))
        elif e.tag == "filesystem":
            fs = {"source": e.get("special"), "target": e.get("directory"), "type": e.get("type")}
            if e.get("raw"):
                fs = {"source": e.get("special"), "raw": e.get("raw"),
                      "target": e.get("directory"), "type": e.get("type")}
            opts = [o.get("name") for o in e if o.tag == "fsoption"]
            if opts:
                fs["options"] = opts
            obj.setdefault("filesystems", []).append(fs)
    if "disks" in obj:
        obj["disks"].sort(key=lambda d: natural_key(d.get("path")))
    if "nics" in obj:
        obj["nics"].sort(key=lambda n: natural_key(n.get("interface")))
    return obj


def _read_json(p, default):
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def _mtime(p):
    try:
        return os.stat(p).st_mtime
    except OSError:
        return None


def vm_cache():
    """What every object of one listing shares: the zfs table, this host's facts."""
    h = host()
    hosts = common.load_hosts()
    return {"zfs": zfs_table(), "host": h, "server_uuid": hosts.get(h, {}).get("uuid"),
            "platform": hosts.get(h, {}).get("platform") or common.platform_of(h)}


def vm_object(name, cache=None):
    """The `vmadm get` object of zone NAME (uuid), or NoSuchZone."""
    entry = index_entry(name)
    if entry is None:
        raise NoSuchZone(name)
    cfg = ZoneConfig.load(entry["name"])
    if cache is None:
        cache = vm_cache()
    obj = xml_vmobj(cfg)
    uuid = entry["uuid"] or entry["name"]
    zonepath = cfg.zonepath or entry["path"]
    zstate = zone_state(entry)
    rs = run_state(entry["name"]) if zstate == "running" else {}
    obj["uuid"] = uuid
    obj["zone_state"] = zstate
    obj["zonepath"] = zonepath
    if zstate == "running" and rs.get("zoneid") is not None:
        obj["zoneid"] = rs["zoneid"]
    stamps = [_mtime(on_cn(os.path.join(zonepath, "config", f)))
              for f in ("metadata.json", "routes.json", "tags.json")]
    stamps += [_mtime(on_cn(os.path.join(zonepath, "lastexited"))), _mtime(xml_path(entry["name"]))]
    stamps = [s for s in stamps if s is not None]
    if stamps:
        obj["last_modified"] = iso(int(max(stamps)))
    if "resolvers" not in obj:
        obj["resolvers"] = []
    if "firewall_enabled" not in obj:
        obj["firewall_enabled"] = False
    if cache.get("server_uuid"):
        obj["server_uuid"] = cache["server_uuid"]
    obj["datacenter_name"] = common.DATACENTER
    obj["platform_buildstamp"] = (cache.get("platform")
                                  or common.host_platform(cache.get("host") or host()))
    if "state" not in obj:
        obj["state"] = "stopped" if zstate == "installed" else zstate
    if obj.get("failed"):
        obj["state"] = "failed"
    if zstate == "running":
        if rs.get("boot_timestamp"):
            obj["boot_timestamp"] = rs["boot_timestamp"]
        if rs.get("pid"):
            obj["pid"] = rs["pid"]
    md = _read_json(on_cn(os.path.join(zonepath, "config", "metadata.json")), {})
    obj["customer_metadata"] = md.get("customer_metadata", {}) if isinstance(md, dict) else {}
    obj["internal_metadata"] = md.get("internal_metadata", {}) if isinstance(md, dict) else {}
    obj["routes"] = _read_json(on_cn(os.path.join(zonepath, "config", "routes.json")), {})
    obj["tags"] = _read_json(on_cn(os.path.join(zonepath, "config", "tags.json")), {})
    if "nics" in obj:
        # the full object always has vlan_id, right after mac (vminfod's order)
        fixed = []
        for n in obj["nics"]:
            m = {}
            for k, v in n.items():
                if k == "vlan_id":
                    continue
                m[k] = v
                if k == "mac":
                    m["vlan_id"] = n.get("vlan_id", 0)
            fixed.append(m)
        obj["nics"] = fixed
    table = cache.get("zfs") or {}
    dsname = zonepath.lstrip("/")
    ds = table.get(dsname)
    if ds is not None:
        q = ds.get("refquota") if cfg.brand == "bhyve" and ds.get("refquota") else ds.get("quota")
        obj["quota"] = number((q or 0) / GiB)
        if ds.get("recordsize"):
            obj["zfs_root_recsize"] = ds["recordsize"]
        if ds.get("compression") not in (None, "off"):
            obj["zfs_root_compression"] = ds["compression"]
        obj["zfs_filesystem"] = dsname
        obj["zpool"] = dsname.split("/")[0]
        if "create_timestamp" not in obj and isinstance(ds.get("creation"), int):
            obj["create_timestamp"] = iso(ds["creation"])
        snaps = []
        for sname, s in table.items():
            if sname.startswith(dsname + "@vmsnap-"):
                snap = {"name": sname.split("@vmsnap-", 1)[1]}
                if isinstance(s.get("creation"), int):
                    snap["created_at"] = iso(s["creation"])
                snaps.append(snap)
        snaps.sort(key=lambda s: s.get("created_at", ""), reverse=True)
        obj["snapshots"] = snaps
        # vmload: the protection is the @indestructible snapshot (held by VM.js)
        # (vmload sets the keys only when true)
        if dsname + "@indestructible" in table:
            obj["indestructible_zoneroot"] = True
        if dsname + "/data@indestructible" in table:
            obj["indestructible_delegated"] = True
    for d in obj.get("disks", []):
        vol = d.get("path", "")
        vname = vol[len("/dev/zvol/rdsk/"):] if vol.startswith("/dev/zvol/rdsk/") else None
        v = table.get(vname) if vname else None
        if v is None:
            if vname:
                d["missing"] = True
            continue
        d["zfs_filesystem"] = vname
        d["zpool"] = vname.split("/")[0]
        if isinstance(v.get("volsize"), int):
            d["size"] = number(v["volsize"] / MiB)
        d["compression"] = v.get("compression") or "off"
        if isinstance(v.get("refreservation"), int):
            d["refreservation"] = number(v["refreservation"] / MiB)
        d["block_size"] = 8192
    return obj


def vm_objects(cache=None):
    """The `vmadm get` object of every zone in the index (one zfs listing)."""
    if cache is None:
        cache = vm_cache()
    out = []
    for e in index_entries():
        if not ZoneConfig.exists(e["name"]):
            continue
        # a zone whose XML cannot be read is left out, as vmadm would fail on it alone
        with contextlib.suppress(ZoneError, ET.ParseError):
            out.append(vm_object(e["name"], cache))
    return out


# ---- zoneadm list ------------------------------------------------------------------

def zone_rows(include_installed=False, include_configured=False):
    """zoneadm list's zones: global, running ones by zone id, then the rest in index order."""
    rows = [{"zoneid": 0, "name": "global", "state": "running", "path": "/", "uuid": "",
             "brand": "liveimg", "iptype": "shared", "debugid": ""}]
    running, rest = [], []
    for e in index_entries():
        st = zone_state(e)
        brand, iptype, debugid = "-", "shared", ""
        with contextlib.suppress(ZoneError, ET.ParseError):
            cfg = ZoneConfig.load(e["name"])
            brand = cfg.brand or "-"
            iptype = "excl" if cfg.root.get("ip-type") == "exclusive" else "shared"
            debugid = cfg.root.get("debugid") or ""
        row = {"zoneid": "-", "name": e["name"], "state": st, "path": e["path"],
               "uuid": e["uuid"], "brand": brand, "iptype": iptype, "debugid": debugid}
        if st == "running":
            row["zoneid"] = run_state(e["name"]).get("zoneid", "-")
            running.append(row)
        elif include_configured or (include_installed and st != "configured"):
            rest.append(row)
    running.sort(key=lambda r: r["zoneid"] if isinstance(r["zoneid"], int) else 1 << 30)
    return rows + running + rest


def format_rows_verbose(rows):
    # zoneadm.c zone_print(): "%*s %-16s %-10s %-30s %-8s %-6s" with ZONEID_WIDTH 4.
    out = ["%*s %-16s %-10s %-30s %-8s %-6s" % (4, "ID", "NAME", "STATUS", "PATH", "BRAND", "IP")]
    for r in rows:
        out.append("%*s %-16s %-10s %-30s %-8s %-6s" % (
            4, r["zoneid"], r["name"], r["state"], r["path"], r["brand"], r["iptype"]))
    return "".join(l + "\n" for l in out)


def format_rows_parsable(rows):
    return "".join("%s:%s:%s:%s:%s:%s:%s:%s\n" % (
        r["zoneid"], r["name"], r["state"], r["path"], r["uuid"], r["brand"], r["iptype"],
        r["debugid"]) for r in rows)
