"""ipadm(8) for the TCP buffer properties of a simulated SmartOS host.

  ipadm show-prop [-c] [-o field,...] [-p prop,...] tcp
  ipadm set-prop [-t] -p prop=value tcp
  ipadm reset-prop [-t] -p prop tcp

Properties: max_buf, send_buf, recv_buf (ndd's tcp_max_buf, tcp_xmit_hiwat,
tcp_recv_hiwat), kept in host_dir(HOST, "ndd.json") with ndd. Without -t a
set-prop is also persistent (the PERSISTENT column). Output follows illumos
usr/src/cmd/cmd-inet/usr.sbin/ipadm/ipadm.c (modprop_fields, ofmt).
"""
import getopt
import json
import os
import sys

from .. import common


ULP_MAX_BUF = 1 << 30
# name: (default, minimum), in the order ipadm lists them
TUNABLES = {"send_buf": (128000, 4096), "recv_buf": (1048576, 2048),
            "max_buf": (1048576, 8192)}
FIELDS = [("PROTO", 6), ("PROPERTY", 22), ("PERM", 5), ("CURRENT", 13),
          ("PERSISTENT", 13), ("DEFAULT", 13), ("POSSIBLE", 15)]
USAGE = {
    "show-prop": "\tshow-prop\t[[-c] -o <field>,...] [-p <prop>,...] <protocol>",
    "set-prop": "\tset-prop\t[-t] -p <prop>=<value>[,...] <protocol>",
    "reset-prop": "\treset-prop\t[-t] -p <prop> <protocol>",
}


class Die(Exception):
    pass


def die(msg):
    raise Die("ipadm: " + msg)


def usage(sub=None):
    sys.stderr.write("usage: ipadm <subcommand> <args> ...\n")
    for k in ([sub] if sub in USAGE else USAGE):
        sys.stderr.write(USAGE[k] + "\n")
    raise SystemExit(2)


def state_path():
    return common.host_dir(common.this_host(), "ndd.json")


def load():
    try:
        with open(state_path()) as f:
            st = json.load(f)
    except (OSError, ValueError):
        st = {}
    st.setdefault("current", {})
    st.setdefault("persistent", {})
    return st


def save(st):
    p = state_path()
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p + ".tmp", "w") as f:
        json.dump(st, f, indent=2, sort_keys=True)
    os.replace(p + ".tmp", p)


def check_proto(args, sub):
    if len(args) != 1:
        usage(sub)
    if args[0] not in ("tcp", "ip", "ipv4", "ipv6", "udp", "sctp", "icmp"):
        die("invalid protocol '%s' specified" % args[0])
    if args[0] != "tcp":
        die("%s: Unknown property" % sub)
    return args[0]


def ofmt(rows, fields, parsable):
    if parsable:
        return [":".join(v.replace(":", "\\:") for v in row) for row in rows]
    widths = dict(FIELDS)
    out = []
    for row in [fields] + rows:
        line, stop = "", 0
        for i, v in enumerate(row):
            if i == len(row) - 1:
                line += v
                break
            stop += widths[fields[i]]
            line += v
            line += " " * max(1, stop - len(line))
        out.append(line)
    return out


def show_prop(argv):
    try:
        opts, args = getopt.getopt(argv, "co:p:")
    except getopt.GetoptError as e:
        sys.stderr.write("ipadm: unrecognized option '-%s'\n" % e.opt)
        usage("show-prop")
    parsable = False
    fields = [f for f, _ in FIELDS]
    props = list(TUNABLES)
    for o, a in opts:
        if o == "-c":
            parsable = True
        elif o == "-o":
            if a.lower() != "all":
                fields = [f.upper() for f in a.split(",")]
                for f in fields:
                    if f not in dict(FIELDS):
                        die("invalid field(s) specified")
        elif o == "-p":
            props = a.split(",")
    if parsable and not any(o == "-o" for o, _ in opts):
        die("-c requires -o")
    check_proto(args, "show-prop")
    st = load()
    rows = []
    for p in props:
        if p not in TUNABLES:
            die("show-prop: %s: Unknown property" % p)
        default, minimum = TUNABLES[p]
        cells = {"PROTO": "tcp", "PROPERTY": p, "PERM": "rw",
                 "CURRENT": str(st["current"].get(p, default)),
                 "PERSISTENT": str(st["persistent"][p]) if p in st["persistent"]
                 else ("" if parsable else "--"),
                 "DEFAULT": str(default),
                 "POSSIBLE": "%d-%d" % (minimum, ULP_MAX_BUF)}
        rows.append([cells[f] for f in fields])
    print("\n".join(ofmt(rows, fields, parsable)))
    return 0


def set_prop(argv, reset):
    sub = "reset-prop" if reset else "set-prop"
    try:
        opts, args = getopt.getopt(argv, "tp:")
    except getopt.GetoptError as e:
        sys.stderr.write("ipadm: unrecognized option '-%s'\n" % e.opt)
        usage(sub)
    temporary = False
    spec = None
    for o, a in opts:
        if o == "-t":
            temporary = True
        elif o == "-p":
            spec = a
    if spec is None:
        die("property name required")
    check_proto(args, sub)
    with common.locked("ndd-" + common.this_host()):
        st = load()
        name, _, text = spec.partition("=")
        if name not in TUNABLES:
            die("%s: %s: Unknown property" % (sub, name))
        default, minimum = TUNABLES[name]
        if reset:
            value = default
        else:
            if not text:
                die("%s: %s: Invalid argument provided" % (sub, name))
            try:
                value = int(text, 0)
            except ValueError:
                die("%s: %s: Invalid argument provided" % (sub, name))
            max_buf = value if name == "max_buf" else st["current"].get(
                "max_buf", TUNABLES["max_buf"][0])
            if value < minimum or value > ULP_MAX_BUF or value > max_buf:
                die("%s: %s: Invalid argument provided" % (sub, name))
        st["current"][name] = value
        if not temporary:
            if reset:
                st["persistent"].pop(name, None)
            else:
                st["persistent"][name] = value
        save(st)
    return 0


def main(argv):
    if not argv:
        usage()
    sub, rest = argv[0], argv[1:]
    try:
        if sub == "show-prop":
            return show_prop(rest)
        if sub in ("set-prop", "reset-prop"):
            return set_prop(rest, sub == "reset-prop")
        sys.stderr.write("ipadm: unknown subcommand '%s'\n" % sub)
        usage()
    except Die as e:
        sys.stderr.write(str(e) + "\n")
        return 1

