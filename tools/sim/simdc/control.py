"""tools/simdc: boot, inspect, drive and tear down the simulated datacenter."""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid as uuidlib

from . import common
from .common import path, host_dir, HOSTS, CNS, HEADNODE


# ---- namespaces -------------------------------------------------------------

def holder_pid(host):
    return common.recorded_pid("ns-" + host)


def nsenter(host):
    pid = holder_pid(host)
    if pid is None:
        sys.exit("simdc: host %s is not up (run `tools/simdc up`)" % host)
    return ["nsenter", "-t", str(pid), "-m", "-u", "--"]


def host_env(host):
    env = dict(os.environ)
    env.update(SIMDC_DIR=common.sim_dir(), SIMDC_HOST=host, SIMDC_NET=str(common.NET),
               HOME="/root", PYTHONPATH=common.SIM_ROOT,
               PATH=common.HN_PATH if host == HEADNODE else common.CN_PATH)
    return env


def run_on(host, argv, check=True, input=None, capture=True):
    """Run argv on host (inside its namespaces); returns CompletedProcess."""
    p = subprocess.run(nsenter(host) + list(argv), env=host_env(host), input=input,
                       stdout=subprocess.PIPE if capture else None,
                       stderr=subprocess.PIPE if capture else None,
                       text=isinstance(input, str) or input is None, cwd="/")
    if check and p.returncode != 0:
        raise RuntimeError("on %s: %s: exit %d: %s" % (
            host, " ".join(argv), p.returncode, (p.stderr or "").strip()))
    return p


# Directories a host has of its own, over the machine's: (path, the host's
# folder bound there, or None for a fresh tmpfs), in the order they are
# mounted. A CN's /tmp is its own, as a SmartOS global zone's is (a tmpfs:
# smartos-live src/vm/man/vmadmd.8.md); the head node keeps the machine's.
def _own_dirs(host):
    own = [("/var/tmp", "var-tmp"), ("/opt", "opt")]
    if host != HEADNODE:
        own.append(("/tmp", None))
    return own


def _keep():
    """What every host sees at its own path whatever it has of its own above
    it: the datacenter's files and the checkout (its commands, the package,
    .venv, .node). A checkout or $SIMDC_DIR under /var/tmp, /tmp or /opt is
    bound into the host's own directory before that is mounted."""
    paths = []
    for p in sorted({os.path.abspath(common.sim_dir()), os.path.realpath(common.sim_dir()),
                     common.PROJECT_ROOT}):
        if not any(p.startswith(q + "/") for q in paths):
            paths.append(p)
    return paths


def _ns_setup_script(host):
    """Shell run by a host's namespace holder: its private mounts, then sleep."""
    h = host_dir(host)
    lines = ["set -e", "mount --make-rprivate /", "hostname %s" % host]
    for target, sub in _own_dirs(host):
        src = os.path.join(h, sub or "tmp")
        if sub is None:
            lines.append("mount -t tmpfs -o mode=1777 tmpfs %s" % src)
        for k in _keep():
            if k.startswith(target + "/"):
                inner = os.path.join(src, k[len(target) + 1:])
                lines += ["mkdir -p %s" % inner, "mount --bind %s %s" % (k, inner)]
        lines.append("mount --rbind %s %s" % (src, target))
    lines += [
        "mount --bind %s/etc-zones /etc/zones" % h,
        "mount --bind %s/root-ssh /root/.ssh" % h,
        # host keys where SmartOS keeps them
        "mount --bind %s/ssh /var/ssh" % h,
        # root's own shell start-up files (pyenv and the like) are not the
        # host's: every ssh command would pay for them.
        "for f in .bashrc .profile; do [ -e /root/$f ] && mount --bind %s/dotfile /root/$f; done; true" % h,
        # the node every SmartOS platform ships for vmadm, the agents and json
        "mount --bind %s /usr/node" % path("usr-node"),
        # what SmartOS's global zone has in /usr/bin and Debian lacks (json),
        # and before OpenSSH, SunSSH's ssh and ssh-keygen (sunssh.py)
        "mount -t overlay overlay -o lowerdir=%s:/usr/bin /usr/bin" % ":".join(
            ([path("commands", "sunssh")] if common.sunssh(host) else [])
            + [path("commands", "cnbin")]),
    ]
    if host != HEADNODE:
        lines += [
            # the pool mounts on an empty /zones of the host's own
            "mount -t tmpfs tmpfs /zones",
            "mount -t tmpfs tmpfs /var/run/zfs",
            "mount -t tmpfs tmpfs /var/lock/zfs",
            "mount --bind %s/var-lib-zfs /var/lib/zfs" % h,
            "mount -t overlay overlay -o lowerdir=%s:/usr/sbin /usr/sbin" % path("commands", "cn"),
        ]
    lines += ["touch %s/run/ns-ready" % h, "exec sleep infinity"]
    return "\n".join(lines)


