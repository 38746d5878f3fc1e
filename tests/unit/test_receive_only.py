"""The temporary CN-to-CN key receives this instance's datasets and nothing
else (issue 25): its forced command, cnlink.RECEIVE_ONLY, run here as the
destination's sshd runs it, with $SSH_ORIGINAL_COMMAND set and a fake zfs
first on PATH that records what it was asked to do. Where the destination
pulls from a SunSSH source (cnlink.Link.pull), the key is the source's and
sends this instance's snapshots and nothing else: cnlink.SEND_ONLY, tested
the same way (illumos libzfs_sendrecv.c zfs_send_resume for what
`zfs send -nv -t` says of a token).

It runs in each shell it may meet: /bin/sh here (dash), bash (root's login
shell on SmartOS, which sshd runs the command= with) and ksh93 (SmartOS's
/bin/sh, which the command= names). The sshd side: openssh-portable
session.c do_exec (a key's command= replaces the client's command, which
goes to SSH_ORIGINAL_COMMAND) and misc.c opt_dequote (the option's quoting).
"""
import os
import shlex
import subprocess

import pytest

from sdc_migrate import cnlink, node, zfs

U = "5ca5b3dc-48fe-6f75-ed8c-8d8fbd77e2aa"
OTHER = "43aba933-2cd6-6c47-e63e-b1d2d1ab4956"
SHELLS = ["/bin/sh", "/bin/bash", "/bin/ksh93"]
R = "zfs recv -s -u -F "
MARK = "MARK"       # replaced by a file that a command that ran would create

FAKE_ZFS = """#!/bin/sh
# what the forced command asks before it runs anything (SEND_ONLY): a
# dataset's origin, what a resume token names (on stderr, as illumos does)
if [ "$1 $2 $3 $4 $5" = "get -H -o value origin" ]; then echo "${ZFS_ORIGIN:--}"; exit 0; fi
if [ "$1 $2 $3" = "send -nv -t" ]; then
    printf 'resume token contents:\\nnvlist version: 0\\n\\ttoguid = 0x1\\n\\ttoname = %s\\n' \\
        "$ZFS_TONAME" >&2; exit 0; fi
# what it was asked, the pid file as it was then, the bytes it was given
printf '%s\\n' "$@" > "$ZFS_DIR/argv"
[ -e "$ZFS_PIDFILE" ] && cat "$ZFS_PIDFILE" > "$ZFS_DIR/pid"
wc -c > "$ZFS_DIR/stdin"
exit "${ZFS_STATUS:-0}"
"""

# Every command line the migration sends over the key: the remote command of
# the ssh stage of zfs.send_pipeline, for each kind of dataset an instance has
# (zones/UUID; a delegated dataset or a bhyve disk below it; kvm's disks), a
# full, incremental or resumed (send -t) stream, into an encrypted pool or not;
# and the estimate's measure into its scratch dataset.
DATASETS = ["zones/" + U, "zones/%s/data" % U, "zones/%s/disk0" % U, "zones/%s/data/a.b:c_d" % U,
            "zones/%s-disk0" % U, "zones/%s-disk12" % U]


def remote_command(argv):
    """The command line the source's ssh sends, from a send_pipeline argv."""
    ssh = [s for s in argv[-1].split(" | ") if s.startswith("ssh ")][0]
    return shlex.split(ssh)[-1]


# what a stream from an encrypted pool carries as receive options instead
# (transfer.stream; the properties zfs.dataset_properties read on the source)
SET_PROPS = ({}, {"quota": "10737418240", "compression": "lz4", "zoned": "on",
                  "com.joyent:tag": "a,b=c", "mountpoint": "/zones/%s/data" % U})


