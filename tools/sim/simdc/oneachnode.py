"""sdc-oneachnode: run a command (or move a file) on each node of the
simulated datacenter, as sdc-sdc's lib/sdc-oneachnode.js does over Ur.

Nodes come from CNAPI (`GET /servers?extras=sysinfo`). Discovery, as Ur's
broadcast, finds the nodes that answer: the head node always (it runs the
command itself), a compute node when its sshd accepts a connection on its
admin IP within the discovery timeout (-t). Commands then run over ssh from
the head node (`ssh -i /root/.ssh/sdc.id_rsa -o BatchMode=yes root@ADMIN_IP`),
in parallel, each bounded by the execution timeout (-T).

Output formats (terse table, multi-line blocks, JSON array, JSON stream, list)
and exit statuses (0, 1, 2 usage, 10 missing nodes, 20 failures) follow the
man page and lib/sdc-oneachnode.js.

Environment knobs for tests: SIMDC_SSH (the ssh program), SIMDC_SSH_PORT
(sshd port, default 22), SIMDC_SDC_KEY (the key file).
"""
import concurrent.futures
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time

from . import common, sunssh

EXIT_SUCCESS, EXIT_GENERIC, EXIT_OPTION_PARSE, EXIT_MISSING_NODES, EXIT_EXEC_FAILURE = \
    0, 1, 2, 10, 20

USAGE = ("Usage: sdc-oneachnode [-a|-c|-n NODE[,NODE,...]] [-t|-T SECONDS]\n"
         "                      [-g|-p FILE] [-d DIR] [-hjJlvINX]\n")

HELP = USAGE + """
target selection options (must provide exactly one):
  -a, --allnodes             execute on all nodes, including the headnode
  -c, --computeonly          only execute on compute nodes
  -n NODE[,NODE,...], --node=NODE[,NODE,...]
                             node (or comma-separated list of nodes) on which to
                             execute (hostname or UUID)
file transfer options:
  -d DIR, --dir=DIR          directory in which to write files
  -g FILE, --get=FILE        have remote nodes receive the specified file from this
                             node
  -p FILE, --put=FILE        have remote nodes send the specified file to this node
  -X, --clobber              overwrite destination file if it exists
formatting options:
  -I, --immediate            print command results immediately as they arrive,
                             rather than sorting them for output at the end
  -N, --oneline              force terse, one line per host output mode
  -j, --json                 output results as a JSON array at the end of
                             processing
  -J, --jsonstream           new-line separated JSON streaming output; same as "-jI"
other options:
  -h, --help                 print this help message
  -l, --listonly             do not run a command, just do discovery and list nodes
  -t SECONDS, --timeout=SECONDS
                             timeout (in seconds) for node discovery
  -T SECONDS, --exectimeout=SECONDS
                             timeout (in seconds) for command execution on
                             discovered nodes
  -q, --quiet                print no output, not even errors
  -v, --verbose              print diagnostic output to stderr
"""

BOOL_OPTS = {"a": "allnodes", "c": "computeonly", "X": "clobber", "I": "immediate",
             "N": "oneline", "j": "json", "J": "jsonstream", "h": "help", "l": "listonly",
             "q": "quiet", "v": "verbose"}
STR_OPTS = {"n": "node", "d": "dir", "g": "get", "p": "put", "t": "timeout",
            "T": "exectimeout"}
LONG = {v: k for k, v in list(BOOL_OPTS.items()) + list(STR_OPTS.items())}


class Usage(Exception):
    pass


