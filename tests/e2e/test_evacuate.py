"""sdc-migrate evacuate, list and finish, in a datacenter of their own: the
evacuation empties source-server, which the other tests fill with instances."""
import json
import os
import signal
import subprocess
import time

import pytest

from checks import data_digest, kept_snapshot, net_agent
from conftest import SDC_MIGRATE, SIMDC, booted, dc_env

SRC = "source-server"
DESTS = ("dest-server", "spare-server")


@pytest.fixture(scope="module")
def evac():
    env = dc_env()
    net = int(env["SIMDC_NET"])         # a third octet of its own, under 256
    with booted(dict(env, SIMDC_DIR=env["SIMDC_DIR"] + "-evac",
                     SIMDC_NET=str(net + 100 if net + 100 < 256 else net + 5))) as d:
        yield d


def journals(dc):
    return {m["uuid"]: m for m in map(json.loads,
                                      dc.migrate("list", "-j").stdout.splitlines())}


def active_on(dc, host):
    uuid = dc.hosts()[host]["uuid"]
    return dc.api("vmapi", "/vms?server_uuid=%s&state=active" % uuid)[2]


def assert_moved(dc, uuid, before, seq_before):
    """On a destination, in its prior state, its data and workload intact, the
    source copy hidden for cleanup-source, nothing else left behind."""
    hosts = dc.hosts()
    vm = dc.vm(uuid)
    dest = [h for h in DESTS if hosts[h]["uuid"] == vm["server_uuid"]]
    assert dest, "%s is not on a destination" % uuid
    dest = dest[0]
    assert vm["state"] == before["state"]
    zone = dc.exec(dest, "zoneadm", "-z", uuid, "list", "-p").stdout.split(":")[2]
    assert zone == ("running" if before["state"] == "running" else "installed")
    assert 'name="do-not-inventory"' in dc.exec(SRC, "cat", "/etc/zones/%s.xml" % uuid).stdout
    assert data_digest(dc, SRC, uuid) == data_digest(dc, dest, uuid)
    if seq_before is not None:
        # every record written on the source is on the destination, no gap, and more
        time.sleep(0.5)
        old, new = dc.seq_lines(SRC, uuid), dc.seq_lines(dest, uuid)
        assert len(old) >= seq_before and new[:len(old)] == old
        numbers = [int(l[0]) for l in new]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        assert len(new) > len(old)
    return dest


def assert_nothing_left(dc):
    for host in (SRC,) + DESTS:
        # of each migration, its last snapshot only: kept for `sdc-migrate rollback`
        for n in dc.zfs_names(host):
            if "_ops_migration_" in n:
                assert n.split("@")[1] == kept_snapshot(dc, n.split("/")[1][:36]), (host, n)
        assert "migr-" not in dc.exec(host, "ls", "/root/.ssh").stdout, host
        assert "sdc-migrate-" not in dc.exec(host, "cat", "/root/.ssh/authorized_keys").stdout
    assert "sdc-migrate-" not in dc.exec(
        "headnode", "sh", "-c", "ls /var/tmp | grep '\\.lock$' || true").stdout


def provision_six(dc):
    kinds = [["--brand", "joyent", "--fabric", "--size", "6"],
             ["--brand", "lx", "--docker", "--state", "stopped", "--size", "3"],
             ["--brand", "kvm", "--size", "4"],
             ["--brand", "bhyve", "--state", "stopped", "--size", "2"],
             ["--brand", "joyent-minimal", "--alias", "web; echo $(id) `id` 'q'", "--size", "1"]]
    uuids = [dc.provision("--server", SRC, *k) for k in kinds]
    nat = dc.provision("--server", SRC, "--nat")
    return uuids, nat


