"""What travels with an instance's data: its own snapshots (vmadm
create-snapshot), its indestructible_zoneroot protection, and sizes that say
what is actually sent. One migration, several looks at it."""
import json
import time

import pytest

from checks import assert_migrated, kept_snapshot

SNAPS = ("before-upgrade", "after-upgrade")


def snapshot_guids(dc, host, uuid):
    out = dc.exec(host, "zfs", "list", "-H", "-p", "-o", "name,guid", "-t", "snapshot",
                  "-d", "1", "zones/" + uuid).stdout
    return dict(l.split("\t") for l in out.splitlines())


def sent_bytes(records, host="source-server"):
    """What the source's zfs sends wrote, as the simulator counted it."""
    return sum(r["bytes"] for r in records if r["host"] == host and r["argv"][:2] ==
               ["zfs", "send"] and "bytes" in r)


@pytest.fixture(scope="module")
def moved(dc):
    uuid = dc.provision("--size", "4", "--alias", "snap-keeper")
    src = "source-server"
    data = dc.exec(src, "simdc-datadir", uuid).stdout.strip()
    # 3 MB kept only by the first snapshot: sent, and not in REFER
    dc.exec(src, "sh", "-c", "head -c 3145728 /dev/urandom > %s/old-release" % data)
    dc.exec(src, "vmadm", "create-snapshot", uuid, SNAPS[0])
    dc.exec(src, "sh", "-c", "head -c 1048576 /dev/urandom > %s/upgrade" % data)
    dc.exec(src, "vmadm", "create-snapshot", uuid, SNAPS[1])
    dc.exec(src, "rm", "%s/old-release" % data)
    dc.exec(src, "vmadm", "update", uuid, "indestructible_zoneroot=true")
    dc.exec(src, "svcadm", "restart", "vm-agent")
    before = dc.vm(uuid)
    guids = snapshot_guids(dc, src, uuid)
    ds = "zones/" + uuid
    origin = dc.exec(src, "zfs", "get", "-H", "-o", "value", "origin", ds).stdout.strip()
    out = dc.exec(src, "zfs", "send", "-nvP", "-I", origin, ds + "@indestructible").stdout
    zfs_says = int([l for l in out.splitlines() if l.startswith("size")][0].split()[1])
    refer = int(dc.exec(src, "zfs", "get", "-Hp", "-o", "value", "refer", ds).stdout)
    p = dc.migrate("estimate", "-j", src)
    assert p.returncode == 0, p.stdout + p.stderr
    estimate, = [o for o in map(json.loads, p.stdout.splitlines()) if o.get("uuid") == uuid]
    time.sleep(0.5)
    mark = len(dc.log())
    p = dc.migrate("-y", uuid, "dest-server")
    records = dc.log()[mark:]
    assert p.returncode == 0, p.stdout + p.stderr
    return dict(uuid=uuid, before=before, guids=guids, out=p.stdout, records=records,
                estimate=estimate, zfs_says=zfs_says, refer=refer)


def test_the_instance_snapshots_travel_with_their_guids(dc, moved):
    uuid = moved["uuid"]
    assert_migrated(dc, uuid, moved["before"], moved["out"])
    mine = {"zones/%s@vmsnap-%s" % (uuid, s) for s in SNAPS}
    assert mine <= set(moved["guids"])
    there = snapshot_guids(dc, "dest-server", uuid)
    for name in mine | {"zones/%s@indestructible" % uuid}:
        assert there.get(name) == moved["guids"][name], name
    # the source's copy keeps them too, and the migration's last snapshot, which
    # both sides keep for `sdc-migrate rollback` until cleanup-source
    kept = "zones/%s@%s" % (uuid, kept_snapshot(dc, uuid))
    left = snapshot_guids(dc, "source-server", uuid)
    assert left.pop(kept) == there[kept]
    assert left == moved["guids"]
    # VMAPI lists both after the switch, as the destination's vm-agent reports them
    assert sorted(s["name"] for s in dc.vm(uuid)["snapshots"]) == sorted(SNAPS)
    assert sorted(s["name"] for s in moved["before"]["snapshots"]) == sorted(SNAPS)


