"""An operator's habits from Triton's own CLIs (issue 24), in the simulated
datacenter: the tables' -H/-o/-s, `completion`, `show`, and the rate past
migrations measured. One small stopped instance, migrated once, serves them
all."""
import json

import pytest

MB = 1048576


@pytest.fixture(scope="module")
def moved(dc):
    """A 2 MB stopped instance migrated source-server -> dest-server."""
    uuid = dc.provision("--server", "source-server", "--state", "stopped", "--size", "2",
                        "--alias", "habits-zone")
    p = dc.migrate("-y", uuid, "dest-server")
    assert p.returncode == 0, p.stdout + p.stderr
    return uuid


def rows(p):
    assert p.returncode == 0, p.stdout + p.stderr
    return [l.split() for l in p.stdout.splitlines() if l.strip()]


def test_tables_take_H_o_and_s_as_triton_s_do(dc, moved):
    # node-triton lib/common.js getCliTableOptions: -H, -o field,..., -s field,...
    listed = rows(dc.migrate("list", "-H", "-o", "instance,destination,outcome",
                             "-s", "-started"))
    assert [moved, "dest-server", "done"] in listed
    assert not any(r[0] == "INSTANCE" for r in listed)
    # estimate: sizes sorted by bytes (descending), as -j gives them
    objs = [json.loads(l) for l in dc.migrate("estimate", "-j", "dest-server").stdout.splitlines()]
    sizes = {o["uuid"]: o["bytes"] for o in objs if o["event"] == "instance"}
    table = rows(dc.migrate("estimate", "-H", "-o", "uuid,size", "-s", "-size", "dest-server"))
    listed = [r[0] for r in table if r[0] in sizes]
    assert moved in listed and set(listed) == set(sizes)
    got = [sizes[u] for u in listed]
    assert got == sorted(got, reverse=True)
    assert [r[1:] for r in table if r[0] == moved] == [[
        "%.2f" % (sizes[moved] / MB), "MBytes"]]


def test_completion_on_the_head_node_completes_cns_and_instances(dc, moved):
    # installed as sdcadm's is (sdcadm lib/cli/do_completion.js:
    # `sdcadm completion > /etc/bash/bash_completion.d/sdcadm`), here under
    # /var/tmp; then bash drives it as on a TAB (COMP_WORDS/COMP_CWORD)
    dc.exec("headnode", "sh", "-c", "/opt/custom/bin/sdc-migrate completion"
            " > /var/tmp/sdc-migrate.bash")
    drive = ('source /var/tmp/sdc-migrate.bash; COMP_WORDS=("$@");'
             ' COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _sdc_migrate;'
             ' printf "%s\\n" "${COMPREPLY[@]}"')

    def complete(*words):
        out = dc.exec("headnode", "bash", "-c", drive, "bash", "sdc-migrate", *words).stdout
        return [w for w in out.splitlines() if w]
    cns = sorted(s["hostname"] for s in dc.api("cnapi", "/servers")[2] if not s["headnode"])
    assert "dest-server" in cns and "headnode" not in cns
    assert complete("evacuate", "--to", "=", "") == cns
    assert complete("-y", moved, "de") == ["dest-server"]
    active = {v["uuid"] for v in dc.api("vmapi", "/vms?state=active")[2]}
    offered = complete("-y", "")
    assert moved in offered and set(offered) == active
    assert moved in complete("rollback", "-y", moved[:8])
    assert complete("list", "-o", "instance,out") == ["instance,outcome"]
    # what CNAPI said is kept a minute under /var/tmp
    kept = dc.exec("headnode", "cat", "/var/tmp/sdc-migrate-complete-cns.json").stdout
    assert json.loads(kept) == cns
