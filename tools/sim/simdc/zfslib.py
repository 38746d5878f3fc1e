"""ZFS on a simulated compute node: what the zfs shim and the other CN code share.

The pool is real (zfs-fuse, pool version 23); what zfs-fuse lacks is
emulated here:
- volumes: zfs-fuse has no zvols, so a volume is a filesystem carrying the
  user properties `simdc:volsize` (and `simdc:volblocksize`), set locally
  or received. The shim reports it as `type=volume` with `volsize`; the
  filesystem stays mounted so a kvm/bhyve workload can keep disk0's data
  in it (`data_dir`).
- properties zfs-fuse does not know (`written`, `volsize`, limits, ...),
  computed from the space accounting it does know (see `emulate`).
- exact numbers: the real `zfs get -Hp` gives them; `zfs list` has no -p.
"""
import os
import subprocess
import time

from simdc import common

VOLSIZE = "simdc:volsize"
VOLBLOCK = "simdc:volblocksize"
# `sync` (illumos zfs_prop.c: standard | always | disabled, inherited, not
# on snapshots) came after pool version 23: kept in a user property, which
# zfs-fuse inherits and sends as it would the real one.
SYNC = "simdc:sync"
SYNC_VALUES = ("standard", "always", "disabled")
DEFAULT_VOLBLOCKSIZE = 8192
UINT64_MAX = 18446744073709551615
POOL = "zones"

# Abbreviations zfs(8) accepts for property names.
ALIASES = {
    "avail": "available", "refer": "referenced", "usedsnap": "usedbysnapshots",
    "usedds": "usedbydataset", "usedrefreserv": "usedbyrefreservation",
    "usedchild": "usedbychildren", "recsize": "recordsize",
    "reserv": "reservation", "refreserv": "refreservation",
    "volblock": "volblocksize", "compress": "compression",
    "ratio": "compressratio", "refratio": "refcompressratio",
    "lused": "logicalused", "lrefer": "logicalreferenced", "rdonly": "readonly",
    "shareiscsi": "shareiscsi",
}
# Column headers (zfs_prop_column_name); anything else is upper-cased.
HEADERS = {
    "available": "AVAIL", "referenced": "REFER", "usedbysnapshots": "USEDSNAP",
    "usedbydataset": "USEDDS", "usedbyrefreservation": "USEDREFRESERV",
    "usedbychildren": "USEDCHILD", "recordsize": "RECSIZE",
    "reservation": "RESERV", "refreservation": "REFRESERV",
    "volblocksize": "VOLBLOCK", "compression": "COMPRESS",
    "compressratio": "RATIO", "refcompressratio": "REFRATIO",
    "logicalused": "LUSED", "logicalreferenced": "LREFER", "readonly": "RDONLY",
    "casesensitivity": "CASE", "filesystem_limit": "FSLIMIT",
    "snapshot_limit": "SSLIMIT", "filesystem_count": "FSCOUNT",
    "snapshot_count": "SSCOUNT",
}
# Properties zfs-fuse answers itself (plus user properties, name:prop).
NATIVE = {
    "type", "creation", "used", "available", "referenced", "compressratio",
    "mounted", "origin", "quota", "reservation", "recordsize", "mountpoint",
    "sharenfs", "checksum", "compression", "atime", "devices", "exec",
    "setuid", "readonly", "zoned", "snapdir", "aclmode", "aclinherit",
    "canmount", "xattr", "copies", "version", "utf8only", "normalization",
    "casesensitivity", "vscan", "nbmand", "sharesmb", "refquota",
    "refreservation", "primarycache", "secondarycache", "usedbysnapshots",
    "usedbydataset", "usedbychildren", "usedbyrefreservation", "logbias",
    "dedup", "mlslabel", "guid", "createtxg", "userrefs", "defer_destroy",
}
# Properties of a newer ZFS that the shim computes.
EMULATED = [
    "written", "logicalused", "logicalreferenced", "refcompressratio",
    "volsize", "volblocksize", "filesystem_limit", "snapshot_limit",
    "filesystem_count", "snapshot_count", "sync",
    "filesystem_count", "snapshot_count", "encryption", "receive_resume_token",
]
SIZE_PROPS = {
    "used", "available", "referenced", "quota", "reservation", "recordsize",
    "refquota", "refreservation", "usedbysnapshots", "usedbydataset",
    "usedbychildren", "usedbyrefreservation", "volsize", "volblocksize",
    "written", "logicalused", "logicalreferenced",
}
NONE_IF_ZERO = {"quota", "reservation", "refquota", "refreservation"}
NONE_IF_MAX = {"filesystem_limit", "snapshot_limit", "filesystem_count",
               "snapshot_count"}