def parse_options(args):
    opts = {"timeout": 4, "exectimeout": 60}
    rest = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            rest = args[i + 1:]
            break
        if a.startswith("--"):
            name, eq, val = a[2:].partition("=")
            if name not in LONG:
                raise Usage("unknown option: \"--%s\"" % name)
            letter = LONG[name]
            if letter in STR_OPTS:
                if not eq:
                    i += 1
                    if i >= len(args):
                        raise Usage("do not have enough args for \"--%s\" option" % name)
                    val = args[i]
                opts[STR_OPTS[letter]] = val
            else:
                opts[name] = True
        elif a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                ch = a[j]
                if ch in BOOL_OPTS:
                    opts[BOOL_OPTS[ch]] = True
                    j += 1
                elif ch in STR_OPTS:
                    val = a[j + 1:]
                    if not val:
                        i += 1
                        if i >= len(args):
                            raise Usage("do not have enough args for \"-%s\" option" % ch)
                        val = args[i]
                    opts[STR_OPTS[ch]] = val
                    break
                else:
                    raise Usage("unknown option: \"-%s\"" % ch)
        else:
            rest = args[i:]
            break
        i += 1
    for k in ("timeout", "exectimeout"):
        v = opts[k]
        try:
            n = int(v)
            if n <= 0 or str(n) != str(v).strip():
                raise ValueError
        except ValueError:
            raise Usage('arg for "--%s" is not a positive integer: "%s"' % (k, v))
        opts[k] = n
    opts["_args"] = rest
    if opts.get("help"):
        return opts
    if opts.get("quiet") and opts.get("verbose"):
        raise Usage("cannot be both quiet and verbose")
    if sum(1 for k in ("allnodes", "computeonly", "node") if opts.get(k)) != 1:
        raise Usage("exactly one of -a, -c or -n must be specified")
    for a in rest:
        if a.startswith("-"):
            raise Usage("all options must appear before the command string")
    if opts.get("node"):
        to = []
        for n in opts["node"].split(","):
            n = n.strip()
            if not n:
                continue
            if n in to:
                raise Usage("duplicate host in --node (-n) list")
            to.append(n)
        if not to:
            raise Usage("no valid hosts provided for --node (-n)")
        opts["node_list"] = to
    if opts.get("jsonstream"):
        opts["json"] = True
        opts["immediate"] = True
    if opts.get("get") or opts.get("put") or opts.get("dir"):
        if opts.get("get") and opts.get("put"):
            raise Usage("cannot get and put a file at the same time")
        if not opts.get("get") and not opts.get("put"):
            raise Usage("must specify -g (get) or -p (put) with -d (dir)")
        if not opts.get("dir"):
            raise Usage("must specify -d (dir) with -g (get) or -p (put)")
        if opts.get("listonly"):
            raise Usage("discovery-only mode cannot use -g/-p/-d")
        if rest:
            raise Usage("cannot specify both a file and a command")
    elif rest:
        if opts.get("listonly"):
            raise Usage("cannot send a command in discovery-only mode")
        if len(rest) != 1:
            raise Usage("must specify entire command as a single, quoted argument")
        opts["command"] = rest[0]
    elif not opts.get("listonly"):
        raise Usage("must specify either a file upload, file download or command")
    return opts


# ---- the tool ----------------------------------------------------------------