def pipelines():
    for ds in DATASETS:
        for exclude, set_props in ((e, p) for e in ((), ("encryption",)) for p in SET_PROPS):
            common = dict(exclude=exclude, set_props=set_props)
            yield ds, exclude, set_props, zfs.send_pipeline(ds, "s1", None, "10.0.0.1", "10.0.0.2", "k",
                                                 "kh", props=True, progress=True, **common)
            yield ds, exclude, set_props, zfs.send_pipeline(ds, "s2", ds + "@s1", "10.0.0.1", "10.0.0.2",
                                                 "k", "kh", bwlimit=10 << 20, **common)
            yield ds, exclude, set_props, zfs.send_pipeline(ds, None, None, "10.0.0.1", "10.0.0.2", "k",
                                                 "kh", token="1-e3c7bb5d1-c0-789c", **common)


LEGITIMATE = [(remote_command(argv), ["recv", "-s", "-u", "-F"]
               + (["-x", "encryption"] if exclude else [])
               + [w for k, v in sorted(set_props.items()) for w in ("-o", "%s=%s" % (k, v))]
               + [ds])
              for ds, exclude, set_props, argv in pipelines()]

HOSTILE = [
    # what a root shell on the source would try
    ("a command", "id"),
    ("a shell", "sh -c id"),
    ("a destroy", "zfs destroy -r zones/" + U),
    ("a rollback", "zfs rollback -r zones/%s@x" % U),
    ("aborting the receive state", "zfs recv -A zones/" + U),
    ("scp into authorized_keys", "scp -t /root/.ssh/authorized_keys"),
    ("the sftp subsystem", "/usr/lib/ssh/sftp-server"),
    # the receive, into what is not this instance's
    ("another instance", R + "zones/" + OTHER),
    ("another instance's delegated dataset", R + "zones/%s/data" % OTHER),
    ("another instance's kvm disk", R + "zones/%s-disk0" % OTHER),
    ("a name this UUID begins", R + "zones/" + U + "0"),
    ("the cores dataset", R + "zones/cores/" + U),
    ("the pool", R + "zones"),
    ("an image", R + "zones/" + OTHER[:-1] + "f"),
    ("a parent reference", R + "zones/%s/../%s" % (U, OTHER)),
    ("a self reference", R + "zones/%s/./data" % U),
    ("an empty component", R + "zones/%s//data" % U),
    ("a trailing slash", R + "zones/%s/" % U),
    ("a snapshot", R + "zones/%s@x" % U),
    ("a kvm disk with no number", R + "zones/%s-disk" % U),
    ("a kvm disk with letters", R + "zones/%s-diskx" % U),
    ("below a kvm disk", R + "zones/%s-disk0/x" % U),
    ("an extra dataset", R + "zones/%s zones/%s" % (U, OTHER)),
    ("two datasets of its own", R + "zones/%s zones/%s/data" % (U, U)),
    # shell syntax: nothing is ever parsed as shell text
    ("a semicolon", R + "zones/%s; touch MARK" % U),
    ("&&", R + "zones/%s && touch MARK" % U),
    ("||", R + "zones/%s || touch MARK" % U),
    ("a pipe", R + "zones/%s | touch MARK" % U),
    ("a background &", R + "zones/%s & touch MARK" % U),
    ("$()", R + "zones/%s$(touch MARK)" % U),
    ("backquotes", R + "zones/%s`touch MARK`" % U),
    ("${} expansion", R + "${HOME}zones/" + U),
    ("$IFS", R + "zones/%s$IFS-o$IFS" % U),
    ("a newline", R + "zones/%s\ntouch MARK" % U),
    ("a carriage return", R + "zones/%s\rtouch MARK" % U),
    ("a tab", R + "zones/%s\ttouch MARK" % U),
    ("single quotes", R + "'zones/%s'" % U),
    ("double quotes", R + '"zones/%s"' % U),
    ("quotes joining words", R + "zones/%s' touch MARK'" % U),
    ("a backslash", R + "zones/%s\\;touch MARK" % U),
    ("an output redirection", R + "zones/%s > MARK" % U),
    ("an appending redirection", R + "zones/%s >>MARK" % U),
    ("an input redirection", R + "zones/%s < /etc/passwd" % U),
    ("a stderr redirection", R + "zones/%s 2>MARK" % U),
    ("a glob *", R + "zones/*"),
    ("a glob ?", R + "zones/%s?" % U[:-1]),
    ("a glob []", R + "zones/[%s]" % U),
    ("a brace expansion", R + "zones/{%s,%s}" % (U, OTHER)),
    ("a tilde", R + "~root"),
    ("a comment", R + "zones/%s #" % U),
    ("a variable assignment", "PATH=/tmp " + R + "zones/" + U),
    ("a non-ASCII letter", R + "zones/%s\u00e9" % U),
    ("a NUL-like escape", R + "zones/%s\\0" % U),
    # options that change what is written, or where
    ("-o mountpoint=", "zfs recv -s -u -F -o mountpoint=/etc zones/" + U),
    ("-o origin=", "zfs recv -s -u -F -o origin=zones/%s@final zones/%s" % (OTHER, U)),
    ("-o mountpoint= in another instance",
     "zfs recv -s -u -F -o mountpoint=/zones/%s zones/%s" % (OTHER, U)),
    ("-o mountpoint= climbing out", "zfs recv -s -u -F -o mountpoint=/zones/%s/../etc zones/%s"
     % (U, U)),
    ("-o without a property", "zfs recv -s -u -F -o =x zones/" + U),
    ("-o before -x", "zfs recv -s -u -F -o quota=1 -x encryption zones/" + U),
    ("-d retargets", "zfs recv -s -u -F -d zones/" + U),
    ("-e retargets", "zfs recv -s -u -F -e zones/" + U),
    ("no -u: mounted at the stream's mountpoint", "zfs recv -s -F zones/" + U),
    ("-x of another property", "zfs recv -s -u -F -x mountpoint zones/" + U),
    ("-x twice", "zfs recv -s -u -F -x encryption -x encryption zones/" + U),
    ("-x with no property", "zfs recv -s -u -F -x zones/" + U),
    ("an option after the dataset", "zfs recv -s -u -F zones/%s -n" % U),
    ("the options in another order", "zfs recv -F -s -u zones/" + U),
    ("zfs by another path", "/tmp/zfs recv -s -u -F zones/" + U),
    ("receive spelled out", "zfs receive -s -u -F zones/" + U),
    ("a second command as words", R + "zones/%s zfs destroy zones/%s" % (U, U)),
    ("nothing", ""),
    ("spaces", "   "),
]