def test_evacuate_six_instances_onto_two_cns_two_at_a_time(evac):
    dc = evac
    uuids, nat = provision_six(dc)
    before = {u: dc.vm(u) for u in uuids}
    nat_vm = dc.vm(nat)
    seq = {u: dc.seq(SRC, u) if before[u]["state"] == "running" else None for u in uuids}

    plan = dc.migrate("evacuate", "--dry-run", "--to=%s" % ",".join(DESTS), SRC)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    for u in uuids + [nat]:
        assert u in plan.stdout
    assert "(nat-recreate)" in plan.stdout and "Total: 6 to move" in plan.stdout
    assert len(active_on(dc, SRC)) == 6            # a dry run moves nothing

    p = dc.migrate("evacuate", "-y", "--concurrency", "2", "--to=%s" % ",".join(DESTS), SRC)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "6 of 6 moved." in p.stdout
    used = {assert_moved(dc, u, before[u], seq[u]) for u in uuids}
    assert used == set(DESTS)                      # the plan spread them
    # the NAT zone: recreated on a destination, for the same fabric network, same gateway
    assert dc.vm(nat)["state"] == "destroyed"
    nats = [v for h in DESTS for v in active_on(dc, h) if v["alias"] == nat_vm["alias"]]
    assert len(nats) == 1 and nats[0]["state"] == "running"
    gw = [n["ip"] for n in nat_vm["nics"] if n["ip"] in [m["ip"] for m in nats[0]["nics"]]]
    assert gw, "the new NAT zone does not hold the old one's gateway IP"
    assert active_on(dc, SRC) == []
    assert_nothing_left(dc)
    # list shows each migration, done, with its rounds
    listed = journals(dc)
    for u in uuids:
        assert listed[u]["outcome"] == "done" and listed[u]["source"] == SRC
        assert listed[u]["rounds"] >= 2
        assert listed[u]["alias"] == before[u]["alias"]
    table = dc.migrate("list").stdout
    assert all(u in table for u in uuids)


def test_one_failure_rolls_back_that_instance_only_and_a_rerun_moves_it(evac):
    dc = evac
    uuids = [dc.provision("--server", SRC, "--size", "2"),
             dc.provision("--server", SRC, "--brand", "lx", "--state", "stopped", "--size", "1"),
             dc.provision("--server", SRC, "--brand", "joyent-minimal", "--size", "1")]
    victim = uuids[0]
    before = {u: dc.vm(u) for u in uuids}
    for h in DESTS:
        dc.simdc("fault", "add", h, "--", "zoneadm", "-z", victim, "attach")
    try:
        p = dc.migrate("evacuate", "-y", "--concurrency", "2", SRC)
    finally:
        dc.simdc("fault", "clear")
    assert p.returncode == 4, p.stdout + p.stderr
    assert "2 of 3 moved." in p.stdout
    row = [l for l in p.stdout.splitlines() if l.startswith(victim) and "rolled back" in l]
    assert row, p.stdout
    # the victim is where and as it was; the others moved
    vm = dc.vm(victim)
    assert vm["server_uuid"] == dc.hosts()[SRC]["uuid"] and vm["state"] == "running"
    assert 'do-not-inventory' not in dc.exec(SRC, "cat", "/etc/zones/%s.xml" % victim).stdout
    for h in DESTS:
        assert not [n for n in dc.zfs_names(h) if victim in n]
    for u in uuids[1:]:
        assert_moved(dc, u, before[u], None)
    assert_nothing_left(dc)
    assert journals(dc)[victim]["outcome"] == "rolled-back"

    # run again: only what is left is planned, and it moves
    again = dc.migrate("evacuate", "-y", SRC)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 of 1 moved." in again.stdout
    assert all(u not in again.stdout for u in uuids[1:])
    assert_moved(dc, victim, before[victim], dc.seq(SRC, victim))
    assert active_on(dc, SRC) == []


def test_evacuate_refuses_bad_input_and_changes_nothing(evac):
    dc = evac
    uuid = dc.provision("--server", SRC, "--size", "1")
    cases = [(["evacuate", "-y", "no-such-server"], 3, "not found"),
             (["evacuate", "-y", "--to=%s" % SRC, SRC], 2, "being evacuated"),
             (["evacuate", "-y", "--concurrency=0", SRC], 2, "--concurrency"),
             (["evacuate", "-j", SRC], 2, "-j needs -y"),
             (["evacuate", SRC], 2, "not confirmed")]
    for args, status, message in cases:
        p = dc.migrate(*args, input="n\n")
        assert p.returncode == status, (args, p.stdout, p.stderr)
        assert message in p.stderr, (args, p.stderr)
        assert dc.vm(uuid)["server_uuid"] == dc.hosts()[SRC]["uuid"]
    assert not [n for h in DESTS for n in dc.zfs_names(h) if uuid in n]