class Tool:
    def __init__(self, opts):
        self.opts = opts
        self.epoch = time.time()
        self.out_lock = threading.Lock()
        self.header_printed = False
        self.need_newline = False
        self.results = []
        self.errors = []
        self.exec_failure = False

    # -- printing

    def write(self, s):
        sys.stdout.write(s)
        sys.stdout.flush()

    def verbose(self, msg):
        if self.opts.get("verbose") and not self.opts.get("quiet"):
            sys.stderr.write("[%6d] %s\n" % (int((time.time() - self.epoch) * 1000), msg))
            self.need_newline = True

    def final_newline(self):
        if self.need_newline:
            sys.stderr.write("\n")
        self.need_newline = False

    @staticmethod
    def nodename(s):
        return "%s (%s)" % (s["uuid"], s["hostname"])

    def output(self, rr):
        if rr.get("error"):
            self.write("=== Failure from %s:\n<ERROR: %s>\n\n"
                       % (self.nodename(rr), rr["error"]["message"]))
            return
        r = rr["result"]
        out = r["stdout"] if r["exit_status"] == 0 else r["stdout"] + r["stderr"]
        s = "=== Output from %s:\n%s\n" % (self.nodename(rr), out)
        if not out or out[-1] != "\n":
            s += "\n"
        self.write(s)

    def emit_list_only(self, s):
        fmt = "%-36s  %s\n"
        text = ""
        if not self.header_printed:
            text += fmt % ("UUID", "HOSTNAME")
        self.header_printed = True
        self.write(text + fmt % (s["uuid"], s["hostname"]))

    @staticmethod
    def non_empty_lines(rr):
        if rr.get("error"):
            return [rr["error"]["message"]]
        r = rr.get("result")
        if not r:
            return []
        s = r["stdout"] if r["exit_status"] == 0 else r["stdout"] + r["stderr"]
        return [line.strip() for line in s.split("\n") if line.strip()]

    def emit_terse(self, rr):
        lines = self.non_empty_lines(rr)
        fmt = "%-20s  %s\n"
        text = ""
        if not self.header_printed:
            text += fmt % ("HOSTNAME", "STATUS")
        self.header_printed = True
        if rr.get("error"):
            text += fmt % (rr["hostname"], "<ERROR: %s>" % rr["error"]["message"])
        else:
            text += fmt % (rr["hostname"], lines[-1] if lines else "")
        self.write(text)

    def process_result(self, rr):
        with self.out_lock:
            if rr.get("error"):
                self.exec_failure = True
            if self.opts.get("immediate"):
                if self.opts.get("quiet"):
                    return
                if self.opts.get("json"):
                    self.write(json.dumps(rr, separators=(",", ":")) + "\n")
                elif self.opts.get("oneline"):
                    self.emit_terse(rr)
                else:
                    self.output(rr)
            else:
                self.results.append(rr)

    def final_output(self):
        o = self.opts
        if o.get("immediate") or o.get("quiet"):
            return
        can_terse = all(len(self.non_empty_lines(rr)) <= 1 for rr in self.results)
        self.final_newline()
        self.results.sort(key=lambda r: r["hostname"])
        if o.get("json"):
            self.write(json.dumps(self.results, separators=(",", ":")) + "\n")
            return
        for rr in self.results:
            if o.get("listonly"):
                self.emit_list_only(rr)
            elif o.get("get") or o.get("put") or can_terse or o.get("oneline"):
                self.emit_terse(rr)
            else:
                self.output(rr)

    # -- discovery

    def list_servers(self):
        status, servers = common.api("cnapi", "GET", "/servers?extras=sysinfo",
                                     timeout=self.opts["timeout"] + 10)
        if status != 200 or not isinstance(servers, list):
            raise RuntimeError("could not list servers from CNAPI (status %s)" % status)
        return servers

    @staticmethod
    def admin_ip(server):
        si = server.get("sysinfo") or {}
        for nic in (si.get("Network Interfaces") or {}).values():
            if "admin" in (nic.get("NIC Names") or []) and nic.get("ip4addr"):
                return nic["ip4addr"]
        for nic in (si.get("Virtual Network Interfaces") or {}).values():
            if "admin" in (nic.get("NIC Names") or []) and nic.get("ip4addr"):
                return nic["ip4addr"]
        for h in common.load_hosts().values():
            if h.get("uuid") == server.get("uuid"):
                return h.get("admin_ip")
        return None

    def ssh_port(self):
        return int(os.environ.get("SIMDC_SSH_PORT") or 22)

    def responds(self, server):
        """Ur's discovery answer: the head node always, a CN if reachable."""
        if server.get("headnode"):
            return True
        ip = self.admin_ip(server)
        if not ip:
            return False
        try:
            with socket.create_connection((ip, self.ssh_port()), timeout=self.opts["timeout"]):
                return True
        except OSError:
            return False

    def discover(self):
        """Returns the [{uuid, hostname, _server}] to act on, or None on error."""
        o = self.opts
        servers = self.list_servers()
        if o.get("node_list"):
            wanted = o["node_list"]
            chosen = {}
            missing = []
            for name in wanted:
                match = [s for s in servers if name in (s.get("uuid"), s.get("hostname"))]
                if not match:
                    missing.append(name)
                    continue
                s = match[0]
                if s["uuid"] in chosen:
                    e = RuntimeError("duplicate host specification detected")
                    e.duplicate = sorted([chosen[s["uuid"]][1], name])
                    self.errors.append(e)
                    return None
                chosen[s["uuid"]] = (s, name)
            candidates = [v[0] for v in chosen.values()]
        else:
            candidates = [s for s in servers
                          if not (o.get("computeonly") and s.get("headnode"))]
            missing = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(len(candidates), 1)) as ex:
            answers = list(ex.map(self.responds, candidates))
        found = []
        for s, ok in zip(candidates, answers):
            if ok:
                self.verbose("found %s (%s)" % (s["uuid"], s.get("hostname")))
                found.append(s)
            elif o.get("node_list"):
                missing.append(s.get("hostname") if s.get("hostname") in o["node_list"]
                               else s["uuid"])
        if missing:
            e = RuntimeError("could not find all nodes")
            e.nodes_missing = missing
            self.errors.append(e)
            return None
        self.verbose("discovery complete")
        return found

    # -- execution

    def ssh_argv(self, ip, remote):
        ssh = os.environ.get("SIMDC_SSH") or "ssh"
        key = os.environ.get("SIMDC_SDC_KEY") or "/root/.ssh/sdc.id_rsa"
        # Ur is no ssh: it reaches every node, a SunSSH one too (sunssh.py)
        argv = [ssh, "-i", key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", "ConnectTimeout=%d" % self.opts["timeout"],
                "-o", "KexAlgorithms=+" + sunssh.KEX, "-o", "HostKeyAlgorithms=+ssh-rsa",
                "-o", "PubkeyAcceptedAlgorithms=+ssh-rsa"]
        if self.ssh_port() != 22:
            argv += ["-p", str(self.ssh_port())]
        return argv + ["root@%s" % ip, remote]

    def run_proc(self, server, argv, stdin=None, stdout_file=None, env=None):
        """Runs argv; returns (exit_status, stdout, stderr) or raises TimeoutError."""
        timeout = self.opts["exectimeout"]
        p = subprocess.Popen(argv, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                             stdout=stdout_file or subprocess.PIPE, stderr=subprocess.PIPE,
                             env=env, start_new_session=True)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, 9)
            except OSError:
                pass
            p.communicate()
            raise TimeoutError("timeout for host %s" % server["uuid"])
        return (p.returncode,
                (out or b"").decode("utf-8", "replace"),
                (err or b"").decode("utf-8", "replace"))

    def local_env(self):
        env = {"PATH": os.environ.get("PATH", common.HN_PATH), "HOME": "/root",
               "LOGNAME": "root", "USER": "root"}
        for k in ("SIMDC_DIR", "SIMDC_HOST", "SIMDC_NET", "SIMDC_API_PORT", "SIMDC_SIM_ROOT"):
            if os.environ.get(k):
                env[k] = os.environ[k]
        return env

    def run_on(self, server):
        o = self.opts
        rr = {"uuid": server["uuid"], "hostname": server.get("hostname")}
        self.verbose("running on %s" % self.nodename(rr))
        local = bool(server.get("headnode"))
        ip = None if local else self.admin_ip(server)
        try:
            if o.get("command") is not None:
                script = "#!/bin/bash\n\n" + o["command"] + "\n"
                if local:
                    res = self.run_proc(server, ["/bin/bash", "-c", script],
                                        env=self.local_env())
                else:
                    res = self.run_proc(server, self.ssh_argv(
                        ip, "/bin/bash -c %s" % shlex.quote(script)))
                    if res[0] == 255 and not res[1]:
                        raise RuntimeError((res[2].strip().splitlines() or
                                            ["ssh failed"])[-1])
                rr["result"] = {"exit_status": res[0], "stdout": res[1], "stderr": res[2]}
            elif o.get("get"):
                self.send_file(server, local, ip)
                rr["result"] = {"stdout": "ok", "stderr": "", "exit_status": 0}
            else:
                self.recv_file(server, local, ip)
                rr["result"] = {"stdout": "ok", "stderr": "", "exit_status": 0}
            self.verbose("run ok on %s" % self.nodename(rr))
        except TimeoutError as e:
            rr["error"] = {"message": str(e), "name": "VError", "code": None}
        except (RuntimeError, OSError) as e:
            self.verbose("error on %s" % self.nodename(rr))
            rr["error"] = {"message": str(e), "name": "Error", "code": None}
        self.process_result(rr)

    def send_file(self, server, local, ip):
        """-g FILE -d DIR: the node gets FILE from this node into DIR."""
        src = self.opts["get"]
        dst = os.path.join(self.opts["dir"], os.path.basename(src))
        clobber = bool(self.opts.get("clobber"))
        with open(src, "rb") as f:
            if local:
                if os.path.exists(dst) and not clobber:
                    raise RuntimeError("file exists: %s" % dst)
                tmp = dst + ".oneachnode.%d" % os.getpid()
                with open(tmp, "wb") as out:
                    shutil.copyfileobj(f, out)
                os.replace(tmp, dst)
                return
            q = shlex.quote(dst)
            remote = ("f=%s; %s t=\"$f.oneachnode.$$\"; cat > \"$t\" && mv -f \"$t\" \"$f\""
                      % (q, "" if clobber else
                         "if [ -e \"$f\" ]; then echo \"file exists: $f\" >&2; exit 17; fi;"))
            code, out, err = self.run_proc(server, self.ssh_argv(
                ip, "/bin/bash -c %s" % shlex.quote(remote)), stdin=f)
        if code != 0:
            raise RuntimeError((err.strip().splitlines() or
                                ["could not write %s (exit %d)" % (dst, code)])[-1])

    def recv_file(self, server, local, ip):
        """-p FILE -d DIR: the node sends FILE to DIR/<its uuid> here."""
        src = self.opts["put"]
        dst = os.path.join(self.opts["dir"], server["uuid"])
        tmp = dst + ".oneachnode.%d" % os.getpid()
        try:
            if local:
                shutil.copyfile(src, tmp)
            else:
                with open(tmp, "wb") as out:
                    code, _, err = self.run_proc(
                        server, self.ssh_argv(ip, "cat %s" % shlex.quote(src)),
                        stdout_file=out)
                if code != 0:
                    raise RuntimeError((err.strip().splitlines() or
                                        ["could not read %s (exit %d)" % (src, code)])[-1])
            os.replace(tmp, dst)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    # -- main

    def run(self):
        o = self.opts
        self.verbose("discovering servers")
        try:
            found = self.discover()
        except (RuntimeError, OSError, ValueError) as e:
            self.errors.append(e)
            found = None
        if found is not None:
            if o.get("listonly"):
                for s in found:
                    rr = {"uuid": s["uuid"], "hostname": s.get("hostname")}
                    if o.get("immediate"):
                        if o.get("json"):
                            self.write(json.dumps(rr, separators=(",", ":")) + "\n")
                        else:
                            self.emit_list_only(rr)
                    else:
                        self.results.append(rr)
                self.final_output()
            else:
                with concurrent.futures.ThreadPoolExecutor(
                        max_workers=max(len(found), 1)) as ex:
                    list(ex.map(self.run_on, found))
                self.verbose("command run complete")
                self.final_output()
        return self.exit()

    def exit(self):
        if self.errors:
            status = EXIT_EXEC_FAILURE if self.exec_failure else EXIT_GENERIC
            self.final_newline()
            for e in self.errors:
                if getattr(e, "nodes_missing", None):
                    status = EXIT_MISSING_NODES
                if self.opts.get("quiet"):
                    continue
                sys.stderr.write("ERROR: %s\n" % e)
                if getattr(e, "nodes_missing", None):
                    sys.stderr.write("\n  missing nodes:\n")
                    for n in sorted(e.nodes_missing):
                        sys.stderr.write("    %s\n" % n)
                    sys.stderr.write("\n")
                if getattr(e, "duplicate", None):
                    sys.stderr.write("\n  these names refer to the same node:\n")
                    for n in sorted(e.duplicate):
                        sys.stderr.write("    %s\n" % n)
                    sys.stderr.write("\n")
            return status
        if self.exec_failure:
            return EXIT_EXEC_FAILURE
        return EXIT_SUCCESS


def main(argv):
    try:
        opts = parse_options(list(argv))
    except Usage as e:
        quiet = "-q" in argv or "--quiet" in argv
        if not quiet:
            sys.stderr.write("ERROR: %s\n%s\n" % (e, HELP))
        return EXIT_OPTION_PARSE
    if opts.get("help"):
        sys.stdout.write(HELP + "\n")
        return EXIT_SUCCESS
    if opts.get("put"):
        if not os.path.isdir(opts["dir"]):
            if not opts.get("quiet"):
                sys.stderr.write('ERROR: not a directory: "%s"\n' % opts["dir"])
            return EXIT_GENERIC
    return Tool(opts).run()
