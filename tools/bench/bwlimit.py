#!/usr/bin/python3
"""--bwlimit: the rate a limited migration measures, against its limit; and
what the unlimited pipeline costs against a hand-run one.

    tools/bench/bwlimit.py [--seconds S] [--limits 10M,50M]

For each limit, a stopped instance holding about S seconds of data at that
rate is migrated with `sdc-migrate -y --bwlimit=LIMIT UUID dest-server`; its
rate is the stream's bytes (`zfs send -nP`) over the time from the source's
`zfs send` start to the destination's `zfs recv` end in `tools/simdc log`,
the same measure as transfer.py's. Target: within 10% of the limit. Then,
side by side, the same instance size without --bwlimit and a hand-run
`zfs send | ssh | zfs recv` (transfer.py's round): without the option the
stream has no throttle stage, so the ratio should be that of (b).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import benchlib  # noqa: E402
import transfer  # noqa: E402
from benchlib import MB, on  # noqa: E402

SRC, DST = transfer.SRC, transfer.DST
TOLERANCE = 0.10


def parse_size(text):
    """10M, 512K: bytes (run with the machine's python3, not the package's venv)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(text[:-1]) * units[text[-1]]) if text[-1:] in units else int(text)


def limited(limit, seconds):
    """(measured bytes a second, stream bytes) of a migration at limit."""
    size = max(8, int(limit * seconds / MB))
    uuid = benchlib.provision("--size", size, "--state", "stopped", "--alias", "bwlimit-bench")
    ds = "zones/" + uuid
    origin = on(SRC, "zfs", "get", "-H", "-o", "value", "origin", ds).stdout.strip()
    on(SRC, "zfs", "snapshot", ds + "@size")
    nbytes = benchlib.stream_size(SRC, ["-i", origin, ds + "@size"])
    on(SRC, "zfs", "destroy", ds + "@size")
    with benchlib.Log() as log:
        p = benchlib.migrate("-y", "--bwlimit=%d" % limit, uuid, DST)
    if p.returncode != 0:
        raise RuntimeError("sdc-migrate failed (%d):\n%s%s" % (p.returncode, p.stdout, p.stderr))
    return nbytes / transfer.stream_time(log, uuid), nbytes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0,
                    help="how long each limited stream should last")
    ap.add_argument("--limits", default="10M,50M")
    ap.add_argument("--size", type=int, default=128, help="MB for the unlimited rounds")
    ap.add_argument("--rounds", type=int, default=2, help="unlimited rounds")
    args = ap.parse_args()
    rows, worst = [], 0.0
    for text in args.limits.split(","):
        limit = parse_size(text)
        rate, nbytes = limited(limit, args.seconds)
        off = rate / limit - 1
        worst = max(worst, abs(off))
        rows.append((text, "%.1f MB" % (nbytes / MB), "%.2f MB/s" % (rate / MB),
                     "%+.1f%%" % (100 * off)))
        benchlib.say("--bwlimit=%s: %.2f MB/s measured" % (text, rate / MB))
    benchlib.table(["--bwlimit", "stream", "measured", "off the limit"], rows)
    plain = []
    with benchlib.cn_key(SRC, DST, "bwlimit") as (key, kh):
        for n in range(args.rounds):
            hand, tool, _ = transfer.one(args.size, key, kh)
            plain.append((hand["gcm"], tool))
            benchlib.say("unlimited round %d: by hand %.1f MB/s, sdc-migrate %.1f MB/s"
                         % (n + 1, hand["gcm"], tool))
    g, t = (benchlib.median([r[i] for r in plain]) for i in range(2))
    print("without --bwlimit: by hand %.1f MB/s, sdc-migrate %.1f MB/s: %.2f"
          % (g, t, t / g))
    ok = benchlib.figure("--bwlimit: the largest distance of a measured rate from its limit",
                         round(100 * worst, 1), "%", 100 * TOLERANCE)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
