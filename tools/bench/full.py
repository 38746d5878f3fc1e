#!/usr/bin/python3
"""(c) A full migration of a small stopped instance: wall time and ssh connections.

    tools/bench/full.py [--size MB] [--rounds N]

Provisions stopped instances with SIZE MB (10) on source-server and moves
each with `sdc-migrate -y UUID dest-server` on the head node. Wall time is
the sdc-migrate command's, start to exit, measured around it (Python's
start-up included: an operator waits for it too); ssh connections are
counted from the CNs' sshd logs (LogLevel VERBOSE: one "Connection from" a
connection), remote command lines from `tools/simdc log` (ssh_session). The
figure is the median of N rounds; the breakdown of the last round says what
the time went to. Target: 3 s.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import benchlib  # noqa: E402

SRC, DST = "source-server", "dest-server"
TARGET_S = 3.0


def one(size):
    uuid = benchlib.provision("--size", size, "--state", "stopped", "--alias", "full-bench")
    sshd = {h: benchlib.SshdLog(h) for h in (SRC, DST)}
    with benchlib.Log() as log:
        t0 = time.time()
        p = benchlib.migrate("-y", uuid, DST)
        t1 = time.time()
    if p.returncode != 0:
        raise RuntimeError("sdc-migrate failed (%d):\n%s%s" % (p.returncode, p.stdout, p.stderr))
    conns = {h: s.connections() for h, s in sshd.items()}
    from_src = sum(1 for l in sshd[DST].lines()
                   if l.startswith("Connection from %s " % benchlib.ip(SRC)))
    return t1 - t0, conns, from_src, log, t0, t1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=10, help="MB of data in the instance")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    walls, results = [], []
    for n in range(args.rounds):
        wall, conns, from_src, log, t0, t1 = one(args.size)
        walls.append(wall)
        results.append((conns, from_src))
        benchlib.say("round %d: %.2f s, ssh connections %s" % (n + 1, wall, conns))
    conns, from_src = results[-1]
    total = sum(conns.values())
    print("full migration of a %d MB stopped instance, %s -> %s, %d rounds"
          % (args.size, SRC, DST, args.rounds))
    print("wall times: %s s" % " ".join("%.2f" % w for w in walls))
    print("ssh connections (last round): %d to %s, %d to %s (%d of them the CN-to-CN stream"
          " from %s)" % (conns[SRC], SRC, conns[DST], DST, from_src, SRC))
    over = benchlib.overheads()
    print("what the last round's time went to:")
    for line in benchlib.describe(log.records, t0, t1, startup_ms=over["emulated_startup_ms"]):
        print("  " + line)
    for line in benchlib.overhead_lines(over):
        print("  " + line)
    print("  its commands in order (offset, duration, host, command):")
    for line in benchlib.timeline(log.records, t0, t1):
        print("    " + line)
    wall = benchlib.median(walls)
    return 0 if benchlib.figure("(c) full migration, %d MB stopped, wall time (%d ssh connections)"
                                % (args.size, total), round(wall, 2), "s", TARGET_S) else 1


if __name__ == "__main__":
    sys.exit(main())