@pytest.fixture
def run(tmp_path):
    """run(command, name, pidfile, shell, status) -> (process, what zfs saw or None)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "zfs").write_text(FAKE_ZFS)
    (bin_dir / "zfs").chmod(0o755)

    def go(command, name=U, pidfile=None, shell="/bin/sh", status=0, argv=None, script=None,
           args=None, extra=None):
        """script (RECEIVE_ONLY) run with NAME then args ([PIDFILE]); extra: env."""
        for f in ("argv", "pid", "stdin"):
            if (tmp_path / f).exists():
                (tmp_path / f).unlink()
        env = {"PATH": "%s:/usr/bin:/bin" % bin_dir, "HOME": str(tmp_path), "ZFS_DIR": str(tmp_path),
               "ZFS_PIDFILE": pidfile or "/nonexistent", "ZFS_STATUS": str(status)}
        env.update(extra or {})
        if command is not None:
            env["SSH_ORIGINAL_COMMAND"] = command.replace(MARK, str(tmp_path / "owned"))
        argv = argv or [shell, "-c", script or cnlink.RECEIVE_ONLY, "sh", name] + (
            [pidfile or ""] if args is None else args)
        p = subprocess.Popen(argv, env=env, cwd=str(tmp_path), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = p.communicate(b"x" * 1000, timeout=10)
        p.stdout, p.stderr = out.decode(), err.decode()
        ran = None
        if (tmp_path / "argv").exists():
            ran = {"argv": (tmp_path / "argv").read_text().splitlines(),
                   "pid": (tmp_path / "pid").read_text().strip() if (tmp_path / "pid").exists()
                   else None,
                   "stdin": int((tmp_path / "stdin").read_text())}
        return p, ran
    go.tmp = tmp_path
    return go


def assert_refused(p, ran, tmp):
    assert p.returncode == cnlink.REFUSED, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sdc-migrate: refused: "), p.stderr
    assert ran is None, "zfs ran: %s" % ran
    assert p.stdout == ""
    assert sorted(os.listdir(tmp)) == ["bin"], "it left %s" % os.listdir(tmp)


def test_the_lists_are_what_the_issue_asks():
    assert len(HOSTILE) >= 25
    assert len(set(c for c, _ in LEGITIMATE)) == len(DATASETS) * 2 * len(SET_PROPS)
    # the ssh of the pipeline asks for recv_command, nothing wrapped around it
    assert LEGITIMATE[0][0] == node.command_line(zfs.recv_command(DATASETS[0], ()))


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("what,command", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_anything_but_a_receive_into_its_own_datasets_is_refused(run, shell, what, command):
    pidfile = str(run.tmp / "recv.pid")
    p, ran = run(command, pidfile=pidfile, shell=shell)
    assert_refused(p, ran, run.tmp)


@pytest.mark.parametrize("shell", SHELLS)
def test_a_login_shell_is_refused(run, shell):
    """No command at all (ssh DEST, a login shell): SSH_ORIGINAL_COMMAND unset."""
    p, ran = run(None, shell=shell)
    assert_refused(p, ran, run.tmp)
    assert "no command" in p.stderr


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("name", ["", "a/b", "*", "a b", "$(id)", "..", U + ";", "-"])
def test_a_bad_name_in_the_entry_refuses_everything(run, shell, name):
    p, ran = run(R + "zones/" + name, name=name, shell=shell)
    assert_refused(p, ran, run.tmp)


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("command,argv", LEGITIMATE,
                         ids=["%d" % i for i in range(len(LEGITIMATE))])
def test_every_receive_the_migration_sends_runs(run, shell, command, argv):
    pidfile = str(run.tmp / "recv.pid")
    p, ran = run(command, pidfile=pidfile, shell=shell)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert ran["argv"] == argv
    assert ran["stdin"] == 1000             # the stream reaches zfs recv whole
    # the receiving shell's pid was there while zfs recv ran, and is gone after
    assert ran["pid"] == str(p.pid)
    assert not os.path.exists(pidfile)


def test_without_a_pid_file_zfs_recv_is_all_that_runs(run):
    """The estimate's key: no pid file; its scratch dataset is zones/NAME."""
    name = "sdc-migrate-measure-4242"
    p, ran = run(node.command_line(zfs.recv_command("zones/" + name)), name=name)
    assert p.returncode == 0 and ran["argv"] == ["recv", "-s", "-u", "-F", "zones/" + name]
    assert ran["pid"] is None
    p, ran = run(R + "zones/" + U, name=name)
    assert_refused(p, ran, run.tmp)