def test_migration_snapshots_are_never_vmadm_snapshots(dc, moved):
    """vmload reports every @vmsnap-* as an instance snapshot: the migration's
    own must never be one a customer sees (or rolls back to) mid-migration."""
    uuid = moved["uuid"]
    made = [a for r in moved["records"] if r["argv"][:2] == ["zfs", "snapshot"]
            for a in r["argv"][2:] if a.startswith("zones/%s@" % uuid)]
    assert made, "the migration took no snapshot"
    assert not [a for a in made if "@vmsnap-" in a], made
    reports = [s["name"] for s in dc.vm(uuid)["snapshots"]]
    assert sorted(reports) == sorted(SNAPS)


def test_indestructible_zoneroot_is_carried_and_lifted_by_cleanup_source(dc, moved):
    uuid = moved["uuid"]
    snap = "zones/%s@indestructible" % uuid
    obj = json.loads(dc.exec("dest-server", "vmadm", "get", uuid).stdout)
    assert obj.get("indestructible_zoneroot") is True
    holds = dc.exec("dest-server", "zfs", "holds", "-H", snap).stdout
    assert holds.split("\t")[:2] == [snap, "do_not_destroy"]
    p = dc.migrate("cleanup-source", "-y", uuid)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "zfs release do_not_destroy %s" % snap in p.stdout
    assert not [n for n in dc.zfs_names("source-server") if uuid in n]
    # the live copy is still protected
    p = dc.exec("dest-server", "zfs", "destroy", "-r", "zones/" + uuid, check=False)
    assert p.returncode == 1 and "dataset is busy" in p.stderr
    assert dc.vm(uuid)["server_uuid"] == dc.hosts()["dest-server"]["uuid"]


def test_sizes_are_what_is_sent_not_refer(dc, moved):
    """REFER is neither what a clone sends (it counts the image, which stays
    behind: a clone is sent from IMAGE@final) nor what its snapshots keep
    (sent too). The show line and estimate say what zfs itself estimates a
    send of the whole history to be, and that is close to what went."""
    zfs_says = moved["zfs_says"]
    sent = sent_bytes(moved["records"])
    assert sent > 8 << 20
    est = moved["estimate"]["bytes"]
    assert abs(est - zfs_says) < zfs_says * 0.01, (est, zfs_says)
    assert abs(est - sent) < sent * 0.06, (est, sent)
    line, = [l for l in moved["out"].splitlines() if "total dataset size" in l]
    shown = float(line.split(":", 1)[1].split()[0]) * 1048576
    assert abs(shown - est) < 0.01 * 1048576, (line, est)
    refer = moved["refer"]
    assert abs(refer - sent) > sent * 0.2, (refer, sent)


def test_into_an_encrypted_pool_the_datasets_inherit_its_encryption(dc):
    """An encrypted destination pool refuses a -p stream's encryption=off
    (illumos libzfs_sendrecv.c): the receive excludes it (-x encryption). The
    instance is an encrypted one (internal_metadata.encrypted): DAPI would
    place no other there (sdc-designation hard-filter-zpool-encryption.js)."""
    uuid = dc.provision("--size", "1", "--state", "stopped", "--alias", "to-encrypted",
                        "--encrypted")
    before = dc.vm(uuid)
    dc.simdc("encrypt", "dest-server", "on")
    try:
        p = dc.migrate("-y", uuid, "dest-server")
        assert p.returncode == 0, p.stdout + p.stderr
        assert_migrated(dc, uuid, before, p.stdout)
        assert dc.exec("dest-server", "zfs", "get", "-H", "-o", "value", "encryption",
                       "zones/" + uuid).stdout == "aes-256-gcm\n"
    finally:
        dc.simdc("encrypt", "dest-server", "off")
