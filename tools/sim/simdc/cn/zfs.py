"""zfs(8) as a SmartOS compute node speaks it, over the real zfs-fuse binary.

What zfs-fuse has is passed through (one real call where one suffices);
what it lacks is emulated the way SmartOS behaves: `list -p` (exact numbers
from `zfs get -Hp`), volumes (filesystems marked with simdc:volsize that
report type=volume and volsize), `send -v/-P/-n` with illumos' progress
lines, `recv -u/-e`, `recv -o prop=value` and `-o origin=` (recvclone.py),
the `sync` property, resumable receives (`recv -s`, `-A`,
receive_resume_token, `send -t`) and holds. Newer options zfs-fuse cannot
honour (`send -c`) fail as an older ZFS would: invalid option, usage, exit 2.
An encrypted pool (`simdc encrypt`) refuses a send with properties (-p, -R)
unless raw (-w), as libzfs does; -w is accepted and sends what zfs-fuse
can (its data is not encrypted: the raw receive is not emulated).
On a host whose platform predates resumable send and receive
(common.resumable_zfs: old-server) `recv -s`, `-A`, `-x` and `send -t` fail
so too, and receive_resume_token is an invalid property, as on that zfs.
A send's data goes from zfs-fuse straight to our stdout;
when progress is counted (-v) or a simdc fault cuts the stream
(SIMDC_FAULT_AFTER_BYTES) it is moved between OS pipes by splice(2), in
the kernel, Python only counting the bytes. Never a forced unmount: on
FUSE it is a lazy detach that wedges zfs-fuse.
"""
import contextlib
import os
import subprocess
import sys
import time

from .. import common, recvclone, zfslib
from ..zfslib import canonical, format_value


USAGE = {
    "list": "\tlist [-Hp] [-r|-d max] [-o property[,...]] [-s property]...\n"
            "\t    [-S property]... [-t type[,...]] [filesystem|volume|snapshot] ...\n",
    "get": "\tget [-rHp] [-d max] [-o \"all\" | field[,...]] [-t type[,...]] "
           "[-s source[,...]]\n\t    <\"all\" | property[,...]> "
           "[filesystem|volume|snapshot] ...\n",
    "set": "\tset <property=value> <filesystem|volume|snapshot> ...\n",
    "inherit": "\tinherit [-rS] <property> <filesystem|volume|snapshot> ...\n",
    "create": "\tcreate [-p] [-o property=value] ... <filesystem>\n"
              "\tcreate [-ps] [-b blocksize] [-o property=value] ... "
              "-V <size> <volume>\n",
    "destroy": "\tdestroy [-fnpRrv] <filesystem|volume>\n"
               "\tdestroy [-dnpRrv] "
               "<filesystem|volume>@<snap>[%<snap>][,...]\n",
    "snapshot": "\tsnapshot [-r] [-o property=value] ... "
                "<filesystem|volume>@<snap> ...\n",
    "clone": "\tclone [-p] [-o property=value] ... <snapshot> "
             "<filesystem|volume>\n",
    "send": "\tsend [-DnPpRvLew] [-[iI] snapshot] <snapshot>\n"
            "\tsend [-Penv] -t <receive_resume_token>\n",
    "hold": "\thold [-r] <tag> <snapshot> ...\n",
    "holds": "\tholds [-r] <snapshot> ...\n",
    "release": "\trelease [-r] <tag> <snapshot> ...\n",
    "receive": "\treceive [-vnsFu] [-o <property>=<value>] ... [-x <property>] ... "
               "<filesystem|volume|snapshot>\n"
               "\treceive [-vnsFu] [-o <property>=<value>] ... [-x <property>] ... "
               "[-d | -e] <filesystem>\n"
               "\treceive -A <filesystem|volume>\n",
}


# The zfs of a platform before resumable send and receive (illumos 2605,
# openzfs 9c3fd1216f; usr/src/cmd/zfs/zfs_main.c at its parent): no send -t,
# no receive -s or -A, no receive -x, -o origin= the one receive property.
OLD_USAGE = {
    "send": "\tsend [-DnPpRvLe] [-[iI] snapshot] <snapshot>\n"
            "\tsend [-Le] [-i snapshot|bookmark] <filesystem|volume|snapshot>\n",
    "receive": "\treceive [-vnFu] <filesystem|volume|snapshot>\n"
               "\treceive [-vnFu] [-o origin=<snapshot>] [-d | -e] <filesystem>\n",
}


def usage_of(cmd):
    if cmd in OLD_USAGE and not zfslib.resumable():
        return OLD_USAGE[cmd]
    return USAGE.get(cmd, "")


class Exit(Exception):
    def __init__(self, rc):
        Exception.__init__(self, rc)
        self.rc = rc


def err(msg):
    sys.stderr.write(msg if msg.endswith("\n") else msg + "\n")


def usage(cmd, msg=None):
    if msg:
        err(msg)
    err("usage:\n" + usage_of(cmd))
    if cmd in ("list", "get", "set", "inherit"):
        err("For the property list, run: zfs set|get\n")
    raise Exit(2)


def getopts(cmd, args, spec):
    """getopt(3) as zfs(8) uses it: options first, clustered, `-oVALUE`.
    (Not the getopt module: its import costs more than the whole command.)"""
    opts, i = [], 0
    while i < len(args):
        a = args[i]
        if a == "--":
            i += 1
            break
        if not a.startswith("-") or a == "-":
            break
        j = 1
        while j < len(a):
            c = a[j]
            pos = spec.find(c)
            if pos < 0 or c == ":":
                usage(cmd, "invalid option '%s'" % c)
            if pos + 1 < len(spec) and spec[pos + 1] == ":":
                value = a[j + 1:]
                if not value:
                    i += 1
                    if i >= len(args):
                        usage(cmd, "missing argument for '%s' option" % c)
                    value = args[i]
                opts.append(("-" + c, value))
                break
            opts.append(("-" + c, ""))
            j += 1
        i += 1
    return opts, args[i:]


def real(args, **kw):
    """Run the real zfs with our stdio; its exit status."""
    sys.stdout.flush()
    return subprocess.call([zfslib.real_zfs()] + list(args), **kw)


def passthrough(args):
    return real(args)


def fail_with(rc, stderr):
    if stderr:
        sys.stderr.write(stderr)
    raise Exit(rc or 1)


# ---- list / get --------------------------------------------------------------

TYPE_NAMES = {"filesystem": "filesystem", "fs": "filesystem",
              "volume": "volume", "vol": "volume", "snapshot": "snapshot",
              "snap": "snapshot", "bookmark": "bookmark"}


def parse_types(cmd, text):
    types = set()
    for t in text.split(","):
        if t == "all":
            types |= {"filesystem", "volume", "snapshot"}
        elif t in TYPE_NAMES:
            types.add(TYPE_NAMES[t])
        else:
            usage(cmd, "invalid type '%s'" % t)
    return types


def check_props(cmd, props):
    for p in props:
        if not zfslib.known(p):
            usage(cmd, "bad property list: invalid property '%s'" % p)


def gather(names, props, recursive, depth, literal=True):
    """Records for `names` with `props` (real and emulated); (recs, rc, stderr)."""
    wanted = [p for p in props if p != "name"]
    emulated = [p for p in wanted if p in zfslib.EMULATED]
    query = [p for p in wanted if p not in zfslib.EMULATED]
    query += ["type", "createtxg", zfslib.VOLSIZE, zfslib.VOLBLOCK]
    if emulated:
        query += zfslib.SPACE_PROPS
    if "sync" in emulated:
        query.append(zfslib.SYNC)
    if "all" in query:
        # the real zfs takes "all" only alone; guid and createtxg are hidden
        recs, rc, stderr = zfslib.fetch(names, ["all"], recursive, depth)
        hidden, _, _ = zfslib.fetch(names, ["guid", "createtxg"], recursive, depth)
        for n, rec in recs.items():
            rec.update(hidden.get(n, {}))
    else:
        recs, rc, stderr = zfslib.fetch(names, query, recursive, depth)
    if "written" in emulated and (depth is not None or not recursive) and recs:
        # `written` needs the neighbouring snapshots of every dataset shown.
        heads = sorted({n.split("@", 1)[0] for n in recs})
        extra, _, _ = zfslib.fetch(heads, zfslib.SPACE_PROPS, depth=1)
        full = dict(extra)
        full.update(recs)
        zfslib.emulate(full, emulated)
        recs = {n: full[n] for n in recs}
    else:
        zfslib.emulate(recs, emulated)
    return recs, rc, stderr


