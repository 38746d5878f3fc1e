"""--bwlimit in the simulated datacenter: the stream between the CNs holds to
the limit (the source's zfs send and the destination's zfs recv in the
datacenter's log), the migration is whole, and the plans say so."""
from checks import assert_migrated


def test_a_limited_migration_is_whole_and_no_faster_than_its_limit(dc):
    uuid = dc.provision("--size", "12", "--state", "stopped", "--alias", "slow-lane")
    before = dc.vm(uuid)
    mark = len(dc.log())
    p = dc.migrate("-y", "--bwlimit=3M", uuid, "dest-server")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "bandwidth limit:  3.00 MBytes / second" in p.stdout
    assert "(@ ~3 MB / second" in p.stdout          # the estimate counts with it
    assert_migrated(dc, uuid, before, p.stdout)
    log = dc.log()[mark:]
    send = [r for r in log if r["host"] == "source-server" and r["argv"][:2] == ["zfs", "send"]
            and "-n" not in r["argv"] and ("zones/%s@" % uuid) in r["argv"][-1]]
    recv = [r for r in log if r["host"] == "dest-server" and r["argv"][:2] == ["zfs", "recv"]
            and r["argv"][-1] == "zones/" + uuid]
    assert len(send) == 1 and len(recv) == 1
    # 12 MB of random data cannot pass at 3 MB/s in under 4 s (10% for the
    # first chunk, which goes at once)
    assert recv[0]["end"] - send[0]["start"] >= 0.9 * 12 / 3


def test_an_evacuation_plan_shows_its_limit_and_each_migrations_share(dc):
    # two it can move, so that two run at once (--concurrency, --per-cn's 2)
    for _ in range(2):
        dc.provision("--server", "source-server", "--state", "stopped", "--size", "1")
    p = dc.migrate("evacuate", "--dry-run", "--concurrency=2", "--bwlimit=8M", "source-server")
    # 1: the plan has instances it cannot move (core zones of other tests)
    assert p.returncode in (0, 1), p.stdout + p.stderr
    assert "Bandwidth limit: 8.00 MBytes / second in all, 4.00 MBytes / second for each" \
           " migration" in p.stdout