RIGHT_ALIGNED = SIZE_PROPS | NONE_IF_MAX | {
    "compressratio", "refcompressratio", "creation", "guid", "createtxg",
    "userrefs", "copies", "version"}
# Properties that only apply to filesystems: '-' on a volume.
FS_ONLY = {
    "mounted", "quota", "recordsize", "mountpoint", "sharenfs", "atime",
    "devices", "exec", "setuid", "zoned", "snapdir", "aclmode", "aclinherit",
    "canmount", "xattr", "version", "utf8only", "normalization",
    "casesensitivity", "vscan", "nbmand", "sharesmb", "refquota",
    "filesystem_limit", "filesystem_count",
}
# What the emulated properties are computed from.
SPACE_PROPS = ["type", "referenced", "used", "usedbydataset", "usedbysnapshots",
               "origin", "createtxg", VOLSIZE, VOLBLOCK]


def real_zfs():
    return common.path("realbin", "zfs")


def real_zpool():
    return common.path("realbin", "zpool")


def zfs(*args, stdin=None, stdout=None, stderr=None):
    """Run the real zfs with output captured (text) unless told otherwise."""
    return subprocess.run(
        [real_zfs()] + [str(a) for a in args], stdin=stdin,
        stdout=subprocess.PIPE if stdout is None else stdout,
        stderr=subprocess.PIPE if stderr is None else stderr,
        universal_newlines=True)


# ---- sizes -----------------------------------------------------------------

def parse_size(text):
    """A size as zfs(8) takes it ("10G", "1.5g", "512", "8K", "10GB") -> bytes."""
    s = text.strip()
    if not s:
        raise ValueError("bad numeric value '%s'" % text)
    units = "BKMGTPEZ"
    i = len(s)
    while i > 0 and not (s[i - 1].isdigit() or s[i - 1] == "."):
        i -= 1
    num, suffix = s[:i], s[i:].upper()
    if not num:
        raise ValueError("bad numeric value '%s'" % text)
    if suffix in ("", "B"):
        shift = 0
    elif suffix[0] in units and suffix[1:] in ("", "B") and suffix != "BB":
        shift = 10 * units.index(suffix[0])
    else:
        raise ValueError("invalid numeric suffix '%s'" % s[i:])
    if "." in num:
        if shift == 0:
            raise ValueError("bad numeric value '%s'" % text)
        return int(float(num) * (1 << shift))
    return int(num) << shift


def nicenum(num):
    """zfs_nicenum(): 1024-based, at most 5 characters ("24.8G", "208M", "31K")."""
    n, index = num, 0
    while n >= 1024 and index < 6:
        n //= 1024
        index += 1
    unit = " KMGTPE"[index]
    if index == 0:
        return "%d" % n
    if num & ((1 << (10 * index)) - 1) == 0:
        return "%d%s" % (n, unit)
    for prec in (2, 1, 0):
        out = "%.*f%s" % (prec, num / (1 << (10 * index)), unit)
        if len(out) <= 5:
            return out
    return out


