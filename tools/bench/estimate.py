#!/usr/bin/python3
"""(d) `sdc-migrate estimate` over 3 CNs with 100 instances each: wall time and remote calls.

    tools/bench/estimate.py [--per-cn N] [--rounds R]

Brings source-server, dest-server and spare-server up to N (100) instances
each (stopped, no data of their own: `simdc provision --size 0 --state
stopped`, several at once), then runs `sdc-migrate estimate source-server
dest-server spare-server` on the head node R times. Wall time is measured
around the command; remote calls are the ssh command lines each CN's sshd
ran for it (`ssh_session` in `tools/simdc log`; connections from the sshd
logs), API calls from the head node's sdc-* tools in the log. The figure is
the median wall time. Targets: 2 s, one remote call per CN.
"""
import argparse
import concurrent.futures
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import benchlib  # noqa: E402

CNS = ("source-server", "dest-server", "spare-server")
TARGET_S = 2.0


def count_instances(cn):
    """Instances on cn, from its own vmadm."""
    out = benchlib.on(cn, "vmadm", "list", "-H", "-o", "uuid").stdout
    return len(out.split())


def fill(per_cn):
    """Provision until each CN holds per_cn instances; (how many made, seconds)."""
    todo = {cn: max(0, per_cn - count_instances(cn)) for cn in CNS}
    t0 = time.time()
    # One at a time per CN (each CN does one zone operation at a time anyway),
    # the CNs side by side; every other one on the fabric network: the
    # external one has 241 addresses.
    order = [(cn, i % 2) for i in range(per_cn) for cn in CNS if todo[cn] > i]

    def make(job):
        cn, fabric = job
        args = ["--size", 0, "--state", "stopped", "--server", cn, "--alias", "est"]
        try:
            return benchlib.provision(*args, *(["--fabric"] if fabric else []))
        except RuntimeError as e:
            if fabric or "SubnetFull" not in str(e):
                raise
            return benchlib.provision(*args, "--fabric")

    with concurrent.futures.ThreadPoolExecutor(len(CNS)) as pool:
        done = 0
        for _ in pool.map(make, order):
            done += 1
            if done % 50 == 0:
                benchlib.say("provisioned %d of %d" % (done, len(order)))
    return len(order), time.time() - t0


def one():
    sshd = {cn: benchlib.SshdLog(cn) for cn in CNS}
    with benchlib.Log() as log:
        t0 = time.time()
        p = benchlib.on("headnode", benchlib.SDC_MIGRATE, "estimate", "-j", *CNS, check=False)
        t1 = time.time()
    if p.returncode != 0:
        raise RuntimeError("sdc-migrate estimate failed (%d):\n%s%s"
                           % (p.returncode, p.stdout, p.stderr))
    instances = 0
    for line in p.stdout.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("event") == "instance":
            instances += 1
    ssh = benchlib.sessions(log.records)
    calls = {cn: ssh.get(cn, (0, 0))[0] for cn in CNS}
    conns = {cn: s.connections() for cn, s in sshd.items()}
    api = [r for r in log.records if r["host"] == "headnode"]
    return {"wall": t1 - t0, "calls": calls, "conns": conns, "api": len(api),
            "instances": instances, "log": log, "t0": t0, "t1": t1}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-cn", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    made, secs = fill(args.per_cn)
    benchlib.say("provisioned %d instances in %.0f s" % (made, secs))
    runs = []
    for n in range(args.rounds):
        r = one()
        runs.append(r)
        benchlib.say("round %d: %.2f s, remote calls %s, %d instances listed"
                     % (n + 1, r["wall"], r["calls"], r["instances"]))
    last = runs[-1]
    print("sdc-migrate estimate %s, %d instances per CN, %d rounds"
          % (" ".join(CNS), args.per_cn, args.rounds))
    print("wall times: %s s; instances listed: %d" % (
        " ".join("%.2f" % r["wall"] for r in runs), last["instances"]))
    print("remote calls (ssh command lines) per CN: %s; ssh connections: %s; "
          "head node sdc-* calls: %d" % (
              ", ".join("%s %d" % kv for kv in last["calls"].items()),
              ", ".join("%s %d" % kv for kv in last["conns"].items()), last["api"]))
    over = benchlib.overheads()
    print("what the last round's time went to:")
    for line in benchlib.describe(last["log"].records, last["t0"], last["t1"],
                                  startup_ms=over["emulated_startup_ms"]):
        print("  " + line)
    for line in benchlib.overhead_lines(over):
        print("  " + line)
    calls = sum(last["calls"].values())
    one_each = all(v == 1 for v in last["calls"].values())
    ok = benchlib.figure("(d) estimate over %d CNs x %d instances, wall time (%d remote calls, "
                         "%s)" % (len(CNS), args.per_cn, calls,
                                  "one per CN" if one_each else "target one per CN: MISSED"),
                         round(benchlib.median([r["wall"] for r in runs]), 2), "s", TARGET_S)
    return 0 if ok and one_each else 1


if __name__ == "__main__":
    sys.exit(main())