def select(recs, names, types, explicit_ok=True):
    out = []
    for name in recs:
        t = zfslib.shown_type(recs[name])
        if t in types or (explicit_ok and name in names and "@" in name):
            out.append(name)
    return out


def table(headers, rows, right, tabs):
    """Print rows as zfs does: tab-separated with -H, else aligned columns."""
    lines = []
    if tabs:
        for row in rows:
            lines.append("\t".join(row))
    else:
        widths = [len(h) for h in headers]
        for row in rows:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], len(cell))
        for row in [headers] + rows:
            cells = []
            for i, cell in enumerate(row):
                last = i == len(row) - 1
                if right[i]:
                    cells.append(cell.rjust(widths[i]))
                else:
                    cells.append(cell if last else cell.ljust(widths[i]))
            lines.append("  ".join(cells))
    if lines:
        sys.stdout.write("\n".join(lines) + "\n")


def do_list(args):
    opts, names = getopts("list", args, "rHpd:o:s:S:t:")
    recursive = scripted = literal = False
    depth = None
    fields = "name,used,available,referenced,mountpoint"
    sorts = []
    types = {"filesystem", "volume"}
    types_given = False
    for o, a in opts:
        if o == "-r":
            recursive = True
        elif o == "-H":
            scripted = True
        elif o == "-p":
            literal = True
        elif o == "-d":
            try:
                depth = int(a)
                if depth < 0:
                    raise ValueError
            except ValueError:
                usage("list", "invalid depth '%s'" % a)
            recursive = True
        elif o == "-o":
            fields = a
        elif o in ("-s", "-S"):
            sorts.append((canonical(a), o == "-S"))
        elif o == "-t":
            types = parse_types("list", a)
            types_given = True
    if fields == "space":
        fields = "name,avail,used,usedsnap,usedds,usedrefreserv,usedchild"
        if not types_given:
            types = {"filesystem", "volume"}
    cols = [canonical(c) for c in fields.split(",") if c]
    check_props("list", cols + [s for s, _ in sorts])
    if types == {"snapshot"} and names and not recursive:
        depth, recursive = 1, True     # `zfs list -t snapshot fs` lists fs's snapshots
    recs, rc, stderr = gather(names, cols + [s for s, _ in sorts],
                              recursive, depth, literal)
    if stderr:
        sys.stderr.write(stderr)
    shown = select(recs, names, types)
    shown.sort(key=lambda n: zfslib.sort_key(n, recs))
    for prop, reverse in reversed(sorts):
        def key(n, prop=prop):
            v = zfslib.value(recs[n], prop, "-") if prop != "name" else n
            try:
                return (0, int(v), "")
            except ValueError:
                return (1, 0, v)
        shown.sort(key=key, reverse=reverse)
    rows = []
    for n in shown:
        row = []
        for c in cols:
            if c == "name":
                row.append(n)
            else:
                row.append(format_value(c, zfslib.value(recs[n], c, "-"), literal))
        rows.append(row)
    if not rows and not names and rc == 0:
        err("no datasets available")
    headers = [zfslib.HEADERS.get(c, c.upper()) for c in cols]
    right = [c in zfslib.RIGHT_ALIGNED for c in cols]
    table(headers, rows, right, scripted)
    return 1 if rc else 0


SOURCES = {"local", "default", "inherited", "temporary", "received", "none"}


def source_kind(src):
    if src == "-":
        return "none"
    if src.startswith("inherited"):
        return "inherited"
    return src


def do_get(args):
    opts, rest = getopts("get", args, "rHpd:o:s:t:")
    recursive = scripted = literal = False
    depth = None
    fields = ["name", "property", "value", "source"]
    sources = None
    types = {"filesystem", "volume", "snapshot"}
    for o, a in opts:
        if o == "-r":
            recursive = True
        elif o == "-H":
            scripted = True
        elif o == "-p":
            literal = True
        elif o == "-d":
            try:
                depth = int(a)
            except ValueError:
                usage("get", "invalid depth '%s'" % a)
            recursive = True
        elif o == "-o":
            fields = ["name", "property", "value", "received", "source"] \
                if a == "all" else a.split(",")
            for f in fields:
                if f not in ("name", "property", "value", "received", "source"):
                    usage("get", "invalid field '%s'" % f)
        elif o == "-s":
            sources = set(a.split(","))
            for s in sources:
                if s not in SOURCES:
                    usage("get", "invalid source '%s'" % s)
        elif o == "-t":
            types = parse_types("get", a)
    if not rest:
        usage("get", "missing property argument")
    props = [canonical(p) for p in rest[0].split(",") if p]
    names = rest[1:]
    all_props = "all" in props
    if not all_props:
        check_props("get", props)
    wanted = list(zfslib.EMULATED) if all_props else props
    recs, rc, stderr = gather(names, (["all"] if all_props else []) + wanted,
                              recursive, depth, literal)
    if stderr:
        sys.stderr.write(stderr)
    private = {zfslib.VOLSIZE, zfslib.VOLBLOCK, zfslib.SYNC}
    rows = []
    for name in select(recs, names, types, explicit_ok=True):
        rec = recs[name]
        if all_props:
            vol = zfslib.shown_type(rec) == "volume"
            plist = [p for p in rec if p not in private and p != "createtxg"
                     and not (vol and p in zfslib.FS_ONLY)]
            if "createtxg" in rec and "createtxg" in props:
                plist.append("createtxg")
            for p in zfslib.EMULATED:
                if p in plist:
                    plist.remove(p)
                    if rec.get(p, ("-",))[0] != "-":
                        plist.append(p)
        else:
            plist = props
        for p in plist:
            if p == "name":
                val, src = name, "-"
            else:
                val, src = rec.get(p, ("-", "-"))
            if sources is not None and source_kind(src) not in sources:
                continue
            cells = {"name": name, "property": p,
                     "value": format_value(p, val, literal),
                     "received": "-", "source": src}
            rows.append([cells[f] for f in fields])
    headers = [f.upper() for f in fields]
    table(headers, rows, [False] * len(fields), scripted)
    return 1 if rc else 0


# ---- changing datasets -------------------------------------------------------

def volume_info(names):
    """{name: (volsize or None, volblocksize)} for the given datasets."""
    recs, rc, stderr = zfslib.fetch(names, [zfslib.VOLSIZE, zfslib.VOLBLOCK, "type"])
    if rc:
        fail_with(rc, stderr)
    return {n: (zfslib.volume_size(r), zfslib.num(r, zfslib.VOLBLOCK,
                                                  zfslib.DEFAULT_VOLBLOCKSIZE))
            for n, r in recs.items()}


def parse_size_or_die(what, text, target):
    try:
        return zfslib.parse_size(text)
    except ValueError as e:
        err("cannot %s '%s': %s" % (what, target, e))
        raise Exit(1)


def do_create(args):
    opts, rest = getopts("create", args, "po:V:sb:")
    parents = sparse = False
    volsize = None
    blocksize = None
    props = []
    for o, a in opts:
        if o == "-p":
            parents = True
        elif o == "-s":
            sparse = True
        elif o == "-V":
            volsize = a
        elif o == "-b":
            blocksize = a
        elif o == "-o":
            if "=" not in a:
                usage("create", "missing '=' for -o option")
            k, v = a.split("=", 1)
            k = canonical(k)
            if k == "volblocksize":
                blocksize = v
            elif k == "volsize" and volsize is not None:
                volsize = v
            else:
                props.append((k, v))
    if len(rest) != 1:
        usage("create", "missing filesystem argument" if not rest
              else "too many arguments")
    ds = rest[0]
    if blocksize is not None and volsize is None:
        usage("create", "'-b' and '-s' can only be used with '-V'" if not sparse
              else None)
    argv = ["create"] + (["-p"] if parents else [])
    if volsize is not None:
        size = parse_size_or_die("create", volsize, ds)
        bs = (parse_size_or_die("create", blocksize, ds) if blocksize
              else zfslib.DEFAULT_VOLBLOCKSIZE)
        if bs < 512 or bs > 131072 or bs & (bs - 1):
            err("cannot create '%s': volume block size must be power of 2 "
                "from 512B to 128k" % ds)
            return 1
        if size == 0:
            err("cannot create '%s': volume size cannot be zero" % ds)
            return 1
        if size % bs:
            err("cannot create '%s': volume size must be a multiple of volume "
                "block size" % ds)
            return 1
        props = [(k, v) for k, v in props if k not in zfslib.FS_ONLY]
        argv += ["-o", "%s=%d" % (zfslib.VOLSIZE, size),
                 "-o", "%s=%d" % (zfslib.VOLBLOCK, bs)]
    elif sparse:
        usage("create", "'-s' and '-b' can only be used with '-V'")
    for k, v in props:
        argv += ["-o", "%s=%s" % (k, v)]
    return real(argv + [ds])


