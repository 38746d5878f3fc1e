"""sdc-server: the head node's server tool (sdc-headnode tools/bin/sdc-server),
subset: list, lookup, admin-ip, ips, nics, sysinfo."""
import json
import re
import sys
import urllib.parse

from . import common

USAGE = """
Usage:
        /opt/smartdc/bin/sdc-server <sub-command> [options]

Sub-commands:

    list                                  - list all servers in this DC
    lookup [-h1jHc] [field=val ...]       - lookup servers matching given fields
    ips <uuid>                            - output the IPs for this server
    nics <uuid>                           - output the nics for this server
    admin-ip <uuid>                       - output the admin IP address for this server
    sysinfo <uuid>                        - output the latest `sysinfo` from
                                            the server
"""

LOOKUP_HELP = """Lookup servers matching given filters.

Usage:
    sdc-server lookup [<options>] [<filters> ...]

Options:
    -h, --help        Print this help and exit.
    -1                Error out if there are 0 or >1 matches to the given filters.
    -j, --json        Print out a newline-separated JSON object for each matching
                      server, instead of just the server UUIDs.
    -H, --hostname    Typically server UUIDs are printed. Use this option to print
                      hostnames instead.
    -c, --comma       Join matching results in a single comma-separated list.

Filters:
    FIELD=VALUE               exact string match
    FIELD=true|false          boolean match
    FIELD!=...                negated string or boolean match
    FIELD=~REGEX              regular expression match
    FIELD!~REGEX              negated regular expression match
    FIELD>NUMBER              numeric comparisons
    FIELD>=NUMBER             numeric comparisons
    FIELD<NUMBER              numeric comparisons
    FIELD<=NUMBER             numeric comparisons
"""

UUID_RE = re.compile(r"^[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$")


class CmdError(Exception):
    def __init__(self, msg, api=None, status=None):
        Exception.__init__(self, msg)
        self.api = api
        self.status = status


def _api(name, path):
    status, body = common.api(name, "GET", path)
    if status >= 400 or status == 0:
        msg = body.get("message") if isinstance(body, dict) else str(body)
        raise CmdError(msg or "request failed", api=name.upper(), status=status)
    return body


def _num(s):
    try:
        return float(s)
    except ValueError:
        return None


def parse_filters(args):
    rx = re.compile(r"^([ \w_\.-]+)(<=|>=|<|>|!=|=~|!~|=)(.+)$")
    out = []
    for a in args:
        m = rx.match(a)
        if not m:
            raise CmdError('invalid filter: "%s" (see "Filters" in "sdc-server lookup -h")' % a)
        key, op, val = m.groups()
        f = {"key": key, "negated": op in ("!=", "!~")}
        if op in (">", ">=", "<", "<="):
            if _num(val) is None:
                raise CmdError('invalid filter: "%s" (value must be a number for "%s")'
                               % (a, val))
            f.update(type="number", op=op, value=_num(val))
        elif op in ("=", "!="):
            if val in ("true", "false"):
                f.update(type="bool", value=(val == "true"))
            elif _num(val) is not None:
                f.update(type="number", op="==", value=_num(val))
            else:
                f.update(type="string", value=val)
        else:
            f.update(type="regexp", value=re.compile(val))
        out.append(f)
    return out


def dotted(obj, key):
    o = obj
    for seg in key.split("."):
        if isinstance(o, dict) and seg in o:
            o = o[seg]
        elif isinstance(o, list) and seg.isdigit() and int(seg) < len(o):
            o = o[int(seg)]
        else:
            return None
    return o


def _matches(server, f):
    v = dotted(server, f["key"])
    t = f["type"]
    if t == "bool":
        m = v is f["value"]
    elif t == "string":
        m = isinstance(v, str) and v == f["value"]
    elif t == "number":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            m = False
        else:
            m = {"==": v == f["value"], ">": v > f["value"], ">=": v >= f["value"],
                 "<": v < f["value"], "<=": v <= f["value"]}[f["op"]]
    else:
        s = v if isinstance(v, str) else json.dumps(v) if v is not None else "undefined"
        if isinstance(v, bool):
            s = "true" if v else "false"
        elif isinstance(v, (int, float)):
            s = str(v)
        m = f["value"].search(s) is not None
    return (not m) if f["negated"] else m