def _start_holder(host):
    h = host_dir(host)
    for sub in ("var-tmp", "tmp", "etc-zones", "root-ssh", "opt", "var-lib-zfs", "run", "ssh"):
        os.makedirs(os.path.join(h, sub), exist_ok=True)
    os.chmod(os.path.join(h, "root-ssh"), 0o700)
    with open(os.path.join(h, "dotfile"), "w") as f:
        f.write("# simulated host: no start-up files\n")
    node = os.path.join(common.sim_dir(), "usr-node", "bin", "node")
    if not os.path.lexists(node):
        os.makedirs(os.path.dirname(node), exist_ok=True)
        os.symlink(shutil.which("node") or "/usr/bin/node", node)
    for d in ("/usr/node", "/zones", "/etc/zones", "/root/.ssh", "/var/ssh", "/var/run/zfs", "/var/lock/zfs", "/var/lib/zfs", "/run/sshd"):
        os.makedirs(d, exist_ok=True)
    # zfs-fuse removes a pool's mountpoint on export; a removed /zones would
    # take every host's mounts on it along (in every namespace). A file in
    # the machine's own /zones keeps anyone from removing it.
    with open("/zones/.simdc-keep", "w") as f:
        f.write("simulated CNs mount their pools on /zones: keep this directory\n")
    with open(os.path.join(h, "etc-zones", "index"), "w") as f:
        f.write("global:installed:/\n")
    log = open(os.path.join(h, "run", "ns.log"), "w")
    p = subprocess.Popen(["unshare", "--mount", "--uts", "--propagation", "private", "--",
                          "/bin/sh", "-c", _ns_setup_script(host)],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    common.record_pid("ns-" + host, p.pid)
    return p


def _wait(what, predicate, timeout=20.0, interval=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise RuntimeError("simdc: timed out waiting for %s" % what)


def _spawn(name, host, argv, logname):
    """Start a long-running process inside host's namespaces and record it."""
    log = open(host_dir(host, "run", logname), "a")
    p = subprocess.Popen(nsenter(host) + argv, env=host_env(host), cwd="/",
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         start_new_session=True)
    common.record_pid(name, p.pid)
    return p


# ---- up ----------------------------------------------------------------------

def _is_up():
    return os.path.exists(path("up")) and all(holder_pid(h) for h in HOSTS)


def host_key_kinds(host):
    """The host keys a host's sshd has: SunSSH's sshd rsa (and dsa) only;
    OpenSSH's SmartOS makes ed25519 too (smartos-live lib/svc/method/sshd)."""
    return ("rsa",) if common.sunssh(host) else ("ed25519", "rsa")


def sshd_config(host, ip, h, env, port=22):
    """The sshd_config of a host: OpenSSH's, or SunSSH's offer (sunssh.py)."""
    from . import sunssh
    if common.sunssh(host):
        # sshd wants the command's own path root's alone all the way up, which
        # a checkout under /tmp or /var/tmp is not: python3 runs the script
        keys = sunssh.SERVER_CONFIG + (
            "AuthorizedKeysFile none\n"
            'AuthorizedKeysCommand /usr/bin/python3 "%s" %%u\n'
            "AuthorizedKeysCommandUser root\n"
            % os.path.join(common.SIM_ROOT, "sunssh", "authorized-keys"))
    else:
        keys = ("HostKey /var/ssh/ssh_host_ed25519_key\nHostKey /var/ssh/ssh_host_rsa_key\n"
                "AuthorizedKeysFile /root/.ssh/authorized_keys\n")
    return """# sshd of simulated host %(host)s
ListenAddress %(ip)s:%(port)d
%(keys)sPidFile %(h)s/run/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
MaxStartups 200
MaxSessions 100
LogLevel VERBOSE
SetEnv PATH=%(path)s SIMDC_DIR=%(simdir)s SIMDC_HOST=%(host)s SIMDC_NET=%(net)s PYTHONPATH=%(pp)s
""" % dict(host=host, ip=ip, port=port, keys=keys, h=h, path=env["PATH"],
           simdir=common.sim_dir(), net=common.NET, pp=common.SIM_ROOT)


def _write_sshd_config(host):
    h = host_dir(host)
    sshdir = os.path.join(h, "ssh")
    for kind in host_key_kinds(host):
        key = os.path.join(sshdir, "ssh_host_%s_key" % kind)
        if not os.path.exists(key):
            subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", key,
                            "-C", "root@" + host], check=True)
    with open(os.path.join(sshdir, "sshd_config"), "w") as f:
        f.write(sshd_config(host, common.ADMIN_IPS[host], h, host_env(host)))


def start_sshd(host):
    _spawn("sshd-" + host, host,
           ["/usr/sbin/sshd", "-D", "-f", host_dir(host, "ssh", "sshd_config"),
            "-E", host_dir(host, "run", "sshd.log")], "sshd.out")


# The head node's key runs its sessions' commands through the remote-fault hook:
# a forced command of its own entry, not sshd_config's ForceCommand, which
# would replace every key's command= as well (openssh-portable session.c
# do_exec: options.adm_forced_command first, then the key's force_command;
# sshd(8): command= "may be superseded by an sshd_config(5) ForceCommand").
# Any other key, the migration's temporary one too, runs what its own entry
# says, as on a real CN, whose sshd has no ForceCommand.
FAULT_HOOK = os.path.join(common.SIM_ROOT, "sshd-command")