@pytest.mark.parametrize("shell", SHELLS)
def test_a_failed_receive_says_so_and_leaves_no_pid_file(run, shell):
    pidfile = str(run.tmp / "recv.pid")
    p, ran = run(R + "zones/" + U, pidfile=pidfile, shell=shell, status=3)
    assert p.returncode == 3 and ran["argv"][-1] == "zones/" + U
    assert not os.path.exists(pidfile)


# ---- the authorized_keys entry ---------------------------------------------------

def dequote(text):
    """openssh-portable misc.c opt_dequote: from an opening quote to the first
    unescaped one, \\" standing for a quote; (value, the rest)."""
    assert text[0] == '"'
    out, i = [], 1
    while text[i] != '"':
        if text[i] == "\\" and text[i + 1] == '"':
            i += 1
        out.append(text[i])
        i += 1
    return "".join(out), text[i + 1:]


def forced(entry_line):
    """The command= of an entry, as sshd reads it (auth-options.c)."""
    at = entry_line.index('command="') + len("command=")
    return dequote(entry_line[at:])[0]


PUB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGf0 sdc-migrate-" + U


def link_to(version, resumable=True):
    """The Link of a push from a current CN to one whose `ssh -V` says version."""
    return cnlink.Link(cnlink.Facts("src", "OpenSSH_9.2p1", ["ssh-rsa AAAA x"]),
                       cnlink.Facts("dst", version, ["ssh-rsa AAAA x"], resumable))