def test_finish_ends_the_rounds_of_an_incremental_migration(evac):
    dc = evac
    uuid = dc.provision("--server", SRC, "--size", "1")
    tool = subprocess.Popen([SIMDC, "exec", "headnode", "--", SDC_MIGRATE, "-y", "-i",
                             "--interval", "600", uuid, DESTS[0]], env=dc.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while "Sleeping for 600 seconds" not in dc.exec(
            "headnode", "sh", "-c", "cat /var/tmp/migrator-%s-*.log 2>/dev/null || true"
            % uuid).stdout:
        assert time.time() < deadline and tool.poll() is None, "no round was sent"
        time.sleep(0.3)
    listed = journals(dc)[uuid]
    assert listed["outcome"] == "running" and listed["phase"] == "round 0"
    p = dc.migrate("finish", uuid)
    assert p.returncode == 0, p.stdout + p.stderr
    out = tool.communicate(timeout=120)[0].decode()
    assert tool.returncode == 0, out
    assert dc.vm(uuid)["server_uuid"] == dc.hosts()[DESTS[0]]["uuid"]
    assert journals(dc)[uuid]["outcome"] == "done"
    # nothing to finish any more: not found
    p = dc.migrate("finish", uuid)
    assert p.returncode == 3 and "no incremental migration" in p.stderr
    assert dc.migrate("finish", "not-a-uuid").returncode == 2


def test_max_delta_rounds_go_on_until_the_delta_is_small_or_stops_shrinking(evac):
    dc = evac
    # a limit every round meets: one live round, then the stop
    quick = dc.provision("--server", SRC, "--size", "1")
    p = dc.migrate("-y", "-a", "--interval", "0", "--max-delta", "100M", quick, DESTS[0])
    assert p.returncode == 0, p.stdout + p.stderr
    assert "under the limit of 100.00 MBytes: stopping the instance now" in p.stdout
    assert journals(dc)[quick]["rounds"] == 3          # full, one live, the final one
    # a limit no round meets (1 byte): rounds go on until the delta stops
    # shrinking for three rounds, or ten have run
    busy = dc.provision("--server", SRC, "--size", "1")
    seq = dc.seq(SRC, busy)
    p = dc.migrate("-y", "-a", "--interval", "0", "--max-delta", "1", busy, DESTS[1])
    assert p.returncode == 0, p.stdout + p.stderr
    assert "not shrunk for 3 rounds: stopping" in p.stdout or "10 rounds have run" in p.stdout
    rounds = journals(dc)[busy]["rounds"]
    assert 5 <= rounds <= 11, rounds                  # >= 1 + 3 live + final, <= 10 + final
    assert_moved(dc, busy, dict(state="running"), seq)
    assert dc.migrate("-y", "--max-delta", "1M", busy, DESTS[0]).returncode == 2


# ---- issue 21: drain, several sources, per-CN budgets, preflight -------------------------

OLD = "old-server"


def reserved(dc, host):
    """CNAPI's reserved flag of host (sdc-cnapi lib/endpoints/servers.js
    ServerUpdate sets it; DAPI's hard-filter-reserved.js places nothing there)."""
    return dc.api("cnapi", "/servers/" + dc.hosts()[host]["uuid"])[2]["reserved"]


def small(dc, host, n):
    return [dc.provision("--server", host, "--brand", "joyent-minimal", "--state", "stopped",
                         "--size", "1") for _ in range(n)]


def test_the_source_is_reserved_while_evacuated_and_put_back_after_a_kill_and_a_rerun(evac):
    dc = evac
    small(dc, SRC, 1)
    assert reserved(dc, SRC) is False
    tool = subprocess.Popen([SIMDC, "exec", "headnode", "--", SDC_MIGRATE, "evacuate", "-y",
                             "--concurrency", "1", SRC], env=dc.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 60
    while not reserved(dc, SRC):
        assert time.time() < deadline and tool.poll() is None, tool.communicate()[0]
        time.sleep(0.2)
    os.killpg(tool.pid, signal.SIGKILL)
    tool.communicate()
    assert reserved(dc, SRC) is True            # killed: nothing put it back
    # the rerun finds it reserved, and puts back what the first run journaled
    p = dc.migrate("evacuate", "-y", SRC)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "source-server is no longer reserved in CNAPI" in p.stdout
    assert reserved(dc, SRC) is False and active_on(dc, SRC) == []
    # --keep-reserved (for maintenance, even with nothing left): it stays; restore lifts it
    p = dc.migrate("evacuate", "-y", "--keep-reserved", SRC)
    assert p.returncode == 0 and "Nothing to move" in p.stdout, p.stdout + p.stderr
    assert reserved(dc, SRC) is True and "`sdc-migrate restore source-server`" in p.stdout
    p = dc.migrate("restore", SRC)
    assert (p.returncode, p.stdout) == (0, "source-server is no longer reserved in CNAPI, as it"
                                            " was before its evacuation\n"), p.stderr
    assert reserved(dc, SRC) is False
    assert "nothing to restore" in dc.migrate("restore", SRC).stdout
    assert dc.migrate("restore", "no-such-server").returncode == 3
    assert_nothing_left(dc)


def overlaps(spans):
    """The most intervals (start, end) open at once."""
    edges = sorted([(s, 1) for s, e in spans] + [(e, -1) for s, e in spans])
    most = now = 0
    for _, d in edges:
        now += d
        most = max(most, now)
    return most


def test_two_sources_in_one_plan_never_onto_each_other_nor_over_per_cn(evac):
    dc = evac
    # old-server's net-agent as updated: 2.3.0 would be refused (test_oldplatform)
    with net_agent(dc, OLD, "2.3.6"):
        since = time.time()
        mine = small(dc, SRC, 2) + small(dc, OLD, 2)
        plan = [json.loads(l) for l in dc.migrate("evacuate", "-j", "--dry-run", SRC, OLD)
                .stdout.splitlines()]
        dests = {e["uuid"]: e["destination"] for e in plan if e["event"] == "plan"}
        assert set(mine) <= set(dests) and set(dests.values()) <= set(DESTS), dests
        p = dc.migrate("evacuate", "-y", "--per-cn=1", "--concurrency=4", SRC, OLD)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "4 of 4 moved." in p.stdout
        for u in mine:
            assert dc.vm(u)["server_uuid"] in {dc.hosts()[h]["uuid"] for h in DESTS}
        assert active_on(dc, SRC) == [] and active_on(dc, OLD) == []
        assert reserved(dc, SRC) is False and reserved(dc, OLD) is False
        # the datacenter's own log: never two streams at once on any CN
        streams = {}
        for rec in dc.log():
            if rec["start"] >= since and rec["argv"][:2] in (["zfs", "send"], ["zfs", "recv"],
                                                              ["zfs", "receive"]):
                streams.setdefault(rec["host"], []).append((rec["start"], rec["end"]))
        assert set(streams) == {SRC, OLD} | set(DESTS), streams.keys()
        assert {h: overlaps(s) for h, s in streams.items()} == {h: 1 for h in streams}
        assert_nothing_left(dc)


def test_an_evacuation_killed_midway_is_finished_by_running_it_again(evac):
    dc = evac
    uuids = [dc.provision("--server", SRC, "--size", "2") for _ in range(3)]
    before = {u: dc.vm(u) for u in uuids}
    plan = [json.loads(l) for l in dc.migrate("evacuate", "-j", "--dry-run", SRC)
            .stdout.splitlines()]
    planned = [e["uuid"] for e in plan if e["event"] == "plan"]
    assert set(uuids) <= set(planned)        # and what earlier tests left there
    assert plan[-1]["event"] == "plan-total" and plan[-1]["instances"] == len(planned)
    tool = subprocess.Popen([SIMDC, "exec", "headnode", "--", SDC_MIGRATE, "evacuate", "-y",
                             "--concurrency", "1", SRC], env=dc.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    # kill it (and the migration it runs) once one moved and the next is under way
    deadline = time.time() + 120
    while True:
        listed = [m for m in journals(dc).values() if m["uuid"] in uuids]
        if any(m["outcome"] == "done" for m in listed) and \
                any(m["outcome"] == "running" and m["phase"] != "preparing" for m in listed):
            break
        assert time.time() < deadline and tool.poll() is None, tool.communicate()[0]
        time.sleep(0.2)
    os.killpg(tool.pid, signal.SIGKILL)
    tool.communicate()
    interrupted = [m["uuid"] for m in journals(dc).values()
                   if m["uuid"] in uuids and m["outcome"] == "interrupted"]
    assert len(interrupted) == 1
    p = dc.migrate("evacuate", "-y", SRC)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "finishing or undoing the interrupted migration of %s" % interrupted[0] in p.stdout
    for u in uuids:
        assert_moved(dc, u, before[u], None)
    assert active_on(dc, SRC) == []
    assert_nothing_left(dc)


def test_ctrl_c_rolls_back_the_running_migrations_and_reports_them(evac):
    dc = evac
    uuids = [dc.provision("--server", SRC, "--size", "8") for _ in range(2)]
    # both full sends slow: the ^C comes while both migrations are under way
    dc.simdc("fault", "add", SRC, "--times", "2", "--delay", "4", "--exit", "0", "--",
             "zfs", "send")
    tool = subprocess.Popen([SIMDC, "exec", "headnode", "--", SDC_MIGRATE, "evacuate", "-y",
                             "-j", "--concurrency", "2", SRC], env=dc.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.time() + 60
        while "[]" not in dc.simdc("fault", "list").stdout.replace("\n", "").replace(" ", ""):
            assert time.time() < deadline and tool.poll() is None, tool.communicate()[0]
            time.sleep(0.1)
    finally:
        dc.simdc("fault", "clear")
    time.sleep(0.3)
    os.killpg(tool.pid, signal.SIGINT)       # as a terminal sends it
    out = tool.communicate(timeout=180)[0].decode()
    assert tool.returncode == 130, out
    events = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    started = {e["uuid"]: e["output"] for e in events if e["event"] == "started"}
    finished = {e["uuid"]: e for e in events if e["event"] == "finished"}
    assert set(uuids) <= set(started) and set(finished) == set(started), out
    for u in uuids:
        assert (finished[u]["result"], finished[u]["exit_status"]) == ("rolled back", 4), out
        assert finished[u]["detail"].endswith("interrupted by SIGINT"), out
        # where and as it was, nothing of it on a destination
        vm = dc.vm(u)
        assert vm["server_uuid"] == dc.hosts()[SRC]["uuid"] and vm["state"] == "running"
        assert not [n for h in DESTS for n in dc.zfs_names(h) if u in n]
        assert journals(dc)[u]["outcome"] == "rolled-back"
        # its output file: the migration's own lines, then its error line
        lines = dc.exec("headnode", "cat", started[u]).stdout.splitlines()
        error = "sdc-migrate: error (RolledBack): migration of %s failed" % u
        said = [k for k, l in enumerate(lines) if l.startswith(error)]
        assert "Here we go..." in lines and said and said[0] > lines.index("* Rolling back:"), \
            lines
    assert not any(e["event"] == "summary" for e in events)
    assert_nothing_left(dc)
    # interrupted, the source stays drained until a rerun ends or restore lifts it
    assert [e["cns"] for e in events if e["event"] == "still-drained"] == [[SRC]], out
    assert reserved(dc, SRC) is True
    assert dc.migrate("restore", SRC).returncode == 0 and reserved(dc, SRC) is False


# ---- issue 21 (last: it leaves instances on the source) ----------------------------------


def test_a_dry_run_lists_every_blocker_of_every_instance_and_says_the_plan_is_not_clean(evac):
    dc = evac
    clean, record, locked = small(dc, SRC, 3)
    core = dc.provision("--server", SRC, "--core", "--state", "stopped")
    encrypted = dc.provision("--server", SRC, "--state", "stopped", "--size", "1",
                             "--encrypted")
    # a Triton (RFD 34) migration, as its workflow stores it (sdc-vmapi
    # lib/endpoints/vms.js StoreMigrationRecord)
    dc.api("vmapi", "/migrations/%s/store" % record, "-X", "POST", "-d", json.dumps(
        {"vm_uuid": record, "source_server_uuid": dc.hosts()[SRC]["uuid"], "phase": "sync",
         "state": "paused", "automatic": False, "progress_history": []}))
    # another sdc-migrate's lock on one, held until its stdin closes
    drained = reserved(dc, SRC)
    holder = subprocess.Popen([SIMDC, "exec", "headnode", "--", "flock", "-n",
                               "/var/tmp/sdc-migrate-%s.lock" % locked, "sh", "-c",
                               "echo locked; read x"], env=dc.env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"locked\n"
        text = dc.migrate("evacuate", "--dry-run", "--to=" + DESTS[0], SRC)
        p = dc.migrate("evacuate", "--dry-run", "-j", "--to=" + DESTS[0], SRC)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert text.returncode == 1 and p.returncode == 1, text.stdout + text.stderr
    plan = {e["uuid"]: e for e in map(json.loads, p.stdout.splitlines())
            if e["event"] == "plan"}
    assert plan[clean]["destination"] == DESTS[0] and plan[clean]["blockers"] == []
    assert plan[clean]["why"].startswith("the only one that fits")
    blockers = {u: " | ".join(plan[u]["blockers"]) for u in (record, locked, core, encrypted)}
    assert all(plan[u]["destination"] is None for u in blockers), blockers
    assert "a Triton migration (sdc-vmapi /migrations/%s) in phase sync, state paused" \
        % record in blockers[record]
    assert "another sdc-migrate holds it" in blockers[locked]
    assert "core zone" in blockers[core]
    assert "fits on no destination: dest-server's pool is not encrypted" in blockers[encrypted]
    # the table says the same, and why the clean one goes where it goes
    for u in (record, locked, core, encrypted):
        assert "  %s (" % u in text.stdout.split("Not moved:")[1]
    assert "%s (%s) to %s: the only one that fits" % (clean, dc.vm(clean)["alias"] or "-",
                                                      DESTS[0]) in text.stdout
    # a dry run changes nothing
    assert reserved(dc, SRC) is drained
    assert {v["uuid"] for v in active_on(dc, SRC)} >= {clean, record, locked, core, encrypted}
