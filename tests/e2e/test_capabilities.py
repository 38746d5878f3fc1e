"""What a compute node can take, as Triton judges it: an encrypted pool on
the sending side (illumos-joyent usr/src/lib/libzfs/common/libzfs_sendrecv.c
send_iterate_fs refuses a -p stream of an encrypted dataset without -w), and
DAPI's hard filters (sdc-designation lib/algorithms/
hard-filter-zpool-encryption.js, hard-filter-hvm.js, hard-filter-traits.js)
on what the CNs' sysinfo (smartos-live src/sysinfo) and CNAPI say."""
import contextlib
import json

from checks import assert_migrated, data_digest, dc_state, net_agent

SRC, DST, SPARE = "source-server", "dest-server", "spare-server"


@contextlib.contextmanager
def encrypted(dc, *hosts):
    for h in hosts:
        dc.simdc("encrypt", h, "on")
    try:
        yield
    finally:
        for h in hosts:
            dc.simdc("encrypt", h, "off")


def test_an_encrypted_pool_migrates_and_rolls_back_with_its_data_and_properties(dc):
    """From an encrypted pool no -p stream: the migration and the rollback
    send plain streams, the receive sets the quotas a -p stream carried, the
    datasets take the receiving pool's encryption, and the data is intact
    both ways."""
    with encrypted(dc, SRC, DST):
        uuid = dc.provision("--encrypted", "--size", "2", "--delegate", "--state", "stopped",
                            "--alias", "encrypted-both")
        dc.exec(SRC, "zfs", "set", "quota=3G", "zones/%s/data" % uuid)
        before = dc.vm(uuid)
        p = dc.migrate("-y", uuid, DST)
        assert p.returncode == 0, p.stdout + p.stderr
        assert_migrated(dc, uuid, before, p.stdout)
        for ds, quota in (("zones/" + uuid, "10G"), ("zones/%s/data" % uuid, "3G")):
            got = dc.exec(DST, "zfs", "get", "-H", "-o", "value", "quota,encryption", ds)
            assert got.stdout.split() == [quota, "aes-256-gcm"], ds
        sends = [r["argv"] for r in dc.log(SRC) if r["argv"][:2] == ["zfs", "send"]
                 and any(uuid in a for a in r["argv"])]
        assert sends and not [a for a in sends if "-p" in a or "-R" in a], sends
        # and back, from the destination's encrypted pool
        written = data_digest(dc, DST, uuid)
        p = dc.migrate("rollback", "-y", uuid)
        assert p.returncode == 0, p.stdout + p.stderr
        assert dc.vm(uuid)["server_uuid"] == dc.hosts()[SRC]["uuid"]
        assert data_digest(dc, SRC, uuid) == written


def test_a_bhyve_instance_to_a_cn_that_is_not_bhyve_capable_is_refused(dc):
    uuid = dc.provision("--brand", "bhyve", "--state", "stopped", "--size", "1")
    before = dc_state(dc, uuid)
    dc.simdc("capability", DST, "--bhyve", "no")
    try:
        p = dc.migrate("-y", uuid, DST)
    finally:
        dc.simdc("capability", DST, "--reset")
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stderr == ("sdc-migrate: error (Refused): destination %s is not Bhyve Capable"
                        " (sysinfo)\n" % DST)
    assert dc_state(dc, uuid) == before


def test_an_encrypted_instance_to_an_unencrypted_cn_is_refused(dc):
    with encrypted(dc, SRC):
        uuid = dc.provision("--encrypted", "--state", "stopped", "--size", "1")
        before = dc_state(dc, uuid)
        p = dc.migrate("-y", uuid, DST)
        assert p.returncode == 2, p.stdout + p.stderr
        assert p.stderr == (
            "sdc-migrate: error (Refused): destination %s's pool is not encrypted (sysinfo"
            " Zpool Encrypted) and the instance is (internal_metadata.encrypted)\n" % DST)
        assert dc_state(dc, uuid) == before


def test_the_evacuation_plan_keeps_instances_off_cns_dapi_would_refuse(dc):
    """spare-server: encrypted, not bhyve capable, with trait ssd. Only an
    encrypted instance that asks for ssd goes there."""
    src = "old-server"
    asks = '{"ssd": true}'
    fits = dc.provision("--server", src, "--state", "stopped", "--encrypted", "--traits", asks)
    bhyve = dc.provision("--server", src, "--state", "stopped", "--encrypted", "--traits", asks,
                         "--brand", "bhyve")
    no_traits = dc.provision("--server", src, "--state", "stopped", "--encrypted")
    plain = dc.provision("--server", src, "--state", "stopped", "--traits", asks)
    dc.simdc("encrypt", SPARE, "on")
    dc.simdc("capability", SPARE, "--bhyve", "no", "--traits", asks)
    try:
        # old-server's net-agent of `simdc up` predates TRITON-1814, which
        # refuses its evacuation as a whole (test_oldplatform): one fixed since
        with net_agent(dc, src, "2.3.6"):
            p = dc.migrate("evacuate", "-j", "--dry-run", "--to=" + SPARE, src)
    finally:
        dc.simdc("capability", SPARE, "--reset", "--traits", "{}")
        dc.simdc("encrypt", SPARE, "off")
    assert p.returncode == 1, p.stdout + p.stderr      # some are not moved
    plan = {e["uuid"]: e for e in map(json.loads, p.stdout.splitlines())
            if e.get("event") == "plan"}
    assert plan[fits]["destination"] == SPARE, plan[fits]["reason"]
    why = {u: plan[u]["reason"] for u in (bhyve, no_traits, plain)}
    assert all(plan[u]["destination"] is None for u in why), why
    assert why[bhyve] == "fits on no destination: %s is not Bhyve Capable (sysinfo)" % SPARE
    assert why[no_traits] == (
        'fits on no destination: %s has traits {"ssd": true}; the instance asks for none (its'
        ' package and image): DAPI places only instances that ask for them there' % SPARE)
    assert why[plain] == (
        "fits on no destination: %s's pool is encrypted and the instance is not (no"
        " internal_metadata.encrypted): DAPI places only encrypted instances there" % SPARE)
    for uuid in (fits, bhyve, no_traits, plain):
        assert dc.vm(uuid)["server_uuid"] == dc.hosts()[src]["uuid"]
