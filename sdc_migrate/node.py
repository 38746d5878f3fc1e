"""Every command sdc-migrate runs, on the head node or on a compute node,
goes through here: argv lists, quoted once, run with `sh`.

A compute node is reached over ssh with the head node's key through one
ControlMaster connection per Node (a host, as one migration reaches it), so
a step costs a round trip, not a handshake. Commands marked read-only run under --dry-run; the others are
only printed there.
"""
import itertools
import os
import shlex

import sh

from . import paths
from .errors import RemoteError

SSH_KEY = paths.HN_KEY
CONTROL_DIR = paths.CONTROL_DIR
_masters = itertools.count(1)      # numbers each Node's ControlMaster in this process


def command_line(argv):
    """argv as one shell command line, every word quoted: the one place
    sdc-migrate turns words into shell text (ssh's remote command, a
    script of several commands, a pipeline). Values go into scripts only
    as arguments ("$1"), never formatted into their text."""
    return shlex.join(map(str, argv))


def forced_command(argv):
    """argv as an authorized_keys entry's command="..." option: sshd runs it
    with the user's shell -c, whatever the client asked for (sshd(8),
    AUTHORIZED_KEYS FILE FORMAT). command_line, with each quote written \\"
    ("A quote may be included in the command by quoting it with a
    backslash": openssh-portable misc.c opt_dequote turns \\" into " and
    leaves any other backslash as it is); an entry is one line."""
    line = command_line(argv)
    if "\n" in line or "\r" in line:
        raise ValueError("a forced command is one line: %r" % line[:40])
    return 'command="%s"' % line.replace('"', '\\"')


def pipeline(*stages):
    """bash -o pipefail -c 'STAGE | STAGE ...', each stage an argv list."""
    return ["bash", "-o", "pipefail", "-c", " | ".join(command_line(s) for s in stages)]


class Runner:
    """Runs argv lists locally (the head node)."""

    name = "headnode"

    def __init__(self, dry_run=False, trace=None):
        self.dry_run = dry_run
        self.trace = trace          # callable(host, cmdline) or None

    # Every command in a process group of its own: a hangup or ^C from the
    # operator's terminal reaches sdc-migrate alone, which then rolls back or
    # finishes with its commands still running (cli: SIGHUP, SIGTERM).
    SH = {"_tty_out": False, "_new_group": True}

    def _cmd(self, argv):
        return sh.Command(argv[0]).bake(*argv[1:], **self.SH)

    def run(self, argv, readonly=False, input=None, on_line=None):
        """Run argv; return its stdout. Raise RemoteError if it fails.

        With on_line, stderr lines go to it as they come (see stream()).
        """
        if on_line is None:
            status, out, err = self.call(argv, readonly, input)
        else:
            status, out, err = self.stream(argv, on_line, readonly, input)
        if status != 0:
            raise RemoteError(self.name, [str(a) for a in argv], status, err)
        return out

    def _start(self, argv, readonly):
        """argv as strings, traced; None if --dry-run must not run it."""
        argv = [str(a) for a in argv]
        if self.trace:
            self.trace(self.name, shlex.join(argv))
        if self.dry_run and not readonly:
            return None
        return argv

    def call(self, argv, readonly=False, input=None):
        """Run argv; return (exit status, stdout, stderr) whatever the status."""
        argv = self._start(argv, readonly)
        if argv is None:
            return 0, "", ""
        try:
            p = self._cmd(argv)(_in=input, _ok_code=list(range(256)), _return_cmd=True)
        except sh.CommandNotFound:
            return 127, "", "%s: command not found" % argv[0]
        return (p.exit_code, p.stdout.decode(errors="replace"),
                p.stderr.decode(errors="replace"))

    def stream(self, argv, on_line, readonly=False, input=None):
        """Run argv, handing each stderr line to on_line(line) as it comes.

        Returns (exit status, stdout, stderr) as call() does; the lines
        on_line returns true for (progress it consumed) are left out of that
        stderr, so an error message is not buried under them. An exception
        in on_line is dropped: a progress display never breaks a command.
        """
        argv = self._start(argv, readonly)
        if argv is None:
            return 0, "", ""
        kept = []

        def err(line):
            try:
                consumed = on_line(line.rstrip("\n"))
            except Exception:   # noqa: BLE001 - see above
                consumed = False
            if not consumed:
                kept.append(line)

        try:
            p = self._cmd(argv)(_in=input, _err=err, _ok_code=list(range(256)), _bg=True,
                                _bg_exc=False, _decode_errors="replace")
            p.wait()
        except sh.CommandNotFound:
            return 127, "", "%s: command not found" % argv[0]
        return p.exit_code, p.stdout.decode(errors="replace"), "".join(kept)

    def script(self, lines, readonly=False, input=None):
        """Run several argv lists in one round trip, stopping at the first failure."""
        return self.run(["/bin/sh", "-c", " && ".join(command_line(l) for l in lines)],
                        readonly=readonly, input=input)


class Node(Runner):
    """A compute node, by hostname, UUID and admin IP."""

    def __init__(self, hostname, uuid, ip, dry_run=False, trace=None):
        super().__init__(dry_run, trace)
        self.name, self.hostname, self.uuid, self.ip = hostname, hostname, uuid, ip
        # one master per Node: close() ends it, and must not cut the commands
        # of another Node to the same host, in this process (evacuate's
        # migrations run side by side in threads) or another
        self.control_path = "%s/%%C-%d-%d" % (CONTROL_DIR, os.getpid(), next(_masters))

    # A CN of a platform before OpenSSH runs SunSSH, whose sshd offers only
    # SHA-1 key exchanges and ssh-rsa (illumos usr/src/cmd/ssh/include/
    # myproposal.h), which an OpenSSH since 8.8 no longer offers unless told:
    # appended to its defaults, they change nothing where a better one exists.
    LEGACY = ["-o", "KexAlgorithms=+diffie-hellman-group-exchange-sha1,"
              "diffie-hellman-group1-sha1", "-o", "HostKeyAlgorithms=+ssh-rsa",
              "-o", "PubkeyAcceptedAlgorithms=+ssh-rsa"]

    def ssh_options(self):
        os.makedirs(CONTROL_DIR, mode=0o700, exist_ok=True)
        return ["-i", SSH_KEY, "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
                "-o", "StrictHostKeyChecking=accept-new",
                "-o", "ControlMaster=auto", "-o", "ControlPath=" + self.control_path,
                "-o", "ControlPersist=120", "-o", "ServerAliveInterval=10",
                "-o", "LogLevel=ERROR"] + self.LEGACY

    def _cmd(self, argv):
        # The remote side gets one string: every word quoted here, once.
        return sh.Command("ssh").bake(*self.ssh_options(), "root@" + self.ip, "--",
                                      command_line(argv), **self.SH)

    def close(self):
        """End this host's ControlMaster connection."""
        try:
            sh.Command("ssh")(*self.ssh_options(), "-O", "exit", "root@" + self.ip,
                              _ok_code=range(256), _tty_out=False)
        except sh.ErrorReturnCode:
            pass
