"""The CN data plane of the simulator: the zfs and zpool shims over zfs-fuse,
imgadm, sysinfo, ndd/ipadm, simdc-datadir and the instance workload
(tools/sim/cn/*, tools/sim/simdc/zfslib.py, workload.py).

Everything runs for real on a private compute node: a mount+UTS namespace
with its own zfs-fuse and a small sparse pool `zones`, tools/sim/cn overlaid
on /usr/sbin as on a simulated CN, and a datacenter folder of its own
(SIMDC_DIR in a temporary folder, SIMDC_NET=62).
"""
import contextlib
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SIM = ROOT / "tools" / "sim"
CN = SIM / "cn"
HOST = "zfstest"
HOST_UUID = "8d1f3c2a-6b4e-4f0a-9c7d-2e5f1a3b4c5d"
NET = "62"
# the same pool seen by the zfs of old-server's platform (2015)
OLD_HOST = "zfsold"
OLD_HOST_UUID = "9e2a4d3b-7c5f-4b1a-8d8e-3f6a2b4c5d6e"

sys.path.insert(0, str(SIM))
from simdc import common, zfslib  # noqa: E402


def _have_ns():
    return os.geteuid() == 0 and all(shutil.which(t) for t in ("unshare", "nsenter")) \
        and os.path.exists("/usr/sbin/zfs-fuse") and os.path.exists("/usr/sbin/zfs")


