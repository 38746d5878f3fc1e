"""zoneadm(8) of a simulated SmartOS compute node.

  zoneadm list [-cipv]
  zoneadm {-z ZONE | -u UUID} attach [-F] | detach | boot | halt | shutdown [-r] | reboot

Messages follow illumos zoneadm.c (`zoneadm: zone 'NAME': ...` on stderr).
"""
import getopt
import sys

from .. import zones


USAGE = """usage:  zoneadm [-z <zone>] [-u <uuid-match>] <subcommand>
subcommands:
	help
	boot [-- boot_arguments]
	halt
	ready
	shutdown [-r [-- boot_arguments]]
	reboot [-- boot_arguments]
	list [-cipv]
	verify
	install [-x nodataset] [brand-specific args]
	uninstall [-F] [-h] [brand-specific args]
	clone [-m method] [-s <ZFS snapshot>] [brand-specific args] zonename
	move zonepath
	detach [-n ] [brand-specific args]
	attach [-F] [-n <path>] [-b patchid]* [-U] [brand-specific args]
	mark incomplete
"""


def err(msg):
    sys.stderr.write("zoneadm: %s\n" % msg)


def cmd_list(args, zone=None):
    try:
        opts, rest = getopt.getopt(args, "cipv")
    except getopt.GetoptError as e:
        err("invalid option: %s" % e.opt if e.opt else str(e))
        sys.stderr.write(USAGE)
        return 253
    flags = "".join(o[1] for o, _ in opts)
    if zone is not None:
        # `zoneadm -z ZONE list`: that zone, whatever its state
        rows = [r for r in zones.zone_rows(True, True) if r["name"] == zone]
        if not rows:
            err("%s: No such zone configured" % zone)
            return 1
    else:
        rows = zones.zone_rows(include_installed="i" in flags or "c" in flags,
                               include_configured="c" in flags)
    if "p" in flags:
        sys.stdout.write(zones.format_rows_parsable(rows))
    elif "v" in flags:
        sys.stdout.write(zones.format_rows_verbose(rows))
    else:
        sys.stdout.write("".join(r["name"] + "\n" for r in rows))
    return 0


def _invalid(name, op, state):
    err("zone '%s': %s operation is invalid for zones in state '%s'." % (name, op, state))
    return 1


def cmd_attach(entry, args):
    force = "-F" in args
    name = entry["name"]
    with zones.lock():
        entry = zones.index_entry(name)
        state = zones.zone_state(entry)
        if state != "configured":
            return _invalid(name, "attach", state)
        cfg = zones.ZoneConfig.load(name)
        if not force:
            ds = (cfg.zonepath or entry["path"]).lstrip("/")
            if not zones.dataset_exists(ds):
                err("zone '%s': ERROR: zone dataset %s does not exist; cannot attach"
                    % (name, ds))
                return 1
            for disk in cfg.disk_paths():
                vol = disk[len("/dev/zvol/rdsk/"):]
                if not zones.dataset_exists(vol):
                    err("zone '%s': ERROR: disk %s does not exist; cannot attach" % (name, vol))
                    return 1
        zones.put_index(name, "installed")
    return 0


def cmd_detach(entry, args):
    name = entry["name"]
    with zones.lock():
        state = zones.zone_state(zones.index_entry(name))
        if state != "installed":
            return _invalid(name, "detach", state)
        zones.put_index(name, "configured")
    return 0


def cmd_boot(entry, args):
    zones.boot(entry["name"])
    return 0


def cmd_halt(entry, args):
    zones.halt(entry["name"])
    return 0


def cmd_shutdown(entry, args):
    reboot = "-r" in args
    zones.halt(entry["name"])
    if reboot:
        zones.boot(entry["name"])
    return 0


def cmd_reboot(entry, args):
    if not zones.is_running(entry["name"]):
        return _invalid(entry["name"], "reboot", zones.zone_state(entry))
    zones.halt(entry["name"])
    zones.boot(entry["name"])
    return 0


ZONE_COMMANDS = {"attach": cmd_attach, "detach": cmd_detach, "boot": cmd_boot,
                 "halt": cmd_halt, "shutdown": cmd_shutdown, "reboot": cmd_reboot}


def main(argv):
    zone = None
    args = list(argv)
    while args and args[0] in ("-z", "-u", "-R"):
        if len(args) < 2:
            sys.stderr.write(USAGE)
            return 253
        if args[0] in ("-z", "-u"):
            zone = args[1]
        args = args[2:]
    if not args:
        sys.stderr.write(USAGE)
        return 253
    sub, rest = args[0], args[1:]
    if sub == "list":
        return cmd_list(rest, zone)
    if sub == "help":
        sys.stdout.write(USAGE)
        return 0
    if sub not in ZONE_COMMANDS:
        err("unknown subcommand %s" % sub if sub in ("ready", "verify", "install", "uninstall",
                                                     "clone", "move", "mark")
            else "%s is not a valid subcommand" % sub)
        sys.stderr.write(USAGE)
        return 253
    if zone is None:
        err("no zone specified")
        return 253
    entry = zones.index_entry(zone)
    if entry is None or not zones.ZoneConfig.exists(entry["name"]):
        err("%s: No such zone configured" % zone)
        return 1
    try:
        return ZONE_COMMANDS[sub](entry, rest)
    except zones.ZoneError as e:
        err(str(e))
        return 1