@pytest.mark.parametrize("version,options", [
    ("OpenSSH_10.4p1, OpenSSL 3.0.16 11 Feb 2025", "restrict"),
    ("OpenSSH_9.2p1 Debian-2+deb12u5, OpenSSL 3.0.19 27 Jan 2026", "restrict"),
    ("OpenSSH_7.2p2, OpenSSL 1.0.2g  1 Mar 2016", "restrict"),
    ("OpenSSH_7.1p2, OpenSSL 1.0.2f  28 Jan 2016", cnlink.OLD_RESTRICTIONS),
    ("OpenSSH_6.9p1, OpenSSL 1.0.1p 9 Jul 2015", cnlink.OLD_RESTRICTIONS),
    # SunSSH's sshd denies a key with an option it does not know (auth-options.c)
    ("Sun_SSH_1.5, SSH protocols 1.5/2.0, OpenSSL 0x0090704f", cnlink.KEY_OPTIONS),
    ("sh: ssh: not found", cnlink.OLD_RESTRICTIONS),
    ("", cnlink.OLD_RESTRICTIONS),
])
def test_the_entry_restricts_with_what_the_platforms_sshd_knows(version, options):
    line = cnlink.entry("127.0.10.11", PUB + "\n", U, "/var/tmp/p.pid", link_to(version))
    assert "\n" not in line
    head, _, key = line.rpartition('" ')
    assert key == PUB
    assert line.startswith(options + ',command="')
    assert head.endswith(',from="127.0.10.11')
    assert shlex.split(forced(line)) == ["/bin/sh", "-c", cnlink.RECEIVE_ONLY, "sh", U,
                                         "/var/tmp/p.pid", "resumable"]


def test_a_pulled_streams_key_is_the_sources_and_only_sends():
    """A SunSSH source pulled from: the entry on the source, SunSSH's options,
    SEND_ONLY; no pid file there (the receive is the destination's own)."""
    link = cnlink.Link(cnlink.Facts("old", "Sun_SSH_1.5, SSH protocols 1.5/2.0",
                                    ["ssh-rsa AAAA x"], False),
                       cnlink.Facts("new", "OpenSSH_9.2p1", ["ssh-rsa AAAA x"]))
    assert link.pull and link.server.hostname == "old"
    line = cnlink.entry("127.0.10.12", PUB, U, "/var/tmp/p.pid", link)
    assert line.startswith(cnlink.KEY_OPTIONS + ',command="')
    assert shlex.split(forced(line)) == ["/bin/sh", "-c", cnlink.SEND_ONLY, "sh", U,
                                         "not-resumable"]


def test_a_quote_or_backslash_in_a_forced_command_survives_sshds_dequoting():
    for argv in (["echo", 'a "b" \\"c\\" d\\'], ["sh", "-c", 'echo "$1"\\', "sh", "x"]):
        text = node.forced_command(argv)
        assert text.startswith('command="')
        value, rest = dequote(text[len("command="):])
        assert rest == "" and shlex.split(value) == argv
    with pytest.raises(ValueError):
        node.forced_command(["echo", "a\nb"])


