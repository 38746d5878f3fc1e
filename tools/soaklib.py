"""The randomized soak (issue 23): trials that throw datacenter events at
sdc-migrate at random moments and judge the outcome from the datacenter alone.

A trial is drawn whole from its seed (`schedule(seed)`): the instance (brand,
disks, delegated dataset, instance snapshots, run state), the command (a full,
-i or -a migration, or a rollback after a clean one) and its events (a CN
command failing or hanging, a stream cut at a random byte, a CN's sshd
stopped, the destination's pool filled, a CN rebooted, vm-agent restarted,
sdc-migrate SIGKILLed, SIGHUPed or SIGTERMed), each at a random time after
the command starts or at the moment a hung command begins. After the events
the same command runs again until it ends (exit 0, 4, or 5 three times). Then
`violations()` reads VMAPI, NAPI, both CNs and the head node: one copy
visible and able to run, in the run state it had, where the exit status
says; the workload's record continuing every line any copy had; nothing
left behind; every journal ended.

`trial(dc, seed)` takes the tests' Datacenter (tests/conftest.py), so the
suite runs it against its own datacenter (tests/e2e/test_soak.py);
`main()` is tools/soak.
"""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "e2e")]

from checks import journals, leftovers, no_fault_left  # noqa: E402
from conftest import SDC_MIGRATE, SIMDC, Datacenter, booted  # noqa: E402

SRC, DST = "source-server", "dest-server"
# its own datacenter: not the tests' (127.0.30-70.x, +100 for evacuate's), the
# benchmarks' (52) nor tests/sim's (61-63)
DEFAULT_DIR, DEFAULT_NET = "/var/tmp/simdc-soak", "86"
RUN_TIMEOUT = 300           # a run of the tool that takes longer is a violation (hung)
RERUNS = 3                  # exit 5 after the events ended: rerun at most this often

# Commands a fault can fail or hang: (host role, argv prefix), UUID filled in.
# "from"/"to" are the stream's ends: the source and destination of a
# migration, the other way round for a rollback.
STEPS = [
    ("from", ["ssh-keygen"], True),
    ("to", ["cat >> /root/.ssh/authorized_keys"], True),
    ("headnode", ["sdc-napi"], False),
    ("from", ["zfs", "snapshot"], False),
    ("from", ["vmadm", "stop"], False),
    ("from", ["zfs", "send"], False),
    ("to", ["zfs", "recv"], False),
    ("to", ["zfs", "create"], False),
    ("to", ["zonecfg", "-z", "UUID", "-f", "-"], False),
    ("to", ["zoneadm", "-z", "UUID", "attach"], False),
    ("from", ["vmadm", "update", "UUID"], False),
    ("to", ["vmadm", "update", "UUID"], False),
    ("to", ["vmadm", "start"], False),
]
EVENTS = ("fail", "hang", "cut", "sshd", "fill", "reboot", "vm-agent", "signal")
COMMANDS = ("full", "-i", "-a", "rollback")


# ---- the schedule ----------------------------------------------------------

def schedule(seed):
    """Everything a trial does, from its seed alone (so --replay=SEED reruns it)."""
    rng = random.Random(seed)
    brand = rng.choice(["joyent", "joyent-minimal", "lx", "kvm", "bhyve"])
    kind = {"brand": brand, "size": rng.choice([1, 2]),
            "state": rng.choice(["running", "running", "stopped"])}
    if brand in ("kvm", "bhyve"):
        kind["disks"] = rng.randint(1, 3)
    if brand != "kvm" and rng.random() < 0.3:
        kind["delegate"] = True
    elif brand != "kvm" and rng.random() < 0.4:
        # vmadm refuses snapshots of kvm and of zones with datasets
        kind["snapshots"] = rng.randint(1, 2)
    command = rng.choice(COMMANDS)
    plan = {"seed": seed, "kind": kind, "command": command}
    if command == "-i":
        plan["rounds"] = rng.randint(1, 3)
    events = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        events.append(_event(rng, rng.choice(EVENTS), events))
    plan["events"] = events
    return plan