pytestmark = pytest.mark.skipif(not _have_ns(), reason="needs root, unshare, nsenter "
                                "and zfs-fuse")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.%s.5" % NET, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cn(tmp_path_factory):
    """A compute node of our own: namespace, zfs-fuse, pool `zones` at /zones."""
    tmp = tmp_path_factory.mktemp("cn")
    simdir = tmp / "simdc"
    (simdir / "realbin").mkdir(parents=True)
    for b in ("zfs", "zpool"):
        shutil.copy2("/usr/sbin/" + b, simdir / "realbin" / b)
    etc_zones, var_lib = tmp / "etc-zones", tmp / "var-lib-zfs"
    etc_zones.mkdir()
    var_lib.mkdir()
    (etc_zones / "index").write_text("global:installed:/\n")
    (simdir / "hosts.json").write_text(json.dumps({HOST: {
        "uuid": HOST_UUID, "admin_ip": "127.0.%s.11" % NET, "platform": common.PLATFORM,
        "ram_mb": 8192, "headnode": False}, OLD_HOST: {
        "uuid": OLD_HOST_UUID, "admin_ip": "127.0.%s.14" % NET,
        "platform": common.OLD_PLATFORM, "ram_mb": 8192, "headnode": False}}))
    for d in ("/var/run/zfs", "/var/lock/zfs", "/var/lib/zfs", "/etc/zones", "/zones"):
        os.makedirs(d, exist_ok=True)
    setup = "; ".join([
        "set -e", "mount --make-rprivate /", "hostname " + HOST,
        "mount -t tmpfs tmpfs /var/run/zfs", "mount -t tmpfs tmpfs /var/lock/zfs",
        "mount --bind %s /var/lib/zfs" % var_lib, "mount --bind %s /etc/zones" % etc_zones,
        # /zones is the CN's own: the pool mounts there, nothing lands on the host's
        "mount -t tmpfs tmpfs /zones",
        "mount -t overlay overlay -o lowerdir=%s:/usr/sbin /usr/sbin" % CN,
        "touch %s/ready" % tmp, "exec sleep infinity"])
    api_port = _free_port()
    env = dict(os.environ, SIMDC_DIR=str(simdir), SIMDC_NET=NET, SIMDC_HOST=HOST,
               SIMDC_API_PORT=str(api_port), PYTHONPATH=str(SIM), PATH=common.CN_PATH)
    for k in ("SIMDC_FAULT_AFTER_BYTES", "SIMDC_FAULT_EXIT", "SIMDC_WORKLOAD_CHURN_KB"):
        env.pop(k, None)
    holder = subprocess.Popen(["unshare", "--mount", "--uts", "--propagation", "private",
                               "--", "sh", "-c", setup], stdin=subprocess.DEVNULL,
                              start_new_session=True)
    pids = [holder.pid]
    ns = ["nsenter", "-t", str(holder.pid), "-m", "-u", "--"]

    def run(*argv, input=None, check=True, env_extra=None):
        e = dict(env, **(env_extra or {}))
        p = subprocess.run(ns + [str(a) for a in argv], env=e, input=input, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
        if check and p.returncode:
            raise AssertionError("%s: rc %d\n%s%s" % (" ".join(map(str, argv)),
                                                      p.returncode, p.stdout, p.stderr))
        return p

    def sh(script, check=True):
        return run("bash", "-c", script, check=check)

    realzfs = str(simdir / "realbin" / "zfs")
    try:
        deadline = time.time() + 10
        while not (tmp / "ready").exists():
            assert holder.poll() is None and time.time() < deadline, "namespace did not start"
            time.sleep(0.02)
        daemon = subprocess.Popen(ns + ["/usr/sbin/zfs-fuse", "--no-daemon", "--no-kstat-mount",
                                        "--max-arc-size", "128",
                                        "--pidfile", "/var/run/zfs/zfs-fuse.pid"],
                                  env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        pids.append(daemon.pid)
        zpool = str(simdir / "realbin" / "zpool")
        deadline = time.time() + 20
        # A create that races the daemon's start leaves a FAULTED pool: wait.
        while run(zpool, "list", check=False).returncode:
            assert time.time() < deadline, "zfs-fuse did not answer"
            time.sleep(0.1)
        img = tmp / "zones.img"
        with open(img, "w") as f:
            f.truncate(1 << 30)
        run(zpool, "create", "-f", "-m", "/zones", "zones", img)
        run(realzfs, "set", "compression=off", "zones")
        yield types.SimpleNamespace(run=run, sh=sh, env=env, simdir=simdir, tmp=tmp,
                                    etc_zones=etc_zones, realzfs=realzfs, api_port=api_port,
                                    holder_pid=holder.pid)
    finally:
        with contextlib.suppress(Exception):
            for f in (simdir / "pids").glob("workload-*.pid"):
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(f.read_text().split()[0]), 15)
        with contextlib.suppress(Exception):
            run(simdir / "realbin" / "zpool", "export", "-f", "zones", check=False)
        for pid in reversed(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 15)
            with contextlib.suppress(ChildProcessError):
                deadline = time.time() + 10
                while os.waitpid(pid, os.WNOHANG) == (0, 0):
                    if time.time() > deadline:
                        os.kill(pid, 9)
                        os.waitpid(pid, 0)
                        break
                    time.sleep(0.05)


def fill(cn, path, mib, offset_mib=0):
    cn.run("dd", "if=/dev/urandom", "of=" + path, "bs=1M", "count=%d" % mib,
           "seek=%d" % offset_mib, "conv=notrunc", "status=none")


def real_props(cn, props, *names, recursive=False):
    args = ["get", "-Hp", "-o", "name,property,value"] + (["-r"] if recursive else [])
    out = cn.run(cn.realzfs, *args, ",".join(props), *names).stdout
    table = {}
    for line in out.splitlines():
        name, prop, value = line.split("\t")
        table.setdefault(name, {})[prop] = value
    return table


@pytest.fixture(scope="module")
def src(cn):
    """zones/src with two snapshots: @one (8 MiB) and @two (3 MiB rewritten, 2 MiB added)."""
    cn.run("zfs", "create", "zones/src")
    fill(cn, "/zones/src/data", 8)
    cn.run("zfs", "snapshot", "zones/src@one")
    fill(cn, "/zones/src/data", 3, offset_mib=2)
    fill(cn, "/zones/src/more", 2)
    cn.run("zfs", "snapshot", "zones/src@two")
    return "zones/src"


# ---- list / get ----------------------------------------------------------------

def test_list_p_numbers_equal_zfs_get(cn, src):
    cols = ["used", "available", "referenced", "quota", "refquota", "creation", "guid",
            "usedbysnapshots", "usedbydataset"]
    out = cn.run("zfs", "list", "-Hp", "-t", "all", "-r", "-o", "name," + ",".join(cols),
                 "zones").stdout
    real = real_props(cn, cols, "zones", recursive=True)
    rows = [line.split("\t") for line in out.splitlines()]
    assert [r[0] for r in rows][:4] == ["zones", "zones/src", "zones/src@one", "zones/src@two"]
    for row in rows:
        for col, value in zip(cols, row[1:]):
            assert value == real[row[0]][col], (row[0], col)
    # without -p: zfs(8)'s columns and numbers
    out = cn.run("zfs", "list", "-r", "zones/src").stdout.splitlines()
    assert re.match(r"^NAME +USED +AVAIL +REFER +MOUNTPOINT$", out[0])
    assert re.match(r"^zones/src +\d+(\.\d+)?M +\d+(\.\d+)?[MG] +\d+(\.\d+)?M +/zones/src$",
                    out[1])
    # -t snapshot with a filesystem lists its snapshots; -s/-S sort
    snaps = cn.run("zfs", "list", "-H", "-t", "snapshot", "-o", "name", "-S", "creation",
                   "-s", "name", src).stdout.split()
    assert sorted(snaps) == ["zones/src@one", "zones/src@two"]
    assert cn.run("zfs", "list", "-Hp", "-d", "0", "-o", "name", src).stdout == "zones/src\n"
    # `written`: what a snapshot adds to its predecessor, about what the data says
    w = dict(line.split("\t") for line in cn.run(
        "zfs", "list", "-Hp", "-t", "snapshot", "-o", "name,written", src).stdout.splitlines())
    assert 7 << 20 < int(w["zones/src@one"]) < 10 << 20
    assert 4 << 20 < int(w["zones/src@two"]) < 7 << 20
    bad = cn.run("zfs", "list", "-o", "name,bogus", check=False)
    assert bad.returncode == 2 and "bad property list: invalid property 'bogus'" in bad.stderr
    missing = cn.run("zfs", "list", "zones/nonexistent", check=False)
    assert missing.returncode == 1
    assert "cannot open 'zones/nonexistent': dataset does not exist" in missing.stderr


def test_get_exact_and_human(cn, src):
    got = cn.run("zfs", "get", "-Hp", "-o", "name,property,value,source",
                 "used,referenced,guid,written", src).stdout.splitlines()
    real = real_props(cn, ["used", "referenced", "guid"], src)[src]
    cells = {line.split("\t")[1]: line.split("\t") for line in got}
    for prop in ("used", "referenced", "guid"):
        assert cells[prop][2] == real[prop]
    assert cells["written"][2] == "0"      # nothing since @two
    human = cn.run("zfs", "get", "quota,mountpoint", src).stdout.splitlines()
    assert re.match(r"^NAME +PROPERTY +VALUE +SOURCE$", human[0])
    assert re.match(r"^zones/src +quota +none +default$", human[1])
    allprops = cn.run("zfs", "get", "-H", "-o", "property", "all", src).stdout.split()
    assert {"type", "used", "mountpoint", "guid", "written"} <= set(allprops)
    assert not [p for p in allprops if p.startswith("simdc:")]


# ---- volumes -------------------------------------------------------------------

def test_volumes_report_type_and_volsize(cn):
    cn.run("zfs", "create", "-V", "64M", "zones/vol0")
    out = cn.run("zfs", "list", "-Hp", "-o", "name,type,volsize,volblocksize,mountpoint",
                 "zones/vol0").stdout
    assert out == "zones/vol0\tvolume\t%d\t8192\t-\n" % (64 << 20)
    assert cn.run("zfs", "get", "-H", "-o", "value", "type,volsize", "zones/vol0").stdout == \
        "volume\n64M\n"
    # its data lives in the (real) mountpoint, for a kvm/bhyve disk0 workload
    mp = cn.run(cn.realzfs, "get", "-H", "-o", "value", "mountpoint", "zones/vol0").stdout.strip()
    cn.run("sh", "-c", "echo disk-data > %s/blob && cat %s/blob" % (mp, mp))
    cn.run("zfs", "snapshot", "zones/vol0@final")
    cn.run("zfs", "clone", "-o", "volsize=128M", "zones/vol0@final", "zones/vol1")
    assert cn.run("zfs", "list", "-Hp", "-o", "type,volsize,origin", "zones/vol1").stdout == \
        "volume\t%d\tzones/vol0@final\n" % (128 << 20)
    cn.run("zfs", "set", "volsize=96M", "zones/vol1")
    assert cn.run("zfs", "get", "-Hp", "-o", "value", "volsize", "zones/vol1").stdout == \
        "%d\n" % (96 << 20)
    r = cn.run("zfs", "set", "volsize=1G", "zones", check=False)
    assert r.returncode == 1 and "'volsize' does not apply to datasets of this type" in r.stderr
    r = cn.run("zfs", "create", "-V", "1000", "zones/odd", check=False)
    assert r.returncode == 1 and "multiple of volume block size" in r.stderr
    # a volume sent and received is still a volume
    cn.sh("zfs send zones/vol0@final | zfs recv zones/vol2")
    assert cn.run("zfs", "list", "-Hp", "-o", "type,volsize", "zones/vol2").stdout == \
        "volume\t%d\n" % (64 << 20)


# ---- send / receive --------------------------------------------------------------

def parse_send_lines(text):
    lines = text.splitlines()
    head = [l.split("\t") for l in lines if l.startswith(("full\t", "incremental\t"))]
    size = [int(l.split("\t")[1]) for l in lines if l.startswith("size\t")]
    ticks = [l.split("\t") for l in lines if re.match(r"^\d\d:\d\d:\d\d\t\d+\t\S+@\S+$", l)]
    return head, size, ticks


def guid(cn, name):
    return cn.run(cn.realzfs, "get", "-Hp", "-o", "value", "guid", name).stdout.strip()


def test_send_vP_progress_and_receive_keeps_guids(cn, src):
    actual_full = int(cn.sh("zfs send %s@one | wc -c" % src).stdout)
    # A slow reader makes the send last over a second: per-second lines.
    err = cn.tmp / "send.err"
    p = cn.sh("zfs send -vP %s@one 2>%s | (sleep 1.3; cat) | zfs recv zones/copy;"
              " cat %s >&2" % (src, err, err))
    head, size, ticks = parse_send_lines(p.stderr)
    assert head[0][:2] == ["full", "zones/src@one"]
    est = int(head[0][2])
    assert size == [est] and abs(est - actual_full) < actual_full * 0.05
    assert ticks and all(t[2] == "zones/src@one" and 0 < int(t[1]) <= actual_full
                         for t in ticks)
    assert guid(cn, "zones/copy@one") == guid(cn, "zones/src@one")
    # incremental, short and full names of the source snapshot
    actual_inc = int(cn.sh("zfs send -i one %s@two | wc -c" % src).stdout)
    p = cn.sh("zfs send -P -i zones/src@one %s@two | zfs recv zones/copy" % src)
    head, size, ticks = parse_send_lines(p.stderr)
    assert head == [["incremental", "one", "zones/src@two", str(size[0])]] and not ticks
    assert abs(size[0] - actual_inc) < actual_inc * 0.25
    assert guid(cn, "zones/copy@two") == guid(cn, "zones/src@two")
    # -n: the estimate on stdout, nothing sent
    p = cn.run("zfs", "send", "-nvP", "-i", "@one", src + "@two")
    assert p.stdout.splitlines()[0].startswith("incremental\tone\tzones/src@two\t")
    assert p.stdout.splitlines()[-1].startswith("size\t")
    human = cn.run("zfs", "send", "-nv", src + "@one").stdout.splitlines()
    assert re.match(r"^full send of zones/src@one estimated size is \d+(\.\d+)?M$", human[0])
    assert re.match(r"^total estimated size is \d+(\.\d+)?M$", human[1])
    # -I, -R and a receive into an existing filesystem with -F
    p = cn.sh("zfs send -RvP -I @one %s@two 2>%s >/dev/null; cat %s" % (src, err, err))
    head = parse_send_lines(p.stdout)[0]
    assert head == [["incremental", "one", "zones/src@two", head[0][3]]]
    cn.sh("zfs send %s@one | zfs recv -F zones/copy2" % src)
    cn.sh("zfs send -I @one %s@two | zfs recv -F zones/copy2" % src)
    assert guid(cn, "zones/copy2@two") == guid(cn, "zones/src@two")


def test_clone_sends_from_its_origin(cn, src):
    cn.run("zfs", "clone", src + "@one", "zones/inst")
    fill(cn, "/zones/inst/own", 1)
    cn.run("zfs", "snapshot", "zones/inst@m1")
    p = cn.run("zfs", "send", "-nP", "-i", src + "@one", "zones/inst@m1")
    # illumos shows a send from the origin as "full" with the clone's own size
    line = p.stdout.splitlines()[0].split("\t")
    assert line[:2] == ["full", "zones/inst@m1"] and int(line[2]) < 2 << 20
    cn.sh("zfs send -i %s@one zones/inst@m1 | zfs recv zones/inst2" % src)
    # the receive finds the origin by GUID (any copy of zones/src@one will do)
    origin = cn.run("zfs", "list", "-H", "-o", "origin", "zones/inst2").stdout.strip()
    assert guid(cn, origin) == guid(cn, src + "@one")


def test_options_an_old_zfs_lacks(cn, src):
    # (-w is there: a platform with encrypted pools has raw sends, see
    # test_an_encrypted_pool_sends_properties_only_raw)
    for argv in (["send", "-c", src + "@one"],):
        p = cn.run("zfs", *argv, check=False, input="")
        assert p.returncode == 2, argv
        assert p.stderr.startswith("invalid option '%s'\nusage:\n" % argv[1][1]), p.stderr
    # resumable receives are emulated (see below); a bad token is refused
    p = cn.run("zfs", "send", "-t", "1-abc-def", check=False)
    assert p.returncode == 1 and "resume token is corrupt" in p.stderr
    assert cn.run("zfs", "get", "-H", "-o", "value", "receive_resume_token",
                  src).stdout == "-\n"
    p = cn.run("zfs", "send", "-i", "zones/other@x", src + "@two", check=False)
    assert p.returncode == 2 and "incremental source must be in same filesystem" in p.stderr


def test_a_platform_before_resumable_receives_refuses_them(cn, src):
    """The zfs of a platform before illumos 2605 (usr/src/cmd/zfs/zfs_main.c at
    openzfs 9c3fd1216f^): getopt ":o:denuvF" for receive, "i:I:RDpPvneL"-ish
    for send, so -s, -A, -x and -t are invalid options (usage, exit 2), and
    receive_resume_token is no property of it; a plain receive works."""
    old = {"SIMDC_HOST": OLD_HOST}
    p = cn.run("zfs", "recv", "-s", "-u", "zones/old", input="", check=False, env_extra=old)
    assert p.returncode == 2
    assert p.stderr == ("invalid option 's'\nusage:\n\treceive [-vnFu] <filesystem|volume|"
                        "snapshot>\n\treceive [-vnFu] [-o origin=<snapshot>] [-d | -e] "
                        "<filesystem>\n")
    for argv in (["recv", "-A", "zones/old"], ["recv", "-x", "encryption", "zones/old"]):
        p = cn.run("zfs", *argv, input="", check=False, env_extra=old)
        assert p.returncode == 2 and p.stderr.startswith(
            "invalid option '%s'\nusage:\n\treceive [-vnFu]" % argv[1][1]), p.stderr
    p = cn.run("zfs", "send", "-t", "1-abc-def", check=False, env_extra=old)
    assert p.returncode == 2 and p.stderr.startswith(
        "invalid option 't'\nusage:\n\tsend [-DnPpRvLe] [-[iI] snapshot] <snapshot>\n")
    p = cn.run("zfs", "get", "-H", "-o", "value", "receive_resume_token", src,
               check=False, env_extra=old)
    assert p.returncode == 2
    assert p.stderr.startswith("bad property list: invalid property 'receive_resume_token'\n")
    cn.sh("zfs send %s@one | SIMDC_HOST=%s zfs recv -u zones/old" % (src, OLD_HOST))
    guids = real_props(cn, ["guid"], src + "@one", "zones/old@one")
    assert guids[src + "@one"] == guids["zones/old@one"]
    cn.run("zfs", "destroy", "-r", "zones/old")


def write_fault(cn, prefix, after_bytes, exit):
    (cn.simdir / "faults.json").write_text(json.dumps([
        {"host": HOST, "prefix": prefix, "times": 1, "after_bytes": after_bytes,
         "exit": exit}]))


def names(cn):
    return cn.run("zfs", "list", "-H", "-t", "all", "-o", "name").stdout.split()


def test_faults_cut_the_stream_and_leave_nothing(cn, src):
    write_fault(cn, ["zfs", "send"], 100000, 7)
    p = cn.sh("zfs send %s@one | wc -c; echo ${PIPESTATUS[0]}" % src)
    assert p.stdout.split() == ["100000", "7"]
    write_fault(cn, ["zfs", "send"], 300000, 7)
    p = cn.sh("zfs send %s@one | zfs recv zones/cut; echo ${PIPESTATUS[@]}" % src,
              check=False)
    assert p.stdout.split() == ["7", "1"]
    assert "zones/cut" not in names(cn)
    write_fault(cn, ["zfs", "recv"], 200000, 9)
    p = cn.sh("zfs send %s@one | zfs recv zones/cut2; echo ${PIPESTATUS[1]}" % src,
              check=False)
    assert p.stdout.split()[-1] == "9"
    assert not [n for n in names(cn) if n.startswith("zones/cut2")]
    # a cut incremental receive leaves the target as it was
    cn.sh("zfs send %s@one | zfs recv zones/cut3" % src)
    write_fault(cn, ["zfs", "receive"], 50000, 9)
    p = cn.sh("zfs send -i @one %s@two | zfs receive zones/cut3; echo ${PIPESTATUS[1]}"
              % src, check=False)
    assert p.stdout.split()[-1] == "9"
    assert [n for n in names(cn) if n.startswith("zones/cut3")] == \
        ["zones/cut3", "zones/cut3@one"]
    assert json.loads((cn.simdir / "faults.json").read_text()) == []
    logged = [json.loads(l) for l in (cn.simdir / "log.jsonl").read_text().splitlines()]
    assert any(r["host"] == HOST and r["rc"] == 9 and r["argv"][:2] == ["zfs", "receive"]
               for r in logged)


def test_recv_u_and_e(cn, src):
    cn.sh("zfs send %s@one | zfs recv -u zones/unmounted" % src)
    assert cn.run(cn.realzfs, "get", "-H", "-o", "value", "mounted",
                  "zones/unmounted").stdout == "no\n"
    cn.run("zfs", "create", "zones/parent")
    cn.sh("zfs send %s@one | zfs recv -e zones/parent" % src)
    assert "zones/parent/src@one" in names(cn)


def test_an_encrypted_pool_refuses_a_stream_with_properties_unless_x_encryption(cn, src):
    """illumos libzfs_sendrecv.c zfs_receive_one: a new filesystem from a -p
    stream under an encrypted parent needs -x (or -o) encryption. The streams
    come from an unencrypted pool: sent before this one is marked encrypted."""
    flag = cn.simdir / "hosts" / HOST / "pool-encryption"
    flag.parent.mkdir(parents=True, exist_ok=True)
    assert cn.run("zfs", "get", "-H", "-o", "value", "encryption", "zones").stdout == "off\n"
    plain, props = cn.tmp / "plain.zfs", cn.tmp / "props.zfs"
    cn.sh("zfs send %s@one > %s && zfs send -p %s@one > %s" % (src, plain, src, props))
    flag.write_text("aes-256-gcm\n")
    try:
        assert cn.run("zfs", "get", "-H", "-o", "value", "encryption",
                      src).stdout == "aes-256-gcm\n"
        p = cn.sh("zfs recv zones/enc1 < %s" % props, check=False)
        assert p.returncode == 1
        assert p.stderr.startswith("cannot receive new filesystem stream: parent 'zones' must "
                                   "not be encrypted to receive unenecrypted property\n")
        assert "zones/enc1" not in names(cn)
        cn.sh("zfs recv zones/enc2 < %s" % plain)
        cn.sh("zfs recv -x encryption zones/enc3 < %s" % props)
        assert {"zones/enc2@one", "zones/enc3@one"} <= set(names(cn))
        p = cn.run("zfs", "recv", "-x", input="", check=False)
        assert p.returncode == 2 and "missing argument for 'x' option" in p.stderr
    finally:
        flag.unlink()
        plain.unlink()
        props.unlink()
    for fs in ("zones/enc2", "zones/enc3"):
        cn.run("zfs", "destroy", "-r", fs)


def test_an_encrypted_pool_sends_properties_only_raw(cn, src):
    """illumos-joyent usr/src/lib/libzfs/common/libzfs_sendrecv.c send_iterate_fs:
    a stream with properties (-p, -R) of an encrypted dataset is refused
    without the raw flag, before any byte or estimate is written (zfs_send
    returns the error, zfs exits 1); -w sends it, and a plain or -I stream
    (no properties) is sent as ever."""
    flag = cn.simdir / "hosts" / HOST / "pool-encryption"
    flag.parent.mkdir(parents=True, exist_ok=True)
    flag.write_text("aes-256-gcm\n")
    try:
        for opts in (["-p"], ["-R"], ["-p", "-i", "@one"], ["-nvP", "-p"]):
            p = cn.sh("zfs send %s %s@two | wc -c; exit ${PIPESTATUS[0]}"
                      % (" ".join(opts), src), check=False)
            assert p.returncode == 1 and p.stdout == "0\n", opts
            assert p.stderr == ("cannot send %s@two: encrypted dataset %s may not be sent with"
                                " properties without the raw flag\n" % (src, src)), opts
        # without properties, or raw, it is sent
        for opts in ("", "-I @one", "-w -p", "-wR"):
            p = cn.sh("zfs send %s %s@two | wc -c" % (opts, src))
            assert int(p.stdout) > 1 << 20, opts
    finally:
        flag.unlink()
    assert int(cn.sh("zfs send -p %s@two | wc -c" % src).stdout) > 1 << 20


def test_a_cut_resumable_receive_resumes_with_only_the_rest(cn, src):
    """zfs recv -s keeps what a cut stream brought and shows receive_resume_token;
    zfs send -t TOKEN sends only the rest (-nv: the token's contents and the
    estimate on stderr, as illumos zfs_send_resume prints them)."""
    full = int(cn.sh("zfs send %s@one | wc -c" % src).stdout)
    cut = 3 << 20
    p = cn.sh("zfs send %s@one | zfs recv -s zones/res" % src, check=False)
    assert p.returncode == 0
    cn.run("zfs", "destroy", "-r", "zones/res")
    p = cn.run("sh", "-c", "zfs send %s@one | SIMDC_FAULT_AFTER_BYTES=%d zfs recv -s zones/res"
               % (src, cut), check=False)
    assert p.returncode != 0
    token = cn.run("zfs", "get", "-H", "-o", "value", "receive_resume_token",
                   "zones/res").stdout.strip()
    assert re.match(r"^1-[0-9a-f]+-[0-9a-f]+-[0-9a-f]+$", token), token
    p = cn.run("zfs", "send", "-nvP", "-t", token)
    assert p.stdout == ""
    assert p.stderr.startswith("resume token contents:\nnvlist version: 0\n")
    assert "\ttoname = %s@one\n" % src in p.stderr
    size = int([l for l in p.stderr.splitlines() if l.startswith("full\t")][0].split("\t")[2])
    assert 0 < size < full - cut + (1 << 20)
    # a whole stream is refused while the partial state is there
    p = cn.sh("zfs send %s@one | zfs recv -s zones/res" % src, check=False)
    assert p.returncode == 1 and 'partially-complete state from "zfs receive -s"' in p.stderr
    rest = int(cn.sh("zfs send -t %s | wc -c" % token).stdout)
    assert full - cut <= rest < full - cut + 4096
    cn.sh("zfs send -t %s | zfs recv -s zones/res" % token)
    guids = real_props(cn, ["guid"], src + "@one", "zones/res@one")
    assert guids[src + "@one"] == guids["zones/res@one"]
    assert cn.run("zfs", "get", "-H", "-o", "value", "receive_resume_token",
                  "zones/res").stdout == "-\n"
    # recv -A: a cut receive's state thrown away
    cn.run("sh", "-c", "zfs send -i one %s@two | SIMDC_FAULT_AFTER_BYTES=65536 zfs recv -s "
           "zones/res" % src, check=False)
    assert cn.run("zfs", "get", "-H", "-o", "value", "receive_resume_token",
                  "zones/res").stdout != "-\n"
    cn.run("zfs", "recv", "-A", "zones/res")
    p = cn.run("zfs", "recv", "-A", "zones/res", check=False)
    assert p.returncode == 1 and "does not have any resumable receive state" in p.stderr
    cn.sh("zfs send -i one %s@two | zfs recv -s zones/res" % src)
    cn.run("zfs", "destroy", "-r", "zones/res")


def test_a_cut_p_stream_resumes_in_its_object_stream(cn, src):
    """A -p stream carries the filesystem's properties and snapshot list ahead
    of the object stream; the token's toname and offset are the object
    stream's (the kernel writes the token: illumos dmu_recv), so a snapshot
    taken between the cut and the resume changes nothing."""
    cn.run("sh", "-c", "zfs send -p %s@one | SIMDC_FAULT_AFTER_BYTES=%d zfs recv -s zones/resp"
           % (src, 1 << 20), check=False)
    token = cn.run("zfs", "get", "-H", "-o", "value", "receive_resume_token",
                   "zones/resp").stdout.strip()
    assert "\ttoname = %s@one\n" % src in cn.run("zfs", "send", "-nv", "-t", token).stderr
    cn.run("zfs", "snapshot", src + "@between")
    try:
        cn.sh("zfs send -t %s | zfs recv -s zones/resp" % token)
    finally:
        cn.run("zfs", "destroy", src + "@between")
    guids = real_props(cn, ["guid"], src + "@one", "zones/resp@one")
    assert guids[src + "@one"] == guids["zones/resp@one"]
    cn.run("zfs", "destroy", "-r", "zones/resp")


# ---- destroy -----------------------------------------------------------------------

def test_destroy_unmounts_and_refuses_busy(cn):
    cn.run("zfs", "create", "-p", "zones/gone/child")
    cn.run("zfs", "snapshot", "-r", "zones/gone@s")
    p = cn.run("zfs", "destroy", "-nv", "-r", "zones/gone")
    assert "would destroy zones/gone/child" in p.stdout
    cn.run("zfs", "destroy", "-r", "zones/gone")
    assert not [n for n in names(cn) if n.startswith("zones/gone")]
    cn.run("zfs", "create", "zones/busy")
    holder = subprocess.Popen(["nsenter", "-t", str(cn.holder_pid), "-m", "--",
                               "sh", "-c", "exec 3>/zones/busy/f; sleep 1.5"])
    try:
        time.sleep(0.3)
        p = cn.run("zfs", "destroy", "-f", "zones/busy", check=False)
        assert p.returncode == 1 and "busy" in p.stderr
    finally:
        holder.wait()
    cn.run("zfs", "destroy", "zones/busy")
    assert "zones/busy" not in names(cn)
    # a multi-snapshot create is all or nothing
    cn.run("zfs", "create", "zones/m")
    r = cn.run("zfs", "snapshot", "zones/m@a", "zones/nonexistent@a", check=False)
    assert r.returncode == 1 and "zones/m@a" not in names(cn)


def test_holds_keep_a_snapshot_until_released(cn):
    """zfs hold/holds/release as illumos' zfs(8) has them; a held snapshot, and a
    dataset with one, are not destroyed (libzfs_dataset.c zfs_destroy_snaps_nvl:
    "cannot destroy snapshot NAME: dataset is busy")."""
    cn.run("zfs", "create", "zones/kept")
    cn.run("zfs", "snapshot", "zones/kept@indestructible")
    cn.run("zfs", "hold", "do_not_destroy", "zones/kept@indestructible")
    p = cn.run("zfs", "hold", "do_not_destroy", "zones/kept@indestructible", check=False)
    assert p.returncode == 1 and "tag already exists" in p.stderr
    out = cn.run("zfs", "holds", "-H", "zones/kept@indestructible").stdout
    name, tag, stamp = out.rstrip("\n").split("\t")
    assert (name, tag) == ("zones/kept@indestructible", "do_not_destroy")
    assert re.match(r"^\w{3} \w{3} [ \d]\d \d\d:\d\d \d{4}$", stamp)
    for argv in (["zones/kept@indestructible"], ["-r", "zones/kept"]):
        p = cn.run("zfs", "destroy", *argv, check=False)
        assert (p.returncode, p.stderr) == (
            1, "cannot destroy snapshot zones/kept@indestructible: dataset is busy\n")
    assert "zones/kept@indestructible" in names(cn)
    p = cn.run("zfs", "release", "other", "zones/kept@indestructible", check=False)
    assert p.returncode == 1 and "no such tag" in p.stderr
    cn.run("zfs", "release", "do_not_destroy", "zones/kept@indestructible")
    assert cn.run("zfs", "holds", "-H", "zones/kept@indestructible").stdout == ""
    cn.run("zfs", "destroy", "-r", "zones/kept")
    assert not [n for n in names(cn) if n.startswith("zones/kept")]


def snapshots_of(cn, top):
    return [n for n in names(cn) if n == top or n.startswith((top + "/", top + "@"))]


def test_a_failing_destroy_says_what_illumos_says_and_destroys_what_illumos_does(cn):
    """zfs destroy that fails, as illumos-joyent's usr/src/cmd/zfs/zfs_main.c
    zfs_do_destroy runs it. A held snapshot: the snapshots of a batch go in one
    lzc_destroy_snaps (lib/libzfs_core/common/libzfs_core.c: with a hold "none
    of the snapshots will be destroyed"), one "cannot destroy snapshot NAME:
    dataset is busy" each (lib/libzfs/common/libzfs_dataset.c
    zfs_destroy_snaps_nvl), exit 1; with -r the dependents go first, child
    before parent (destroy_callback), so what comes before the held one is
    gone and the rest stays. zfs-fuse destroyed the unheld ones of a batch."""
    cn.run("zfs", "create", "zones/hh")
    for snap in ("a", "held", "z"):
        cn.run("zfs", "snapshot", "zones/hh@" + snap)
    cn.run("zfs", "hold", "keep", "zones/hh@held")
    every = snapshots_of(cn, "zones/hh")
    for argv in (["-r", "zones/hh"], ["zones/hh@a,held,z"], ["zones/hh@a%z"]):
        p = cn.run("zfs", "destroy", *argv, check=False)
        assert (p.returncode, p.stderr) == (
            1, "cannot destroy snapshot zones/hh@held: dataset is busy\n"), argv
        assert snapshots_of(cn, "zones/hh") == every, argv
    # a tree: the children before the parent, the first failing batch ends it
    for fs in ("zones/tree", "zones/tree/a", "zones/tree/b", "zones/tree/c"):
        cn.run("zfs", "create", fs)
    cn.run("zfs", "snapshot", "-r", "zones/tree@s")
    cn.run("zfs", "hold", "keep", "zones/tree/b@s")
    p = cn.run("zfs", "destroy", "-r", "zones/tree", check=False)
    assert (p.returncode, p.stderr) == (
        1, "cannot destroy snapshot zones/tree/b@s: dataset is busy\n")
    assert snapshots_of(cn, "zones/tree") == [
        "zones/tree", "zones/tree@s", "zones/tree/b", "zones/tree/b@s", "zones/tree/c",
        "zones/tree/c@s"]
    for snap in ("zones/hh@held", "zones/tree/b@s"):
        cn.run("zfs", "release", "keep", snap)
    cn.run("zfs", "destroy", "-r", "zones/hh")
    cn.run("zfs", "destroy", "-r", "zones/tree")
    assert snapshots_of(cn, "zones/hh") == snapshots_of(cn, "zones/tree") == []


def test_destroy_refuses_a_dataset_with_dependent_clones_and_destroys_nothing(cn):
    """zfs_main.c destroy_check_dependent, before anything is destroyed:
    "cannot destroy 'NAME': filesystem|snapshot has dependent clones", "use '-R'
    to destroy the following datasets:", each clone, exit 1 (zfs-fuse's own
    refusal, passed through)."""
    cn.run("zfs", "create", "zones/orig")
    cn.run("zfs", "snapshot", "zones/orig@s")
    cn.run("zfs", "clone", "zones/orig@s", "zones/theclone")
    for target, kind in (("zones/orig", "filesystem"), ("zones/orig@s", "snapshot")):
        p = cn.run("zfs", "destroy", "-r", target, check=False)
        assert (p.returncode, p.stderr) == (1, (
            "cannot destroy '%s': %s has dependent clones\n"
            "use '-R' to destroy the following datasets:\nzones/theclone\n" % (target, kind)))
        assert {"zones/orig", "zones/orig@s", "zones/theclone"} <= set(names(cn))
    cn.run("zfs", "destroy", "-R", "zones/orig")
    assert not {"zones/orig", "zones/theclone"} & set(names(cn))


# ---- zpool, sysinfo, ndd/ipadm ---------------------------------------------------------

def test_zpool_list_parsable(cn):
    out = cn.run("zpool", "list", "-Hp", "-o", "name,size,alloc,free").stdout.split("\t")
    name, size, alloc, free = out[0], int(out[1]), int(out[2]), int(out[3])
    assert name == "zones" and 900 << 20 < size <= 1 << 30 and size == alloc + free
    assert cn.run("zpool", "status", "zones").returncode == 0


def test_sysinfo(cn):
    info = json.loads(cn.run("sysinfo").stdout)
    assert info["UUID"] == HOST_UUID and info["Hostname"] == HOST
    assert info["Live Image"] == common.platform_of(HOST)
    assert info["System Type"] == "SunOS" and info["SDC Version"] == common.SDC_VERSION
    assert info["MiB of Memory"] == "8192" and info["Datacenter Name"] == common.DATACENTER
    assert info["Admin IP"] == "127.0.%s.11" % NET and info["Zpool"] == "zones"
    assert isinstance(info["Zpool Size in GiB"], int)
    assert "headnode" not in info["Boot Parameters"]
    admin = [n for n in info["Network Interfaces"].values() if "admin" in n["NIC Names"]]
    assert admin[0]["ip4addr"] == "127.0.%s.11" % NET
    parsable = cn.run("sysinfo", "-p").stdout.splitlines()
    assert "UUID='%s'" % HOST_UUID in parsable and "Admin_IP='127.0.%s.11'" % NET in parsable
    assert all(re.match(r"^[A-Za-z0-9_]+=('.*'|[0-9]+)$", l) for l in parsable)


def test_sysinfo_says_what_placement_reads(cn):
    """smartos-live src/sysinfo: "Bhyve Capable", "Bhyve Max Vcpus" and "HVM API"
    (get_bhyve_capability: all three from bhhwcompat; false, 0, false where it
    fails), "Zpool Encrypted" (true unless the pool's encryption is off), the
    CPU counts sdc-designation hard-filter-hvm.js caps vcpus with; in -p,
    Bhyve_Max_Vcpus bare and no Zpool_Encrypted line."""
    hosts_json = cn.simdir / "hosts.json"
    saved = hosts_json.read_text()
    flag = cn.simdir / "hosts" / HOST / "pool-encryption"
    flag.parent.mkdir(parents=True, exist_ok=True)
    try:
        info = json.loads(cn.run("sysinfo").stdout)
        assert (info["Bhyve Capable"], info["Bhyve Max Vcpus"], info["HVM API"],
                info["Zpool Encrypted"]) == (True, 32, True, False)
        assert info["CPU Online Count"] == info["CPU Total Cores"] >= 1
        parsable = cn.run("sysinfo", "-p").stdout.splitlines()
        assert {"Bhyve_Capable='true'", "Bhyve_Max_Vcpus=32", "HVM_API='true'"} <= set(parsable)
        assert not [l for l in parsable if l.startswith("Zpool_Encrypted")]
        flag.write_text("aes-256-gcm\n")
        hosts = json.loads(saved)
        hosts[HOST]["capabilities"] = {"Bhyve Capable": False}
        hosts_json.write_text(json.dumps(hosts))
        info = json.loads(cn.run("sysinfo").stdout)
        assert (info["Bhyve Capable"], info["Bhyve Max Vcpus"], info["HVM API"],
                info["Zpool Encrypted"]) == (False, 0, False, True)
        # a platform with bhyve from before HVM API
        hosts[HOST]["capabilities"] = {"HVM API": False, "Bhyve Max Vcpus": 16}
        hosts_json.write_text(json.dumps(hosts))
        info = json.loads(cn.run("sysinfo").stdout)
        assert (info["Bhyve Capable"], info["Bhyve Max Vcpus"], info["HVM API"]) == \
            (True, 16, False)
    finally:
        hosts_json.write_text(saved)
        flag.unlink(missing_ok=True)


def test_ndd_and_ipadm_share_values(cn):
    assert cn.run("ndd", "-get", "/dev/tcp", "tcp_max_buf").stdout == "1048576\n"
    assert cn.run("ndd", "-get", "/dev/tcp", "tcp_xmit_hiwat").stdout == "128000\n"
    assert cn.run("ndd", "-get", "/dev/tcp", "tcp_recv_hiwat").stdout == "1048576\n"
    r = cn.run("ndd", "-set", "/dev/tcp", "tcp_xmit_hiwat", "4194304", check=False)
    assert r.returncode == 1 and r.stdout == "operation failed: Result too large\n"
    cn.run("ndd", "-set", "/dev/tcp", "tcp_max_buf", "8388608")
    cn.run("ipadm", "set-prop", "-t", "-p", "send_buf=4194304", "tcp")
    cn.run("ipadm", "set-prop", "-p", "recv_buf=2097152", "tcp")
    assert cn.run("ipadm", "show-prop", "-c", "-o", "current", "-p", "max_buf",
                  "tcp").stdout == "8388608\n"
    assert cn.run("ndd", "-get", "/dev/tcp", "tcp_xmit_hiwat").stdout == "4194304\n"
    out = cn.run("ipadm", "show-prop", "-p", "send_buf,recv_buf", "tcp").stdout.splitlines()
    assert out[0] == "PROTO PROPERTY              PERM CURRENT      PERSISTENT   DEFAULT" \
        "      POSSIBLE"
    assert out[1].split() == ["tcp", "send_buf", "rw", "4194304", "--", "128000",
                              "4096-1073741824"]
    assert out[2].split() == ["tcp", "recv_buf", "rw", "2097152", "2097152", "1048576",
                              "2048-1073741824"]
    r = cn.run("ndd", "-get", "/dev/tcp", "tcp_nonesuch", check=False)
    assert r.returncode == 1 and r.stdout.startswith("name is non-existent for this module")


# ---- the workload and where it writes -----------------------------------------------

WORKLOAD_PY = """
import sys, time
from simdc import workload
uuid, d, host = sys.argv[1:4]
for i in range(2):
    pid = workload.start(uuid, d, host)
    assert workload.running(uuid, host), "not running"
    assert workload.start(uuid, d, host) == pid
    time.sleep(0.4)
    assert workload.stop(uuid, host)
    assert not workload.running(uuid, host)
print("ok")
"""


def test_workload_gap_free_across_stop_start(cn):
    uuid = "0b7c2d4e-1f3a-4b5c-8d9e-0a1b2c3d4e5f"
    cn.run("zfs", "create", "zones/" + uuid)
    p = cn.run("python3", "-c", WORKLOAD_PY, uuid, "/zones/%s/root" % uuid, HOST,
               env_extra={"SIMDC_WORKLOAD_HZ": "50", "SIMDC_WORKLOAD_CHURN_KB": "64"})
    assert p.stdout == "ok\n"
    text = cn.run("cat", "/zones/%s/root/simdc-seq" % uuid).stdout
    assert text.endswith("\n")
    rows = [l.split() for l in text.splitlines()]
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
    boots = list(dict.fromkeys(r[1] for r in rows))
    assert len(boots) == 2 and len(rows) >= 20
    assert cn.run("sh", "-c", "test -s /zones/%s/root/simdc-churn" % uuid).returncode == 0
    assert not list((cn.simdir / "pids").glob("workload-*"))
    assert not (cn.simdir / "hosts" / HOST / "run" / (uuid + ".pid")).exists()


ZONE_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE zone PUBLIC "-//Sun Microsystems Inc//DTD Zones//EN" "file:///usr/share/lib/xml/dtd/zonecfg.dtd.1">
<zone name="{uuid}" zonepath="/zones/{uuid}" autoboot="false" brand="{brand}">
</zone>
"""


def test_datadir(cn):
    joyent = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
    kvm = "2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a"
    bhyve = "3e4f5a6b-7c8d-4e9f-8a1b-2c3d4e5f6a7b"
    for uuid, brand in ((joyent, "joyent-minimal"), (kvm, "kvm"), (bhyve, "bhyve")):
        (cn.etc_zones / (uuid + ".xml")).write_text(ZONE_XML.format(uuid=uuid, brand=brand))
    cn.run("zfs", "create", "-V", "32M", "zones/%s-disk0" % kvm)
    cn.run("zfs", "create", "zones/" + bhyve)
    cn.run("zfs", "create", "-V", "32M", "zones/%s/disk0" % bhyve)
    assert cn.run("simdc-datadir", joyent).stdout == "/zones/%s/root\n" % joyent
    assert cn.run("simdc-datadir", kvm).stdout == "/zones/%s-disk0\n" % kvm
    assert cn.run("simdc-datadir", bhyve).stdout == "/zones/%s/disk0\n" % bhyve
    assert cn.run("simdc-datadir", "nosuch", check=False).returncode == 1
    assert zfslib.data_dir(joyent, zones_dir=str(cn.etc_zones)) == "/zones/%s/root" % joyent


# ---- imgadm ----------------------------------------------------------------------

class _Imgapi(http.server.BaseHTTPRequestHandler):
    images = {}

    def log_message(self, *args):
        pass

    def do_GET(self):
        m = re.match(r"^/images/([0-9a-f-]{36})(/file)?$", self.path)
        img = self.images.get(m.group(1)) if m else None
        if img is None:
            body = json.dumps({"code": "ResourceNotFound", "message": "not found"}).encode()
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
        elif m.group(2):
            body = img["file"].read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
        else:
            body = json.dumps(img["manifest"]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_imgadm_import_get_list(cn):
    uuid = "4a5b6c7d-8e9f-4a0b-9c1d-2e3f4a5b6c7d"
    cn.run("zfs", "create", "zones/imgbuild")
    fill(cn, "/zones/imgbuild/data", 1)
    cn.run("zfs", "snapshot", "zones/imgbuild@final")
    stream = cn.tmp / "image.zfs"
    cn.sh("%s send zones/imgbuild@final > %s" % (cn.realzfs, stream))
    manifest = {"v": 2, "uuid": uuid, "name": "base-64-lts", "version": "24.4.1",
                "state": "active", "disabled": False, "public": True, "os": "smartos",
                "type": "zone-dataset", "published_at": "2025-01-02T03:04:05.678Z",
                "files": [{"sha1": "0", "size": stream.stat().st_size,
                           "compression": "none"}]}
    _Imgapi.images = {uuid: {"manifest": manifest, "file": stream}}
    server = http.server.ThreadingHTTPServer(("127.0.%s.5" % NET, cn.api_port), _Imgapi)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        out = cn.run("imgadm", "import", "-q", uuid).stdout.splitlines()
        assert out == [
            'Importing %s (base-64-lts@24.4.1) from "http://127.0.%s.5:%d"'
            % (uuid, NET, cn.api_port),
            "Gather image %s ancestry" % uuid,
            "Must download and install 1 image (%s)" % out[2].split("(")[1][:-1],
            "Imported image %s (base-64-lts@24.4.1)" % uuid]
        assert out[2].endswith("MiB)")
        # one stream: the image's @final is the builder's snapshot, GUID and all
        assert guid(cn, "zones/%s@final" % uuid) == guid(cn, "zones/imgbuild@final")
        again = cn.run("imgadm", "import", uuid).stdout
        assert again == "Image %s (base-64-lts@24.4.1) is already installed, skipping\n" % uuid
        info = json.loads(cn.run("imgadm", "get", uuid).stdout)
        assert info["manifest"]["uuid"] == uuid and info["zpool"] == "zones"
        assert cn.run("imgadm", "list", "-H", "-o", "uuid,name,version").stdout.split() == \
            [uuid, "base-64-lts", "24.4.1"]
        assert json.loads(cn.run("imgadm", "list", "-j").stdout)[0]["manifest"]["uuid"] == uuid
        other = "5b6c7d8e-9f0a-4b1c-8d2e-3f4a5b6c7d8e"
        r = cn.run("imgadm", "get", other, check=False)
        assert r.returncode == 3
        assert r.stderr == 'imgadm: error (ImageNotInstalled): image "%s" was not found ' \
            'on zpool "zones"\n' % other
        r = cn.run("imgadm", "import", other, check=False)
        assert r.returncode == 1 and "ActiveImageNotFound" in r.stderr
    finally:
        server.shutdown()
        server.server_close()


# ---- what an operator's CN-to-CN script asks of zfs ------------------------------------

def tree_digest(cn, path):
    return cn.sh("cd %s && find . -type f | sort | xargs -r sha1sum" % path).stdout


def test_sync_property_as_illumos_has_it(cn):
    # illumos zfs_prop.c: sync is standard|always|disabled, inherited, not on snapshots
    cn.run("zfs", "create", "-p", "zones/syncp/child")
    cn.run("zfs", "snapshot", "zones/syncp@s")
    assert cn.run("zfs", "get", "-Ho", "property,value,source", "sync", "zones/syncp").stdout \
        == "sync\tstandard\tdefault\n"
    cn.run("zfs", "set", "sync=always", "zones/syncp")
    out = cn.run("zfs", "get", "-Ho", "name,value,source", "sync", "zones/syncp",
                 "zones/syncp/child", "zones/syncp@s").stdout
    assert out == ("zones/syncp\talways\tlocal\n"
                   "zones/syncp@s\t-\t-\n"
                   "zones/syncp/child\talways\tinherited from zones/syncp\n")
    p = cn.run("zfs", "set", "sync=sometimes", "zones/syncp", check=False)
    assert p.returncode == 1 and p.stderr == ("cannot set property for 'zones/syncp': 'sync' "
                                              "must be one of 'standard | always | disabled'\n")
    # the third-party script's question, one line a property
    out = cn.run("zfs", "get", "-Ho", "property,value", "quota,recordsize,mountpoint,sharenfs,"
                 "sync", "zones/syncp").stdout
    assert out == ("quota\tnone\nrecordsize\t128K\nmountpoint\t/zones/syncp\n"
                   "sharenfs\toff\nsync\talways\n")
    assert "simdc:sync" not in cn.run("zfs", "get", "all", "zones/syncp").stdout


def test_recv_o_origin_receives_a_full_stream_as_a_clone(cn):
    # libzfs_sendrecv.c zfs_receive_one + dmu_recv.c dmu_recv_begin_check: a full
    # stream received with -o origin=SNAP becomes a clone of SNAP, with the sent
    # snapshot's guid; -o properties are set on the received dataset
    # an image of its own: zones/src@one has received copies in the pool (see recvclone.py)
    cn.run("zfs", "create", "zones/img")
    fill(cn, "/zones/img/data", 2)
    cn.run("zfs", "snapshot", "zones/img@final")
    cn.run("zfs", "clone", "zones/img@final", "zones/vm1")
    fill(cn, "/zones/vm1/own", 1)
    cn.run("rm", "/zones/vm1/data")
    cn.run("zfs", "snapshot", "zones/vm1@migration")
    cn.run("zfs", "create", "zones/dst")
    cn.sh("zfs send zones/vm1@migration | zfs recv -o quota=1G -o sync=disabled "
          "-o mountpoint=/zones/landed -o origin=zones/img@final -d zones/dst")
    got = real_props(cn, ["origin", "quota", "mountpoint"], "zones/dst/vm1")["zones/dst/vm1"]
    assert got == {"origin": "zones/img@final", "quota": str(1 << 30), "mountpoint": "/zones/landed"}
    assert cn.run("zfs", "get", "-Ho", "value,source", "sync", "zones/dst/vm1").stdout == \
        "disabled\tlocal\n"
    assert guid(cn, "zones/dst/vm1@migration") == guid(cn, "zones/vm1@migration")
    assert tree_digest(cn, "/zones/landed") == tree_digest(cn, "/zones/vm1")
    # it is a clone: the origin cannot go while it exists
    p = cn.run("zfs", "destroy", "zones/img@final", check=False)
    assert p.returncode == 1 and "dependent clones" in p.stderr
    # an incremental from it follows
    fill(cn, "/zones/vm1/later", 1)
    cn.run("zfs", "snapshot", "zones/vm1@later")
    # (-F: reading the files above changed their atimes, as on illumos)
    cn.sh("zfs send -i @migration zones/vm1@later | zfs recv -F -d zones/dst")
    assert tree_digest(cn, "/zones/landed") == tree_digest(cn, "/zones/vm1")


def test_recv_o_refuses_what_illumos_refuses(cn, src):
    before = names(cn)
    for opts, rc, text in (
            (["-o", "origin=zones/nope@x"], 1, "cannot open 'zones/nope@x': dataset does not exist\n"),
            (["-o", "origin=" + src], 1, "cannot open '%s': operation not applicable to "
                                        "datasets of this type\n" % src),
            (["-o", "bogus=1"], 1, "cannot receive: invalid property 'bogus'\n"),
            (["-o", "volsize=1G"], 1, "cannot receive: invalid property 'volsize'\n"),
            (["-o", "quota"], 2, "missing '=' for property=value argument\n")):
        p = cn.sh("zfs send %s@one | zfs recv %s zones/refused" % (src, " ".join(opts)),
                  check=False)
        assert p.returncode == rc and p.stderr.startswith(text), (opts, p.stderr)
    assert names(cn) == before


def test_recvclone_rewrites_begin_and_keeps_the_end_checksum_true():
    """The DRR_END checksum is fletcher-4 of everything before it (dmu_send.c
    dump_record; dmu_recv.c checks it): after the DRR_BEGIN names the origin,
    the corrected checksum must equal one computed over the new bytes."""
    import struct
    from simdc import recvclone

    def fletcher4(data):
        a = b = c = d = 0
        for (w,) in struct.iter_unpack("<I", data):
            a, b = (a + w) % 2 ** 64, (b + a + w) % 2 ** 64
            c = (c + b) % 2 ** 64
            d = (d + c) % 2 ** 64
        return a, b, c, d

    begin = bytearray(recvclone.RECORD)
    struct.pack_into("<QQQIIQQ", begin, 8, recvclone.BACKUP_MAGIC, 1, 0, 2, 4, 77, 0)
    write = bytearray(recvclone.RECORD)
    struct.pack_into("<I", write, 0, recvclone.DRR_WRITE)
    struct.pack_into("<Q", write, 32, 4096)
    body = bytes(begin) + bytes(write) + os.urandom(4096)
    end = bytearray(recvclone.RECORD)
    struct.pack_into("<I", end, 0, recvclone.DRR_END)
    struct.pack_into("<4Q", end, 8, *fletcher4(body))
    tail = b"next substream"
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    os.write(w_in, body[recvclone.RECORD:] + bytes(end) + tail)
    os.close(w_in)

    def copy(src, dst, n):
        recvclone.write_all(dst, os.read(src, n) if n else os.read(src, 1 << 20))

    recvclone.relay_as_clone(r_in, w_out, bytes(begin), 12345, copy)
    os.close(w_out)
    out = os.read(r_out, 1 << 20)
    new_body, new_end = out[:len(body)], out[len(body):len(body) + recvclone.RECORD]
    magic, _, _, _, flags, toguid, fromguid = struct.unpack_from("<QQQIIQQ", new_body, 8)
    assert (flags, toguid, fromguid) == (4 | recvclone.DRR_FLAG_CLONE, 77, 12345)
    assert new_body[recvclone.RECORD:] == body[recvclone.RECORD:]
    assert struct.unpack_from("<4Q", new_end, 8) == fletcher4(new_body)
    assert out.endswith(tail)
    # an incremental from another snapshot cannot be a clone of this origin
    struct.pack_into("<Q", begin, 48, 999)
    with pytest.raises(recvclone.StreamError):
        recvclone.begin_as_clone(bytes(begin), 12345)
