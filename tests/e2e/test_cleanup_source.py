"""sdc-migrate cleanup-source in the simulated datacenter: after a migration
it removes exactly the old copy on the source; it refuses, removing nothing,
for an instance that never moved. Migrations here go to spare-server:
which images dest-server holds is other tests' business."""
import re
from checks import kept_snapshot


DEST = "spare-server"


def zone_files(dc, host):
    """A compute node's zone configuration: index lines and XML files."""
    index = dc.exec(host, "cat", "/etc/zones/index").stdout.splitlines()
    xmls = dc.exec(host, "ls", "/etc/zones").stdout.split()
    return index, xmls


def state(dc, host):
    return set(dc.zfs_names(host)), zone_files(dc, host)


def migrate(dc, *provision):
    uuid = dc.provision(*provision)
    p = dc.migrate("-y", uuid, DEST)
    assert p.returncode == 0, p.stdout + p.stderr
    return uuid


def test_removes_exactly_the_old_copy_of_a_kvm_instance(dc):
    uuid = migrate(dc, "--brand", "kvm", "--disks", "2", "--size", "1", "--state", "stopped")
    neighbour = dc.provision("--size", "1", "--state", "stopped", "--alias", "stays")
    (src_zfs, (src_index, src_xmls)), dst = state(dc, "source-server"), state(dc, DEST)
    kept = kept_snapshot(dc, uuid)
    p = dc.migrate("cleanup-source", "-y", uuid)
    assert p.returncode == 0, p.stdout + p.stderr
    assert '/usr/sbin/zonecfg -z %s delete -F"' % uuid in p.stdout
    # the old copy's datasets, XML and index line, and nothing else
    disks = {"zones/" + uuid, "zones/%s-disk0" % uuid, "zones/%s-disk1" % uuid}
    snaps = {"%s@%s" % (d, kept) for d in disks}      # kept for a rollback till now
    gone = disks | snaps | {"zones/cores/" + uuid}
    zfs_after, (index_after, xmls_after) = state(dc, "source-server")
    assert src_zfs - zfs_after == gone and zfs_after <= src_zfs
    assert [l for l in src_index if l not in index_after] == \
        ["%s:configured:/zones/%s:%s" % (uuid, uuid, uuid)]      # detached by the migration
    assert set(src_xmls) - set(xmls_after) == {uuid + ".xml"} and len(index_after) == \
        len(src_index) - 1
    assert neighbour + ".xml" in xmls_after and "zones/" + neighbour in zfs_after
    # the live copy is untouched but for the snapshot it kept for a rollback
    assert state(dc, DEST) == (dst[0] - snaps, dst[1]) and snaps <= dst[0]
    vm = dc.vm(uuid)
    assert vm["server_uuid"] == dc.hosts()[DEST]["uuid"] and vm["state"] == "stopped"
    # a second run finds nothing more to remove
    p = dc.migrate("cleanup-source", "-y", uuid)
    assert p.returncode == 2 and "nothing removed" in p.stderr


def test_comment_out_then_remove_without_the_log(dc):
    uuid = migrate(dc, "--size", "1", "--state", "stopped", "--alias", "kirby")
    before = state(dc, "source-server")
    kept = kept_snapshot(dc, uuid)
    p = dc.migrate("cleanup-source", "-y", "--comment-out", uuid)
    assert p.returncode == 0, p.stdout + p.stderr
    # the source as the migration's journal names it, not as its log says
    assert re.search(r"\+ /var/tmp/migrator-%s-%s-\d+\.journal names source-server "
                     r"\(127\.0\.\d+\.11\) as the source" % (uuid, DEST), p.stdout), p.stdout
    zfs_after, (index, xmls) = state(dc, "source-server")
    assert zfs_after == before[0] and xmls == before[1][1]
    assert [l for l in before[1][0] if l not in index] == \
        ["%s:configured:/zones/%s:%s" % (uuid, uuid, uuid)]
    assert "#%s:configured:/zones/%s:%s" % (uuid, uuid, uuid) in index
    # with the migration's journal and log gone it finds the hidden copy by looking
    dc.exec("headnode", "sh", "-c", "mkdir -p /var/tmp/moved && mv /var/tmp/migrator-%s-*.log "
            "/var/tmp/migrator-%s-*.journal /var/tmp/moved/" % (uuid, uuid))
    p = dc.migrate("cleanup-source", "-y", uuid)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "looking for a hidden copy on every compute node" in p.stdout
    zfs_after, (index, xmls) = state(dc, "source-server")
    assert before[0] - zfs_after == {"zones/" + uuid, "zones/cores/" + uuid,
                                     "zones/%s@%s" % (uuid, kept)}
    assert not [l for l in index if uuid in l] and uuid + ".xml" not in xmls


def test_refuses_an_instance_that_never_moved(dc):
    uuid = dc.provision("--size", "1", "--alias", "homebody")
    before = [state(dc, h) for h in ("source-server", DEST)]
    for args in (["-y", uuid], ["-y", "--comment-out", uuid]):
        p = dc.migrate("cleanup-source", *args)
        assert p.returncode == 2, p.stdout + p.stderr
        assert p.stderr.count("\n") == 1 and "nothing removed" in p.stderr
    assert [state(dc, h) for h in ("source-server", DEST)] == before
    assert dc.vm(uuid)["state"] == "running"
    assert dc.exec("headnode", "sh", "-c", "ls /var/tmp/sdc-migrate-*.lock 2>/dev/null || true"
                   ).stdout == ""


def test_unknown_instance_is_not_found(dc):
    p = dc.migrate("cleanup-source", "-y", "00000000-0000-4000-8000-000000000000")
    assert p.returncode == 3 and p.stdout == "" and p.stderr.count("\n") == 1
