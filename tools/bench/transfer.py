#!/usr/bin/python3
"""(b) The tool's transfer rate over a hand-run `zfs send | ssh | zfs recv`.

    tools/bench/transfer.py [--size MB] [--rounds N]

Each round provisions a stopped instance with SIZE MB (256) on
source-server, then, side by side on the same dataset between the same CNs:
by hand, the stream an operator would type (`zfs send -i IMAGE@final
zones/UUID@snap | ssh root@dest-server zfs recv -F zones/UUID`, with a key
made for it), once with ssh's default cipher and once with the one
sdc-migrate asks for, each received and destroyed again; then `sdc-migrate
-y UUID dest-server` on the head node. The data is read once before, so no
run gets a warmer cache. Rates are the stream's bytes (`zfs send -nP`) over
the time from the source's `zfs send` start to the destination's `zfs recv`
end in `tools/simdc log`. The figure is the median of the tool's rates over
the median of the hand-run ones with the same cipher: what the tool itself
costs; the ratio to ssh's defaults is printed beside it. Target: 0.97.
"""
import argparse
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import benchlib  # noqa: E402
from benchlib import MB, on, sh_on  # noqa: E402

sys.path.insert(0, benchlib.ROOT)
from sdc_migrate import zfs  # noqa: E402

SRC, DST = "source-server", "dest-server"
TARGET = 0.97


def stream_time(log, uuid):
    """Seconds from the source's zfs send of zones/UUID to the destination's zfs recv end."""
    ds = "zones/" + uuid
    sends = [r for r in log.find(SRC, "zfs", "send") if "-n" not in r["argv"]
             and any(a.startswith(ds + "@") for a in r["argv"])]
    recvs = [r for r in log.find(DST, "zfs", "recv") if r["argv"][-1] == ds]
    if len(sends) != 1 or len(recvs) != 1:
        raise RuntimeError("expected one send and one receive of %s, got %d and %d"
                           % (ds, len(sends), len(recvs)))
    return recvs[0]["end"] - sends[0]["start"]


def zfs_cipher():
    """The cipher sdc-migrate's send pipeline asks ssh for."""
    argv = zfs.send_pipeline("zones/x", "s", None, "127.0.0.1", "127.0.0.2", "k", "kh")
    words = shlex.split(argv[-1].split(" | ")[-1])
    return words[words.index("-c") + 1]


def one(size, key, kh):
    uuid = benchlib.provision("--size", size, "--state", "stopped", "--alias", "transfer-bench")
    ds = "zones/" + uuid
    origin = on(SRC, "zfs", "get", "-H", "-o", "value", "origin", ds).stdout.strip()
    on(DST, "imgadm", "import", "-q", origin[len("zones/"):-len("@final")])
    on(SRC, "zfs", "snapshot", ds + "@hand")
    nbytes = benchlib.stream_size(SRC, ["-i", origin, ds + "@hand"])
    # read once first, so neither side gets the data from a warmer cache
    sh_on(SRC, "zfs send -i %s %s@hand > /dev/null" % (origin, ds))
    hand = {}
    for name, cipher in (("defaults", []), ("gcm", ["-c", zfs_cipher()])):
        with benchlib.Log() as log:
            sh_on(SRC, "zfs send -i %s %s@hand | ssh -i %s -o UserKnownHostsFile=%s "
                  "-o BindAddress=%s %s root@%s zfs recv -F %s" % (
                      origin, ds, key, kh, benchlib.ip(SRC), " ".join(cipher),
                      benchlib.ip(DST), ds))
        hand[name] = nbytes / MB / stream_time(log, uuid)
        on(DST, "zfs", "destroy", "-r", ds)
    on(SRC, "zfs", "destroy", ds + "@hand")
    with benchlib.Log() as log:
        p = benchlib.migrate("-y", uuid, DST)
    if p.returncode != 0:
        raise RuntimeError("sdc-migrate failed (%d):\n%s%s" % (p.returncode, p.stdout, p.stderr))
    tool = nbytes / MB / stream_time(log, uuid)
    return hand, tool, nbytes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256, help="MB of data in the instance")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    rows = []
    with benchlib.cn_key(SRC, DST, "transfer") as (key, kh):
        for n in range(args.rounds):
            hand, tool, nbytes = one(args.size, key, kh)
            rows.append((hand["defaults"], hand["gcm"], tool))
            benchlib.say("round %d: by hand %.1f MB/s (ssh defaults), %.1f MB/s (%s); "
                         "sdc-migrate %.1f MB/s" % (n + 1, hand["defaults"], hand["gcm"],
                                                    zfs_cipher(), tool))
    print("%.1f MB stream, %s -> %s, %d rounds" % (nbytes / MB, SRC, DST, args.rounds))
    benchlib.table(["round", "by hand, ssh defaults", "by hand, " + zfs_cipher(),
                    "sdc-migrate", "ratio"],
                   [(str(i + 1), "%.1f MB/s" % d, "%.1f MB/s" % g, "%.1f MB/s" % t,
                     "%.2f" % (t / g)) for i, (d, g, t) in enumerate(rows)])
    d, g, t = (benchlib.median([r[i] for r in rows]) for i in range(3))
    print("median: by hand %.1f MB/s (ssh defaults), %.1f MB/s (%s); sdc-migrate %.1f MB/s"
          " (%.2f of ssh's defaults)" % (d, g, zfs_cipher(), t, t / d))
    ok = benchlib.figure("(b) sdc-migrate's transfer rate / a hand-run zfs send | ssh | zfs recv",
                         round(t / g, 2), "x", TARGET, better="higher")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