def nicebytes(num):
    """zfs_nicebytes(): like nicenum but bytes below 1K carry a "B"."""
    return "%dB" % num if num < 1024 else nicenum(num)


# ---- reading datasets ------------------------------------------------------

def canonical(prop):
    return ALIASES.get(prop, prop)


def is_user_prop(prop):
    return ":" in prop


# What the zfs of a platform before resumable send and receive (illumos 2605)
# does not know; the zfs shim refuses its options there too (cn/zfs.py).
RESUMABLE_PROPS = {"receive_resume_token"}
_resumable = []


def resumable():
    """Whether this host's zfs has resumable receives (common.resumable_zfs)."""
    if not _resumable:
        _resumable.append(common.resumable_zfs(common.this_host()))
    return _resumable[0]


def known(prop):
    if prop in RESUMABLE_PROPS and not resumable():
        return False
    return (prop in NATIVE or prop in EMULATED or is_user_prop(prop)
            or prop == "name")


def fetch(names, props, recursive=False, depth=None):
    """Ask the real zfs once for `props` of `names` (all datasets if empty).

    Returns (records, rc, stderr): records is an ordered dict
    name -> {prop: (value, source)} in the real zfs's order.
    """
    args = ["get", "-Hp", "-o", "name,property,value,source"]
    if depth is not None:
        args += ["-d", str(depth)]
    elif recursive:
        args.append("-r")
    args.append(",".join(dict.fromkeys(props)))
    args += list(names)
    r = zfs(*args)
    recs = {}
    for line in r.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) < 4:
            continue
        recs.setdefault(parts[0], {})[parts[1]] = (parts[2], parts[3])
    return recs, r.returncode, r.stderr


def value(rec, prop, default=None):
    v = rec.get(prop)
    return default if v is None else v[0]


def num(rec, prop, default=0):
    v = value(rec, prop)
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def volume_size(rec):
    """volsize if this record is an emulated volume (local or received marker)."""
    v = rec.get(VOLSIZE)
    if v and v[0] != "-" and (v[1] in ("local", "received")):
        try:
            return int(v[0])
        except ValueError:
            return None
    return None


def real_type(rec):
    return value(rec, "type", "filesystem")


def shown_type(rec):
    t = real_type(rec)
    if t == "filesystem" and volume_size(rec) is not None:
        return "volume"
    return t


def snapshot_groups(recs):
    """{fs name: [snapshot names sorted by createtxg]} over `recs`."""
    groups = {}
    for name, rec in recs.items():
        if "@" in name:
            groups.setdefault(name.split("@", 1)[0], []).append(name)
    for snaps in groups.values():
        snaps.sort(key=lambda s: num(recs[s], "createtxg"))
    return groups


def written_map(recs):
    """Estimated `written` for every dataset and snapshot in `recs`.

    Real ZFS counts the bytes born since the previous snapshot. From the
    accounting zfs-fuse gives: a snapshot (or the head) references what its
    predecessor did, minus what was freed since (at least the predecessor's
    own `used`), plus what was written; so written ~ refer - refer_prev +
    used_prev. A clone's first snapshot gets what the clone wrote since its
    origin: usedbydataset + usedbysnapshots minus the later deltas.
    """
    out = {}
    groups = snapshot_groups(recs)
    for fs in [n for n in recs if "@" not in n] + [g for g in groups if g not in recs]:
        snaps = groups.get(fs, [])
        head = recs.get(fs)
        chain = snaps + ([fs] if head is not None else [])
        later = 0
        for i, name in enumerate(chain):
            if i == 0:
                continue
            prev = recs[chain[i - 1]]
            w = max(0, num(recs[name], "referenced") - num(prev, "referenced")
                    + num(prev, "used"))
            out[name] = w
            later += w
        if not chain:
            continue
        first = chain[0]
        origin = value(head, "origin", "-") if head is not None else "-"
        if first == fs:   # no snapshots
            out[fs] = (num(head, "usedbydataset") if origin not in ("-", "")
                       else num(head, "referenced"))
        elif origin not in ("-", "") and head is not None:
            total = num(head, "usedbydataset") + num(head, "usedbysnapshots")
            out[first] = max(0, total - later)
        else:
            out[first] = num(recs[first], "referenced")
    return out


