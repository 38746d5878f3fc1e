"""sdc-migrate cleanup-source: reading a compute node's copy, the migration logs,
and the commands it would run."""
import io
import os
import subprocess
import sys

import pytest

from sdc_migrate import report
from sdc_migrate.commands import cleanup_source as cs
from sdc_migrate.errors import Refused

UUID = "43aba933-2cd6-6c47-e63e-b1d2d1ab4956"
MARK = cs.MARK + "\n"


class FakeNode:
    hostname, uuid, ip = "source-server", "s-uuid", "10.1.1.33"


def zfs_line(name, type="filesystem", userrefs="-"):
    return "\t".join([name, type, "-", "1024", "1024", "0", "1024", "0", userrefs, "none",
                      "none", "0"])


def probe_output(state="installed", hidden=True, index="live", kvm=True):
    zone = "-:%s:%s:/zones/%s:%s:kvm:excl:0\n" % (UUID, state, UUID, UUID) if state else ""
    attr = '  <attr name="do-not-inventory" type="string" value="true"/>\n' if hidden else ""
    xml = '<?xml version="1.0"?>\n<zone name="%s" zonepath="/zones/%s">\n%s</zone>\n' % (
        UUID, UUID, attr) if index else ""
    line = {"live": "%s:installed:/zones/%s:%s\n", "commented": "#%s:installed:/zones/%s:%s\n",
            None: ""}[index]
    line = line % (UUID, UUID, UUID) if index else ""
    names = ["zones", "zones/cores", "zones/cores/" + UUID, "zones/" + UUID]
    if kvm:
        names += ["zones/%s-disk0" % UUID, "zones/%s-disk1" % UUID]
    listing = "\n".join(zfs_line(n) for n in names) + "\n"
    return zone + MARK + xml + MARK + line + MARK + listing


def test_probe_is_one_command_with_the_uuid_as_an_argument():
    calls = []

    class Node(FakeNode):
        def run(self, argv, readonly=False, input=None):
            calls.append((argv, readonly))
            return probe_output()
    cs.probe(Node(), UUID)
    (argv, readonly), = calls
    assert argv[:2] == ["sh", "-c"] and argv[3:] == ["sh", UUID] and readonly
    assert UUID not in argv[2]                 # data never inside the script text


def test_a_hidden_copy_after_a_migration():
    c = cs.Copy(FakeNode(), UUID, probe_output())
    assert (c.state, c.xml, c.hidden, c.index, c.cores) == ("installed", True, True, "live", True)
    assert [d.name for d in c.datasets] == ["zones/" + UUID, "zones/%s-disk0" % UUID,
                                            "zones/%s-disk1" % UUID]
    assert c.present
    assert c.describe() == "installed, hidden from inventory (do-not-inventory), 3 datasets"


def test_a_live_copy_is_not_hidden_and_a_gone_one_is_not_present():
    assert not cs.Copy(FakeNode(), UUID, probe_output(hidden=False)).hidden
    gone = cs.Copy(FakeNode(), UUID, MARK + MARK + MARK + zfs_line("zones") + "\n")
    assert not gone.present and gone.state is None


def test_do_not_inventory_false_is_not_hidden():
    out = probe_output().replace('value="true"', 'value="false"')
    assert not cs.Copy(FakeNode(), UUID, out).hidden


def test_full_removal_is_the_seeds_closing_block_with_the_kvm_disks():
    c = cs.Copy(FakeNode(), UUID, probe_output())
    cmds = cs.removal_commands(c, comment_out=False)
    # installed: illumos zonecfg refuses to delete it before the detach
    assert cmds == [["zoneadm", "-z", UUID, "detach"],
                    ["zonecfg", "-z", UUID, "delete", "-F"],
                    ["zfs", "destroy", "zones/cores/" + UUID],
                    ["zfs", "destroy", "-r", "zones/" + UUID],
                    ["zfs", "destroy", "-r", "zones/%s-disk0" % UUID],
                    ["zfs", "destroy", "-r", "zones/%s-disk1" % UUID]]
    # printed as the seed prints them
    assert cs.seed_line("10.1.1.33", cmds[1]) == \
        '   * /usr/bin/ssh 10.1.1.33 "/usr/sbin/zonecfg -z %s delete -F"' % UUID
    assert cs.seed_line("10.1.1.33", cmds[3]) == \
        '   * /usr/bin/ssh 10.1.1.33 "/usr/sbin/zfs destroy -r zones/%s"' % UUID


