"""The workload of a running simulated instance.

A daemon appends one line `N BOOTID\\n` per write to `simdc-seq` in the
instance's data dir (its zone root, or disk0's mountpoint for kvm/bhyve),
fsyncing each one, SIMDC_WORKLOAD_HZ times a second (default 20). N goes
on from the file's last number + 1, so the file of an instance that was
stopped, moved and started again is one gap-free sequence; BOOTID (a short
random id) changes at every start. SIGTERM ends it between two writes: a
line is written whole or not at all.

With SIMDC_WORKLOAD_CHURN_KB, it also rewrites that many KiB of random data
a second in `simdc-churn` beside it (a rolling window of up to a minute's
worth), so snapshots taken seconds apart differ by a known amount.

    start(uuid, datadir, host) -> pid     stop(uuid, host)     running(uuid, host)

The daemon is `python3 -m simdc.workload run UUID DATADIR HOST`, double
forked into its own session with stdio on /dev/null; its pid is recorded
with common.record_pid("workload-HOST-UUID") and in
host_dir(HOST, "run", UUID + ".pid").
"""
import os
import signal
import sys
import time

from simdc import common

SEQ_FILE = "simdc-seq"
CHURN_FILE = "simdc-churn"
CHURN_WINDOW_S = 60


def pid_name(uuid, host):
    return "workload-%s-%s" % (host, uuid)


def pid_file(uuid, host):
    return common.host_dir(host, "run", uuid + ".pid")


def _read_pid(uuid, host):
    try:
        with open(pid_file(uuid, host)) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _is_ours(pid, uuid):
    """Alive, not a zombie, and really this instance's workload."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X") and b"simdc.workload" in argv and uuid.encode() in argv


def running(uuid, host):
    pid = _read_pid(uuid, host)
    return bool(pid) and _is_ours(pid, uuid)


def _forget(uuid, host, pid):
    """Remove the pid records if they still name `pid`."""
    for path in (pid_file(uuid, host), common.path("pids", pid_name(uuid, host) + ".pid")):
        try:
            with open(path) as f:
                if int(f.read().split()[0]) != pid:
                    continue
            os.unlink(path)
        except (OSError, ValueError, IndexError):
            pass


def start(uuid, datadir, host):
    """Start the instance's workload (no-op if it runs); returns its pid."""
    pid = _read_pid(uuid, host)
    if pid and _is_ours(pid, uuid):
        return pid
    os.makedirs(datadir, exist_ok=True)
    os.makedirs(common.host_dir(host, "run"), exist_ok=True)
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(r)
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.set_inheritable(w, True)
            env = dict(os.environ)
            env["PYTHONPATH"] = common.SIM_ROOT + (
                os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            env["SIMDC_WORKLOAD_NOTIFY_FD"] = str(w)
            os.chdir("/")
            os.execve(sys.executable or "/usr/bin/python3",
                      [sys.executable or "/usr/bin/python3", "-m", "simdc.workload",
                       "run", uuid, datadir, host], env)
        finally:
            os._exit(127)
    os.close(w)
    os.waitpid(child, 0)
    # Wait until the daemon has made its first write (or failed).
    msg = b""
    deadline = time.time() + 10
    while time.time() < deadline:
        chunk = os.read(r, 64)
        if not chunk:
            break
        msg += chunk
        if msg.endswith(b"\n"):
            break
    os.close(r)
    text = msg.decode(errors="replace").strip()
    if not text.startswith("ok "):
        raise RuntimeError("workload of %s did not start: %s" % (uuid, text or "no answer"))
    return int(text.split()[1])


def stop(uuid, host, timeout=10.0):
    """SIGTERM the workload and wait until it has exited. True if one ran."""
    pid = _read_pid(uuid, host)
    if not pid or not _is_ours(pid, uuid):
        if pid:
            _forget(uuid, host, pid)
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.time() + timeout
    while _is_ours(pid, uuid):
        if time.time() > deadline:
            # It does not answer: end it anyway (a line is one write, so it
            # cannot be left half-written).
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            deadline = time.time() + timeout
        time.sleep(0.01)
    _forget(uuid, host, pid)
    return True


# ---- the daemon --------------------------------------------------------------

def _last_number(fd):
    """The last complete line's number; a torn tail (never ours) is cut off."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0
    back = min(size, 4096)
    os.lseek(fd, size - back, os.SEEK_SET)
    tail = os.read(fd, back)
    if not tail.endswith(b"\n"):
        cut = tail.rfind(b"\n")
        keep = size - back + cut + 1 if cut >= 0 else 0
        os.ftruncate(fd, keep)
        tail = tail[:cut + 1] if cut >= 0 else b""
    lines = tail.split(b"\n")
    for line in reversed(lines):
        parts = line.split()
        if parts:
            try:
                return int(parts[0])
            except ValueError:
                continue
    return 0


def _run(uuid, datadir, host):
    hz = float(os.environ.get("SIMDC_WORKLOAD_HZ", "20") or 20)
    churn_bytes = int(float(os.environ.get("SIMDC_WORKLOAD_CHURN_KB", "0") or 0) * 1024)
    notify = int(os.environ.pop("SIMDC_WORKLOAD_NOTIFY_FD", "-1"))
    signals = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    # Blocked: a stop request waits for the write in progress to finish.
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    pid = os.getpid()
    fd = None
    try:
        fd = os.open(os.path.join(datadir, SEQ_FILE),
                     os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        n = _last_number(fd)
        boot = os.urandom(4).hex()
        churn_fd = None
        churn_off = 0
        if churn_bytes > 0:
            churn_fd = os.open(os.path.join(datadir, CHURN_FILE), os.O_WRONLY | os.O_CREAT, 0o644)
        with open(pid_file(uuid, host) + ".tmp", "w") as f:
            f.write("%d\n" % pid)
        os.replace(pid_file(uuid, host) + ".tmp", pid_file(uuid, host))
        common.record_pid(pid_name(uuid, host), pid)
    except OSError as e:
        if notify >= 0:
            os.write(notify, ("error %s\n" % e).encode())
        return 1
    period = 1.0 / hz if hz > 0 else 1.0
    next_at = time.monotonic()
    try:
        while True:
            n += 1
            try:
                os.write(fd, b"%d %s\n" % (n, boot.encode()))
                os.fsync(fd)
            except OSError:
                return 1        # the dataset went away under us
            if notify >= 0:
                os.write(notify, b"ok %d\n" % pid)
                os.close(notify)
                notify = -1
            if churn_fd is not None:
                chunk = max(1, int(churn_bytes * period))
                try:
                    os.pwrite(churn_fd, os.urandom(chunk), churn_off)
                except OSError:
                    pass
                churn_off += chunk
                if churn_off >= churn_bytes * CHURN_WINDOW_S:
                    churn_off = 0
            next_at += period
            wait = next_at - time.monotonic()
            if wait < 0:
                next_at = time.monotonic()
                wait = 0
            if signal.sigtimedwait(signals, wait) is not None:
                return 0
    finally:
        if fd is not None:
            os.close(fd)
        _forget(uuid, host, pid)


def main(argv):
    if len(argv) == 4 and argv[0] == "run":
        return _run(argv[1], argv[2], argv[3])
    sys.stderr.write("usage: python3 -m simdc.workload run UUID DATADIR HOST\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