READONLY = {"type", "creation", "used", "available", "referenced",
            "compressratio", "mounted", "origin", "usedbysnapshots",
            "usedbydataset", "usedbychildren", "usedbyrefreservation",
            "userrefs", "defer_destroy", "guid", "createtxg", "written",
            "logicalused", "logicalreferenced", "refcompressratio",
            "volblocksize", "filesystem_count", "snapshot_count"}


def do_set(args):
    if args and args[0].startswith("-") and args[0] != "-":
        usage("set", "invalid option '%s'" % args[0][1:2])
    assigns, targets = [], []
    for a in args:
        if "=" in a and not targets:
            assigns.append(a)
        else:
            targets.append(a)
    if not assigns:
        usage("set", "missing property=value argument")
    if not targets:
        usage("set", "missing dataset name(s)")
    info = None
    for a in assigns:
        k, v = a.split("=", 1)
        k = canonical(k)
        if k in READONLY:
            for t in targets:
                err("cannot set property for '%s': '%s' is readonly" % (t, k))
            return 1
        if k == "sync":
            if v not in zfslib.SYNC_VALUES:
                err("cannot set property for '%s': 'sync' must be one of '%s'"
                    % (targets[0], " | ".join(zfslib.SYNC_VALUES)))
                return 1
            k = zfslib.SYNC
        elif k == "volsize" or k in zfslib.FS_ONLY or k in ("filesystem_limit",
                                                           "snapshot_limit"):
            if info is None:
                info = volume_info(targets)
            if k == "volsize":
                size = parse_size_or_die("set property for", v, targets[0])
                for t in targets:
                    vs, bs = info.get(t, (None, 0))
                    if vs is None:
                        err("cannot set property for '%s': 'volsize' does not "
                            "apply to datasets of this type" % t)
                        return 1
                    if size == 0 or size % bs:
                        err("cannot set property for '%s': volume size must be "
                            "a multiple of volume block size" % t)
                        return 1
                rc = real(["set", "%s=%d" % (zfslib.VOLSIZE, size)] + targets)
                if rc:
                    return rc
                continue
            if k in ("filesystem_limit", "snapshot_limit"):
                # an old pool has no limits; accept "none" as a no-op
                if v != "none":
                    err("cannot set property for '%s': pool and or dataset must "
                        "be upgraded to set this property or value" % targets[0])
                    return 1
                continue
            vols = [t for t in targets if info.get(t, (None,))[0] is not None]
            if vols:
                err("cannot set property for '%s': '%s' does not apply to "
                    "datasets of this type" % (vols[0], k))
                return 1
        rc = real(["set", "%s=%s" % (k, v)] + targets)
        if rc:
            return rc
    return 0


def do_inherit(args):
    opts, rest = getopts("inherit", args, "rS")
    if len(rest) < 2:
        usage("inherit", "missing property argument" if not rest
              else "missing dataset argument")
    prop = canonical(rest[0])
    if prop in ("volsize", "volblocksize") or prop in READONLY:
        err("'%s' property cannot be inherited" % prop)
        return 1
    if prop in ("quota", "reservation", "refquota", "refreservation"):
        err("'%s' property cannot be inherited" % prop)
        err("use 'zfs set %s=none' to clear" % prop)
        return 1
    return real(["inherit"] + [o for o, _ in opts] + [prop] + rest[1:])


def do_clone(args):
    opts, rest = getopts("clone", args, "po:")
    if len(rest) != 2:
        usage("clone", "missing source dataset argument" if not rest else
              "missing target dataset argument" if len(rest) == 1 else
              "too many arguments")
    snap, target = rest
    argv = ["clone"]
    volsize = None
    for o, a in opts:
        if o == "-p":
            argv.append("-p")
        elif o == "-o":
            if "=" not in a:
                usage("clone", "missing '=' for -o option")
            k, v = a.split("=", 1)
            if canonical(k) == "volsize":
                volsize = v
            else:
                argv += ["-o", "%s=%s" % (canonical(k), v)]
    origin_fs = snap.split("@", 1)[0]
    recs, rc, stderr = zfslib.fetch([origin_fs], [zfslib.VOLSIZE, zfslib.VOLBLOCK])
    rec = recs.get(origin_fs, {})
    vs = zfslib.volume_size(rec)
    if vs is not None:
        # A clone of a volume snapshot is a volume.
        bs = zfslib.num(rec, zfslib.VOLBLOCK, zfslib.DEFAULT_VOLBLOCKSIZE)
        if volsize is not None:
            vs = parse_size_or_die("create", volsize, target)
        argv += ["-o", "%s=%d" % (zfslib.VOLSIZE, vs),
                 "-o", "%s=%d" % (zfslib.VOLBLOCK, bs)]
    elif volsize is not None:
        err("cannot create '%s': 'volsize' does not apply to datasets of this "
            "type" % target)
        return 1
    return real(argv + [snap, target])


def do_snapshot(args):
    opts, rest = getopts("snapshot", args, "ro:")
    if not rest:
        usage("snapshot", "missing snapshot argument")
    flags = []
    for o, a in opts:
        flags += [o] if o == "-r" else [o, a]
    for name in rest:
        if "@" not in name:
            err("cannot create snapshot '%s': empty component or misplaced '@'"
                " or '#' delimiter in name" % name)
            return 1
    if len(rest) == 1:
        return real(["snapshot"] + flags + rest)
    # Several snapshots at once: all or none, as illumos does it atomically.
    made = []
    for name in rest:
        r = zfslib.zfs("snapshot", *(flags + [name]))
        if r.returncode:
            for m in reversed(made):
                zfslib.zfs("destroy", *(["-r"] if "-r" in flags else []) + [m])
            sys.stderr.write(r.stderr)
            return r.returncode
        made.append(name)
    return 0


def expand_snapshots(name):
    """fs@a,b and fs@a%c (illumos) -> the snapshot names they mean."""
    fs, _, spec = name.partition("@")
    parts = spec.split(",")
    if len(parts) == 1 and "%" not in spec:
        return [name]
    recs = None
    out = []
    for part in parts:
        if "%" in part:
            if recs is None:
                recs, rc, stderr = zfslib.fetch([fs], ["createtxg"], depth=1)
                if rc:
                    fail_with(rc, stderr)
            first, _, last = part.partition("%")
            snaps = zfslib.snapshot_groups(recs).get(fs, [])
            short = [s.split("@", 1)[1] for s in snaps]
            lo = short.index(first) if first else 0
            hi = short.index(last) if last else len(short) - 1
            out += ["%s@%s" % (fs, s) for s in short[lo:hi + 1]]
        else:
            out.append("%s@%s" % (fs, part))
    return out


mounted_under = zfslib.mounted_under


def do_umount(args):
    """Never forced: on FUSE -f is a lazy detach, and a dataset detached with
    files still open wedges zfs-fuse (destroy says busy forever, mounts hang)."""
    args = [a for a in args if a != "-f"]
    args = [a.replace("f", "") if a.startswith("-") and not a.startswith("--")
            and len(a) > 2 else a for a in args]
    r = zfslib.zfs("umount", *[a for a in args if a != "-"])
    sys.stdout.write(r.stdout)
    if r.returncode and "busy" in r.stderr:
        target = [a for a in args if not a.startswith("-")]
        err("cannot unmount '%s': Device busy" % (
            (zfslib.mountpoint(target[0]) or target[0]) if target else ""))
    else:
        sys.stderr.write(r.stderr)
    return r.returncode


