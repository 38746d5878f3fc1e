"""sdc-migrate nat-recreate in the simulated datacenter: the fabric network's
NAT zone moves from source-server to dest-server with the same gateway IP,
while an instance on that network keeps its NIC and IP."""


def nat_zones(dc, network):
    path = "/vms?state=active&tag.smartdc_role=nat&alias=nat-" + network
    return dc.api("vmapi", path)[2]


def zones_on(dc, host):
    return dc.exec(host, "zoneadm", "list", "-cp").stdout


def nat_on_source(dc):
    """The fabric network's NAT zone, on source-server: another test of the
    session may have made it already, elsewhere even."""
    fabric = dc.api("napi", "/networks?fabric=true")[2][0]["uuid"]
    zones = nat_zones(dc, fabric)
    if not zones:
        return dc.provision("--nat")
    if zones[0]["server_uuid"] != dc.hosts()["source-server"]["uuid"]:
        p = dc.migrate("nat-recreate", "-y", zones[0]["uuid"], "source-server")
        assert p.returncode == 0, p.stdout + p.stderr
        zones = nat_zones(dc, fabric)
    return zones[0]["uuid"]


def test_moves_the_nat_zone_to_dest_with_the_same_gateway(dc):
    nat = nat_on_source(dc)
    behind = dc.provision("--fabric", "--size", "1", "--alias", "behind-the-nat")
    hosts = dc.hosts()
    old = dc.vm(nat)
    network = old["alias"][len("nat-"):]
    net = dc.api("napi", "/networks/" + network)[2]
    gateway = net["gateway"]
    assert net["gateway_provisioned"] and old["server_uuid"] == hosts["source-server"]["uuid"]
    before = dc.vm(behind)

    p = dc.migrate("nat-recreate", "--list", "source-server")
    assert p.returncode == 0, p.stderr
    row, = [l.split() for l in p.stdout.splitlines() if l.startswith(nat)]
    assert row == [nat, network, gateway, "source-server", "running"]

    p = dc.migrate("nat-recreate", "-y", nat, "dest-server")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Success!" in p.stdout

    # one NAT zone for the network, running on dest-server, holding the gateway
    new, = nat_zones(dc, network)
    assert new["uuid"] != nat and new["state"] == "running"
    assert new["server_uuid"] == hosts["dest-server"]["uuid"]
    assert new["tags"]["smartdc_role"] == "nat" and new["brand"] == "joyent-minimal"
    assert [n["ip"] for n in new["nics"] if n["network_uuid"] == network] == [gateway]
    assert new["uuid"] in zones_on(dc, "dest-server")
    net = dc.api("napi", "/networks/" + network)[2]
    assert net["gateway_provisioned"]
    ip = dc.api("napi", "/networks/%s/ips/%s" % (network, gateway))[2]
    assert ip["belongs_to_uuid"] == new["uuid"]
    # the old one is gone: from VMAPI, SAPI and source-server
    assert dc.vm(nat)["state"] == "destroyed"
    assert dc.api("sapi", "/instances/" + nat)[0] == 404
    assert dc.api("sapi", "/instances/" + new["uuid"])[0] == 200
    assert nat not in zones_on(dc, "source-server")
    assert not [n for n in dc.zfs_names("source-server") if nat in n]

    # the instance behind it kept its NIC and IP, in VMAPI and in NAPI
    after = dc.vm(behind)
    assert [(n["mac"], n["ip"]) for n in after["nics"]] == \
        [(n["mac"], n["ip"]) for n in before["nics"]]
    assert after["state"] == "running" and after["server_uuid"] == before["server_uuid"]
    for n in before["nics"]:
        nic = dc.api("napi", "/nics/" + n["mac"].replace(":", ""))[2]
        assert nic["belongs_to_uuid"] == behind and nic["ip"] == n["ip"]

    p = dc.migrate("nat-recreate", "--list")
    assert p.returncode == 0
    row, = [l.split() for l in p.stdout.splitlines() if l.startswith(new["uuid"])]
    assert row[2:] == [gateway, "dest-server", "running"]

    # the destroyed one cannot be recreated twice
    p = dc.migrate("nat-recreate", "-y", nat, "spare-server")
    assert p.returncode == 2 and "another NAT zone serves it" in p.stderr
    assert len(nat_zones(dc, network)) == 1


def test_refuses_what_is_not_a_nat_zone(dc):
    uuid = dc.provision("--size", "1", "--alias", "not-a-nat")
    p = dc.migrate("nat-recreate", "-y", uuid, "dest-server")
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert dc.vm(uuid)["state"] == "running"
    p = dc.migrate("nat-recreate", "-y", "00000000-0000-4000-8000-000000000000")
    assert p.returncode == 3