def _setup_keys():
    """The head node's sdc.id_rsa, authorized on every CN (its commands go
    through FAULT_HOOK); its known_hosts."""
    hn_ssh = host_dir(HEADNODE, "root-ssh")
    key = os.path.join(hn_ssh, "sdc.id_rsa")
    if not os.path.exists(key):
        subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", key,
                        "-C", "root@headnode"], check=True)
    pub = 'command="%s" %s' % (FAULT_HOOK, open(key + ".pub").read())
    known = []
    for host in CNS:
        ak = host_dir(host, "root-ssh", "authorized_keys")
        with open(ak, "w") as f:
            f.write(pub)
        os.chmod(ak, 0o600)
        for kind in host_key_kinds(host):
            hk = open(host_dir(host, "ssh", "ssh_host_%s_key.pub" % kind)).read().split()
            known.append("%s %s %s\n" % (common.ADMIN_IPS[host], hk[0], hk[1]))
    with open(os.path.join(hn_ssh, "known_hosts"), "w") as f:
        f.writelines(known)
    # ssh from the head node uses its Triton key by default, as `ssh CN_IP` does there.
    with open(os.path.join(hn_ssh, "config"), "w") as f:
        f.write("Host *\n    IdentityFile /root/.ssh/sdc.id_rsa\n    BatchMode yes\n")


def _start_zfs(host):
    _spawn("zfs-fuse-" + host, host,
           ["/usr/sbin/zfs-fuse", "--no-daemon", "--no-kstat-mount", "--max-arc-size", "128",
            "--pidfile", "/var/run/zfs/zfs-fuse.pid"], "zfs-fuse.log")


def _create_pool(host):
    zpool = path("realbin", "zpool")
    img = host_dir(host, "zones.img")
    with open(img, "w") as f:
        f.truncate(_parse_size(common.POOL_SIZE))
    _wait("zfs-fuse on " + host,
          lambda: run_on(host, [zpool, "list"], check=False).returncode == 0)
    run_on(host, [zpool, "create", "-f", "-m", "/zones", "zones", img])
    zfs = path("realbin", "zfs")
    run_on(host, [zfs, "create", "zones/cores"])
    run_on(host, [zfs, "set", "compression=off", "zones"])


def _parse_size(s):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    s = s.strip().upper()
    if s[-1] in units:
        return int(float(s[:-1]) * units[s[-1]])
    return int(s)


def _hosts_table(hosts):
    rows = [("HOST", "UUID", "ADMIN IP", "PLATFORM")]
    for name in HOSTS:
        h = hosts[name]
        rows.append((name, h["uuid"], h["admin_ip"], h["platform"]))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def cmd_up(args):
    if _is_up():
        print(_hosts_table(common.load_hosts()))
        return 0
    if os.path.exists(path("hosts.json")):
        # A half-up or crashed datacenter: end what is left, start afresh.
        cmd_down(args, quiet=True)
    t0 = time.time()
    os.makedirs(path("realbin"), exist_ok=True)
    os.makedirs(path("pids"), exist_ok=True)
    os.makedirs(path("imgapi"), exist_ok=True)
    for b in ("zfs", "zpool"):
        shutil.copy2("/usr/sbin/" + b, path("realbin", b))
    for b in ("ssh", "ssh-keygen"):     # under SunSSH's (sunssh.py)
        shutil.copy2("/usr/bin/" + b, path("realbin", b))
    hosts = {}
    for name in HOSTS:
        hosts[name] = {"uuid": str(uuidlib.uuid4()), "admin_ip": common.ADMIN_IPS[name],
                       "platform": common.platform_of(name),
                       "ram_mb": 65536 if name == HEADNODE else 32768,
                       "headnode": name == HEADNODE}
    with open(path("hosts.json"), "w") as f:
        json.dump(hosts, f, indent=2)
    open(path("log.jsonl"), "a").close()
    start_hosts()
    from . import agents
    for name in HOSTS:
        agents.install_all(name)
    for name in CNS:
        _start_zfs(name)
    for name in HOSTS:
        _write_sshd_config(name)
    _setup_keys()
    for name in HOSTS:
        start_sshd(name)
    _spawn("api", HEADNODE, ["/usr/bin/python3", "-m", "simdc.api"], "api.log")
    for name in CNS:
        _create_pool(name)
    _wait("the APIs", _apis_answer)
    from . import datacenter
    datacenter.populate(hosts)
    for name in CNS:
        _spawn("vm-agent-" + name, name, ["/usr/bin/python3", "-m", "simdc.vmagent", name],
               "vm-agent.log")
        start_net_agent(name)
    for name in HOSTS:
        _wait("sshd on " + name, lambda n=name: _port_open(common.ADMIN_IPS[n], 22))
    open(path("up"), "w").write("%f\n" % time.time())
    print(_hosts_table(hosts))
    print("datacenter %s up in %.1f s (SIMDC_DIR=%s)" % (common.DATACENTER, time.time() - t0,
                                                         common.sim_dir()))
    return 0