def do_rename(args):
    r = zfslib.rename(args)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    return r.returncode


def do_destroy(args):
    opts, rest = getopts("destroy", args, "dfnpRrv")
    flags = [o for o, _ in opts]
    if len(rest) != 1:
        usage("destroy", "missing dataset argument" if not rest
              else "too many arguments")
    name = rest[0]
    dry, verbose, parsable = "-n" in flags, "-v" in flags, "-p" in flags
    recursive = "-r" in flags or "-R" in flags
    real_flags = [f for f in flags if f in ("-d", "-f", "-r", "-R")]
    targets = expand_snapshots(name) if "@" in name else [name]
    if dry or verbose:
        recs, rc, stderr = zfslib.fetch(
            [t.split("@")[0] if "@" in t and recursive else t for t in targets],
            ["used", "type"], recursive=recursive)
        if rc:
            fail_with(rc, stderr)
        doomed = []
        for t in targets:
            if "@" in t and recursive:
                snap = t.split("@", 1)[1]
                doomed += [n for n in recs if n.endswith("@" + snap)]
            elif "@" in t:
                doomed.append(t)
            else:
                doomed += [n for n in recs if n == t or n.startswith(t + "/")
                           or n.startswith(t + "@")]
        reclaim = sum(zfslib.num(recs[n], "used") for n in doomed
                      if "@" in n or n == name)
        for n in sorted(doomed, key=lambda n: zfslib.sort_key(n, recs),
                        reverse=True):
            print(("destroy\t%s" if parsable else
                   "would destroy %s" if dry else "will destroy %s") % n)
        if parsable:
            print("reclaim\t%d" % reclaim)
        else:
            print(("would reclaim %s" if dry else "will reclaim %s")
                  % zfslib.nicenum(reclaim))
        if dry:
            return 0
    snaps = expand_recursive(targets, recursive) if "@" in name else []
    if (len(snaps) > 1 or recursive) and snaps and not {"-R", "-d"} & set(flags):
        # illumos zfs_do_destroy: a snapshot with clones refuses the lot
        # before anything is destroyed (destroy_check_dependent, for each);
        # then the snapshots named (with -r, those of every descendant too)
        # go in one lzc_destroy_snaps: a hold on any fails them all.
        # zfs-fuse says "snapshot is cloned" and destroys them one by one up
        # to a held one. (One alone: its own refusals, reworded in destroy_one.)
        cloned = dependent_clones(snaps)
        for snap in snaps:
            if cloned.get(snap):
                err("cannot destroy '%s': snapshot has dependent clones" % snap)
                err("use '-R' to destroy the following datasets:")
                for c in cloned[snap]:
                    err(c)
        if cloned:
            return 1
        recs, _, _ = zfslib.fetch(snaps, ["userrefs"])
        held = [n for n in snaps if zfslib.num(recs.get(n, {}), "userrefs") > 0]
        if held:
            return refuse_held(held)
    for t in targets:
        rc = destroy_one(t, real_flags)
        if rc:
            return rc
    return 0


def zfs_mounts():
    """{dataset: mountpoint} of the zfs-fuse mounts in this namespace."""
    out = {}
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[2] == "fuse.zfs":
                    out[parts[0]] = parts[1].replace("\\040", " ")
    except OSError:
        pass
    return out


def unmount_order(name, recursive):
    """What to unmount, deepest first, before destroying `name`: its mounted
    datasets and any other dataset mounted inside them (zones/cores/UUID sits
    at /zones/UUID/cores), which would keep the zone root busy."""
    mounts = zfs_mounts()
    tree = [d for d in mounts if d == name or (recursive and d.startswith(name + "/"))]
    roots = [mounts[d] for d in tree]
    nested = [d for d, mp in mounts.items() if d not in tree and
              any(mp.startswith(r.rstrip("/") + "/") for r in roots)]
    return sorted(tree + nested, key=lambda d: mounts[d], reverse=True)


def dependent_clones(snaps):
    """{snapshot: [its clones]} for those of snaps that have clones."""
    recs, _, _ = zfslib.fetch([], ["origin"], recursive=True)
    out = {}
    for n, r in recs.items():
        origin = zfslib.value(r, "origin", "-")
        if origin in snaps:
            out.setdefault(origin, []).append(n)
    return out


def refuse_held(held):
    """libzfs_dataset.c zfs_destroy_snaps_nvl on lzc_destroy_snaps' EBUSY: a
    line for each held snapshot; none of the batch is destroyed
    (libzfs_core.c lzc_destroy_snaps)."""
    for h in sorted(held):
        err("cannot destroy snapshot %s: dataset is busy" % h)
    return 1


def post_order(top, names):
    """names (top and what is below it) as zfs_iter_dependents visits them:
    each child's subtree, then the dataset itself (libzfs_iter.c
    iter_dependents_cb; sorted names stand for the order of the ZAP)."""
    kids = sorted(n for n in names if n.rpartition("/")[0] == top)
    out = []
    for k in kids:
        out += post_order(k, names)
    return out + [top]


def destroy_held_tree(name, flags):
    """`zfs destroy -r` of a tree with held snapshots, as illumos runs it
    (zfs_main.c zfs_do_destroy, destroy_callback): dependents first, each
    filesystem's snapshots in one batch and then the filesystem; the first
    batch a hold fails ends it, with what came before it destroyed and the
    rest left. None if it has no hold (or has outside clones, which
    zfs-fuse refuses first as illumos does, destroying nothing)."""
    recs, rc, _ = zfslib.fetch([name], ["userrefs"], recursive=True)
    if rc or not any("@" in n and zfslib.num(r, "userrefs") > 0 for n, r in recs.items()):
        return None
    snaps = [n for n in recs if "@" in n]
    tree = [n for n in recs if "@" not in n]
    if [c for cs in dependent_clones(snaps).values() for c in cs if c not in tree]:
        return None
    for fs in post_order(name, tree):
        held = [n for n in snaps if n.split("@", 1)[0] == fs and
                zfslib.num(recs[n], "userrefs") > 0]
        if held:
            return refuse_held(held)
        rc = destroy_one(fs, flags)
        if rc:
            return rc
    return 0


def destroy_one(name, flags):
    """Destroy, unmounting first when zfs-fuse says the dataset is busy.

    Never a forced unmount: on FUSE that is a lazy detach, and destroying a
    detached dataset that still has open files wedges zfs-fuse. So `-f`
    unmounts like illumos without it, and a dataset whose files are open
    (a running workload) fails with "Device busy".
    """
    flags = [f for f in flags if f != "-f"]
    if "@" not in name and "-r" in flags and "-R" not in flags:
        rc = destroy_held_tree(name, flags)
        if rc is not None:
            return rc
    r = zfslib.zfs("destroy", *(flags + [name]))
    if r.returncode and "busy" in r.stderr:
        held = held_snapshots(name, "-r" in flags or "-R" in flags)
        if held:
            # illumos zfs_destroy_snaps_nvl (libzfs_dataset.c): a user hold
            # is EBUSY on the snapshot, named alone
            for h in held:
                err("cannot destroy snapshot %s: dataset is busy" % h)
            return 1
    if r.returncode and "busy" in r.stderr and "@" not in name:
        for m in unmount_order(name, "-r" in flags or "-R" in flags):
            u = zfslib.zfs("umount", m)
            if u.returncode:
                err("cannot unmount '%s': Device busy" % (
                    zfslib.mountpoint(m) or m))
                return 1
        r = zfslib.retry_busy(lambda: zfslib.zfs("destroy", *(flags + [name])))
    if r.returncode == 0 and "@" not in name:
        # a cut `recv -s`'s state goes with its dataset (illumos keeps it in
        # the dataset, or in its %recv child, which -r destroys)
        zfslib.drop_partials(name, "-r" in flags or "-R" in flags)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    return r.returncode


