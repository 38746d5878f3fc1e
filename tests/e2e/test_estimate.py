"""sdc-migrate estimate in the simulated datacenter: its sizes against zfs on
the compute node, its purge figure against their sum, and its round trips
against `simdc log`."""
import json

from conftest import ROOT

MB = 1048576


def sent(dc, host, names):
    """What zfs says a send of each dataset's history moves: its own blocks and
    its snapshots' (not REFER, which counts a clone's image)."""
    out = dc.exec(host, "zfs", "list", "-Hp", "-o", "name,usedbydataset,usedbysnapshots",
                  *names).stdout
    return sum(int(a) + int(b) for _, a, b in (l.split("\t") for l in out.splitlines()))


def sessions(records, host):
    """The ssh sessions (connection/remote command line) of host's records."""
    return {r["ssh_session"] for r in records if r["host"] == host and r.get("ssh_session")}


def estimate(dc, *args):
    p = dc.migrate("estimate", "-j", *args)
    assert p.returncode == 0, p.stdout + p.stderr
    return [json.loads(l) for l in p.stdout.splitlines()]


def test_sizes_equal_zfs_and_purge_is_their_sum_with_one_call_per_cn(dc):
    # stopped, so that no workload grows them between the estimate and the check
    host = "spare-server"
    uuids = [dc.provision("--server", host, "--state", "stopped", "--size", "3",
                          "--alias", "estimate-zone"),
             dc.provision("--server", host, "--state", "stopped", "--size", "2",
                          "--brand", "kvm", "--disks", "2"),
             dc.provision("--server", host, "--state", "stopped", "--size", "2",
                          "--brand", "bhyve", "--disks", "2")]
    mark = len(dc.log())
    objs = estimate(dc, host)
    records = dc.log()[mark:]
    listed = {o["uuid"]: o for o in objs if o["event"] == "instance"}
    cn, = [o for o in objs if o["event"] == "cn"]
    # other tests of the session may have left instances there too
    assert set(uuids) <= set(listed)
    instances = {u: listed[u] for u in uuids}
    counted = [i for i in listed.values() if i["note"] is None]
    for u in uuids:
        names = instances[u]["datasets"]
        assert "zones/" + u in names and "zones/cores/" + u not in names
        assert instances[u]["bytes"] == sent(dc, host, names)
    kvm, bhyve = instances[uuids[1]], instances[uuids[2]]
    assert {"zones/%s-disk0" % uuids[1], "zones/%s-disk1" % uuids[1]} <= set(kvm["datasets"])
    assert {"zones/%s/disk0" % uuids[2], "zones/%s/disk1" % uuids[2]} <= set(bhyve["datasets"])
    assert instances[uuids[0]]["alias"] == "estimate-zone"
    assert instances[uuids[0]]["bytes"] >= 3 * MB
    # the purge figure: the sum of the sizes, and of the estimates (20 MB/s + 2 minutes)
    assert cn["bytes"] == sum(i["bytes"] for i in counted)
    assert cn["instances"] == len(counted) and cn["rate_mb"] == 20
    assert abs(cn["purge_seconds"] - sum(i["estimate_seconds"] for i in counted)) < 0.2
    assert abs(cn["purge_seconds"] - (cn["bytes"] / MB / 20 + len(counted) * 120)) < 0.2
    # one remote call to the compute node: one ssh session ran both listings
    session, = sessions(records, host)
    ran = [r["argv"][:2] for r in records if r.get("ssh_session") == session]
    assert ran.count(["vmadm", "list"]) == 1
    assert any(a[0] == "zfs" for a in ran)


def test_every_compute_node_with_one_call_each_and_a_table(dc):
    # an instance on spare-server for the table, whatever ran before
    dc.provision("--server", "spare-server", "--state", "stopped", "--size", "1")
    mark = len(dc.log())
    objs = estimate(dc)
    records = dc.log()[mark:]
    cns = [o["cn"] for o in objs if o["event"] == "cn"]
    assert sorted(cns) == ["dest-server", "old-server", "source-server", "spare-server"]
    for host in cns:
        assert len(sessions(records, host)) == 1, host
        listings = [r for r in records if r["host"] == host and r.get("ssh_session")
                    and r["argv"][:2] == ["vmadm", "list"]]
        assert len(listings) == 1, host
    assert not sessions(records, "headnode")
    p = dc.migrate("estimate", "--rate=40", "spare-server")
    assert p.returncode == 0, p.stderr
    assert "spare-server (" in p.stdout and "ESTIMATE" in p.stdout
    assert "  purge spare-server:  " in p.stdout and "(at ~40 MB / second;" in p.stdout


def test_measure_uses_a_real_stream_and_leaves_nothing(dc):
    keys_before = dc.exec("dest-server", "cat", "/root/.ssh/authorized_keys").stdout
    objs = estimate(dc, "--measure=dest-server", "spare-server", "dest-server")
    spare, dest = [o for o in objs if o["event"] == "cn"]
    assert spare["cn"] == "spare-server" and spare["rate_measured"] and spare["rate_mb"] > 1
    assert dest["cn"] == "dest-server" and not dest["rate_measured"] and dest["rate_mb"] == 20
    for host in ("spare-server", "dest-server"):
        assert not [n for n in dc.zfs_names(host) if "measure" in n]
        assert "migr-" not in dc.exec(host, "ls", "/root/.ssh").stdout
    assert dc.exec("dest-server", "cat", "/root/.ssh/authorized_keys").stdout == keys_before


def test_on_a_compute_node_it_covers_its_own_instances(dc):
    p = dc.exec("spare-server", "%s/bin/sdc-migrate" % ROOT, "estimate", "-j", check=False)
    assert p.returncode == 0, p.stderr
    cn = [json.loads(l) for l in p.stdout.splitlines()][-1]
    assert cn["event"] == "cn" and cn["cn"] == "spare-server"
    assert cn["server_uuid"] == dc.hosts()["spare-server"]["uuid"]
    p = dc.exec("spare-server", "%s/bin/sdc-migrate" % ROOT, "estimate", "dest-server",
                check=False)
    assert p.returncode == 2 and p.stderr.count("\n") == 1


def test_unknown_compute_node_is_not_found(dc):
    p = dc.migrate("estimate", "no-such-server")
    assert p.returncode == 3 and p.stdout == ""
    assert p.stderr == "sdc-migrate estimate: error (NotFound): compute node no-such-server not found in CNAPI\n"
