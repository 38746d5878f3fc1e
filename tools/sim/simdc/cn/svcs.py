"""svcs(1) of a simulated SmartOS compute node: the SMF state of a zone's
services, as the global zone asks for it.

  svcs [-H] [-o COLUMNS] -z ZONE [FMRI...]

What illumos's svcs (usr/src/cmd/svc/svcs/svcs.c) does with -z: an unknown
zone is "invalid zone 'ZONE'"; a zone with no repository server to bind to
(not running, or a brand without SMF inside: lx, kvm, bhyve) is "Could not
bind to repository server for zone ZONE: ..." (exit 1); in a running joyent
or joyent-minimal zone every service the simulator knows of
(milestone/multi-user, milestone/network, system/filesystem/local, ...) is
online. Columns: state, stime, fmri. Without -z it answers for the global
zone, whose services are online too. A test makes a zone's services fail
with `simdc fault add CN -- svcs -z UUID`.
"""
import getopt
import sys
import time

from .. import zones


SMF_BRANDS = ("joyent", "joyent-minimal")
COLUMNS = ("state", "stime", "fmri")
DEFAULT = ["svc:/milestone/multi-user:default", "svc:/milestone/network:default",
           "svc:/system/filesystem/local:default"]


def full_fmri(name):
    """svc:/milestone/multi-user:default from milestone/multi-user or multi-user."""
    if name.startswith("svc:/"):
        return name if name.count(":") > 1 else name + ":default"
    for known in DEFAULT:
        short = known[len("svc:/"):].rsplit(":", 1)[0]
        if name in (short, short.split("/")[-1], short + ":default"):
            return known
    return None


def main(argv):
    try:
        opts, args = getopt.getopt(argv, "aHpvno:R:s:S:dDlLxZz:")
    except getopt.GetoptError as e:
        sys.stderr.write("svcs: %s\nUsage: svcs [-aHpv?] [-o col[,col]...] [-R FMRI-instance]..."
                         " [-sS col]... [-Z | -z zone ]\n            [<service> ...]\n" % e)
        return 2
    opts = dict(opts)
    cols = (opts.get("-o") or "state,stime,fmri").lower().split(",")
    for c in cols:
        if c not in COLUMNS:
            sys.stderr.write('svcs: Unknown column "%s".\n' % c)
            return 1
    zone = opts.get("-z")
    if zone is not None:
        entry = zones.index_entry(zone)
        if entry is None:
            sys.stderr.write("svcs: invalid zone '%s'\n" % zone)
            return 1
        brand = zones.ZoneConfig.load(entry["name"]).brand
        if zones.zone_state(entry) != "running" or brand not in SMF_BRANDS:
            sys.stderr.write("svcs: Could not bind to repository server for zone %s: "
                             "repository server unavailable\n" % zone)
            return 1
    rc, rows = 0, []
    for name in args or DEFAULT:
        fmri = full_fmri(name)
        if fmri is None:
            sys.stderr.write("svcs: Pattern '%s' doesn't match any instances\n" % name)
            rc = 1
            continue
        rows.append({"state": "online", "stime": time.strftime("%H:%M:%S"), "fmri": fmri})
    if rows and "-H" not in opts:
        print(" ".join(c.upper().ljust(8) for c in cols).rstrip())
    for row in rows:
        print(" ".join(row[c].ljust(8) for c in cols).rstrip())
    return rc