# ---- user holds (zfs hold, holds, release) ------------------------------------
# zfs-fuse keeps holds (userrefs; destroy refuses a held snapshot) but cannot
# list them (its `zfs holds` needs pyzfs): the tags and times are kept beside
# the pool, in this host's own files, and checked against userrefs.

def holds_path():
    return common.host_dir(common.this_host(), "zfs-holds.json")


def load_holds():
    import json
    try:
        with open(holds_path()) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def save_holds(holds):
    import json
    os.makedirs(os.path.dirname(holds_path()), exist_ok=True)
    tmp = holds_path() + ".%d" % os.getpid()
    with open(tmp, "w") as f:
        json.dump(holds, f)
    os.replace(tmp, holds_path())


def held_snapshots(name, recursive):
    """The snapshots of NAME (or NAME itself) that carry a user hold."""
    fs = name.split("@", 1)[0]
    recs, rc, _ = zfslib.fetch([fs], ["userrefs"], recursive=True,
                               depth=None if recursive else 1)
    out = []
    for n, rec in recs.items():
        if "@" in n and zfslib.num(rec, "userrefs") > 0 and (
                n == name or "@" not in name):
            out.append(n)
    return sorted(out)


def hold_targets(cmd, args, need_tag):
    opts, rest = getopts(cmd, args, "r")
    recursive = bool(opts)
    if need_tag:
        if len(rest) < 2:
            usage(cmd, "too few arguments")
        tag, snaps = rest[0], rest[1:]
    else:
        if not rest:
            usage(cmd, "too few arguments")
        tag, snaps = None, rest
    for s in snaps:
        if "@" not in s:
            err("'%s' is not a snapshot" % s)
            raise Exit(1)
    return recursive, tag, snaps


def expand_recursive(snaps, recursive):
    if not recursive:
        return snaps
    out = []
    for s in snaps:
        fs, short = s.split("@", 1)
        recs, _, _ = zfslib.fetch([fs], ["type"], recursive=True)
        out += sorted(n for n in recs if n.endswith("@" + short))
    return out or snaps


def do_hold(args):
    recursive, tag, snaps = hold_targets("hold", args, True)
    holds = load_holds()
    rc = 0
    for s in expand_recursive(snaps, recursive):
        r = zfslib.zfs("hold", tag, s)
        if r.returncode:
            sys.stderr.write(r.stderr)
            rc = 1
            continue
        holds.setdefault(s, {})[tag] = int(time.time())
    save_holds(holds)
    return rc


def do_release(args):
    recursive, tag, snaps = hold_targets("release", args, True)
    holds = load_holds()
    rc = 0
    for s in expand_recursive(snaps, recursive):
        r = zfslib.zfs("release", tag, s)
        if r.returncode:
            sys.stderr.write(r.stderr)
            rc = 1
            continue
        holds.get(s, {}).pop(tag, None)
        if not holds.get(s):
            holds.pop(s, None)
    save_holds(holds)
    return rc


def do_holds(args):
    """`zfs holds [-rH]`: NAME, TAG, TIMESTAMP (ctime(3) format) as illumos'
    zfs_main.c print_holds prints them."""
    opts, rest = getopts("holds", args, "rH")
    flags = [o for o, _ in opts]
    if not rest:
        usage("holds", "too few arguments")
    holds = load_holds()
    rows, rc = [], 0
    for s in expand_recursive(rest, "-r" in flags):
        recs, r, stderr = zfslib.fetch([s], ["userrefs"])
        if r or s not in recs:
            err("cannot open '%s': dataset does not exist" % s)
            rc = 1
            continue
        if zfslib.num(recs[s], "userrefs") == 0:
            continue
        for tag, t in sorted(holds.get(s, {}).items()):
            rows.append([s, tag, time.strftime("%a %b %e %H:%M %Y", time.localtime(t))])
    table(["NAME", "TAG", "TIMESTAMP"], rows, [False] * 3, "-H" in flags)
    return rc


# ---- send / receive ----------------------------------------------------------

PIPE_SIZE = 1 << 20


def fault():
    """(after_bytes, exit) when a simdc fault cuts this command's stream."""
    n = os.environ.get("SIMDC_FAULT_AFTER_BYTES")
    if n is None:
        return None
    return int(n), int(os.environ.get("SIMDC_FAULT_EXIT", "1"))


def make_pipe():
    r, w = os.pipe()
    try:
        import fcntl
        fcntl.fcntl(w, 1031, PIPE_SIZE)   # F_SETPIPE_SZ
    except OSError:
        pass
    return r, w


class Relay:
    """Moves a stream between two fds inside the kernel (splice), counting.

    Python never holds the data; it only asks the kernel to move it and
    counts the bytes, for progress lines and for cutting a faulted stream.
    """

    def __init__(self, src, dst, limit=None):
        self.src, self.dst, self.limit = src, dst, limit
        self.total = 0
        self.cut = False

    def run(self):
        splice = getattr(os, "splice", None)
        while True:
            want = PIPE_SIZE
            if self.limit is not None:
                want = min(want, self.limit - self.total)
                if want <= 0:
                    self.cut = True
                    return
            n = None
            if splice is not None:
                try:
                    n = splice(self.src, self.dst, want)
                except OSError as e:
                    if e.errno != 22:      # EINVAL: fd type splice cannot do
                        raise
                    splice = None
            if n is None:
                data = os.read(self.src, want)
                n = len(data)
                view = memoryview(data)
                while view:
                    view = view[os.write(self.dst, view):]
            if n == 0:
                return
            self.total += n


class Progress:
    """The per-second `HH:MM:SS<TAB>BYTES<TAB>DS@SNAP` lines of `send -v`."""

    def __init__(self, relay, plan, parsable):
        import threading
        self.relay, self.plan, self.parsable = relay, plan, parsable
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def current(self):
        done = self.relay.total
        base = 0
        for i, step in enumerate(self.plan):
            if done < base + step["size"] or i == len(self.plan) - 1:
                return step["to"], done - base, i
            base += step["size"]
        return "", done, 0

    def loop(self):
        shown = None
        while not self.stop.wait(1.0):
            name, sent, idx = self.current()
            tm = time.localtime()
            if self.parsable:
                line = "%02d:%02d:%02d\t%d\t%s\n" % (
                    tm.tm_hour, tm.tm_min, tm.tm_sec, sent, name)
            else:
                line = ""
                if shown != idx:
                    line = "TIME        SENT   SNAPSHOT\n"
                line += "%02d:%02d:%02d   %5s   %s\n" % (
                    tm.tm_hour, tm.tm_min, tm.tm_sec, zfslib.nicebytes(sent), name)
            shown = idx
            try:
                os.write(2, line.encode())
            except OSError:
                return


def estimate(nbytes):
    """dmu_send_estimate(): data plus a 312-byte record per 128K block,
    minus the 128-byte block pointers that are not sent."""
    records = nbytes // 131072
    return max(0, nbytes - records * 128 + records * 312)


def plan_send(recs, fs, tosnap, fromsnap, fromorigin, doall, replicate):
    """The snapshots a send covers, each {to, from (short name or None), size}."""
    written = zfslib.written_map(recs)
    groups = zfslib.snapshot_groups(recs)
    if replicate:
        tree = sorted([n for n in recs if "@" not in n and
                       (n == fs or n.startswith(fs + "/"))],
                      key=lambda n: zfslib.sort_key(n, recs))
    else:
        tree = [fs]
    plan = []
    for ds in tree:
        snaps = groups.get(ds, [])
        short = [s.split("@", 1)[1] for s in snaps]
        if tosnap not in short:
            if replicate and ds != fs:
                err("WARNING: could not send %s@%s: does not exist" % (ds, tosnap))
            continue
        hi = short.index(tosnap)
        if fromsnap is not None and fromsnap in short:
            lo = short.index(fromsnap)
            if lo >= hi:
                err("WARNING: could not send %s@%s:\nincremental source (%s@%s)"
                    " is not earlier than it" % (ds, tosnap, ds, fromsnap))
                raise Exit(1)
            if doall:
                steps = [(short[i], short[i - 1]) for i in range(lo + 1, hi + 1)]
            else:
                steps = [(tosnap, fromsnap)]
        elif fromsnap is not None and not replicate:
            err("WARNING: could not send %s@%s:\nincremental source (%s@%s) "
                "does not exist" % (ds, tosnap, ds, fromsnap))
            raise Exit(1)
        elif doall or (replicate and fromsnap is None):
            steps = [(short[0], None)] + [(short[i], short[i - 1])
                                          for i in range(1, hi + 1)]
        else:
            steps = [(tosnap, None)]
        clone = zfslib.value(recs.get(ds, {}), "origin", "-") not in ("-", "")
        for to, frm in steps:
            full = "%s@%s" % (ds, to)
            b = short.index(to)
            if frm is None and (fromorigin or replicate) and clone:
                # incremental from the origin, shown by illumos as "full"
                size = sum(written.get(s, 0) for s in snaps[:b + 1])
            elif frm is None:
                size = zfslib.num(recs[full], "referenced")
            else:
                a = short.index(frm)
                size = sum(written.get(s, 0) for s in snaps[a + 1:b + 1])
            plan.append({"to": full, "from": frm, "size": estimate(size)})
    return plan