@pytest.mark.parametrize("command,expected", [
    (LEGITIMATE[0][0], 0), (LEGITIMATE[-1][0], 0), ("id", cnlink.REFUSED),
    (R + "zones/%s; touch MARK" % U, cnlink.REFUSED), ("sh -c id", cnlink.REFUSED)])
def test_the_entry_runs_as_sshd_runs_it(run, command, expected):
    """The whole line: command= dequoted as sshd does, run with root's shell -c
    (session.c do_child), the client's words in SSH_ORIGINAL_COMMAND."""
    pidfile = str(run.tmp / "recv.pid")
    line = cnlink.entry("127.0.10.11", PUB, U, pidfile, link_to("OpenSSH_9.2p1"))
    p, ran = run(command, argv=["/bin/bash", "-c", forced(line)], pidfile=pidfile)
    assert p.returncode == expected, p.stderr
    if expected:
        assert_refused(p, ran, run.tmp)
    else:
        assert ran["argv"][0] == "recv" and not os.path.exists(pidfile)


# ---- a destination without resumable receives -------------------------------------

NOT_RESUMABLE = link_to("OpenSSH_7.1p2, OpenSSL 1.0.2f  28 Jan 2016", resumable=False)
RECEIVES_NOT_RESUMABLE = [
    (remote_command(zfs.send_pipeline(ds, "s2", ds + "@s1", "10.0.0.1", "10.0.0.2", "k", "kh",
                                      props=True, progress=True, exclude=exclude,
                                      link=NOT_RESUMABLE)),
     ["recv", "-u", "-F"] + (["-x", "encryption"] if exclude else []) + [ds])
    for ds in DATASETS for exclude in ((), ("encryption",))]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("command,argv", RECEIVES_NOT_RESUMABLE,
                         ids=["%d" % i for i in range(len(RECEIVES_NOT_RESUMABLE))])
def test_without_resumable_receives_the_receive_without_s_runs(run, shell, command, argv):
    """The entry of a link that cannot resume says so (not-resumable): the
    receive sent there, without -s (zfs before illumos 2605 has none), runs."""
    pidfile = str(run.tmp / "recv.pid")
    args = shlex.split(forced(cnlink.entry("10.0.0.1", PUB, U, pidfile, NOT_RESUMABLE)))[5:]
    assert args == [pidfile, "not-resumable"]
    p, ran = run(command, pidfile=pidfile, shell=shell, args=args)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert ran["argv"] == argv and ran["pid"] == str(p.pid) and ran["stdin"] == 1000
    # and the resumable one, which is not what this link sends, is refused
    p, ran = run(R + "zones/" + U, pidfile=pidfile, shell=shell, args=args)
    assert_refused(p, ran, run.tmp)


# ---- a source a destination pulls from: SEND_ONLY ---------------------------------

IMAGE = "zones/4bd6d1a4-6f9c-11e5-a12f-4f15d2a36d3b@final"
OLD = cnlink.Facts("old", "Sun_SSH_1.5, SSH protocols 1.5/2.0", ["ssh-rsa AAAA x"], False)
NEW = cnlink.Facts("new", "OpenSSH_9.2p1", ["ssh-rsa AAAA x"])
PULL = cnlink.Link(OLD, NEW)
# a SunSSH source never has resumable receives (illumos 2605 came after
# OpenSSH); if one had, its token would be sent for: the send -t too
PULL_RESUMABLE = cnlink.Link(cnlink.Facts("old", OLD.ssh, ["ssh-rsa AAAA x"], True), NEW)