def test_an_indestructible_copy_has_its_hold_lifted_before_it_is_destroyed():
    """VM.js makeDestructible: zfs release do_not_destroy DS@indestructible; a held
    snapshot is one zfs destroy refuses. An unheld one needs no release."""
    out = probe_output() + zfs_line("zones/%s@indestructible" % UUID, "snapshot", "1") + \
        "\n" + zfs_line("zones/%s-disk0@indestructible" % UUID, "snapshot", "0") + "\n"
    c = cs.Copy(FakeNode(), UUID, out)
    assert [d.name for d in c.datasets] == ["zones/" + UUID, "zones/%s-disk0" % UUID,
                                            "zones/%s-disk1" % UUID]
    cmds = cs.removal_commands(c, comment_out=False)
    release = ["zfs", "release", "do_not_destroy", "zones/%s@indestructible" % UUID]
    assert cmds.count(release) == 1 and not [a for a in cmds if "disk0@" in " ".join(a)]
    assert cmds.index(release) < cmds.index(["zfs", "destroy", "-r", "zones/" + UUID])
    assert "zfs list" in cs.PROBE and "snapshot" in cs.PROBE


def test_comment_out_touches_only_the_index_line():
    c = cs.Copy(FakeNode(), UUID, probe_output())
    cmds = cs.removal_commands(c, comment_out=True)
    assert cmds[0] == ["sed", "-i.bak", "s/^%s:/#%s:/" % (UUID, UUID), "/etc/zones/index"]
    assert all(a[0] in ("sed", "rm") for a in cmds)
    done = cs.Copy(FakeNode(), UUID, probe_output(index="commented"))
    assert cs.removal_commands(done, comment_out=True) == []


def test_a_commented_out_copy_gets_its_line_back_before_zonecfg_deletes_it():
    c = cs.Copy(FakeNode(), UUID, probe_output(state=None, index="commented"))
    cmds = cs.removal_commands(c, comment_out=False)
    assert cmds[0] == ["sed", "-i.bak", "s/^#%s:/%s:/" % (UUID, UUID), "/etc/zones/index"]
    assert cmds[2:4] == [["zoneadm", "-z", UUID, "detach"], ["zonecfg", "-z", UUID, "delete", "-F"]]


CLOSING = """
                    ===   Done! ===

ZONE Instance:  %(u)s (kirby)

          is now installed on

      Dest CN:  dest-server (00000000-0000-0000-0000-d43d7ef73056)

Don't forget to at least comment out %(u)s
  on %(src)s in /etc/zones/index, if not outright remove it.
To remove it on %(src)s:
   * /usr/bin/ssh %(ip)s "/usr/sbin/zonecfg -z %(u)s delete -F"
   * /usr/bin/ssh %(ip)s "/usr/sbin/zfs destroy zones/cores/%(u)s"
"""


def test_the_sources_named_by_the_migration_logs_newest_first(tmp_path):
    (tmp_path / ("migrator-%s-dest-server-1398709539.log" % UUID)).write_text(
        CLOSING % {"u": UUID, "src": "source-server", "ip": "10.1.1.33"})
    (tmp_path / ("migrator-%s-spare-server-1398800000.log" % UUID)).write_text(
        CLOSING % {"u": UUID, "src": "dest-server", "ip": "10.1.1.34"})
    # a migration that failed has no closing block; another instance's log is not read
    (tmp_path / ("migrator-%s-old-server-1398900000.log" % UUID)).write_text("* failed\n")
    (tmp_path / "migrator-5ca5b3dc-48fe-6f75-ed8c-8d8fbd77e2aa-x-1.log").write_text(
        CLOSING % {"u": "5ca5b3dc-48fe-6f75-ed8c-8d8fbd77e2aa", "src": "x", "ip": "1.1.1.1"})
    found = cs.sources(UUID, str(tmp_path))
    assert [(h, ip) for h, ip, _ in found] == [("dest-server", "10.1.1.34"),
                                               ("source-server", "10.1.1.33")]