def do_send(args):
    opts, rest = getopts("send", args, "i:I:RDpPvneLw" + ("t:" if zfslib.resumable() else ""))
    tokens = [a for o, a in opts if o == "-t"]
    if tokens:
        if rest:
            usage("send", "too many arguments")
        return send_resume(tokens[0], any(o in ("-v", "-P") for o, _ in opts),
                           ("-P", "") in opts, ("-n", "") in opts)
    fromname = None
    doall = replicate = props = dedup = parsable = verbose = dryrun = progress = False
    raw = ("-w", "") in opts
    for o, a in opts:
        if o in ("-i", "-I"):
            if fromname is not None:
                usage("send")
            fromname = a
            doall = o == "-I"
        elif o == "-R":
            replicate = True
        elif o == "-D":
            dedup = True
        elif o == "-p":
            props = True
        elif o == "-P":
            parsable = verbose = True
        elif o == "-v":
            verbose = progress = True
        elif o == "-n":
            dryrun = True
    if not rest:
        usage("send", "missing snapshot argument")
    if len(rest) > 1:
        usage("send", "too many arguments")
    target = rest[0]
    if "@" not in target:
        usage("send", "argument must be a snapshot")
    fs, tosnap = target.split("@", 1)
    recs, rc, stderr = zfslib.fetch([fs], zfslib.SPACE_PROPS,
                                    recursive=replicate,
                                    depth=None if replicate else 1)
    if rc or fs not in recs:
        fail_with(rc, stderr)
    if target not in recs:
        err("cannot open '%s': dataset does not exist" % target)
        return 1
    if (props or replicate) and not raw and zfslib.pool_encryption() != "off":
        # illumos libzfs_sendrecv.c send_iterate_fs: a stream with properties
        # (-p, -R) of an encrypted dataset only raw (-w), refused before a
        # byte or an estimate is written; zfs_do_send exits 1. The top
        # dataset is the first one checked (every dataset inherits the pool's).
        err("cannot send %s@%s: encrypted dataset %s may not be sent with properties "
            "without the raw flag" % (fs, tosnap, fs))
        return 1
    fromsnap = None
    fromorigin = False
    if fromname is not None:
        if "@" in fromname:
            ffs, fsnap = fromname.split("@", 1)
            origin = zfslib.value(recs[fs], "origin", "-")
            if fromname == origin:
                fromorigin = True
            elif ffs and ffs != fs:
                usage("send", "incremental source must be in same filesystem")
            else:
                fromsnap = fsnap
        else:
            fromsnap = fromname
        if fromsnap is not None and ("@" in fromsnap or "/" in fromsnap or not fromsnap):
            usage("send", "invalid incremental source")
    plan = plan_send(recs, fs, tosnap, fromsnap, fromorigin, doall, replicate)
    if verbose:
        out = sys.stdout if dryrun else sys.stderr
        total = 0
        for step in plan:
            size = step["size"]
            total += size
            if parsable:
                line = ("incremental\t%s\t%s" % (step["from"], step["to"])
                        if step["from"] else "full\t%s" % step["to"])
                if size:
                    line += "\t%d" % size
            else:
                line = ("send from @%s to %s" % (step["from"], step["to"])
                        if step["from"] else "full send of %s" % step["to"])
                if size:
                    line += " estimated size is %s" % zfslib.nicebytes(size)
            out.write(line + "\n")
        out.write("size\t%d\n" % total if parsable
                  else "total estimated size is %s\n" % zfslib.nicebytes(total))
        out.flush()
    if dryrun:
        return 0
    if os.isatty(1):
        err("Error: Stream can not be written to a terminal.\n"
            "You must redirect standard output.")
        return 1
    argv = [zfslib.real_zfs(), "send"]
    if replicate:
        argv.append("-R")
    if dedup:
        argv.append("-D")
    # zfs-fuse streams carry no object type: send a volume's marker with it.
    if props or (not replicate and zfslib.volume_size(recs[fs]) is not None):
        argv.append("-p")
    if fromname is not None:
        argv += ["-I" if doall else "-i", fromname]
    argv.append(target)
    cut = fault()
    sys.stdout.flush()
    # Always through the relay: the log records the bytes a send wrote
    # (`simdc log`), what a test measures a migration's traffic by.
    r, w = make_pipe()
    proc = subprocess.Popen(argv, stdout=w)
    os.close(w)
    relay = Relay(r, 1, limit=cut[0] if cut else None)
    ticker = Progress(relay, plan, parsable) if progress else None
    if ticker:
        ticker.thread.start()
    try:
        relay.run()
    except BrokenPipeError:
        pass
    finally:
        if ticker:
            ticker.stop.set()
            ticker.thread.join()
        os.close(r)
        common.LOG_EXTRA["bytes"] = relay.total
    rc = proc.wait()
    if cut is not None and relay.cut:
        try:
            os.close(1)
        except OSError:
            pass
        return cut[1]
    return rc


DRR_BEGIN_SIZE = 312


def copy_bytes(src, dst, n):
    """n bytes of a stream from src to dst in the kernel; all of it when n is None."""
    relay = Relay(src, dst, limit=n)
    relay.run()
    if n is not None and relay.total != n:
        raise recvclone.StreamError("failed to read from stream")


def dataset_exists(name):
    return zfslib.zfs("get", "-H", "-o", "value", "type", name).returncode == 0


def stream_toname(header):
    """drr_toname of a DRR_BEGIN record (offset 56, 256 bytes)."""
    return header[56:56 + 256].split(b"\0", 1)[0].decode(errors="replace")


def read_head():
    """The stream's DRR_BEGIN record (then handed on with the rest); None if short."""
    head = b""
    while len(head) < DRR_BEGIN_SIZE:
        chunk = os.read(0, DRR_BEGIN_SIZE - len(head))
        if not chunk:
            break
        head += chunk
    if len(head) < DRR_BEGIN_SIZE:
        err("cannot receive: failed to read from stream")
        return None
    return head


def is_compound(head):
    """DMU_COMPOUNDSTREAM (drr_versioninfo's header type 2): a -p or -R stream,
    whose nvlist header carries the sent properties."""
    return (int.from_bytes(head[16:24], "little") & 3) == 2


def refused_by_encryption(head, target):
    """illumos libzfs_sendrecv.c zfs_receive_one: a new filesystem from a stream
    with properties (not raw) under an encrypted parent is refused unless the
    command line sets or excludes encryption (-o/-x encryption). The message
    is illumos' own, typo included."""
    fs = target.split("@", 1)[0]
    if not is_compound(head) or dataset_exists(fs) or "/" not in fs:
        return False
    err("cannot receive new filesystem stream: parent '%s' must not be encrypted to "
        "receive unenecrypted property" % fs.rsplit("/", 1)[0])
    return True


