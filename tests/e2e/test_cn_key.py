"""The temporary CN-to-CN key receives this instance's datasets and nothing
else (issue 25): while a migration's stream is held open, someone with root
on the source CN uses its key, and every other command is refused by the
destination's sshd running the key's forced command (sshd(8) command=;
openssh-portable session.c do_exec), with nothing changed there."""
import time

from checks import assert_migrated, start_tool, wait_for_the_fault

SRC, DST = "source-server", "dest-server"
HOLD = 6        # seconds the second receive waits before it reads its stream


def the_key(dc):
    """The temporary key and its known_hosts on the source (sdc_migrate/paths.py)."""
    names = dc.exec(SRC, "ls", "/root/.ssh").stdout.split()
    keys = [n for n in names if n.startswith("migr-key-") and not n.endswith(".pub")]
    assert len(keys) == 1, names
    tag = keys[0][len("migr-key-"):]
    assert "migr-known-" + tag in names
    return "/root/.ssh/migr-key-" + tag, "/root/.ssh/migr-known-" + tag


def guids(dc, host):
    out = dc.exec(host, "zfs", "list", "-H", "-p", "-t", "all", "-o", "name,guid").stdout
    return dict(l.split("\t") for l in out.splitlines() if "\t" in l)


def test_the_temporary_key_receives_this_instances_datasets_and_nothing_else(dc):
    uuid = dc.provision("--size", "1", "--state", "stopped", "--delegate")
    other = dc.provision("--size", "1", "--state", "stopped", "--server", DST)
    before = dc.vm(uuid)
    hosts = dc.hosts()
    src_ip, dst_ip = hosts[SRC]["admin_ip"], hosts[DST]["admin_ip"]
    # the delegated dataset's receive waits: zones/UUID is on the destination
    # already, the key authorized, the source's stream open
    dc.simdc("fault", "add", DST, "--delay", str(HOLD), "--exit", "0", "--",
             "zfs", "recv", "-s", "-u", "-F", "zones/%s/data" % uuid)
    tool = start_tool(dc, "-y", uuid, DST)
    try:
        wait_for_the_fault(dc, tool)
        start = time.time()
        key, known = the_key(dc)
        there = guids(dc, DST)
        assert "zones/" + uuid in there and "zones/" + other in there
        ssh = ["ssh", "-i", key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
               "-o", "UserKnownHostsFile=" + known, "-o", "LogLevel=ERROR",
               "-o", "BindAddress=" + src_ip, "root@" + dst_ip]
        snap = dc.exec(SRC, "zfs", "list", "-H", "-o", "name", "-t", "snapshot", "-d", "1",
                       "zones/" + uuid).stdout.split()[-1]
        tries = {
            "id": dc.exec(SRC, *ssh, "id", check=False),
            "sh -c id": dc.exec(SRC, *ssh, "sh -c id", check=False),
            # a real stream, into another instance's dataset
            "a receive into another instance": dc.exec(
                SRC, "bash", "-c", 'zfs send "$1" | "${@:3}" "zfs recv -s -u -F zones/$2"; '
                'exit ${PIPESTATUS[1]}', "-", snap, other, *ssh, check=False),
            "zfs destroy": dc.exec(SRC, *ssh, "zfs destroy -r zones/" + uuid, check=False),
            "a receive, then a shell": dc.exec(
                SRC, *ssh, "zfs recv -s -u -F zones/%s; zfs destroy -r zones/%s" % (uuid, uuid),
                check=False),
        }
        for what, p in tries.items():
            assert p.returncode == 126, (what, p.returncode, p.stdout, p.stderr)
            assert "uid=" not in p.stdout, what
            said = p.stderr.splitlines()
            assert len(said) == 1 and said[0].startswith("sdc-migrate: refused: "), (what, said)
        # nothing changed there: every dataset and snapshot as it was (but
        # the held receive's own, which may land meanwhile)
        now = guids(dc, DST)
        assert {n: g for n, g in there.items() if n in now} == there, \
            "gone: %s" % sorted(set(there) - set(now))
        new = [n for n in now if n not in there and not n.startswith("zones/%s/data" % uuid)
               and n != "zones/cores/" + uuid]
        assert new == []
        ran = [r["argv"] for r in dc.log(DST) if r["start"] >= start
               and r["argv"][0] == "zfs" and (other in " ".join(r["argv"])
                                              or r["argv"][1] in ("destroy", "rollback"))]
        assert ran == []
    finally:
        out = tool.communicate(timeout=180)[0].decode()
    # and the migration went on to its end
    assert tool.returncode == 0, out
    assert "refused" not in out
    assert_migrated(dc, uuid, before, out)