def cmd_lookup(args):
    opts = {"one": False, "json": False, "hostname": False, "comma": False}
    rest = []
    for a in args:
        if a in ("-h", "--help"):
            sys.stdout.write(LOOKUP_HELP)
            return 0
        if a.startswith("--"):
            name = a[2:]
            if name not in ("json", "hostname", "comma"):
                raise CmdError('unknown option: "%s"' % a)
            opts[name] = True
        elif a.startswith("-") and len(a) > 1 and not rest:
            for ch in a[1:]:
                key = {"1": "one", "j": "json", "H": "hostname", "c": "comma"}.get(ch)
                if key is None:
                    if ch == "h":
                        sys.stdout.write(LOOKUP_HELP)
                        return 0
                    raise CmdError('unknown option: "-%s"' % ch)
                opts[key] = True
        else:
            rest.append(a)
    if opts["json"] and opts["hostname"]:
        raise CmdError("--json and --hostname are mutually exclusive")
    if opts["json"] and opts["comma"]:
        raise CmdError("--json and --comma are mutually exclusive")
    filters = parse_filters(rest)
    extras = []
    for extra, pat in (("agents", r"^agents\."), ("sysinfo", r"^sysinfo\."),
                       ("vms", r"^vms\."), ("disk", r"^disk_"), ("memory", r"^memory_")):
        if any(re.match(pat, f["key"]) for f in filters):
            extras.append(extra)
    path = "/servers"
    if extras:
        path += "?extras=" + urllib.parse.quote(",".join(extras))
    servers = _api("cnapi", path)
    for f in filters:
        servers = [s for s in servers if _matches(s, f)]
    if opts["one"] and len(servers) != 1:
        raise CmdError("requested unique lookup (-1) but found %d matching servers"
                       % len(servers))
    if opts["json"]:
        for s in servers:
            sys.stdout.write(json.dumps(s, separators=(",", ":")) + "\n")
        return 0
    results = [s.get("hostname") if opts["hostname"] else s["uuid"] for s in servers]
    if results:
        if opts["comma"]:
            sys.stdout.write(",".join(results))
        else:
            sys.stdout.write("\n".join(results) + "\n")
    return 0


def _admin_ip_from_sysinfo(server):
    for nic in ((server.get("sysinfo") or {}).get("Network Interfaces") or {}).values():
        if "admin" in (nic.get("NIC Names") or []):
            return nic.get("ip4addr")
    return None


def cmd_list(args):
    if args:
        sys.stdout.write(USAGE + "\n")
        raise CmdError("no arguments expected for list: " + json.dumps(args))
    servers = _api("cnapi", "/servers?extras=sysinfo")
    sys.stdout.write("%-20s %-36s %7s %8s  %8s  %7s  %-15s\n" % (
        "HOSTNAME", "UUID", "VERSION", "SETUP", "STATUS", "RAM", "ADMIN_IP"))
    for s in servers:
        si = s.get("sysinfo") or {}
        setup = s.get("setup")
        setup_s = "unknown" if setup is None else ("true" if setup else "false")
        sys.stdout.write("%-20s %36s %7s %8s  %8s  %7d  %-15s\n" % (
            s.get("hostname"), s["uuid"], si.get("SDC Version") or "6.x", setup_s,
            s.get("status"), int(s.get("ram") or 0), _admin_ip_from_sysinfo(s) or "-"))
    return 0


def _nics(server_uuid, extra=""):
    return _api("napi", "/nics?belongs_to_uuid=%s%s" % (server_uuid, extra))


def cmd_admin_ip(uuid):
    nics = _nics(uuid, "&nic_tags_provided=admin")
    if nics and nics[0].get("ip"):
        sys.stdout.write(nics[0]["ip"] + "\n")
        return 0
    # The simulated datacenter may not register server NICs in NAPI: fall
    # back to the admin NIC in the server's sysinfo (what setup would have
    # registered).
    try:
        ip = _admin_ip_from_sysinfo(_api("cnapi", "/servers/%s" % uuid))
    except CmdError:
        ip = None
    if ip:
        sys.stdout.write(ip + "\n")
        return 0
    if not nics:
        raise CmdError("No admin nic found")
    raise CmdError("No admin IP found")


def cmd_ips(uuid):
    nics = _nics(uuid)
    ips = []
    for n in nics:
        if n.get("ip") and n["ip"] not in ips:
            ips.append(n["ip"])
    if ips:
        sys.stdout.write("\n".join(ips) + "\n")
    return 0


def cmd_nics(uuid):
    sys.stdout.write(json.dumps(_nics(uuid), indent=2) + "\n")
    return 0


def cmd_sysinfo(uuid):
    s = _api("cnapi", "/servers/%s" % uuid)
    sys.stdout.write(json.dumps(s.get("sysinfo"), indent=2) + "\n")
    return 0


def main(argv):
    if not argv or not argv[0]:
        sys.stdout.write(USAGE + "\n")
        return 2
    cmd, args = argv[0], list(argv[1:])
    try:
        if cmd == "lookup":
            return cmd_lookup(args)
        if cmd == "list":
            return cmd_list(args)
        if cmd in ("admin-ip", "ips", "nics", "sysinfo"):
            if len(args) != 1 or not UUID_RE.match(args[0]):
                sys.stdout.write(USAGE + "\n")
                raise CmdError("%s requires <uuid> argument" % cmd)
            return {"admin-ip": cmd_admin_ip, "ips": cmd_ips, "nics": cmd_nics,
                    "sysinfo": cmd_sysinfo}[cmd](args[0])
        sys.stdout.write(USAGE + "\n")
        raise CmdError("unknown command: " + cmd)
    except CmdError as e:
        api = (e.api + " ") if e.api else ""
        if e.status:
            sys.stderr.write("%sError(%s): %s\n" % (api, e.status, e))
        else:
            sys.stderr.write("%sError: %s\n" % (api, e))
        return 1
    except OSError as e:
        sys.stderr.write("Error: %s\n" % e)
        return 1