def emulate(recs, wanted, literal=True):
    """Add the emulated properties in `wanted` and mask what a volume lacks.

    Values stay raw numbers (strings) for sizes; `format_value` makes them
    human.
    """
    written = written_map(recs) if "written" in wanted else {}
    for name, rec in recs.items():
        t = real_type(rec)
        vol = volume_size(rec)
        snap = t == "snapshot"
        if vol is not None:
            for p in FS_ONLY:
                if p in rec:
                    rec[p] = ("-", "-")
        if "type" in rec:
            rec["type"] = (shown_type(rec), rec["type"][1])
        for p in wanted:
            if p == "written":
                rec[p] = (str(written.get(name, 0)), "-")
            elif p == "logicalused":
                rec[p] = (value(rec, "used", "-") if not snap else "-", "-")
            elif p == "logicalreferenced":
                rec[p] = (value(rec, "referenced", "-"), "-")
            elif p == "refcompressratio":
                rec[p] = (value(rec, "compressratio", "1.00x"), "-")
            elif p == "volsize":
                rec[p] = (str(vol), "local") if vol is not None else ("-", "-")
            elif p == "volblocksize":
                if vol is not None:
                    rec[p] = (str(num(rec, VOLBLOCK, DEFAULT_VOLBLOCKSIZE)), "-")
                else:
                    rec[p] = ("-", "-")
            elif p == "filesystem_limit":
                ok = not snap and vol is None
                rec[p] = ((str(UINT64_MAX) if ok else "-"), "default" if ok else "-")
            elif p == "snapshot_limit":
                rec[p] = ((str(UINT64_MAX) if not snap else "-"),
                          "default" if not snap else "-")
            elif p in ("filesystem_count", "snapshot_count"):
                rec[p] = ("-", "-")     # counts are kept only under a limit
            elif p == "sync":
                mine = rec.get(SYNC, ("-", "-"))
                rec[p] = ("-", "-") if snap else \
                    mine if mine[0] != "-" else ("standard", "default")
            elif p == "receive_resume_token":
                st = partial_state(name) if not snap else None
                rec[p] = (st["token"], "-") if st else ("-", "-")
            elif p == "encryption":
                cipher = pool_encryption()
                rec[p] = (cipher, "-") if cipher != "off" else ("off", "default")
    return recs


def encryption_flag(host):
    """The file that marks HOST's pool encrypted (`simdc encrypt HOST on`)."""
    return common.host_dir(host, "pool-encryption")


def pool_encryption(host=None):
    """The cipher every dataset of this CN's pool inherits, or "off": zfs-fuse
    has no encryption, the flag stands for a pool created with -O encryption=on."""
    try:
        with open(encryption_flag(host or common.this_host())) as f:
            return f.read().strip() or "off"
    except OSError:
        return "off"


def format_value(prop, val, literal):
    """A raw (-p) value as zfs(8) shows it, literal or human."""
    if val in ("-", "") or val is None:
        return "-" if val in ("-", None) else val
    if prop in NONE_IF_MAX and val == str(UINT64_MAX):
        return val if literal else "none"
    if literal:
        return val
    if prop in NONE_IF_ZERO and val == "0":
        return "none"
    if prop in SIZE_PROPS:
        try:
            return nicenum(int(val))
        except ValueError:
            return val
    if prop == "creation":
        try:
            return time.strftime("%a %b %e %H:%M %Y", time.localtime(int(val)))
        except ValueError:
            return val
    return val


def hide_private(recs):
    """Drop the simulator's own user properties from output."""
    for rec in recs.values():
        rec.pop(VOLSIZE, None)
        rec.pop(VOLBLOCK, None)