def _event(rng, what, earlier):
    ev = {"what": what}
    if what in ("fail", "hang"):
        role, prefix, remote = rng.choice(STEPS)
        ev.update(role=role, prefix=prefix, remote=remote)
        if rng.random() < 0.3:
            ev["skip"] = rng.randint(1, 3)
        if what == "hang":
            ev["delay"] = rng.choice([2, 4, 8])
        return ev
    if what == "cut":
        ev.update(role="to", after_bytes=rng.randint(1, 400000), times=rng.randint(1, 4))
        return ev
    # the rest happen at a moment: seconds after the start, or at the hang
    # an earlier event of this trial put in place
    if any(e["what"] == "hang" for e in earlier) and rng.random() < 0.5:
        ev["when"] = "hang"
    else:
        ev["when"] = round(rng.uniform(0, 15), 2)
    if what == "sshd":
        ev.update(role=rng.choice(["from", "to"]), down=round(rng.uniform(0.5, 6), 2))
    elif what == "fill":
        ev.update(role="to", seconds=round(rng.uniform(1, 8), 2))
    elif what in ("reboot", "vm-agent"):
        ev["role"] = rng.choice(["from", "to"])
    elif what == "signal":
        ev["signal"] = rng.choice(["SIGKILL", "SIGKILL", "SIGHUP", "SIGTERM"])
    return ev


def describe(ev):
    """One event in a few words."""
    what = ev["what"]
    if what in ("fail", "hang"):
        words = "%s %s on %s" % (what, " ".join(ev["prefix"]), ev["role"])
        if ev.get("skip"):
            words += " after %d" % ev["skip"]
        if what == "hang":
            words += " %ds" % ev["delay"]
        return words
    if what == "cut":
        return "cut at byte %d x%d" % (ev["after_bytes"], ev["times"])
    when = "at the hang" if ev.get("when") == "hang" else "at %.1fs" % ev["when"]
    if what == "sshd":
        return "sshd %s down %.1fs %s" % (ev["role"], ev["down"], when)
    if what == "fill":
        return "fill %s %.1fs %s" % (ev["role"], ev["seconds"], when)
    if what == "signal":
        return "%s %s" % (ev["signal"], when)
    return "%s %s %s" % (what, ev["role"], when)


# ---- running it --------------------------------------------------------------

