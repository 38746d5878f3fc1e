"""zpool(8) of a simulated SmartOS compute node: the real zfs-fuse zpool, plus
the -p (exact numbers) that `zpool list` lacks there.

  zpool list [-H] -p [-o prop,...] [pool ...]

zfs-fuse prints sizes only rounded ("1.98G"); with -p they are converted to
bytes (so exact to about three digits), capacity loses its %.
"""
import subprocess
import sys

from .. import zfslib


ALIASES = {"alloc": "allocated", "cap": "capacity", "dedup": "dedupratio"}
SIZES = {"size", "allocated", "free"}


def list_parsable(args):
    scripted = False
    props = "name,size,allocated,free,capacity,dedupratio,health,altroot"
    pools = []
    it = iter(args)
    for a in it:
        if a.startswith("-") and len(a) > 1:
            for i, c in enumerate(a[1:]):
                if c == "H":
                    scripted = True
                elif c == "p":
                    pass
                elif c == "o":
                    props = a[i + 2:] or next(it, "")
                    break
                else:
                    return subprocess.call([zfslib.real_zpool(), "list"] + args)
        else:
            pools.append(a)
    cols = [ALIASES.get(p, p) for p in props.split(",") if p]
    query = cols + [c for c in ("size", "allocated") if c not in cols]
    r = subprocess.run([zfslib.real_zpool(), "list", "-H", "-o", ",".join(query)] + pools,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True)
    sys.stderr.write(r.stderr)
    rows = []
    for line in r.stdout.splitlines():
        vals = dict(zip(query, line.split("\t")))
        for c in SIZES:
            try:
                vals[c] = str(zfslib.parse_size(vals[c]))
            except (KeyError, ValueError):
                pass
        try:   # the rounded figures would not add up: free is what is not allocated
            vals["free"] = str(int(vals["size"]) - int(vals["allocated"]))
        except (KeyError, ValueError):
            pass
        vals["capacity"] = vals.get("capacity", "").rstrip("%")
        rows.append([vals.get(c, "-") for c in cols])
    if scripted:
        lines = ["\t".join(r) for r in rows]
    else:
        head = [c.upper() if c not in ALIASES.values() else
                {"allocated": "ALLOC", "capacity": "CAP", "dedupratio": "DEDUP"}[c]
                for c in cols]
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]
        lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip()
                 for r in [head] + rows]
    if lines:
        print("\n".join(lines))
    return r.returncode


def main(argv):
    if argv and argv[0] == "list":
        flags = [a for a in argv[1:] if a.startswith("-")]
        if any("p" in f[1:] for f in flags if not f.startswith("-o")):
            return list_parsable(argv[1:])
    sys.stdout.flush()
    return subprocess.call([zfslib.real_zpool()] + argv)

