"""What every part of the simulated datacenter shares: where it lives, which
hosts it has, the command log, the fault table and the API client.

Every emulated command (head node sdc-* tools, CN commands) and every API
call writes one JSON line to the log; every emulated command asks the fault
table first. Processes the datacenter starts are recorded in pids/ so that
`simdc down` ends exactly those.
"""
import contextlib
import fcntl
import json
import os
import socket
import sys
import time

SIM_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))   # tools/sim
PROJECT_ROOT = os.path.dirname(os.path.dirname(SIM_ROOT))                 # checkout

DATACENTER = "sim-1"
HEADNODE = "headnode"
CNS = ("source-server", "dest-server", "spare-server", "old-server")
HOSTS = (HEADNODE,) + CNS
# The third octet of every address; a second datacenter (a helper's test
# run, say) beside the first sets SIMDC_NET to another value and its own SIMDC_DIR.
NET = int(os.environ.get("SIMDC_NET", "10"))
ADMIN_IPS = {
    "headnode": "127.0.%d.1" % NET,
    "source-server": "127.0.%d.11" % NET,
    "dest-server": "127.0.%d.12" % NET,
    "spare-server": "127.0.%d.13" % NET,
    "old-server": "127.0.%d.14" % NET,
}
# One address per API, as in Triton where each API is its own zone.
API_IPS = {
    "vmapi": "127.0.%d.2" % NET,
    "cnapi": "127.0.%d.3" % NET,
    "napi": "127.0.%d.4" % NET,
    "imgapi": "127.0.%d.5" % NET,
    "sapi": "127.0.%d.6" % NET,
    "papi": "127.0.%d.7" % NET,
}
API_PORT = int(os.environ.get("SIMDC_API_PORT", "80"))
PLATFORM = "20250326T000000Z"
# old-server's: a SmartOS platform of August 2015, older than the changes
# the tool relies on: OpenSSH in place of SunSSH (smartos-live OS-4688,
# 2015-08-14), resumable zfs send/receive (illumos 2605, openzfs
# 9c3fd1216f, 2015-10-09) and a `zonecfg export` that quotes base64 values
# (before it, bare: illumos-joyent c8236ea, December 2019). A host's platform
# decides what it has:
OLD_PLATFORM = "20150806T000000Z"
OPENSSH_SINCE = "20150814"
RESUMABLE_SINCE = "20151009"
# sdc-net-agent's package.json version: today's, and the last release before
# TRITON-1814 (9077600^), which deletes the NICs of a zone turning
# do-not-inventory. An agent's version lives where sysinfo reads it.
NET_AGENT = "2.3.6"
OLD_NET_AGENT = "2.3.0"
AGENTS = {"cn-agent": "2.0.2", "vm-agent": "1.7.0", "net-agent": NET_AGENT,
          "config-agent": "1.5.0"}
SDC_VERSION = "7.0"
POOL_SIZE = os.environ.get("SIMDC_POOL_SIZE", "4G")

CN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# root's PATH on a head node (smartos-live overlay/generic/root/.profile): Triton's
# tools, its own sdc-migrate among them, come from /opt/smartdc/bin; ours is
# installed as /opt/custom/bin/sdc-migrate, which is not on it.
HN_PATH = ("/usr/bin:/usr/sbin:/smartdc/bin:/opt/smartdc/bin:/opt/local/bin:/opt/local/sbin:"
           "/opt/tools/bin:/opt/tools/sbin:/opt/smartdc/agents/bin")


def sim_dir():
    return os.environ.get("SIMDC_DIR", "/var/tmp/simdc")


def path(*parts):
    return os.path.join(sim_dir(), *parts)


def host_dir(host, *parts):
    """The private files of one host (bound into its namespace)."""
    return path("hosts", host, *parts)


def this_host():
    """The host an emulated command runs on (set by exec and by sshd)."""
    return os.environ.get("SIMDC_HOST") or socket.gethostname()


def platform_of(host):
    """The platform `simdc up` gives a host."""
    return OLD_PLATFORM if host == "old-server" else PLATFORM