def sort_key(name, recs):
    """zfs_compare(): by dataset name, a dataset before its snapshots,
    snapshots by createtxg."""
    ds, at, _ = name.partition("@")
    return (ds, 1 if at else 0, num(recs.get(name, {}), "createtxg"))


def mounted_under(name, recursive=True):
    """The mounted filesystems at and (recursive) below `name`."""
    args = ["get", "-H", "-o", "name,value"] + (["-r"] if recursive else []) + \
        ["mounted", name]
    r = zfs(*args)
    return [line.split("\t")[0] for line in r.stdout.splitlines()
            if line.endswith("\tyes")]


def retry_busy(op, seconds=5.0):
    """Run op() until zfs-fuse stops calling the dataset busy (it releases a
    just-unmounted dataset a moment later) or `seconds` pass."""
    deadline = time.time() + seconds
    delay = 0.02
    r = op()
    while r.returncode and "busy" in r.stderr and time.time() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 0.25)
        r = op()
    return r


def rename(args):
    """`zfs rename ARGS...` that unmounts and remounts around it when
    zfs-fuse refuses a mounted dataset ("dataset is busy"), as illumos does
    by itself. Returns the CompletedProcess of the (last) rename."""
    r = zfs("rename", *args)
    names = [a for a in args if not a.startswith("-")]
    if r.returncode == 0 or "busy" not in r.stderr or len(names) != 2 \
            or "@" in names[0]:
        return r
    old, new = names
    mounted = mounted_under(old)
    for m in sorted(mounted, reverse=True):
        u = zfs("umount", m)
        if u.returncode:
            for again in sorted(mounted):
                zfs("mount", again)
            return u
    r = retry_busy(lambda: zfs("rename", *args))
    moved = [new + m[len(old):] for m in mounted] if r.returncode == 0 else mounted
    for m in sorted(moved):
        zfs("mount", m)
    return r


# ---- instances -------------------------------------------------------------

def _zone_xml(uuid, zones_dir):
    """The root element of /etc/zones/UUID.xml, or None if missing or unreadable."""
    try:
        with open(os.path.join(zones_dir, uuid + ".xml")) as f:
            text = f.read()
    except OSError:
        return None
    import xml.etree.ElementTree as ET
    try:
        return ET.fromstring(text)
    except ET.ParseError:
        return None


def brand_of(uuid, zones_dir="/etc/zones"):
    """The brand of an instance from /etc/zones/UUID.xml (None if unknown)."""
    root = _zone_xml(uuid, zones_dir)
    return None if root is None else root.get("brand")


def zonepath_of(uuid, zones_dir="/etc/zones"):
    root = _zone_xml(uuid, zones_dir)
    return None if root is None else root.get("zonepath")


def disk0_dataset(uuid, brand):
    if brand == "kvm":
        return "%s/%s-disk0" % (POOL, uuid)
    if brand == "bhyve":
        return "%s/%s/disk0" % (POOL, uuid)
    return None


def data_dirs(uuid, zones_dir="/etc/zones"):
    """data_dir first, then the mountpoints of the instance's other disks
    (kvm's zones/UUID-diskN, bhyve's zones/UUID/diskN) and of its delegated
    dataset zones/UUID/data: everything of the instance a migration must carry."""
    brand = brand_of(uuid, zones_dir)
    disk0 = disk0_dataset(uuid, brand)
    prefix = {"kvm": "%s/%s-disk" % (POOL, uuid),
              "bhyve": "%s/%s/disk" % (POOL, uuid)}.get(brand)
    names = zfs("list", "-H", "-o", "name").stdout.split()
    others = sorted(n for n in names if n != disk0 and (
        prefix and n.startswith(prefix) or n == "%s/%s/data" % (POOL, uuid)))
    return [data_dir(uuid, zones_dir)] + [m for m in map(mountpoint, others) if m]