def start_hosts():
    """Every host's namespaces, with the commands it has: links into the
    checkout, overlaid on a host's /usr/bin (and a CN's /usr/sbin; SunSSH's
    ssh and ssh-keygen first on a host of a platform before OpenSSH), and
    the head node's /opt/smartdc/bin and /opt/custom/bin."""
    os.makedirs(path("pids"), exist_ok=True)
    shutil.rmtree(path("commands"), ignore_errors=True)
    for folder in ("cn", "cnbin"):
        _link_commands(os.path.join(common.SIM_ROOT, folder), path("commands", folder))
    _link_commands(os.path.join(common.SIM_ROOT, "sunssh"), path("commands", "sunssh"),
                   ("ssh", "ssh-keygen"))
    _install_headnode_tools()
    for name in HOSTS:
        _start_holder(name)
    for name in HOSTS:
        _wait("namespace of " + name, lambda n=name: os.path.exists(host_dir(n, "run", "ns-ready")))


def start_net_agent(host):
    _spawn("net-agent-" + host, host, ["/usr/bin/python3", "-m", "simdc.netagent", host],
           "net-agent.log")


def _port_open(ip, port):
    import socket
    try:
        socket.create_connection((ip, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _apis_answer():
    for name in common.API_IPS:
        try:
            status, _ = common.api(name, "GET", "/ping", timeout=1)
        except OSError:
            return False
        if status != 200:
            return False
    return True


def _link_commands(folder, bindir, names=None):
    """BINDIR/NAME, a link to FOLDER/NAME, for each command in FOLDER.

    Python puts the folder a command's link leads to first on sys.path, and
    there `simdc` is a link to the package: so tools/sim/cn/zfs finds it as
    /usr/sbin/zfs on a CN (bindir overlaid there) and tools/sim/hn/sdc-vmapi as
    /opt/smartdc/bin/sdc-vmapi on the head node, whatever the environment.
    """
    os.makedirs(bindir, exist_ok=True)
    for name in sorted(names or os.listdir(folder)):
        src = os.path.join(folder, name)
        if os.path.isfile(src) and os.access(src, os.X_OK):
            dst = os.path.join(bindir, name)
            if os.path.lexists(dst):
                os.unlink(dst)
            os.symlink(src, dst)


def _install_headnode_tools():
    """Triton's /opt/smartdc/bin on the head node: the emulated sdc-* tools."""
    _link_commands(os.path.join(common.SIM_ROOT, "hn"), host_dir(HEADNODE, "opt", "smartdc", "bin"))
    # ours as the README installs it: /opt/custom/bin/sdc-migrate (the checkout's
    # launcher), never on root's PATH
    custom = host_dir(HEADNODE, "opt", "custom", "bin")
    os.makedirs(custom, exist_ok=True)
    dst = os.path.join(custom, "sdc-migrate")
    if os.path.lexists(dst):
        os.unlink(dst)
    os.symlink(os.path.join(common.PROJECT_ROOT, "bin", "sdc-migrate"), dst)


# ---- down --------------------------------------------------------------------

def _kill_recorded(*names, timeout=5.0):
    """End the recorded processes NAMES together: SIGTERM, then SIGKILL."""
    pids = [p for p in (common.recorded_pid(n) for n in names) if p is not None]
    _kill(pids, timeout)
    for n in names:
        try:
            os.unlink(path("pids", n + ".pid"))
        except FileNotFoundError:
            pass


def _kill(pids, timeout=5.0):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + timeout
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _children(pid):
    """The direct children of pid (an sshd's per-connection processes)."""
    kids = []
    for task in os.listdir("/proc/%d/task" % pid) if os.path.isdir("/proc/%d" % pid) else []:
        try:
            with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                kids += [int(k) for k in f.read().split()]
        except OSError:
            pass
    return kids


def _alive(pid):
    """True while pid runs; a zombie (ended, not yet reaped) counts as ended."""
    try:
        os.waitpid(pid, os.WNOHANG)   # reap it if it is our child
    except ChildProcessError:
        pass
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _ns_members(holder):
    """Processes in the holder's mount namespace (sessions, agents, workloads)."""
    try:
        ns = os.readlink("/proc/%d/ns/mnt" % holder)
    except OSError:
        return []
    members = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != holder:
            try:
                if os.readlink("/proc/%s/ns/mnt" % d) == ns:
                    members.append(int(d))
            except OSError:
                pass
    return members


def cmd_down(args, quiet=False):
    if not os.path.exists(path("pids")):
        if not quiet:
            print("simdc: nothing to take down")
        return 0
    names = [f[:-4] for f in os.listdir(path("pids")) if f.endswith(".pid")]
    agents = ("workload-", "vm-agent-", "net-agent-", "api", "sshd-")
    _kill_recorded(*[n for n in names if n.startswith(agents)])
    exports = [subprocess.Popen(nsenter(h) + [path("realbin", "zpool"), "export", "-f", "zones"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for h in CNS if holder_pid(h) and common.recorded_pid("zfs-fuse-" + h)]
    for p in exports:
        p.wait()
    _kill_recorded(*["zfs-fuse-" + h for h in CNS], timeout=10)
    # What else still lives in a host's namespace was started inside it (ssh
    # sessions, a tool's ControlMaster): end it with its host.
    members = []
    for host in HOSTS:
        holder = holder_pid(host)
        if holder:
            members += _ns_members(holder)
    _kill(members, timeout=2)
    _kill_recorded(*["ns-" + h for h in HOSTS])
    _kill_recorded(*[n[:-4] for n in os.listdir(path("pids"))])
    shutil.rmtree(common.sim_dir(), ignore_errors=True)
    if not quiet:
        print("datacenter down")
    return 0


# ---- status, exec ----------------------------------------------------------------

def cmd_status(args):
    hosts = common.load_hosts()
    rows = []
    for name in HOSTS:
        h = hosts.get(name, {})
        r = {"host": name, "uuid": h.get("uuid"), "admin_ip": common.ADMIN_IPS[name],
             "namespace": bool(holder_pid(name)),
             "sshd": bool(common.recorded_pid("sshd-" + name))}
        if name != HEADNODE:
            r["zfs"] = bool(common.recorded_pid("zfs-fuse-" + name))
            r["vm_agent"] = bool(common.recorded_pid("vm-agent-" + name))
            r["net_agent"] = bool(common.recorded_pid("net-agent-" + name))
        else:
            r["api"] = bool(common.recorded_pid("api"))
        rows.append(r)
    up = _is_up()
    if args.json:
        print(json.dumps({"up": up, "dir": common.sim_dir(), "hosts": rows}))
    else:
        print("datacenter %s: %s (%s)" % (common.DATACENTER, "up" if up else "down", common.sim_dir()))
        for r in rows:
            flags = " ".join("%s=%s" % (k, "ok" if v else "DOWN") for k, v in r.items()
                             if isinstance(v, bool))
            print("  %-14s %-36s %-12s %s" % (r["host"], r["uuid"] or "-", r["admin_ip"], flags))
    return 0 if up else 1


def cmd_exec(args):
    if args.host not in HOSTS:
        sys.exit("simdc: unknown host %s (hosts: %s)" % (args.host, ", ".join(HOSTS)))
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        sys.exit("simdc exec: no command given")
    argv = nsenter(args.host) + cmd
    os.execvpe(argv[0], argv, host_env(args.host))


# ---- seq, log, faults ------------------------------------------------------------

def cmd_seq(args):
    p = run_on(args.host, ["simdc-datadir", args.uuid], check=False)
    if p.returncode != 0:
        sys.exit("simdc seq: %s" % (p.stderr.strip() or "no such instance on " + args.host))
    f = os.path.join(p.stdout.strip(), "simdc-seq")
    r = run_on(args.host, ["cat", f], check=False)
    if r.returncode != 0:
        sys.exit("simdc seq: %s has no %s" % (args.host, f))
    if args.dump:
        sys.stdout.write(r.stdout)
    else:
        lines = [l for l in r.stdout.splitlines() if l.strip()]
        print(lines[-1].split()[0] if lines else 0)
    return 0


def cmd_log(args):
    try:
        f = open(path("log.jsonl"))
    except FileNotFoundError:
        return 0
    with f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if args.host and rec.get("host") != args.host:
                continue
            if args.json:
                sys.stdout.write(json.dumps(rec) + "\n")
            else:
                print("%.3f %-14s rc=%-3s %6.3fs  %s" % (
                    rec["start"], rec["host"], rec["rc"], rec["end"] - rec["start"],
                    " ".join(rec["argv"])))
    return 0


def cmd_fault(args):
    if args.action == "clear":
        with common.locked("faults"):
            if os.path.exists(path("faults.json")):
                os.unlink(path("faults.json"))
        for host in CNS:
            if holder_pid(host) and run_on(host, ["zfs", "destroy", "zones/simdc-fill"],
                                           check=False).returncode == 0:
                # the space back in CNAPI (unreserved_disk) now, as the CN's
                # next heartbeat would bring it: the next test must not see
                # a full pool for up to a heartbeat interval
                run_on(host, ["svcadm", "restart", "heartbeater"], check=False)
        return 0
    if args.action == "list":
        print(json.dumps(common._load_faults(), indent=2))
        return 0
    if not args.host or not args.prefix:
        sys.exit("usage: simdc fault add HOST [--times N] [--skip N] [--after-bytes N] [--exit N]"
                 " [--delay SECS] [--remote] -- PREFIX...")
    if args.host not in HOSTS:
        sys.exit("simdc: unknown host %s" % args.host)
    if args.remote and args.after_bytes is not None:
        sys.exit("simdc: --after-bytes cuts an emulated command's stream, not a remote one")
    fault = {"host": args.host, "prefix": args.prefix, "times": args.times,
             "after_bytes": args.after_bytes, "exit": args.exit, "delay": args.delay}
    if args.skip:
        fault["skip"] = args.skip
    if args.remote:
        fault["remote"] = True
    with common.locked("faults"):
        faults = common._load_faults()
        faults.append(fault)
        with open(path("faults.json"), "w") as f:
            json.dump(faults, f)
    return 0


def cmd_sshd(args):
    if args.host not in HOSTS:
        sys.exit("simdc: unknown host %s" % args.host)
    if args.action == "stop":
        # A stopped sshd drops its connections too (a ControlMaster's among
        # them), as a CN that went off the network does; the commands they
        # ran go on, their client gone.
        pid = common.recorded_pid("sshd-" + args.host)
        conns = _children(pid) if pid else []
        _kill_recorded("sshd-" + args.host)
        _kill(conns)
    else:
        if not common.recorded_pid("sshd-" + args.host):
            start_sshd(args.host)
            _wait("sshd on " + args.host, lambda: _port_open(common.ADMIN_IPS[args.host], 22))
    return 0


def cmd_reboot(args):
    """Power-cycle a CN's zones (zones.power_cycle): print what booted, by whom."""
    if args.host not in CNS:
        sys.exit("simdc: %s is not a compute node" % args.host)
    p = run_on(args.host, ["/usr/bin/python3", "-c",
                           "from simdc import zones\n"
                           "for u, by in zones.power_cycle(): print(u, by)"], check=False)
    sys.stdout.write(p.stdout)
    if p.returncode != 0:
        sys.exit("simdc: reboot of %s failed: %s" % (args.host, p.stderr.strip()))
    return 0


def cmd_fill(args):
    """Fill HOST's pool: a reservation takes every free byte, as a full disk would."""
    if args.host not in CNS:
        sys.exit("simdc: %s has no pool" % args.host)
    zfs = path("realbin", "zfs")
    # zfs-fuse keeps a little back for itself: take all it will give. The
    # pool's running instances write meanwhile: read what is free each time.
    def available():
        return int(run_on(args.host, [zfs, "get", "-Hp", "-o", "value", "available",
                                      "zones"]).stdout)
    # Under load (a receive or a destroy in the same txg) what zfs-fuse
    # reports free and what it will reserve differ by more than any fixed
    # margin: fall back to a part of it, and top up below.
    def wants():
        free = available()
        for margin in (0, 1 << 16, 1 << 18, 1 << 20, 1 << 22, 1 << 23, 1 << 24):
            yield max(0, free - margin)
        for part in (4, 2, 1):
            yield free * part // 8
        yield 0
    for want in wants():
        p = run_on(args.host, [zfs, "create", "-o", "mountpoint=none", "-o",
                               "reservation=%d" % want, "zones/simdc-fill"], check=False)
        if p.returncode == 0:
            break
    else:
        sys.exit("simdc fill: %s (%d bytes free)" % (p.stderr.strip(), available()))
    # then top it up with what the writes left free meanwhile, to the last MB.
    # Under load zfs-fuse may go on refusing to reserve the last tens of MB it
    # reports free (seen in CI: 30 MB); when it has refused five times running,
    # that is as full as reservations make it: say what is left.
    refused = 0
    for attempt in range(60):
        left = available()
        if left < 1 << 20:
            return 0
        held = int(run_on(args.host, [zfs, "get", "-Hp", "-o", "value", "reservation",
                                      "zones/simdc-fill"]).stdout)
        for margin in (0, 1 << 16, 1 << 18, 1 << 19, left // 2):
            if run_on(args.host, [zfs, "set", "reservation=%d" % (held + left - margin),
                                  "zones/simdc-fill"], check=False).returncode == 0:
                refused = 0
                break
        else:
            refused += 1
            if refused == 5:
                break
            time.sleep(0.2)
    print("simdc fill: %s still has %d bytes free that zfs will not reserve"
          % (args.host, available()))
    return 0


def cmd_encrypt(args):
    """Mark HOST's pool encrypted (aes-256-gcm, as `zpool create -O encryption=on`
    makes it) or not: its zfs then reports encryption and refuses what an
    encrypted pool refuses."""
    if args.host not in CNS:
        sys.exit("simdc: %s has no pool" % args.host)
    from . import zfslib
    flag = zfslib.encryption_flag(args.host)
    if args.state == "on":
        with open(flag, "w") as f:
            f.write("aes-256-gcm\n")
    elif os.path.exists(flag):
        os.unlink(flag)
    # its sysinfo's "Zpool Encrypted" (smartos-live src/sysinfo) reaches CNAPI
    # as a CN's boot sends it; only when the datacenter is up
    if os.path.exists(path("hosts.json")) and _apis_answer():
        from . import datacenter
        datacenter.register_server(args.host, common.load_hosts()[args.host])
    return 0


def traits_arg(cmd, text):
    """--traits JSON: a JSON object (DAPI's traits), or None if not given."""
    if text is None:
        return None
    try:
        traits = json.loads(text)
    except ValueError:
        traits = None
    if not isinstance(traits, dict):
        sys.exit("simdc %s: --traits takes a JSON object, not %r" % (cmd, text))
    return traits


def _yes_no(text):
    return {"yes": True, "no": False}[text]


def cmd_capability(args):
    """What placement reads of a CN: its sysinfo's "Bhyve Capable", "Bhyve Max
    Vcpus" and "HVM API" (smartos-live src/sysinfo), refreshed in CNAPI as
    `sysinfo -u` does, and its CNAPI traits (ServerUpdate, as an operator sets
    them). Without options, prints them."""
    if args.host not in CNS:
        sys.exit("simdc: %s is not a compute node" % args.host)
    hosts = common.load_hosts()
    caps = hosts[args.host].setdefault("capabilities", {})
    if args.reset:
        caps.clear()
    if args.bhyve is not None:
        caps["Bhyve Capable"] = _yes_no(args.bhyve)
    if args.max_vcpus is not None:
        caps["Bhyve Max Vcpus"] = args.max_vcpus
    if args.hvm_api is not None:
        caps["HVM API"] = _yes_no(args.hvm_api)
    traits = traits_arg("capability", args.traits)
    uuid = hosts[args.host]["uuid"]
    changed = any(v is not None for v in (args.bhyve, args.max_vcpus, args.hvm_api)) \
        or args.reset
    if changed:
        with open(path("hosts.json"), "w") as f:
            json.dump(hosts, f, indent=2)
        from . import datacenter
        datacenter.register_server(args.host, hosts[args.host])
    if traits is not None:
        status, body = common.api("cnapi", "POST", "/servers/" + uuid, {"traits": traits})
        if status >= 300:
            sys.exit("simdc capability: CNAPI: %s %s" % (status, body))
    status, server = common.api("cnapi", "GET", "/servers/" + uuid)
    si = server.get("sysinfo") or {}
    print(json.dumps({k: si.get(k) for k in ("Zpool Encrypted", "Bhyve Capable",
                                             "Bhyve Max Vcpus", "HVM API")}
                     | {"traits": server.get("traits")}, sort_keys=True))
    return 0


def cmd_nictag(args):
    """Take a NIC tag off HOST's sysinfo (or give it back) and refresh CNAPI, as
    `sysinfo -u` does after an operator changes a CN's nic tags: a CN that
    lacks a tag an instance's NICs need (sdc-designation hard-filter-nic-tags)."""
    if args.host not in CNS:
        sys.exit("simdc: %s is not a compute node" % args.host)
    hosts = common.load_hosts()
    gone = set(hosts[args.host].get("nic_tags_removed") or [])
    (gone.add if args.action == "remove" else gone.discard)(args.tag)
    hosts[args.host]["nic_tags_removed"] = sorted(gone)
    with open(path("hosts.json"), "w") as f:
        json.dump(hosts, f, indent=2)
    from . import datacenter
    datacenter.register_server(args.host, hosts[args.host])
    return 0


def cmd_wrapcost(args):
    """Give every sdc-* call the cost of Triton's wrapper (sdcwrap.wrapper_cost)."""
    if args.seconds < 0:
        sys.exit("simdc wrapcost: seconds must be 0 or more")
    with open(path("sdc-wrapper-cost"), "w") as f:
        f.write("%g\n" % args.seconds)
    return 0


def cmd_agent(args):
    """Update (or downgrade) one agent of a host as `sdcadm experimental
    update-agents` does, with no platform change and no reboot: the new
    package, its service restarted, cn-agent's report to CNAPI (agents.py)."""
    from . import agents
    if args.host not in HOSTS:
        sys.exit("simdc: unknown host %s" % args.host)
    if args.name not in common.AGENTS:
        sys.exit("simdc agent: no agent %s (agents: %s)" % (args.name, ", ".join(common.AGENTS)))
    if args.action == "install" and not args.version:
        sys.exit("usage: simdc agent HOST AGENT install VERSION")
    version = args.version if args.action == "install" else common.AGENTS[args.name]
    was = common.agent_version(args.host, args.name)
    if was != version:
        agents.install(args.host, args.name, version)
        if args.name == "net-agent" and args.host in CNS:
            _kill_recorded("net-agent-" + args.host)
            start_net_agent(args.host)
        agents.report(args.host)
    print("%s: %s %s (was %s)" % (args.host, args.name, version, was or "not installed"))
    return 0


def cmd_provision(args):
    from . import provision
    return provision.main(args)


def cmd_customer(args):
    from . import customer
    return customer.main(args)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="simdc", description="The simulated Triton datacenter.")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="boot the datacenter (idempotent)").set_defaults(func=cmd_up)
    sub.add_parser("down", help="end everything it started").set_defaults(func=cmd_down)
    s = sub.add_parser("status")
    s.add_argument("-j", "--json", action="store_true")
    s.set_defaults(func=cmd_status)
    s = sub.add_parser("exec", help="run a command on a host: exec HOST -- CMD [ARG...]")
    s.add_argument("host")
    s.add_argument("cmd", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_exec)
    s = sub.add_parser("nictag", help="nictag HOST remove|add TAG: a CN without a NIC tag")
    s.add_argument("host")
    s.add_argument("action", choices=["remove", "add"])
    s.add_argument("tag")
    s.set_defaults(func=cmd_nictag)
    s = sub.add_parser("wrapcost", help="wrapcost SECONDS: each sdc-* call costs that "
                       "much first, as Triton's wrapper (~1 s); 0 to stop")
    s.add_argument("seconds", type=float)
    s.set_defaults(func=cmd_wrapcost)
    s = sub.add_parser("agent", help="agent HOST AGENT upgrade | install VERSION: update"
                       " a host's agent as sdcadm experimental update-agents does")
    s.add_argument("host")
    s.add_argument("name", metavar="AGENT")
    s.add_argument("action", choices=["upgrade", "install"])
    s.add_argument("version", nargs="?")
    s.set_defaults(func=cmd_agent)
    s = sub.add_parser("provision", help="create an instance the way Triton would")
    s.add_argument("--brand", default="joyent",
                   choices=["joyent", "joyent-minimal", "lx", "kvm", "bhyve"])
    s.add_argument("--docker", action="store_true")
    s.add_argument("--alias")
    s.add_argument("--qemu-extra-opts", metavar="OPTS",
                   help="kvm only: qemu_extra_opts (base64 in the zone XML, as VM.js keeps it)")
    s.add_argument("--server", default="source-server")
    s.add_argument("--size", type=int, default=1, help="MB of random data")
    s.add_argument("--disks", type=int, default=None)
    s.add_argument("--state", default="running", choices=["running", "stopped"])
    s.add_argument("--fabric", action="store_true")
    s.add_argument("--nat", action="store_true")
    s.add_argument("--core", action="store_true")
    s.add_argument("--delegate", action="store_true")
    s.add_argument("--ram", type=int, default=None, help="MB of RAM (max_physical_memory)")
    s.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                   help="a tag (e.g. manta_role=storage)")
    s.add_argument("--encrypted", action="store_true",
                   help="internal_metadata.encrypted, as VMAPI's CreateVm encrypted=true")
    s.add_argument("--vcpus", type=int, default=None, help="kvm/bhyve vcpus (vmadm: 1)")
    s.add_argument("--traits", metavar="JSON", help="its package's traits (PAPI)")
    s.set_defaults(func=cmd_provision)
    s = sub.add_parser("customer", help="customer start|stop|reboot UUID: as a customer"
                       " would, through VMAPI (a job behind the instance's CNAPI waitlist"
                       " ticket); waits for the job and prints its outcome")
    s.add_argument("action", choices=["start", "stop", "reboot"])
    s.add_argument("uuid")
    s.set_defaults(func=cmd_customer)
    s = sub.add_parser("seq")
    s.add_argument("--dump", action="store_true")
    s.add_argument("host")
    s.add_argument("uuid")
    s.set_defaults(func=cmd_seq)
    s = sub.add_parser("log")
    s.add_argument("-j", "--json", action="store_true")
    s.add_argument("--host")
    s.set_defaults(func=cmd_log)
    s = sub.add_parser("fault")
    s.add_argument("action", choices=["add", "clear", "list"])
    s.add_argument("host", nargs="?")
    s.add_argument("prefix", nargs="*")
    s.add_argument("--times", type=int, default=1)
    s.add_argument("--after-bytes", type=int, default=None)
    s.add_argument("--exit", type=int, default=1)
    s.add_argument("--delay", type=float, default=None,
                   help="sleep this long first (with --exit 0: then run normally)")
    s.add_argument("--skip", type=int, default=0,
                   help="let the first N matching commands run untouched")
    s.add_argument("--remote", action="store_true",
                   help="match a command line HOST's sshd runs (any command, a sh -c"
                        " script too) that holds PREFIX's words in a row")
    s.set_defaults(func=cmd_fault)
    s = sub.add_parser("sshd")
    s.add_argument("host")
    s.add_argument("action", choices=["stop", "start"])
    s.set_defaults(func=cmd_sshd)
    s = sub.add_parser("reboot", help="power-cycle a CN: its workloads end, then the"
                       " autoboot zones and vm-autoboot kvm/bhyve boot, once each")
    s.add_argument("host")
    s.set_defaults(func=cmd_reboot)
    s = sub.add_parser("fill")
    s.add_argument("host")
    s.set_defaults(func=cmd_fill)
    s = sub.add_parser("capability", help="what placement reads of a CN: bhyve, its"
                       " max vcpus, HVM API (sysinfo), traits (CNAPI)")
    s.add_argument("host")
    s.add_argument("--bhyve", choices=["yes", "no"], help='sysinfo "Bhyve Capable"')
    s.add_argument("--max-vcpus", type=int, help='sysinfo "Bhyve Max Vcpus"')
    s.add_argument("--hvm-api", choices=["yes", "no"], help='sysinfo "HVM API"')
    s.add_argument("--traits", metavar="JSON", help="CNAPI server traits, e.g. '{\"ssd\": true}'")
    s.add_argument("--reset", action="store_true", help="the sysinfo values a CN boots with")
    s.set_defaults(func=cmd_capability)
    s = sub.add_parser("encrypt", help="mark a CN's pool encrypted or not")
    s.add_argument("host")
    s.add_argument("state", choices=["on", "off"])
    s.set_defaults(func=cmd_encrypt)
    argv = sys.argv[1:] if argv is None else list(argv)
    tail = []
    if argv[:1] == ["fault"] and "--" in argv:
        # fault add HOST [options] -- PREFIX...: a prefix may hold option-like words
        i = argv.index("--")
        argv, tail = argv[:i], argv[i + 1:]
    args = ap.parse_args(argv)
    if tail:
        args.prefix = list(args.prefix) + tail
    if os.geteuid() != 0:
        sys.exit("simdc: must run as root (namespaces, zfs-fuse, sshd)")
    return args.func(args) or 0