def host_platform(host):
    """The platform a host runs: hosts.json's (a test's own CN has one), else
    the one `simdc up` gives it."""
    return load_hosts().get(host, {}).get("platform") or platform_of(host)


def sunssh(host):
    """Whether the host's ssh is SunSSH (SmartOS before OS-4688), not OpenSSH."""
    return host_platform(host) < OPENSSH_SINCE


def resumable_zfs(host):
    """Whether the host's zfs has resumable receives (recv -s, send -t)."""
    return host_platform(host) >= RESUMABLE_SINCE


def agents_dir(host):
    """/opt/smartdc/agents/lib/node_modules on host, where every agent's
    package.json is (the host's /opt is its own: seen from anywhere)."""
    return host_dir(host, "opt", "smartdc", "agents", "lib", "node_modules")


def agent_version(host, name):
    """The version in the host's NAME/package.json, or None."""
    try:
        with open(os.path.join(agents_dir(host), name, "package.json")) as f:
            return json.load(f).get("version")
    except (OSError, ValueError):
        return None


def load_hosts():
    """hosts.json, written by `simdc up`: name -> {uuid, admin_ip, ...}."""
    try:
        with open(path("hosts.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def host_by_uuid(uuid):
    for name, h in load_hosts().items():
        if h["uuid"] == uuid:
            return name
    return None


@contextlib.contextmanager
def locked(name):
    """An exclusive lock on $SIMDC_DIR/NAME.lock between processes."""
    os.makedirs(sim_dir(), exist_ok=True)
    with open(path(name + ".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---- the log ---------------------------------------------------------------

def log_call(host, argv, rc, start, end, **extra):
    rec = {"host": host, "argv": [str(a) for a in argv], "rc": rc,
           "start": start, "end": end}
    rec.update(extra)
    line = json.dumps(rec) + "\n"
    # One O_APPEND write per record: lines from concurrent writers never mix.
    fd = os.open(path("log.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


# ---- faults ----------------------------------------------------------------

def _load_faults():
    try:
        with open(path("faults.json")) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return []


def fault_matches(f, host, words, remote=False):
    """Whether fault f is for this command: an emulated command's argv starts
    with f's prefix; a remote command line (remote=True: tools/sim/sshd-command,
    the head node key's forced command) holds f's words, in a row, anywhere in it."""
    if f["host"] != host or bool(f.get("remote")) != remote:
        return False
    p = f["prefix"]
    if remote:
        return " ".join(p) in " ".join(words)
    return words[:len(p)] == p


def take_fault(host, argv, remote=False):
    """The fault that applies to this command, if any, consuming one use.

    A fault is {host, prefix: [..], times, skip, after_bytes, exit, delay,
    remote}: the next `times` commands on `host` whose argv (basename of
    argv[0]) starts with `prefix` (after the first `skip` such commands,
    which run untouched) fail with `exit`, or, with after_bytes, get their
    data stream cut after that many bytes; with delay, they first sleep that
    long (and with exit 0 then run normally). A remote fault matches a
    remote command line instead (fault_matches).
    """
    if not os.path.exists(path("faults.json")):
        return None
    words = ([os.path.basename(argv[0])] + list(argv[1:])) if argv else []
    with locked("faults"):
        faults = _load_faults()
        for f in faults:
            if fault_matches(f, host, words, remote) and f.get("times", 1) > 0:
                if f.get("skip"):
                    f["skip"] -= 1
                    with open(path("faults.json.tmp"), "w") as out:
                        json.dump(faults, out)
                    os.replace(path("faults.json.tmp"), path("faults.json"))
                    return None
                f["times"] = f.get("times", 1) - 1
                with open(path("faults.json.tmp"), "w") as out:
                    json.dump([x for x in faults if x.get("times", 1) > 0], out)
                os.replace(path("faults.json.tmp"), path("faults.json"))
                return f
    return None


def ssh_session(host):
    """'CLIENT_IP:PORT/SID' for a command that came in through HOST's own sshd, else None.

    The client port names the ssh connection (one ControlMaster connection
    carries many sessions) and the session id the remote command of one
    session (sshd gives each its own), so `simdc log` can tell how many
    round trips a tool made to a host.
    """
    conn = os.environ.get("SSH_CONNECTION", "").split()
    if len(conn) != 4 or conn[2] != ADMIN_IPS.get(host):
        return None
    return "%s:%s/%d" % (conn[0], conn[1], os.getsid(0))


# What a command adds to its own log record (zfs send: the bytes it wrote).
LOG_EXTRA = {}


def emulated(main):
    """Wrap an emulated command's main(argv) -> rc: faults, logging, exit.

    A fault with exit (and no after_bytes) fails the command before it runs,
    printing what a real failure would. A fault with after_bytes is passed to
    the command in SIMDC_FAULT_AFTER_BYTES for it to cut its stream.
    """
    def run():
        argv = [os.path.basename(sys.argv[0])] + sys.argv[1:]
        host = this_host()
        start = time.time()
        rc = 1
        try:
            fault = take_fault(host, argv)
            if fault and fault.get("delay"):
                # a slow command, for tests that interrupt a step in flight
                time.sleep(fault["delay"])
                if fault.get("exit") == 0:
                    fault = None
            if fault and fault.get("after_bytes") is None:
                sys.stderr.write("%s: simulated failure (simdc fault)\n" % argv[0])
                rc = fault.get("exit", 1)
            else:
                if fault:
                    os.environ["SIMDC_FAULT_AFTER_BYTES"] = str(fault["after_bytes"])
                    os.environ["SIMDC_FAULT_EXIT"] = str(fault.get("exit", 1))
                rc = main(sys.argv[1:]) or 0
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, (int, type(None))):
                sys.stderr.write(str(e.code) + "\n")
        except BrokenPipeError:
            rc = 141
        finally:
            try:
                sys.stdout.flush()
            except BrokenPipeError:
                pass
            session = ssh_session(host)
            log_call(host, argv, rc, start, time.time(),
                     **dict(LOG_EXTRA, **({"ssh_session": session} if session else {})))
        os._exit(rc)
    return run


# ---- the API service -------------------------------------------------------

def api_url(api, urlpath):
    port = "" if API_PORT == 80 else ":%d" % API_PORT
    return "http://%s%s%s" % (API_IPS[api], port, urlpath)


def api(api_name, method, urlpath, body=None, timeout=30, agent=None):
    """Call one of the simulated APIs; returns (status, parsed body or None).

    agent: a CN agent's name (vm-agent, net-agent), sent as its User-Agent as
    Triton's agents do; the API log marks its requests with it."""
    # imported here: it costs ~35 ms, and most emulated commands never call an API
    import urllib.error
    import urllib.request
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(api_url(api_name, urlpath), data=data, method=method,
                                 headers={"Content-Type": "application/json",
                                          "Accept": "application/json",
                                          "User-Agent": "%s/sim" % (agent or "simdc")})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw = e.read()
        status = e.code
    try:
        return status, (json.loads(raw) if raw else None)
    except ValueError:
        return status, raw.decode(errors="replace")


def _starttime(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def record_pid(name, pid):
    """Remember a process the datacenter started, for `simdc down`.

    The start time is kept beside the pid so that a pid reused by some other
    process after ours ended is never signalled.
    """
    os.makedirs(path("pids"), exist_ok=True)
    with open(path("pids", "%s.pid" % name), "w") as f:
        f.write("%d %s\n" % (pid, _starttime(pid) or "-"))


def recorded_pid(name):
    """The pid recorded under NAME if that very process still runs, else None."""
    try:
        with open(path("pids", "%s.pid" % name)) as f:
            words = f.read().split()
    except FileNotFoundError:
        return None
    pid = int(words[0])
    start = words[1] if len(words) > 1 else "-"
    now = _starttime(pid)
    if now is None or (start != "-" and now != start):
        return None
    return pid