def do_receive(args):
    opts, rest = getopts("receive", args,
                         "vnFudesAx:o:" if zfslib.resumable() else "vnFudeo:")
    flags = [o for o, _ in opts]
    if not zfslib.resumable() and any(o == "-o" and not a.startswith("origin=")
                                      for o, a in opts):
        sys.stderr.write("invalid option")      # zfs_do_receive, without a newline
        usage("receive")
    excluded = [a for o, a in opts if o == "-x"]
    if "-A" in flags:
        return abort_partial(rest)
    if "-d" in flags and "-e" in flags:
        usage("receive", "arguments -d and -e are mutually exclusive")
    props = receive_props([a for o, a in opts if o == "-o"])
    if not rest:
        usage("receive", "missing snapshot argument")
    if len(rest) > 1:
        usage("receive", "too many arguments")
    target = rest[0]
    if os.isatty(0):
        err("Error: Backup stream can not be read from a terminal.\n"
            "You must redirect standard input.")
        return 1
    origin_guid = origin_of(props.pop("origin", None))
    real_flags = [f for f in flags if f in ("-v", "-n", "-F", "-d")]
    head = b""
    if zfslib.pool_encryption() != "off" and "encryption" not in excluded:
        head = read_head()
        if head is None:
            return 1
        if refused_by_encryption(head, target):
            return 1
    if "-e" in flags or origin_guid or props:
        # The stream's first record names what it holds: read it, then hand
        # the whole stream on.
        head = head or read_head()
        if head is None:
            return 1
    if "-e" in flags:
        # The last element of the sent name decides the target
        sent_fs = stream_toname(head).split("@", 1)[0]
        if is_compound(head):
            real_flags.append("-d")
        else:
            target = "%s/%s" % (target.rstrip("/"), sent_fs.rsplit("/", 1)[-1])
    rc = receive_into(target, flags, real_flags, head, origin_guid)
    if rc == 0 and props and "-n" not in flags:
        # illumos sets -o properties as the receive creates the dataset: here
        # they follow it, on the top dataset the stream made
        fs = received_fs(target, stream_toname(head), real_flags)
        for k, v in props.items():
            rc = do_set(["%s=%s" % (k, v), fs])
            if rc:
                return rc
    return rc


def receive_props(assigns):
    """zfs_main.c parseprop() and libzfs zfs_setup_cmdline_props() on -o."""
    props = {}
    for a in assigns:
        if "=" not in a:
            err("missing '=' for property=value argument")
            usage("receive")
        k, v = a.split("=", 1)
        k = canonical(k)
        if k in props:
            err("property '%s' specified multiple times" % k)
            usage("receive")
        if k != "origin" and (not zfslib.known(k) or k in READONLY or k == "volsize"):
            err("cannot receive: invalid property '%s'" % k)
            raise Exit(1)
        props[k] = v
    return props


def origin_of(snapshot):
    """The guid of a receive's -o origin (libzfs zfs_receive: zfs_open of a snapshot)."""
    if snapshot is None:
        return None
    r = zfslib.zfs("get", "-Hp", "-o", "value", "type,guid", snapshot)
    if r.returncode != 0:
        err("cannot open '%s': dataset does not exist" % snapshot)
        raise Exit(1)
    kind, guid = r.stdout.split()
    if kind != "snapshot":
        err("cannot open '%s': operation not applicable to datasets of this type" % snapshot)
        raise Exit(1)
    return int(guid)


def received_fs(target, toname, real_flags):
    """The top dataset a stream lands in (zfs_receive_one's chopprefix)."""
    sent_fs = toname.split("@", 1)[0]
    if "-d" in real_flags:
        tail = sent_fs.split("/", 1)[1] if "/" in sent_fs else ""
        return "/".join(x for x in (target.rstrip("/"), tail) if x)
    return target.split("@", 1)[0]


def receive_into(target, flags, real_flags, head, origin_guid):
    pool = target.split("/", 1)[0].split("@", 1)[0]
    before = mounted_under(pool, True) if "-u" in flags and "-n" not in flags else None
    cut = fault()
    existed = None
    if cut is not None:
        existed = zfslib.zfs("get", "-H", "-o", "value", "type",
                             target.split("@", 1)[0]).returncode == 0
    argv = [zfslib.real_zfs(), "receive"] + real_flags + [target]
    sys.stdout.flush()
    fs0 = target.split("@", 1)[0]
    if "-s" in flags or zfslib.partial_state(fs0):
        rc = receive_resumable(argv, head, cut, fs0, "-s" in flags)
        if rc == 0 and before is not None:
            unmount_new(pool, before)
        return rc
    # illumos unmounts what is mounted below a dataset it receives into and
    # mounts it back; zfs-fuse detaches such children and forgets them (a
    # bhyve disk0 under zones/UUID would stay unmounted).
    fs = target.split("@", 1)[0]
    children = [] if "-n" in flags else \
        [c for c in mounted_under(fs, True) if c != fs] if dataset_exists(fs) else []
    for c in sorted(children, reverse=True):
        zfslib.retry_busy(lambda c=c: zfslib.zfs("umount", c))
    try:
        return _receive(argv, head, cut, target, existed, real_flags, before, pool,
                        origin_guid)
    finally:
        for c in sorted(children):
            zfslib.ensure_mounted(c)


def _receive(argv, head, cut, target, existed, real_flags, before, pool, origin_guid=None):
    if not head and cut is None:
        rc = subprocess.call(argv)
    else:
        r, w = make_pipe()
        proc = subprocess.Popen(argv, stdin=r)
        os.close(r)
        try:
            if origin_guid:
                recvclone.relay_as_clone(0, w, head, origin_guid, copy_bytes)
            else:
                if head:
                    os.write(w, head)
                relay = Relay(0, w, limit=(cut[0] - len(head)) if cut else None)
                relay.run()
        except BrokenPipeError:
            pass
        except recvclone.StreamError as e:
            err("cannot receive: %s" % e)
            os.close(w)
            proc.wait()
            return 1
        finally:
            os.close(w)
        rc = proc.wait()
        if cut is not None:
            name = target.split("@", 1)[0]
            if not existed and "-d" not in real_flags and zfslib.zfs(
                    "get", "-H", "-o", "value", "type", name).returncode == 0:
                destroy_one(name, ["-r"])
            return cut[1]
    if rc == 0 and before is not None:
        unmount_new(pool, before)
    return rc


def unmount_new(pool, before):
    """recv -u: what the receive mounted (zfs-fuse mounts what it receives), unmounted."""
    now = mounted_under(pool, True)
    for name in sorted(set(now) - set(before), reverse=True):
        where = zfslib.mountpoint(name)
        zfslib.zfs("umount", name)
        # and the directory the mount made: illumos never mounted it, and a
        # child's directory left in an unmounted parent's place would keep
        # the parent from mounting there ("directory is not empty")
        if where:
            with contextlib.suppress(OSError):
                os.rmdir(where)


# ---- resumable receives: recv -s, recv -A, send -t ---------------------------
# zfs-fuse has none: a cut `recv -s` keeps what it received (zfslib's partial
# state) and its token; `send -t` sends a marker record and only the rest,
# and the next `recv -s` feeds both to the real receive. (illumos:
# libzfs_sendrecv.c zfs_send_resume, zfs_receive_one; man zfs.)

RESUME_MAGIC = b"SIMDC-RESUME\0"


def resume_header(token):
    return (RESUME_MAGIC + token.encode() + b"\0").ljust(DRR_BEGIN_SIZE, b"\0")


def abort_partial(rest):
    if len(rest) != 1:
        usage("receive", "missing filesystem argument" if not rest else "too many arguments")
    fs = rest[0]
    st = zfslib.partial_state(fs)
    if st is None:
        err("cannot resume send: '%s' does not have any resumable receive state to abort" % fs)
        return 1
    if st.get("placeholder") and dataset_exists(fs):
        destroy_one(fs, ["-r"])
    zfslib.drop_partial(fs)
    return 0


def read_resume_header(head):
    """(token, head bytes past the marker) if the stream is a `send -t` one:
    the marker is RESUME_MAGIC, the token, a NUL, zero-padded to one record."""
    def fill(n):
        nonlocal head
        while len(head) < n:
            chunk = os.read(0, n - len(head))
            if not chunk:
                return False
            head += chunk
        return True
    fill(len(RESUME_MAGIC))
    if not head.startswith(RESUME_MAGIC):
        return None, head
    while b"\0" not in head[len(RESUME_MAGIC):]:
        if not fill(len(head) + 1):
            return None, head
    token = head[len(RESUME_MAGIC):].split(b"\0", 1)[0]
    size = max(DRR_BEGIN_SIZE, len(RESUME_MAGIC) + len(token) + 1)
    fill(size)
    return token.decode(), head[size:]


