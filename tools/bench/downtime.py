#!/usr/bin/python3
"""(a) Downtime of an incremental migration of a running instance that writes steadily.

    tools/bench/downtime.py [--size MB] [--delta MB] [--rounds N]

Provisions a running instance with SIZE MB (50) on source-server whose
workload rewrites random data at a steady rate (SIMDC_WORKLOAD_CHURN_KB)
besides its fsynced sequence, and moves it with `sdc-migrate -y -i
--interval 1 UUID dest-server` on the head node: once the full round and
one incremental round are on the destination, the benchmark removes the
state file on the head node, as an operator finishes an incremental
migration. Downtime is from the source's `vmadm stop` start to the
destination's `vmadm start` end in `tools/simdc log`. The final delta is
what the workload wrote between the last live snapshot and the stop: its
rate times that time, both from the log. How long that time is depends on
when the tool notices the state file is gone (it looks once a second), so
each round sets the rate from the times of the rounds before it (5.5 MB/s the
first) to bring the delta near DELTA MB (10). It checks that no write was
lost (the destination's sequence goes on from the source's last line). The
figure is the median of N rounds; the last round's window is broken down
command by command. Target: 2 s.
"""
import argparse
import glob
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import benchlib  # noqa: E402

SRC, DST = "source-server", "dest-server"
TARGET_S = 2.0


def state_files(uuid):
    # the head node's /var/tmp, seen from outside its namespace
    return glob.glob(os.path.join(benchlib.SIMDC_DIR, "hosts", "headnode", "var-tmp",
                                  "migrator-%s-%s-*.st" % (uuid, DST)))


def received(log, uuid):
    log.read()
    return [r for r in log.find(DST, "zfs", "recv") if r["argv"][-1] == "zones/" + uuid]


def one(size, churn_kb):
    uuid = benchlib.provision("--size", size, "--state", "running", "--alias", "downtime-bench",
                              env={"SIMDC_WORKLOAD_CHURN_KB": str(churn_kb)})
    time.sleep(2)       # let the workload churn for a while first
    log = benchlib.Log()
    proc = subprocess.Popen([benchlib.SIMDC, "exec", "headnode", "--", benchlib.SDC_MIGRATE, "-y", "-i",
                             "--interval", "1", uuid, DST], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        benchlib.wait_until("the state file", lambda: state_files(uuid) or proc.poll() is not None)
        seen = []

        def second_receive(r):
            if r["host"] == DST and r["argv"][:2] == ["zfs", "recv"] \
                    and r["argv"][-1] == "zones/" + uuid:
                seen.append(r)
            return len(seen) >= 2 or proc.poll() is not None
        log.watch(second_receive, "two rounds on %s" % DST)
        # Removed while the tool sleeps between rounds, as an operator would
        # (not during a send, which would end the rounds a second sooner):
        # the same wait every round, so the final delta is steady.
        time.sleep(0.2)
        for st in state_files(uuid):
            benchlib.on("headnode", "rm", "-f", "/var/tmp/" + os.path.basename(st))
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    if proc.returncode != 0:
        raise RuntimeError("sdc-migrate failed (%d):\n%s" % (proc.returncode, out))
    log.read()
    stop = log.one(SRC, "vmadm", "stop", uuid)
    start = log.one(DST, "vmadm", "start", uuid)
    snaps = [r for r in log.find(SRC, "zfs", "snapshot") if any(
        a.startswith("zones/%s@" % uuid) for a in r["argv"])]
    live = [r for r in snaps if r["end"] <= stop["start"]]
    window = stop["start"] - live[-1]["start"] if live else None
    delta_mb = churn_kb / 1024.0 * window if window is not None else None
    rounds = len(received(log, uuid))
    src_seq = int(benchlib.simdc("seq", SRC, uuid).stdout.strip())
    lines = benchlib.simdc("seq", "--dump", DST, uuid).stdout.split("\n")
    nums = [int(l.split()[0]) for l in lines if l.strip()]
    lost = not nums or nums[:src_seq] != list(range(1, src_seq + 1))
    return {"downtime": start["end"] - stop["start"], "delta_mb": delta_mb, "rounds": rounds,
            "window": window, "churn_kb": churn_kb,
            "log": log, "t0": stop["start"], "t1": start["end"], "lost": lost,
            "src_seq": src_seq}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=50, help="MB of data in the instance")
    ap.add_argument("--delta", type=float, default=10, help="MB of final delta to aim at")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    runs = []
    churn = 5632
    for n in range(args.rounds):
        r = one(args.size, churn)
        runs.append(r)
        benchlib.say("round %d: downtime %.2f s, final delta ~%.1f MB (%d KiB/s for %.2f s), "
                     "%d sends, writes %s" % (n + 1, r["downtime"], r["delta_mb"] or 0,
                                              r["churn_kb"], r["window"] or 0, r["rounds"],
                                              "LOST" if r["lost"] else "all kept"))
        windows = [x["window"] for x in runs if x["window"]]
        if windows:
            churn = int(min(16384, max(1024, args.delta * 1024 / benchlib.median(windows))))
    last = runs[-1]
    print("incremental migration (-i --interval 1) of a running %d MB instance writing steadily,"
          " %s -> %s, %d rounds" % (args.size, SRC, DST, args.rounds))
    print("downtimes: %s s; final deltas ~%s MB (rates %s KiB/s); writes lost: %s" % (
        " ".join("%.2f" % r["downtime"] for r in runs),
        " ".join("%.1f" % (r["delta_mb"] or 0) for r in runs),
        " ".join("%d" % r["churn_kb"] for r in runs),
        "YES" if any(r["lost"] for r in runs) else "none"))
    over = benchlib.overheads()
    print("what the last round's window (source vmadm stop -> destination vmadm start) held:")
    for line in benchlib.describe(last["log"].records, last["t0"], last["t1"], top=12,
                                  startup_ms=over["emulated_startup_ms"]):
        print("  " + line)
    for line in benchlib.overhead_lines(over):
        print("  " + line)
    print("  the window's commands, from the stop on (offset, duration, host, command):")
    for line in benchlib.timeline(last["log"].records, last["t0"], last["t1"]):
        print("    " + line)
    down = benchlib.median([r["downtime"] for r in runs])
    ok = benchlib.figure("(a) downtime, incremental, ~%.0f MB final delta"
                         % benchlib.median([r["delta_mb"] or 0 for r in runs]),
                         round(down, 2), "s", TARGET_S)
    return 0 if ok and not any(r["lost"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
