"""An operator's habits from Triton's own CLIs (issue 24), in the simulated
datacenter: the tables' -H/-o/-s, `completion`, `show`, and the rate past
migrations measured. One small stopped instance, migrated once, serves them
all."""
import json

import pytest
from checks import journals
from dateutil.parser import isoparse

MB = 1048576


@pytest.fixture(scope="module")
def moved(dc):
    """A 2 MB stopped instance migrated source-server -> dest-server."""
    uuid = dc.provision("--server", "source-server", "--state", "stopped", "--size", "2",
                        "--alias", "habits-zone")
    p = dc.migrate("-y", uuid, "dest-server")
    assert p.returncode == 0, p.stdout + p.stderr
    return uuid


def seconds(a, b):
    return (isoparse(b) - isoparse(a)).total_seconds()


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


def test_show_tells_the_migrations_story_and_list_filters(dc, moved):
    j = json.loads(dc.migrate("show", "-j", moved).stdout)
    journal, = [r for r in journals(dc, moved)]
    assert (j["uuid"], j["source"], j["destination"], j["outcome"]) == \
        (moved, "source-server", "dest-server", "done")
    # every step the migration ran, in order, each start from the journal, and
    # its duration up to the next one's start (the last one's: to the end)
    ran = [r for r in journal if r["t"] == "step"]
    assert [s["step"] for s in j["steps"]] == [r["name"] for r in ran] and len(ran) > 5
    starts = [s["started"] for s in j["steps"]]
    assert starts == sorted(starts) and all(s["seconds"] >= 0 for s in j["steps"])
    end, = [r["at"] for r in journal if r["t"] == "end"]
    total = sum(s["seconds"] for s in j["steps"])
    assert abs(total - seconds(ran[0]["at"], end)) < 0.01
    # one round (a full migration), its size what the snapshot held
    rnd, = j["rounds"]
    assert rnd["bytes"] >= 2 * MB and rnd["send_seconds"] > 0
    # a stopped instance: no stop, no boot, no downtime
    assert j["stopped"] is None and j["booted"] is None and j["downtime_s"] is None
    assert any("cleanup-source %s" % moved in t for t in j["left_to_do"])
    assert any("rollback %s" % moved in t for t in j["left_to_do"])
    text = dc.migrate("show", moved).stdout
    assert "Outcome:  done" in text and "cleanup-source %s" % moved in text
    # list's filters
    assert rows(dc.migrate("list", "-H", "-o", "instance", "--instance", moved,
                           "--outcome", "done", "--cn", "dest-server")) == [[moved]]
    assert rows(dc.migrate("list", "-H", "--instance", moved, "--cn", "spare-server")) == [
        ["No", "migrations:", "no", "journal", "in", "/var/tmp", "that", "the", "filters",
         "take."]]
    p = dc.migrate("show", "00000000-0000-4000-8000-000000000000")
    assert p.returncode == 3 and p.stderr.count("\n") == 1


def test_estimate_and_the_plan_use_the_rate_past_migrations_measured(dc, moved):
    # the journals' sends out of source-server: bytes over the time they took
    sent = secs = 0
    runs, sources = set(), set()
    for name in dc.exec("headnode", "ls", "/var/tmp").stdout.split():
        if not (name.startswith("migrator-") and name.endswith(".journal")):
            continue
        recs = [json.loads(l) for l in dc.exec("headnode", "cat", "/var/tmp/" + name)
                .stdout.splitlines() if l.strip()]
        sources.add(recs[0].get("src", {}).get("hostname"))
        if recs[0].get("src", {}).get("hostname") != "source-server":
            continue
        sends = [r for r in recs if r["t"] == "sent" and r.get("bytes") and r.get("seconds")]
        if sends:
            runs.add(name)
            sent += sum(r["bytes"] for r in sends)
            secs += sum(r["seconds"] for r in sends)
    assert runs and secs > 0
    rate = sent / MB / secs
    objs = [json.loads(l) for l in dc.migrate("estimate", "-j", "source-server").stdout
            .splitlines()]
    cn, = [o for o in objs if o["event"] == "cn"]
    assert cn["rate_mb"] == round(rate, 1) and not cn["rate_measured"]
    assert cn["rate"].startswith("rate: %.0f MB/s, measured by %d migration"
                                 % (rate, len(runs)))
    assert "source-server -> dest-server" in cn["rate"]
    for i in (o for o in objs if o["event"] == "instance" and o["note"] is None):
        assert abs(i["estimate_seconds"] - (i["bytes"] / MB / rate + 120)) < 0.1
    # a CN no migration left: --rate
    other = min({"spare-server", "old-server", "dest-server"} - sources)
    unmeasured, = [o for o in map(json.loads, dc.migrate("estimate", "-j", "--rate=33", other)
                                  .stdout.splitlines()) if o["event"] == "cn"]
    assert unmeasured["rate_mb"] == 33 and "--rate" in unmeasured["rate"]
    # the evacuation's plan, from source-server to dest-server, reads the same
    dc.provision("--server", "source-server", "--state", "stopped", "--size", "1")
    plan = dc.migrate("evacuate", "--dry-run", "--to=dest-server", "source-server")
    assert "rate: %.0f MB/s, measured by" % rate in plan.stdout, plan.stdout + plan.stderr