class Trial:
    def __init__(self, dc, plan, say=print):
        self.dc, self.plan, self.say = dc, plan, say
        self.uuid = None
        self.runs = []              # (argv, exit status, output)
        self.fired = []             # descriptions of the timed events that fired
        self.outcome = None
        self.violations = []
        self.ends = (SRC, DST) if plan["command"] != "rollback" else (DST, SRC)

    def host(self, role):
        return {"from": self.ends[0], "to": self.ends[1]}.get(role, role)

    # -- the instance
    def provision(self):
        k = self.plan["kind"]
        args = ["--brand", k["brand"], "--size", k["size"], "--state", k["state"]]
        if "disks" in k:
            args += ["--disks", k["disks"]]
        if k.get("delegate"):
            args.append("--delegate")
        self.uuid = self.dc.provision(*args)
        for n in range(k.get("snapshots", 0)):
            self.dc.exec(SRC, "vmadm", "create-snapshot", self.uuid, "soak%d" % n)

    def argv(self):
        c = self.plan["command"]
        if c == "rollback":
            return ["rollback", "-y", self.uuid]
        return ["-y"] + ([c] if c != "full" else []) + [self.uuid, DST]

    # -- one run of the tool, with or without the events
    def run(self, events):
        argv = self.argv()
        for ev in events:
            if ev["what"] in ("fail", "hang", "cut"):
                self.add_fault(ev)
        tool = subprocess.Popen([SIMDC, "exec", "headnode", "--", SDC_MIGRATE] + argv,
                                env=self.dc.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        out = []
        reader = threading.Thread(target=self._read, args=(tool, out), daemon=True)
        reader.start()
        started = time.time()
        timed = sorted((ev for ev in events if "when" in ev),
                       key=lambda e: (e["when"] == "hang", e["when"] if e["when"] != "hang" else 0))
        actor = threading.Thread(target=self._act, args=(tool, timed, started), daemon=True)
        actor.start()
        finisher = None
        if self.plan["command"] == "-i":
            finisher = threading.Thread(target=self._finish, args=(tool, out), daemon=True)
            finisher.start()
        try:
            tool.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(tool.pid, signal.SIGKILL)
            tool.wait()
            self.violations.append("hung: %s ran over %d s" % (" ".join(argv), RUN_TIMEOUT))
        actor.join()
        reader.join(timeout=10)
        if finisher:
            finisher.join(timeout=30)
        self.calm(events)
        self.runs.append((argv, tool.returncode, "".join(out)))
        return tool.returncode

    @staticmethod
    def _read(tool, out):
        for line in iter(tool.stdout.readline, b""):
            out.append(line.decode(errors="replace"))

    def add_fault(self, ev):
        prefix = [self.uuid if w == "UUID" else w for w in ev["prefix"]] \
            if "prefix" in ev else ["zfs", "recv"]
        opts = []
        if ev.get("remote"):
            opts.append("--remote")
        if ev.get("skip"):
            opts += ["--skip", ev["skip"]]
        if ev["what"] == "hang":
            opts += ["--delay", ev["delay"], "--exit", "0"]
        if ev["what"] == "cut":
            opts += ["--after-bytes", ev["after_bytes"], "--times", ev["times"]]
        self.dc.simdc("fault", "add", self.host(ev["role"]), *opts, "--", *prefix)

    def _act(self, tool, timed, started):
        """The timed events, each while the tool still runs."""
        for ev in timed:
            if ev["when"] == "hang":
                while not no_fault_left(self.dc) and tool.poll() is None:
                    time.sleep(0.1)
                time.sleep(0.3)
            else:
                while time.time() - started < ev["when"] and tool.poll() is None:
                    time.sleep(0.05)
            if tool.poll() is not None:
                return
            self.fired.append(describe(ev))
            self.fire(ev, tool)

    def fire(self, ev, tool):
        dc, what = self.dc, ev["what"]
        if what == "signal":
            os.killpg(tool.pid, getattr(signal, ev["signal"]))
        elif what == "sshd":
            dc.simdc("sshd", self.host(ev["role"]), "stop")
            time.sleep(ev["down"])
            dc.simdc("sshd", self.host(ev["role"]), "start")
        elif what == "fill":
            dc.simdc("fill", self.host(ev["role"]))
            time.sleep(ev["seconds"])
            dc.simdc("fault", "clear")
        elif what == "reboot":
            dc.simdc("reboot", self.host(ev["role"]))
        elif what == "vm-agent":
            dc.exec(self.host(ev["role"]), "svcadm", "restart", "vm-agent", check=False)

    def _finish(self, tool, out):
        """-i: `sdc-migrate finish` once the planned rounds were sent (or a while
        passed), again until the run ends (the state file may not exist yet)."""
        started = time.time()
        while tool.poll() is None:
            rounds = sum("Transferring incremental dataset snapshot" in l for l in list(out))
            if rounds >= self.plan["rounds"] or time.time() - started > 40:
                self.dc.migrate("finish", self.uuid)
                time.sleep(2)
            else:
                time.sleep(0.2)

    def calm(self, events):
        """The events end: no fault left, every sshd up, the commands a killed
        run left on the CNs given time to end."""
        self.dc.simdc("fault", "clear")
        for host in (SRC, DST):
            self.dc.simdc("sshd", host, "start", check=False)
        time.sleep(1 + max([ev.get("delay", 0) for ev in events] + [0]))

    # -- the whole trial
    def go(self):
        self.provision()
        if self.plan["command"] == "rollback":
            p = self.dc.migrate("-y", self.uuid, DST)
            if p.returncode != 0:
                self.violations.append("the migration before the rollback failed (%d): %s"
                                       % (p.returncode, _tail(p.stdout + p.stderr)))
                return self
            time.sleep(0.5)
        self.before = self.dc.vm(self.uuid)
        self.record = self.records().get(self.ends[0]) or []
        status = self.run(self.plan["events"])
        for _ in range(RERUNS):
            if status in (0, 4) or self.violations:
                break
            status = self.run([])       # the same command again, as the tool says
        self.status = status
        time.sleep(1.5)                 # vm-agent's report of the last change
        self.judge()
        return self

    # -- what the datacenter says
    def records(self):
        """host -> the workload's record (lines) of each copy of the instance."""
        found = {}
        for host in (SRC, DST):
            if self.uuid not in self.dc.exec(host, "cat", "/etc/zones/index").stdout:
                continue
            p = self.dc.simdc("seq", "--dump", host, self.uuid, check=False)
            if p.returncode == 0:
                found[host] = [l.split() for l in p.stdout.splitlines() if l.strip()]
        return found

    def judge(self):
        dc, uuid, v = self.dc, self.uuid, self.violations
        c, status = self.plan["command"], self.status
        if status == 0:
            self.outcome = "rolled back" if c == "rollback" else "moved"
            where = SRC if c == "rollback" else DST
        elif status == 4:
            self.outcome = "moved (rollback undone)" if c == "rollback" else "rolled back"
            where = DST if c == "rollback" else SRC
        else:
            last = self.runs[-1][2].strip().splitlines()
            self.outcome = "needs operator: exit %s: %s" % (status, last[-1] if last else "")
            where = None
            v.append("needs an operator after the events ended and %d reruns (exit %s)"
                     % (RERUNS, status))
        hosts = dc.hosts()
        vm = dc.vm(uuid)
        on = [h for h, d in hosts.items() if d["uuid"] == vm["server_uuid"]]
        if where and on != [where]:
            v.append("VMAPI shows it on %s, exit %s says %s" % (on, status, where))
        visible, running = [], []
        for host in (SRC, DST, "spare-server", "old-server"):
            if uuid not in dc.exec(host, "cat", "/etc/zones/index").stdout:
                continue
            xml = dc.exec(host, "cat", "/etc/zones/%s.xml" % uuid).stdout
            if 'name="do-not-inventory"' not in xml:
                visible.append(host)
            elif 'autoboot="true"' in xml or \
                    '<attr name="vm-autoboot" type="string" value="true"/>' in xml:
                v.append("the hidden copy on %s boots by itself (autoboot)" % host)
            if uuid in dc.exec(host, "zoneadm", "list").stdout.split():
                running.append(host)
        if visible != on:
            v.append("visible copies on %s, VMAPI says %s" % (visible, on))
        if len(running) > 1 or (running and running != on):
            v.append("running on %s, VMAPI says %s" % (running, on))
        if self.before["state"] == "running" and not running:
            v.append("it ran before and runs nowhere now")
        if self.before["state"] != "running" and running:
            v.append("it was stopped and runs on %s now" % running)
        if vm["state"] != ("running" if running else "stopped"):
            v.append("VMAPI says %s, the zone is %s" % (vm["state"], running or "stopped"))
        self.judge_record(on[0] if on else None, bool(running))
        for nic in vm.get("nics", []):
            ip = dc.api("napi", "/networks/%s/ips/%s" % (nic["network_uuid"], nic["ip"]))[2]
            if ip.get("reserved") or ip.get("belongs_to_uuid") != uuid:
                v.append("IP %s: reserved %s, belongs to %s"
                         % (nic["ip"], ip.get("reserved"), ip.get("belongs_to_uuid")))
        left = leftovers(dc, uuid)
        if left:
            v.append("left behind: " + ", ".join(left))
        for n, records in enumerate(journals(dc, uuid)):
            if not any(r["t"] == "end" for r in records):
                v.append("journal %d of %s has not ended" % (n, uuid))
        if not no_fault_left(dc):
            v.append("the fault table is not empty (the soak's own bug)")

    def judge_record(self, host, running):
        """The copy VMAPI shows continues every line any copy had before."""
        v = self.violations
        records = self.records()
        if self.plan["kind"]["state"] != "running" and not self.record:
            return
        if not self.record:
            v.append("no workload record of the running instance at the start (the soak's bug)")
        if running:
            time.sleep(0.5)
            records = self.records()
        mine = records.get(host)
        if mine is None:
            v.append("no workload record on %s" % host)
            return
        numbers = [int(l[0]) for l in mine]
        if numbers != list(range(1, len(numbers) + 1)):
            v.append("the record on %s has a gap or a repeat" % host)
        for other, lines in [("the start", self.record)] + \
                [(h, r) for h, r in records.items() if h != host]:
            if mine[:len(lines)] != lines:
                v.append("the record on %s does not continue the one of %s (%d lines, %d there)"
                         % (host, other, len(mine), len(lines)))
        if running:
            longest = max([len(self.record)] + [len(r) for h, r in records.items() if h != host])
            if len(mine) <= longest:
                v.append("the workload on %s does not write" % host)

    def tidy(self):
        """Stop what the trial left running (CPU for the next ones)."""
        if self.uuid:
            self.dc.stop_instances([self.uuid])


def _tail(text, n=5):
    return " | ".join(text.strip().splitlines()[-n:])


def trial(dc, seed, plan=None, say=print):
    """One trial in dc (tests/conftest.py's Datacenter); its Trial."""
    t = Trial(dc, plan or schedule(seed), say)
    started = time.time()
    try:
        t.go()
    except Exception as e:       # the datacenter refused something: report it, go on
        t.violations.append("the trial broke: %r" % (e,))
        t.outcome = t.outcome or "broken"
    t.seconds = time.time() - started
    try:
        t.tidy()
    except Exception:
        pass
    return t


def report(t):
    """Its line; a failing trial's seed, schedule, violations and tool output."""
    p = t.plan
    head = "seed %d: %s %s: %s -> %s (%.0f s)" % (
        p["seed"], kind_name(p["kind"]), p["command"],
        "; ".join(describe(e) for e in p["events"]), t.outcome, t.seconds)
    if not t.violations:
        return head
    lines = [head + "  VIOLATION", "  schedule: " + json.dumps(p, sort_keys=True),
             "  replay:   tools/soak --replay=%d" % p["seed"],
             "  fired:    " + ("; ".join(t.fired) or "nothing timed")]
    lines += ["  violated: " + x for x in t.violations]
    for argv, status, out in t.runs:
        lines.append("  run %s -> %s: %s" % (" ".join(argv[:-2] if len(argv) > 2 else argv),
                                            status, _tail(out, 3)))
    return "\n".join(lines)


def kind_name(k):
    words = [k["brand"]] + (["%d disks" % k["disks"]] if "disks" in k else []) + \
        (["delegated"] if k.get("delegate") else []) + \
        (["%d snaps" % k["snapshots"]] if k.get("snapshots") else []) + [k["state"]]
    return ",".join(words)


def summary(trials, seed):
    out = []
    for title, key in (("kind", lambda t: t.plan["kind"]["brand"]),
                       ("command", lambda t: t.plan["command"]),
                       ("event", None)):
        rows = {}
        for t in trials:
            names = [key(t)] if key else sorted({e["what"] for e in t.plan["events"]})
            for name in names:
                r = rows.setdefault(name, {})
                o = "violation" if t.violations else t.outcome.split(":")[0]
                r[o] = r.get(o, 0) + 1
        cols = sorted({o for r in rows.values() for o in r})
        out.append("%-16s %6s  %s" % (title, "trials", "  ".join("%12s" % c for c in cols)))
        for name in sorted(rows):
            r = rows[name]
            out.append("%-16s %6d  %s" % (name, sum(r.values()),
                                         "  ".join("%12d" % r.get(c, 0) for c in cols)))
        out.append("")
    bad = [t for t in trials if t.violations]
    for t in bad:
        for x in t.violations:
            out.append("violation: seed %d: %s" % (t.plan["seed"], x))
    out.append("%d events; %d trials with a violation"
               % (sum(len(t.plan["events"]) for t in trials), len(bad)))
    out.append("soak: %d trials, %d violations (seed %d)"
               % (len(trials), sum(len(t.violations) for t in bad), seed))
    return "\n".join(out)


def seeds(seed):
    rng = random.Random(seed)
    while True:
        yield rng.randrange(1, 2 ** 31)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="tools/soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=None, help="how many trials (default 10)")
    ap.add_argument("--seed", type=int, default=None, help="the run's seed (default: the time)")
    ap.add_argument("--minutes", type=float, default=None, help="stop starting trials after M minutes")
    ap.add_argument("--replay", type=int, default=None, help="run the one trial of this seed")
    ap.add_argument("--keep", action="store_true", help="leave the datacenter up at the end")
    a = ap.parse_args(argv)
    seed = a.seed if a.seed is not None else int(time.time())
    trials_max = a.trials if a.trials is not None else (None if a.minutes else 10)
    env = dict(os.environ)
    env.setdefault("SIMDC_DIR", DEFAULT_DIR)
    env.setdefault("SIMDC_NET", DEFAULT_NET)
    print("soak in %s (127.0.%s.x), seed %d" % (env["SIMDC_DIR"], env["SIMDC_NET"], seed),
          flush=True)
    subprocess.run([SIMDC, "down"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = []
    started = time.time()
    d = Datacenter(env)
    d.simdc("up")
    try:
        plans = iter([a.replay]) if a.replay is not None else seeds(seed)
        for s in plans:
            if trials_max is not None and len(done) >= trials_max:
                break
            if a.minutes and time.time() - started > a.minutes * 60:
                break
            t = trial(d, s)
            done.append(t)
            print(report(t), flush=True)
    finally:
        if not a.keep:
            d.simdc("down", check=False)
    hours = (time.time() - started) / 3600
    print("\n%d trials in %.1f min: %.0f trials an hour (load average %s)"
          % (len(done), hours * 60, len(done) / hours if hours else 0,
             open("/proc/loadavg").read().split()[0]))
    print(summary(done, seed if a.replay is None else a.replay))
    return 0 if not any(t.violations for t in done) else 1