def receive_resumable(argv, head, cut, fs, resumable):
    st = zfslib.partial_state(fs)
    token, head = read_resume_header(head)
    if token is not None:
        if st is None or st["token"] != token:
            err("cannot receive resume stream: '%s' has no resumable receive state for "
                "this stream" % fs)
            return 1
        with open(zfslib.partial_path(fs, ".stream"), "rb") as f:
            head = f.read() + head
        if st.get("placeholder") and dataset_exists(fs):
            destroy_one(fs, ["-r"])
    elif st is not None:
        err("cannot receive %s stream: destination %s contains partially-complete state "
            "from \"zfs receive -s\"." % ("incremental" if not st.get("placeholder")
                                           else "new filesystem", fs))
        return 1
    existed = dataset_exists(fs)
    tmp = zfslib.partial_path(fs, ".new")
    os.makedirs(os.path.dirname(tmp), exist_ok=True)
    r, w = make_pipe()
    proc = subprocess.Popen(argv, stdin=r)
    os.close(r)
    total = 0
    with open(tmp, "wb") as keep:
        try:
            if head:
                keep.write(head)
                os.write(w, head)
                total = len(head)
            limit = cut[0] if cut else None
            while limit is None or total < limit:
                data = os.read(0, PIPE_SIZE if limit is None else min(PIPE_SIZE, limit - total))
                if not data:
                    break
                keep.write(data)
                view = memoryview(data)
                while view:
                    view = view[os.write(w, view):]
                total += len(data)
        except BrokenPipeError:
            pass
        finally:
            os.close(w)
    rc = proc.wait()
    if rc == 0 and not (cut and total >= cut[0]):
        os.unlink(tmp)
        zfslib.drop_partial(fs)
        return 0
    # cut: keep what came, and say where to resume from
    if not resumable or total < DRR_BEGIN_SIZE:
        os.unlink(tmp)
        return cut[1] if cut else (rc or 1)
    with open(tmp, "rb") as f:
        begin = f.read(DRR_BEGIN_SIZE)
        prefix = 0
        if is_compound(begin):
            # a -p stream: the kernel's token names the object stream's
            # BEGIN, after the compound BEGIN, its nvlist (drr_payloadlen)
            # and the END that closes them (libzfs_sendrecv.c zfs_send)
            prefix = 2 * DRR_BEGIN_SIZE + int.from_bytes(begin[4:8], "little")
            f.seek(prefix)
            inner = f.read(DRR_BEGIN_SIZE)
            if len(inner) < DRR_BEGIN_SIZE:
                os.unlink(tmp)
                return cut[1] if cut else (rc or 1)
            begin = inner
    os.replace(tmp, zfslib.partial_path(fs, ".stream"))
    placeholder = False
    if not dataset_exists(fs):
        # illumos leaves a new filesystem there, inconsistent, with the token
        zfslib.zfs("create", "-o", "canmount=off", fs)
        placeholder = True
    elif not existed:
        placeholder = True
    fields = {"object": 0, "offset": 0, "bytes": total - prefix,    # of the object stream
              "toguid": int.from_bytes(begin[40:48], "little"),
              "fromguid": int.from_bytes(begin[48:56], "little"),
              "toname": stream_toname(begin), "prefix": prefix}
    import json
    with open(zfslib.partial_path(fs, ".json"), "w") as f:
        json.dump(dict(fields, token=zfslib.make_token(fields), placeholder=placeholder), f)
    return cut[1] if cut else (rc or 1)


def send_resume(token, verbose, parsable, dryrun):
    """`zfs send -t TOKEN`: the rest of the stream the token's receive was cut in."""
    t = zfslib.parse_token(token)
    if t is None:
        err("cannot resume send: resume token is corrupt")
        return 1
    recs, rc, stderr = zfslib.fetch([], ["guid"] + zfslib.SPACE_PROPS, recursive=True)
    # illumos zfs_send_resume: the snapshots are looked for by GUID in the
    # token's filesystem (copies elsewhere share GUIDs, not streams), the
    # incremental source there or as its origin
    fs = t["toname"].split("@", 1)[0]
    origin = zfslib.value(recs.get(fs, {}), "origin", "-")

    def find(guid):
        for n, r in recs.items():
            if zfslib.value(r, "guid", "") == str(guid) and (
                    n.split("@", 1)[0] == fs or n == origin):
                return n
        return None
    to = find(t["toguid"])
    frm = find(t["fromguid"]) if t["fromguid"] else None
    if to is None or (t["fromguid"] and frm is None):
        err("cannot resume send: '%s' used in the initial send no longer exists"
            % (t["toname"] if to is None else "from snapshot"))
        return 1
    if verbose:
        # illumos zfs_send_resume prints all of this on stderr, even with -n
        err("resume token contents:\nnvlist version: 0\n\tobject = 0x0\n\toffset = 0x%x"
            "\n\tbytes = 0x%x\n\ttoguid = 0x%x\n\ttoname = %s" % (
                t["bytes"], t["bytes"], t["toguid"], t["toname"]) +
            ("\n\tfromguid = 0x%x" % t["fromguid"] if t["fromguid"] else ""))
        short_from = frm.split("@", 1)[1] if frm and frm.startswith(fs + "@") else None
        plan = plan_send(recs, fs, to.split("@", 1)[1], short_from, frm == origin,
                         False, False)
        size = max(0, sum(p["size"] for p in plan) - t["bytes"])
        if parsable:
            err(("incremental\t%s\t%s\t%d" % (frm, to, size)) if frm
                else "full\t%s\t%d" % (to, size))
        else:
            err(("send from %s to %s estimated size is %s" % (frm, to, zfslib.nicebytes(size)))
                if frm else "full send of %s estimated size is %s" % (to, zfslib.nicebytes(size)))
    if dryrun:
        return 0
    if os.isatty(1):
        err("Error: Stream can not be written to a terminal.\n"
            "You must redirect standard output.")
        return 1
    # The rest of the cut stream. Ours was a -p one when the token has a
    # prefix (its properties ahead of the object stream): the rest comes
    # from a new -p stream past its own prefix, whose properties may differ
    # (a snapshot taken since), as the kernel resumes in the object stream.
    prefix = t.get("prefix", 0)
    argv = [zfslib.real_zfs(), "send"] + (["-p"] if prefix else []) + \
        (["-i", frm] if frm else []) + [to]
    os.write(1, resume_header(token))
    r, w = make_pipe()
    proc = subprocess.Popen(argv, stdout=w)
    os.close(w)

    def skip(n):
        """Read past n bytes; the first record's worth of them."""
        head, done = b"", 0
        while done < n:
            data = os.read(r, min(PIPE_SIZE, n - done))
            if not data:
                break
            head += data[:max(0, DRR_BEGIN_SIZE - len(head))]
            done += len(data)
        return head
    if prefix:
        begin = skip(DRR_BEGIN_SIZE)
        skip(DRR_BEGIN_SIZE + int.from_bytes(begin[4:8], "little"))
    skip(t["bytes"])
    cut = fault()
    relay = Relay(r, 1, limit=cut[0] if cut else None)
    try:
        relay.run()
    except BrokenPipeError:
        pass
    finally:
        os.close(r)
        common.LOG_EXTRA["bytes"] = relay.total + len(resume_header(token))
    rc = proc.wait()
    if cut is not None and relay.cut:
        return cut[1]
    return rc


# ---- main --------------------------------------------------------------------

COMMANDS = {
    "list": do_list, "get": do_get, "set": do_set, "inherit": do_inherit,
    "create": do_create, "clone": do_clone, "snapshot": do_snapshot,
    "snap": do_snapshot, "destroy": do_destroy, "send": do_send,
    "receive": do_receive, "recv": do_receive, "rename": do_rename,
    "umount": do_umount, "unmount": do_umount,
    "hold": do_hold, "release": do_release, "holds": do_holds,
}


def main(argv):
    if not argv or argv[0] not in COMMANDS:
        return passthrough(argv)
    try:
        return COMMANDS[argv[0]](argv[1:])
    except Exit as e:
        return e.rc

