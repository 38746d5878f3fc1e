#!/usr/bin/python3
"""The wire: how fast `zfs send | ssh | zfs recv` runs from source-server to
dest-server in the simulated datacenter, for each ssh cipher and with and
without a buffer, beside the pipeline sdc-migrate runs (zfs.send_pipeline).

    tools/bench/wire.py [--size MB] [--rounds N]

Every row sends the same stream as a migration's first round: the instance's
dataset incremental from its image's @final, received as zones/UUID on the
destination (destroyed again between runs). Time is from the source's
`zfs send` start to the destination's `zfs recv` end in `tools/simdc log`;
the figure is the median of N rounds, rows taken in turn each round so a
slow moment hits them all. Buffers: the SmartOS global zone has no mbuffer
or pv, only dd (`dd bs=1048576`, the byte count works with illumos' and
GNU's dd alike) on both sides. `zfs send -c` is tried once; zfs-fuse (pool
version 23) has no compressed send and says so. Reference rows (not
candidates) show the bounds: zfs send to /dev/null, the stream replayed into
zfs recv from a file on the destination, and ssh alone with the same bytes.
"""
import argparse
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import benchlib  # noqa: E402
from benchlib import MB, median, on, sh_on  # noqa: E402

sys.path.insert(0, benchlib.ROOT)
from sdc_migrate import zfs  # noqa: E402

SRC, DST = "source-server", "dest-server"
CIPHERS = ("aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes128-ctr")
BUFFER = "dd bs=1048576 2>/dev/null"


def pipeline(ds, snap, origin, key, kh, cipher, buffer=False, send_flags=()):
    """zfs send | [dd |] ssh -c CIPHER DEST '[dd |] zfs recv': the tool's options but these."""
    src_ip, dst_ip = benchlib.ip(SRC), benchlib.ip(DST)
    send = ["zfs", "send"] + list(send_flags) + ["-i", origin, "%s@%s" % (ds, snap)]
    recv = shlex.join(["zfs", "recv", "-F", ds])
    ssh = ["ssh", "-i", key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
           "-o", "UserKnownHostsFile=" + kh, "-o", "LogLevel=ERROR",
           "-o", "BindAddress=" + src_ip, "-c", cipher, "root@" + dst_ip,
           (BUFFER + " | " + recv) if buffer else recv]
    mid = (" | " + BUFFER) if buffer else ""
    return shlex.join(send) + mid + " | " + shlex.join(ssh)