def mount_volumes(uuid, zones_dir="/etc/zones"):
    """Mount the instance's emulated volumes that are not (a `recv -u` left
    them so): a zvol's blocks are there without a mount, so what reads a
    disk's data here (simdc-datadir, a boot) first makes sure of its mount."""
    brand = brand_of(uuid, zones_dir)
    if brand not in ("kvm", "bhyve"):
        return
    prefix = {"kvm": "%s/%s-disk" % (POOL, uuid), "bhyve": "%s/%s/disk" % (POOL, uuid)}[brand]
    out = zfs("list", "-H", "-o", "name,%s" % VOLSIZE).stdout
    for line in sorted(out.splitlines()):
        name, _, size = line.partition("\t")
        if name.startswith(prefix) and size.strip() not in ("", "-"):
            ensure_mounted(name)


def mountpoint(dataset):
    """The real mountpoint of a dataset (volumes included), or None."""
    r = zfs("get", "-H", "-o", "value", "mountpoint", dataset)
    if r.returncode != 0:
        return None
    mp = r.stdout.strip()
    return mp if mp.startswith("/") else None


def ensure_mounted(dataset):
    """Mount a dataset if it is not (e.g. after `zfs recv -u`); True if mounted."""
    r = zfs("get", "-H", "-o", "value", "mounted", dataset)
    if r.returncode != 0:
        return False
    if r.stdout.strip() == "yes":
        return True
    return zfs("mount", dataset).returncode == 0


def data_dir(uuid, zones_dir="/etc/zones"):
    """Where an instance's data lives: the zone root for joyent/lx zones, the
    mountpoint of disk0 for kvm and bhyve (brand from /etc/zones/UUID.xml)."""
    brand = brand_of(uuid, zones_dir)
    ds = disk0_dataset(uuid, brand)
    if ds is None:
        zp = zonepath_of(uuid, zones_dir) or "/%s/%s" % (POOL, uuid)
        return os.path.join(zp, "root")
    return mountpoint(ds) or "/%s" % ds


# ---- resumable receives (zfs recv -s): zfs-fuse has none --------------------
# What a cut `zfs recv -s` received is kept beside the pool, in this host's
# own files: the bytes, and the token `zfs get receive_resume_token` shows.

def partial_path(fs, ext):
    return common.host_dir(common.this_host(), "zfs-partial", fs.replace("/", "%") + ext)


def partial_state(fs):
    import json
    try:
        with open(partial_path(fs, ".json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def drop_partial(fs):
    for ext in (".json", ".stream"):
        try:
            os.unlink(partial_path(fs, ext))
        except FileNotFoundError:
            pass


def drop_partials(fs, recursive):
    """drop_partial for fs, and with recursive for the datasets below it."""
    drop_partial(fs)
    if not recursive:
        return
    top = os.path.dirname(partial_path(fs, ".json"))
    prefix = fs.replace("/", "%") + "%"
    for f in os.listdir(top) if os.path.isdir(top) else ():
        if f.startswith(prefix) and f.endswith(".json"):
            drop_partial(f[:-len(".json")].replace("%", "/"))


def make_token(fields):
    """A token in illumos' shape, 1-CKSUM-LENGTH-PAYLOAD (zfs_send_resume_token_to_nvlist
    reads it); the payload here is our own zlib-compressed JSON, not an nvlist."""
    import json
    import zlib
    packed = zlib.compress(json.dumps(fields, sort_keys=True).encode())
    return "1-%x-%x-%s" % (zlib.crc32(packed), len(packed), packed.hex())


def parse_token(token):
    import json
    import zlib
    try:
        version, cksum, length, payload = token.split("-", 3)
        packed = bytes.fromhex(payload)
        if version != "1" or int(cksum, 16) != zlib.crc32(packed) or \
                int(length, 16) != len(packed):
            return None
        return json.loads(zlib.decompress(packed))
    except (ValueError, zlib.error):
        return None