def pulls(link):
    """Every send a pulled migration asks of the source (the remote command of
    the ssh stage of zfs.send_pipeline): a full stream with its properties and
    progress, or not; an incremental from one of its snapshots or from its
    origin (a kvm disk cloned from an image); a resumed one with its token."""
    for ds in DATASETS:
        for props in (True, False):     # -p, or from an encrypted pool without
            yield ds, zfs.send_pipeline(ds, "s1", None, "10.0.0.1", "10.0.0.2", "k", "kh",
                                        props=props, progress=True, link=link)
        yield ds, zfs.send_pipeline(ds, "s2", ds + "@s1", "10.0.0.1", "10.0.0.2", "k", "kh",
                                    bwlimit=10 << 20, pidfile="/var/tmp/p", link=link)
        yield ds, zfs.send_pipeline(ds, "s1", IMAGE, "10.0.0.1", "10.0.0.2", "k", "kh",
                                    props=True, link=link)
        if link.resumable:
            yield ds, zfs.send_pipeline(ds, None, None, "10.0.0.1", "10.0.0.2", "k", "kh",
                                        token="1-e3c7bb5d1-c0-789c", link=link)


def send_words(command):
    return shlex.split(command)[1:]     # what zfs is given


SENDS = [(ds, remote_command(argv), "not-resumable") for ds, argv in pulls(PULL)] + \
    [(ds, remote_command(argv), "resumable") for ds, argv in pulls(PULL_RESUMABLE)]


def send_only(run, command, mode="not-resumable", shell="/bin/sh", origin=IMAGE,
              toname=None):
    return run(command, shell=shell, script=cnlink.SEND_ONLY, args=[mode],
               extra={"ZFS_ORIGIN": origin,
                      "ZFS_TONAME": "zones/%s@s1" % U if toname is None else toname})


def test_the_pulled_sends_are_those_of_the_pipeline():
    assert len(SENDS) == len(DATASETS) * 4 + len(DATASETS) * 5
    # the ssh of a pulled pipeline asks for the send, the receive is the destination's
    argv = zfs.send_pipeline("zones/" + U, "s1", None, "10.0.0.1", "10.0.0.2", "k", "kh",
                             pidfile="/var/tmp/p", link=PULL)
    assert remote_command(argv) == "zfs send zones/%s@s1" % U
    assert argv[-1].index("ssh ") == 0 and "-s" not in shlex.split(argv[-1].split(" | ")[-1])
    assert any(c.startswith("zfs send -t ") for _, c, _ in SENDS)


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("ds,command,mode", SENDS, ids=["%d" % i for i in range(len(SENDS))])
def test_every_send_a_pulled_migration_asks_runs(run, shell, ds, command, mode):
    p, ran = send_only(run, command, mode, shell, toname=ds + "@s1")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert ran["argv"] == send_words(command)
    assert ran["pid"] is None


