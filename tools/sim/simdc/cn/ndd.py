"""ndd(8) for the TCP buffer tunables of a simulated SmartOS host.

  ndd [-get] /dev/tcp NAME [NAME ...]     ndd -set /dev/tcp NAME VALUE

Only tcp_max_buf, tcp_xmit_hiwat and tcp_recv_hiwat exist (the ndd names of
ipadm's max_buf, send_buf and recv_buf). Values live in
host_dir(HOST, "ndd.json"), shared with ipadm; the defaults are
illumos-joyent's (tcp_impl.h, tcp_tunables.c): max_buf 1048576, send_buf
128000, recv_buf 1048576. send_buf and recv_buf cannot exceed max_buf.
Messages as illumos usr/src/cmd/cmd-inet/usr.sbin/ndd.c.
"""
import os
import sys

from .. import common
from .ipadm import load, save   # the state both keep: host_dir(HOST, "ndd.json")


ULP_MAX_BUF = 1 << 30
# ipadm name: (default, minimum)
TUNABLES = {"max_buf": (1048576, 8192), "send_buf": (128000, 4096),
            "recv_buf": (1048576, 2048)}
NDD_NAMES = {"tcp_max_buf": "max_buf", "tcp_xmit_hiwat": "send_buf",
             "tcp_recv_hiwat": "recv_buf"}
USAGE = "usage: ndd -set device_name name value\n       ndd [-get] device_name name [name ...]"


def current(st, name):
    return st["current"].get(name, TUNABLES[name][0])


def check(st, name, text):
    """The new value, or an errno-style reason it is refused."""
    try:
        value = int(text, 0)
    except ValueError:
        return None, "Invalid argument"
    if value < TUNABLES[name][1] or value > ULP_MAX_BUF:
        return None, "Result too large" if value > ULP_MAX_BUF else "Invalid argument"
    if name != "max_buf" and value > current(st, "max_buf"):
        return None, "Result too large"
    return value, None


def main(argv):
    if not argv:
        sys.stderr.write(USAGE + "\n")
        return 1
    cmd = "get"
    if argv[0].startswith("-"):
        if argv[0][1:4] == "set":
            cmd = "set"
        elif argv[0][1:4] != "get":
            sys.stderr.write(USAGE + "\n")
            return 1
        argv = argv[1:]
    if not argv:
        sys.stderr.write(USAGE + "\n")
        return 1
    device, names = argv[0], argv[1:]
    if device != "/dev/tcp":
        if not os.path.exists(device):
            sys.stderr.write("open of %s failed: No such file or directory\n" % device)
            return 1
    if not names:
        sys.stderr.write(USAGE + "\n")
        return 1
    with common.locked("ndd-" + common.this_host()):
        st = load()
        if cmd == "set":
            if len(names) < 2:
                sys.stderr.write(USAGE + "\n")
                return 1
            name = NDD_NAMES.get(names[0]) if device == "/dev/tcp" else None
            if name is None:
                print("name is non-existent for this module\n"
                      "for a list of valid names, use name '?'")
                return 1
            value, why = check(st, name, names[1])
            if why:
                print("operation failed: %s" % why)
                return 1
            st["current"][name] = value
            save(st)
            return 0
        out = []
        for i, n in enumerate(names):
            if n == "?" and device == "/dev/tcp":
                out.append("\n".join("%-30s%s" % (k, "(read and write)")
                                     for k in ["?"] + list(NDD_NAMES)))
                continue
            name = NDD_NAMES.get(n) if device == "/dev/tcp" else None
            if name is None:
                sys.stdout.write("\n\n".join(out) + ("\n" if out else ""))
                print("name is non-existent for this module\n"
                      "for a list of valid names, use name '?'")
                return 1
            out.append(str(current(st, name)))
        sys.stdout.write("\n\n".join(out) + "\n")
    return 0

