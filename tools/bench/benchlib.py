"""What the benchmarks share: the simulated datacenter they measure in, its
command log (the source of every figure), and a CN-to-CN key for hand-run
streams.

Every benchmark runs against the datacenter named by SIMDC_DIR/SIMDC_NET,
/var/tmp/simdc-bench and 52 unless set, which `tools/bench/run` boots and
takes down; never one another session uses. Times come from `tools/simdc
log -j` (host, argv, rc, start, end of every emulated command and API call),
not from what sdc-migrate says of itself. Python 3 standard library only.
"""
import contextlib
import json
import os
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
SIMDC = os.path.join(ROOT, "tools", "simdc")
SDC_MIGRATE = "/opt/custom/bin/sdc-migrate"     # as installed; not on root's PATH
os.environ.setdefault("SIMDC_DIR", "/var/tmp/simdc-bench")
os.environ.setdefault("SIMDC_NET", "52")
SIMDC_DIR = os.environ["SIMDC_DIR"]
MB = 1048576


def say(text):
    """Progress of the benchmark itself, on stderr: stdout holds the figures."""
    sys.stderr.write("  . %s\n" % text)
    sys.stderr.flush()


def simdc(*args, input=None, check=True):
    p = subprocess.run([SIMDC] + [str(a) for a in args], input=input, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and p.returncode != 0:
        raise RuntimeError("simdc %s: exit %d\n%s%s" % (
            " ".join(map(str, args)), p.returncode, p.stdout, p.stderr))
    return p


def on(host, *argv, input=None, check=True):
    """Run argv on a host of the datacenter (inside its namespaces)."""
    return simdc("exec", host, "--", *argv, input=input, check=check)


def sh_on(host, script, check=True):
    return on(host, "bash", "-o", "pipefail", "-c", script, check=check)


def hosts():
    with open(os.path.join(SIMDC_DIR, "hosts.json")) as f:
        return json.load(f)


def ip(host):
    return hosts()[host]["admin_ip"]


def provision(*args, env=None):
    """A new instance (simdc provision ARGS); its UUID."""
    p = subprocess.run([SIMDC, "provision"] + [str(a) for a in args], text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=dict(os.environ, **(env or {})))
    if p.returncode != 0:
        raise RuntimeError("simdc provision %s: %s" % (" ".join(map(str, args)), p.stderr))
    return p.stdout.strip().splitlines()[-1]


def migrate(*args):
    """sdc-migrate ARGS on the head node, as an operator runs it; CompletedProcess."""
    return on("headnode", SDC_MIGRATE, *args, check=False)


class Log:
    """The datacenter's command log, from a mark on: `with Log() as log: ...; log.records`."""

    def __init__(self):
        self.start = len(self._all())
        self.records = []

    @staticmethod
    def _all():
        out = simdc("log", "-j").stdout
        return [json.loads(l) for l in out.splitlines() if l.strip()]

    def read(self):
        self.records = self._all()[self.start:]
        return self.records

    def watch(self, test, what, timeout=120):
        """Wait until test(record) holds for a record logged from the mark on.

        For timing the benchmark's own moves only (it reads the log file
        itself, tenths of a second apart); figures come from read()."""
        path = os.path.join(SIMDC_DIR, "log.jsonl")
        with open(path) as f:
            for _ in range(self.start):
                f.readline()
            deadline, buf = time.time() + timeout, ""
            while time.time() < deadline:
                buf += f.read()
                *lines, buf = buf.split("\n")
                for line in lines:
                    try:
                        if test(json.loads(line)):
                            return
                    except ValueError:
                        pass
                time.sleep(0.05)
        raise RuntimeError("timed out waiting for %s" % what)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.read()

    def find(self, host=None, *prefix):
        """Records on host (None: any) whose argv starts with prefix."""
        n = len(prefix)
        return [r for r in self.records if (host is None or r["host"] == host)
                and r["argv"][:n] == list(prefix)]

    def one(self, host, *prefix):
        found = self.find(host, *prefix)
        if len(found) != 1:
            raise RuntimeError("expected one `%s` on %s in the log, found %d"
                               % (" ".join(prefix), host, len(found)))
        return found[0]


class SshdLog:
    """What a host's sshd (LogLevel VERBOSE) logged from a mark on: connections, commands."""

    def __init__(self, host):
        self.path = os.path.join(SIMDC_DIR, "hosts", host, "run", "sshd.log")
        self.offset = os.path.getsize(self.path) if os.path.exists(self.path) else 0

    def lines(self):
        with open(self.path, errors="replace") as f:
            f.seek(self.offset)
            return f.read().splitlines()

    def connections(self):
        return sum(1 for l in self.lines() if l.startswith("Connection from "))

    def sessions(self):
        return sum(1 for l in self.lines() if l.startswith("Starting session: command"))


@contextlib.contextmanager
def cn_key(src, dst, tag="bench"):
    """A key on src authorized on dst from src's admin IP, with dst's host key known:
    what sdc-migrate sets up for its stream. Yields (key, known_hosts) paths on src."""
    key, kh = "/root/.ssh/bench-key-%s" % tag, "/root/.ssh/bench-known-%s" % tag
    backup = "/root/.ssh/authorized_keys.bench-%s" % tag
    hostkey = " ".join(on(dst, "cat", "/var/ssh/ssh_host_ed25519_key.pub").stdout.split()[:2])
    pub = sh_on(src, "umask 077 && rm -f %s %s.pub && ssh-keygen -q -t ed25519 -N '' -f %s "
                "&& cat %s.pub && printf '%%s %%s\\n' %s %s > %s" % (
                    key, key, key, key, ip(dst), shlex.quote(hostkey), kh)).stdout
    sh_on(dst, "umask 077 && touch /root/.ssh/authorized_keys && "
          "cp -p /root/.ssh/authorized_keys %s && echo %s >> /root/.ssh/authorized_keys"
          % (backup, shlex.quote('from="%s" %s' % (ip(src), " ".join(pub.split()[:2])))))
    try:
        yield key, kh
    finally:
        on(dst, "mv", "-f", backup, "/root/.ssh/authorized_keys", check=False)
        on(src, "rm", "-f", key, key + ".pub", kh, check=False)


def stream_size(host, send_args):
    """The bytes `zfs send SEND_ARGS` would send, from its -nP estimate."""
    out = on(host, "zfs", "send", "-nP", *send_args).stdout
    for line in out.splitlines():
        f = line.split("\t")
        if f[0] == "size":
            return int(f[1])
    raise RuntimeError("no size from zfs send -nP %s: %s" % (" ".join(send_args), out))


def median(values):
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2.0


def table(headers, rows):
    """Columns wide enough for their cells; numbers already formatted."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    for row in [headers] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())


def figure(name, value, unit, target=None, better="lower"):
    """The benchmark's last line: its figure, and against its target if it has one."""
    value = "%.2f" % value if isinstance(value, float) else value
    if target is None:
        print("%s: %s %s" % (name, value, unit))
        return True
    ok = float(value) <= target if better == "lower" else float(value) >= target
    sep = "" if unit == "x" else " "
    print("%s: %s%s%s (target %s %s%s%s: %s)" % (
        name, value, sep, unit, "<=" if better == "lower" else ">=", target, sep, unit,
        "met" if ok else "MISSED"))
    return ok


def wait_until(what, test, timeout=60, step=0.2):
    deadline = time.time() + timeout
    while not test():
        if time.time() > deadline:
            raise RuntimeError("timed out waiting for %s" % what)
        time.sleep(step)


API_HOSTS = ("vmapi", "cnapi", "napi", "imgapi", "sapi")


def within(records, t0, t1):
    return [r for r in records if r["end"] >= t0 and r["start"] <= t1]


def busy(records, t0, t1):
    """Seconds of [t0, t1] during which at least one of records ran."""
    spans = sorted((max(r["start"], t0), min(r["end"], t1)) for r in records)
    total, reach = 0.0, t0
    for a, b in spans:
        if b > reach:
            total += b - max(a, reach)
            reach = b
    return total


def sessions(records):
    """Remote command lines (ssh sessions) and connections among records, per host."""
    out = {}
    for r in records:
        s = r.get("ssh_session")
        if s:
            conn, _, sid = s.partition("/")
            h = out.setdefault(r["host"], [set(), set()])
            h[0].add(s)
            h[1].add(conn)
    return {h: (len(v[0]), len(v[1])) for h, v in out.items()}


def describe(records, t0, t1, top=8, startup_ms=None):
    """What the seconds between t0 and t1 went to, from the log: lines to print.
    startup_ms: an emulated command's start-up the log does not see (overheads())."""
    recs = within(records, t0, t1)
    cn = [r for r in recs if r["host"] not in API_HOSTS and r["host"] != "headnode"]
    hn = [r for r in recs if r["host"] == "headnode"]
    api = [r for r in recs if r["host"] in API_HOSTS]
    lines = ["%.2f s from %.3f to %.3f:" % (t1 - t0, t0, t1)]
    for host, (n, conns) in sorted(sessions(recs).items()):
        cmds = [r for r in cn if r["host"] == host and r.get("ssh_session")]
        lines.append("  %-14s %3d commands in %2d ssh sessions over %d connection(s), busy %.2f s"
                     % (host, len(cmds), n, conns, busy(cmds, t0, t1)))
    lines.append("  %-14s %3d sdc-* calls, busy %.2f s; APIs answered %d requests in %.2f s"
                 % ("headnode", len(hn), busy(hn, t0, t1), len(api), busy(api, t0, t1)))
    idle = (t1 - t0) - busy(recs, t0, t1)
    lines.append("  nothing logged running for %.2f s (ssh round trips, the tool's own work, "
                 "waits)" % idle)
    if startup_ms:
        n = len([r for r in cn if r.get("ssh_session")])
        lines.append("  the %d emulated CN commands' start-up, which the log does not see: "
                     "~%.2f s (%d ms each)" % (n, n * startup_ms / 1000.0, startup_ms))
    lines.append("  slowest:")
    for r in sorted(recs, key=lambda r: r["start"] - r["end"])[:top]:
        lines.append("    %6.3f s  %-13s %s" % (r["end"] - r["start"], r["host"],
                                               " ".join(r["argv"])[:90]))
    return lines


def _per(script_loop, n):
    return "t0=$(date +%%s%%N); for i in $(seq %d); do %s; done; t1=$(date +%%s%%N); " \
           "echo $(( (t1 - t0) / %d / 1000000 ))" % (n, script_loop, n)


def overheads(cn="source-server", n=10):
    """What a command costs here apart from its own work, in ms: ssh round trip over a
    ControlMaster and over a fresh connection (head node to cn), an emulated command's
    start-up that the log does not see (python3 and the shim's imports: on SmartOS these
    commands are C), sdc-migrate's own start; and the machine's load average."""
    o = ("-i /root/.ssh/sdc.id_rsa -o BatchMode=yes -o LogLevel=ERROR -o ControlMaster=auto "
         "-o ControlPath=/var/tmp/bench-cm-%C -o ControlPersist=30")
    fresh = "-i /root/.ssh/sdc.id_rsa -o BatchMode=yes -o LogLevel=ERROR"
    host = "root@" + ip(cn)
    script = "; ".join([
        "ssh %s %s true" % (o, host),
        _per("ssh %s %s true" % (o, host), n),
        _per("ssh %s %s true" % (fresh, host), max(2, n // 2)),
        _per(SDC_MIGRATE + " --version >/dev/null 2>&1", 3),
        "ssh %s -O exit %s 2>/dev/null; true" % (o, host)])
    master, fresh_ms, tool = [int(x) for x in sh_on("headnode", script).stdout.split()[:3]]
    with Log() as log:
        local = int(sh_on(cn, _per("zfs list -H -o name zones >/dev/null", n)).stdout.split()[0])
    logged = [r["end"] - r["start"] for r in log.find(cn, "zfs", "list")]
    startup = local - 1000 * sum(logged) / max(1, len(logged))
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    return {"ssh_master_ms": master, "ssh_fresh_ms": fresh_ms, "tool_start_ms": tool,
            "emulated_startup_ms": int(startup), "emulated_ms": local, "load": load,
            "cpus": os.cpu_count()}


def overhead_lines(o):
    return ["ssh round trip from the head node: %d ms over a ControlMaster, %d ms over a new "
            "connection" % (o["ssh_master_ms"], o["ssh_fresh_ms"]),
            "an emulated CN command (zfs list) takes %d ms, %d ms of it start-up the log does "
            "not see (python3 + imports; the real one is C)" % (o["emulated_ms"],
                                                                o["emulated_startup_ms"]),
            "sdc-migrate --version: %d ms; load average %s on %d CPUs" % (
                o["tool_start_ms"], o["load"], o["cpus"])]


def timeline(records, t0, t1):
    """The tool's own commands between t0 and t1, in order, as offsets from t0: lines."""
    recs = [r for r in within(records, t0, t1)
            if r.get("ssh_session") or r["host"] == "headnode"]
    return ["%+7.3f %6.3f s  %-13s %s" % (r["start"] - t0, r["end"] - r["start"], r["host"],
                                          " ".join(r["argv"])[:80])
            for r in sorted(recs, key=lambda r: r["start"])]