S = "zfs send "
SEND_HOSTILE = [
    ("a command", "id"),
    ("a shell", "sh -c id"),
    ("a receive over the sending key", R + "zones/" + U),
    ("a destroy", "zfs destroy -r zones/" + U),
    ("a snapshot", "zfs snapshot zones/%s@x" % U),
    ("a listing", "zfs list -r zones"),
    ("another instance", S + "zones/%s@s1" % OTHER),
    ("another instance's delegated dataset", S + "zones/%s/data@s1" % OTHER),
    ("another instance's kvm disk", S + "zones/%s-disk0@s1" % OTHER),
    ("a name this UUID begins", S + "zones/%s0@s1" % U),
    ("the cores dataset", S + "zones/cores/%s@s1" % U),
    ("the pool replicated", S + "-R zones@s1"),
    ("the instance replicated", S + "-R zones/%s@s1" % U),
    ("-R after -p", S + "-p -R zones/%s@s1" % U),
    ("a raw send", S + "-w zones/%s@s1" % U),
    ("a dedup stream", S + "-D zones/%s@s1" % U),
    ("-I, never sent", S + "-I zones/%s@s0 zones/%s@s1" % (U, U)),
    ("not a snapshot", S + "zones/" + U),
    ("two @", S + "zones/%s@a@b" % U),
    ("a slash in the snapshot", S + "zones/%s@a/../b" % U),
    ("an empty snapshot name", S + "zones/%s@" % U),
    ("a parent reference", S + "zones/%s/../%s@s1" % (U, OTHER)),
    ("two snapshots", S + "zones/%s@s1 zones/%s@s2" % (U, U)),
    ("-i from another instance", S + "-i zones/%s@s1 zones/%s@s2" % (OTHER, U)),
    ("-i from another instance's snapshot, its name", S + "-i zones/%s@final zones/%s@s1"
     % (OTHER, U)),
    ("-i from a dataset", S + "-i zones/%s zones/%s@s1" % (U, U)),
    ("-i with no snapshot", S + "-i zones/%s@s1" % U),
    ("options in another order", S + "-p -vP zones/%s@s1" % U),
    ("an option after the snapshot", S + "zones/%s@s1 -n" % U),
    ("zfs by another path", "/tmp/zfs send zones/%s@s1" % U),
    ("-t with more", S + "-t 1-abc-c0-789c zones/%s@s1" % U),
    ("a semicolon", S + "zones/%s@s1; touch MARK" % U),
    ("&&", S + "zones/%s@s1 && touch MARK" % U),
    ("a pipe", S + "zones/%s@s1 | touch MARK" % U),
    ("$()", S + "zones/%s@s1$(touch MARK)" % U),
    ("backquotes", S + "zones/%s@s1`touch MARK`" % U),
    ("${} expansion", S + "${HOME}zones/%s@s1" % U),
    ("a newline", S + "zones/%s@s1\ntouch MARK" % U),
    ("quotes", S + "'zones/%s@s1'" % U),
    ("an output redirection", S + "zones/%s@s1 > MARK" % U),
    ("an input redirection", S + "zones/%s@s1 < /etc/passwd" % U),
    ("a glob", S + "zones/*@s1"),
    ("a brace expansion", S + "zones/{%s,%s}@s1" % (U, OTHER)),
    ("an equals sign", S + "zones/%s@s1=x" % U),
    ("a variable assignment", "PATH=/tmp " + S + "zones/%s@s1" % U),
    ("nothing", ""),
]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("what,command", SEND_HOSTILE, ids=[h[0] for h in SEND_HOSTILE])
def test_anything_but_a_send_of_its_own_snapshots_is_refused(run, shell, what, command):
    p, ran = send_only(run, command, "resumable", shell)
    assert_refused(p, ran, run.tmp)
    assert "this key only sends the datasets of zones/" + U in p.stderr


@pytest.mark.parametrize("shell", SHELLS)
def test_a_token_is_sent_for_only_if_it_names_its_own_snapshot(run, shell):
    """A token is opaque words: what it resumes is what `zfs send -nv -t`
    says it names (toname), checked before anything is sent."""
    token = S + "-t 1-e3c7bb5d1-c0-789c"
    for toname in ("zones/%s@s1" % OTHER, "zones/%s-disk0@s1" % OTHER, "zones@s1",
                   "zones/" + U, ""):
        p, ran = send_only(run, token, "resumable", shell, toname=toname)
        assert_refused(p, ran, run.tmp)
    # where the link cannot resume, no token is sent for at all
    p, ran = send_only(run, token, "not-resumable", shell)
    assert_refused(p, ran, run.tmp)
    p, ran = send_only(run, token, "resumable", shell)
    assert p.returncode == 0 and ran["argv"] == ["send", "-t", "1-e3c7bb5d1-c0-789c"]


@pytest.mark.parametrize("shell", SHELLS)
def test_an_incremental_from_an_origin_needs_that_origin(run, shell):
    """-i FROM of another dataset: only the dataset's own origin (zfs get
    origin), a clone's image; a dataset that is no clone has none ("-")."""
    command = S + "-i %s zones/%s@s1" % (IMAGE, U)
    p, ran = send_only(run, command, shell=shell, origin="-")
    assert_refused(p, ran, run.tmp)
    p, ran = send_only(run, command, shell=shell, origin=IMAGE)
    assert p.returncode == 0 and ran["argv"] == send_words(command)