def journal(tmp_path, dest, epoch, src, outcome):
    import json
    path = tmp_path / ("migrator-%s-%s-%d.journal" % (UUID, dest, epoch))
    records = [{"t": "begin", "kind": "migration", "uuid": UUID, "dest": dest, "epoch": epoch,
                "src": {"hostname": src[0], "uuid": "u-" + src[0], "ip": src[1]}}]
    if outcome:
        records.append({"t": "end", "outcome": outcome})
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_the_sources_are_read_from_the_journals_before_any_log(tmp_path):
    """A finished migration's journal names its source; its log (the same name
    but .log) is not read, however its closing block was edited; one that was
    rolled back or never ended left no hidden copy; a log with no journal
    (migrator.sh's) still counts."""
    done = journal(tmp_path, "dest-server", 1400000000, ("source-server", "10.1.1.33"), "done")
    (tmp_path / done.name.replace(".journal", ".log")).write_text(
        CLOSING % {"u": UUID, "src": "elsewhere", "ip": "10.1.1.99"})
    journal(tmp_path, "spare-server", 1400000100, ("dest-server", "10.1.1.34"), "rolled-back")
    journal(tmp_path, "old-server", 1400000200, ("dest-server", "10.1.1.34"), None)
    (tmp_path / ("migrator-%s-dest-server-1398709539.log" % UUID)).write_text(
        CLOSING % {"u": UUID, "src": "old-server", "ip": "10.1.1.35"})
    found = cs.sources(UUID, str(tmp_path))
    assert [(h, ip, os.path.basename(p)) for h, ip, p in found] == [
        ("source-server", "10.1.1.33", done.name),
        ("old-server", "10.1.1.35", "migrator-%s-dest-server-1398709539.log" % UUID)]


def run(*args):
    return subprocess.run([sys.executable, "-m", "sdc_migrate", "cleanup-source"] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_malformed_uuid_is_refused_in_one_line():
    p = run("-y", "../../etc")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr == "sdc-migrate cleanup-source: error (Refused): '../../etc' is not an instance UUID\n"


def test_usage_errors():
    p = run()
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    p = run("--help")
    assert p.returncode == 0 and "sdc-migrate cleanup-source [-y] [--comment-out] INST_UUID" \
        in p.stdout


def test_declining_removes_nothing(monkeypatch, tmp_path):
    """act() asks before running anything; 'n' is a refusal with nothing run."""
    ran = []

    class Node(FakeNode):
        def run(self, argv, readonly=False, input=None):
            ran.append(argv)
            return ""
    copy = cs.Copy(Node(), UUID, probe_output())
    c = cs.Cleanup(UUID, report=report.Report(io.StringIO()), state_dir=str(tmp_path))
    c.alias = "kirby"
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    with pytest.raises(Refused):
        c.act(None, [copy])
    assert ran == []


def test_an_unfinished_migration_is_refused_before_anything_is_read(monkeypatch, tmp_path):
    class Unfinished:
        path = "/var/tmp/migrator-%s-dest-server-1.journal" % UUID

    class NoRunner:
        dry_run, trace = False, None

        def run(self, *a, **k):
            raise AssertionError("nothing may be asked")
    monkeypatch.setattr(cs.Journal, "unfinished", staticmethod(lambda uuid: [Unfinished()]))
    c = cs.Cleanup(UUID, yes=True, report=report.Report(io.StringIO()), runner=NoRunner(),
                   state_dir=str(tmp_path))
    with pytest.raises(Refused, match="did not finish"):
        c.run()
    assert list(tmp_path.iterdir()) == []        # no lock file left