def timed_stream(script, ds, nbytes):
    """Run a send pipeline on the source; (MB/s from the log, seconds)."""
    on(DST, "sh", "-c", "zfs destroy -r %s 2>/dev/null; true" % shlex.quote(ds))
    with benchlib.Log() as log:
        sh_on(SRC, script)
    send = [r for r in log.find(SRC, "zfs", "send") if "-n" not in " ".join(r["argv"])]
    recv = log.find(DST, "zfs", "recv")
    if len(send) != 1 or len(recv) != 1:
        raise RuntimeError("expected one zfs send and one zfs recv, got %d and %d"
                           % (len(send), len(recv)))
    secs = recv[0]["end"] - send[0]["start"]
    return nbytes / MB / secs, secs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256, help="MB of data in the instance")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    benchlib.say("provisioning a stopped instance with %d MB on %s" % (args.size, SRC))
    uuid = benchlib.provision("--size", args.size, "--state", "stopped", "--alias", "wire")
    ds, snap = "zones/" + uuid, "wire"
    origin = on(SRC, "zfs", "get", "-H", "-o", "value", "origin", ds).stdout.strip()
    image = origin[len("zones/"):-len("@final")]
    on(DST, "imgadm", "import", "-q", image)
    on(SRC, "zfs", "snapshot", "%s@%s" % (ds, snap))
    nbytes = benchlib.stream_size(SRC, ["-i", origin, "%s@%s" % (ds, snap)])
    benchlib.say("stream: %.1f MB; %d rounds" % (nbytes / MB, args.rounds))

    with benchlib.cn_key(SRC, DST, "wire") as (key, kh):
        tool = zfs.send_pipeline(ds, snap, origin, benchlib.ip(SRC), benchlib.ip(DST), key, kh)
        tool_vp = zfs.send_pipeline(ds, snap, origin, benchlib.ip(SRC), benchlib.ip(DST), key, kh,
                                    progress=True)
        rows = [("sdc-migrate's send_pipeline", tool[-1]),
                ("sdc-migrate's send_pipeline, -vP progress", tool_vp[-1])]
        for cipher in CIPHERS:
            for buffered in (False, True):
                name = "%s%s" % (cipher, ", dd buffer" if buffered else "")
                rows.append((name, pipeline(ds, snap, origin, key, kh, cipher, buffered)))
        rates = {name: [] for name, _ in rows}
        for n in range(args.rounds):
            for name, script in rows:
                rate, secs = timed_stream(script, ds, nbytes)
                rates[name].append(rate)
                benchlib.say("round %d  %-45s %6.1f MB/s (%.2f s)" % (n + 1, name, rate, secs))

        # zfs send -c: compressed streams, where the platform has them.
        on(DST, "sh", "-c", "zfs destroy -r %s 2>/dev/null; true" % ds)
        c = sh_on(SRC, pipeline(ds, snap, origin, key, kh, CIPHERS[0],
                                send_flags=["-c"]), check=False)
        c_said = " ".join(l.strip() for l in c.stderr.strip().splitlines()[:1])

        # Reference: each part alone.
        with benchlib.Log() as log:
            sh_on(SRC, "zfs send -i %s %s@%s > /dev/null" % (origin, ds, snap))
        r = log.one(SRC, "zfs", "send")
        send_only = nbytes / MB / (r["end"] - r["start"])
        on(DST, "sh", "-c", "zfs destroy -r %s 2>/dev/null; true" % ds)
        sh_on(SRC, "zfs send -i %s %s@%s | ssh -i %s -o BatchMode=yes -o UserKnownHostsFile=%s "
              "-o BindAddress=%s -c %s root@%s 'cat > /var/tmp/wire.stream'"
              % (origin, ds, snap, key, kh, benchlib.ip(SRC), CIPHERS[0], benchlib.ip(DST)))
        with benchlib.Log() as log:
            on(DST, "sh", "-c", "zfs recv -F %s < /var/tmp/wire.stream" % ds)
        r = log.one(DST, "zfs", "recv")
        recv_only = nbytes / MB / (r["end"] - r["start"])
        on(DST, "rm", "-f", "/var/tmp/wire.stream")
        ssh_rates = []
        for cipher in CIPHERS:
            out = sh_on(SRC, "t0=$(date +%%s.%%N); head -c %d /dev/zero | ssh -i %s "
                        "-o BatchMode=yes -o UserKnownHostsFile=%s -o BindAddress=%s -c %s "
                        "root@%s 'cat > /dev/null'; t1=$(date +%%s.%%N); echo $t0 $t1" % (
                            nbytes, key, kh, benchlib.ip(SRC), cipher, benchlib.ip(DST))).stdout
            t0, t1 = map(float, out.split())
            ssh_rates.append((cipher, nbytes / MB / (t1 - t0)))

    on(DST, "sh", "-c", "zfs destroy -r %s 2>/dev/null; true" % ds)
    on(SRC, "zfs", "destroy", "%s@%s" % (ds, snap), check=False)

    print("zfs send | ssh | zfs recv, %s -> %s, %.1f MB stream, median of %d rounds"
          % (SRC, DST, nbytes / MB, args.rounds))
    print()
    table = [(name, "%.1f" % median(rates[name]),
              " ".join("%.0f" % x for x in rates[name])) for name, _ in rows]
    benchlib.table(["pipeline", "MB/s", "rounds"], table)
    print()
    print("zfs send -c: %s (pipeline exit %d)" % (c_said or "ok", c.returncode))
    print()
    print("bounds (each part alone):")
    bounds = [("zfs send > /dev/null", "%.1f" % send_only),
              ("zfs recv < file on the destination", "%.1f" % recv_only)]
    bounds += [("ssh -c %s, %d bytes of zeros" % (c, nbytes), "%.1f" % r) for c, r in ssh_rates]
    benchlib.table(["part", "MB/s"], bounds)
    print()
    candidates = [name for name, _ in rows if not name.startswith("sdc-migrate")]
    best = max(candidates, key=lambda n: median(rates[n]))
    current = median(rates[rows[0][0]])
    print("winner: %s at %.1f MB/s; sdc-migrate's pipeline (aes128-gcm, no buffer) %.1f MB/s"
          % (best, median(rates[best]), current))
    return 0


if __name__ == "__main__":
    sys.exit(main())
