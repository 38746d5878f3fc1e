"""For scripts and the cautious: `sdc-migrate -j` (one JSON event a line) and
`sdc-migrate --dry-run` (every command a migration would run, nothing changed),
checked from outside the tool as the other end-to-end tests are."""
import json
import re
import time

from checks import assert_migrated, assert_sequence_continues, dc_state

from sdc_migrate.commands.migrate import FULL

SRC, DST = "source-server", "dest-server"


def events(p):
    """Every stdout line of a -j run, parsed: a line that is not JSON fails here."""
    return [json.loads(line) for line in p.stdout.splitlines()]


def assert_steps_pair(evs):
    """Each step_start is ended by its step_done or step_failed before the next starts."""
    open_step = None
    for e in evs:
        if e["event"] == "step_start":
            assert open_step is None, "step %r never ended" % open_step
            open_step = e["step"]
        elif e["event"] in ("step_done", "step_failed"):
            assert e["step"] == open_step
            open_step = None
    assert open_step is None


def test_json_migration_is_one_event_a_line_and_ends_with_a_summary(dc):
    uuid = dc.provision("--size", "16")
    before = dc.vm(uuid)
    # a slow receiver: the send lasts seconds, and zfs send -vP reports once a second
    dc.simdc("fault", "add", DST, "--delay", "2.5", "--exit", "0", "--", "zfs", "recv")
    try:
        p = dc.migrate("-j", "-y", uuid, DST)
    finally:
        dc.simdc("fault", "clear")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stderr == ""
    evs = events(p)
    assert_steps_pair(evs)
    steps = [e["step"] for e in evs if e["event"] == "step_done"]
    assert "* Importing & Attaching Zone on %s..." % DST in steps
    progress = [e for e in evs if e["event"] == "progress"]
    assert len(progress) >= 2, "no progress events during a send of seconds"
    for e in progress:
        assert 0 < e["sent_bytes"] <= e["total_bytes"] and e["step"].startswith("+ Tranferring")
    # not more than a few a second
    stamps = [time.mktime(time.strptime(e["time"][:19], "%Y-%m-%dT%H:%M:%S")) for e in progress]
    assert len(progress) <= 2 * (stamps[-1] - stamps[0] + 1)
    summary = evs[-1]
    assert summary["event"] == "summary"
    assert (summary["uuid"], summary["source"], summary["destination"]) == (uuid, SRC, DST)
    assert (summary["outcome"], summary["exit_status"], summary["type"]) == ("done", 0, "full")
    assert 0 < summary["downtime_s"] < summary["duration_s"]
    assert summary["increments"] == 1
    # the log on the head node is the human one, as without -j
    log = dc.exec("headnode", "cat", summary["log_file"]).stdout
    assert "{" not in log
    assert_migrated(dc, uuid, before, log)
    assert_sequence_continues(dc, uuid)


def without_ssh_cache(state):
    # the ssh ControlMaster directory any gather makes is the tool's connection
    # cache, not a change to the datacenter
    state["headnode"] = state["headnode"].replace("sdc-migrate-ssh\n", "")
    return state


def test_dry_run_lists_every_command_by_host_and_changes_nothing(dc):
    uuid = dc.provision("--size", "1")
    before = without_ssh_cache(dc_state(dc, uuid))
    since = time.time()
    p = dc.migrate("--dry-run", uuid, DST)
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    assert "We will be migrating:" in out and "Are you ready" not in out
    commands = out.split("in order:\n", 1)[1].splitlines()
    assert commands[-1] == "  - Dry run: nothing was changed."

    def first(pattern):
        found = [i for i, c in enumerate(commands) if re.match(pattern, c)]
        assert found, "no command like %r in:\n%s" % (pattern, out)
        return found[0]
    key = first(r"source-server: sh -c .*ssh-keygen")
    reserve = first(r"headnode: /opt/smartdc/bin/sdc-napi /networks/\S+/ips/\S+ -X PUT .*\"reserved\": true")
    # the UUID an argument of the script, never in its text (sh -c S sh UUID)
    stop = first(r"source-server: sh -c 'vmadm stop \"\$1\" .*' sh %s " % uuid)
    snapshot = first(r"source-server: .*zfs snapshot zones/%s@sdc-migrate_ops_migration_" % uuid)
    send = first(r"source-server: bash -o pipefail -c 'zfs send .*zfs recv")
    attach = first(r"dest-server: .*zoneadm -z %s attach" % uuid)
    boot = first(r"dest-server: .*vmadm start %s" % uuid)
    unreserve = first(r"headnode: /opt/smartdc/bin/sdc-napi .* -X PUT .*\"reserved\": false")
    unkey = first(r"source-server: rm -f /root/.ssh/migr-key-")
    assert key < reserve < stop < snapshot < send < attach < boot < unreserve < unkey
    # the migration's literal list of steps, each said before its commands
    said = [(i, re.match(r"-- step (\d+) of (\d+): (.*) \(", c)) for i, c in enumerate(commands)
            if c.startswith("-- step ")]
    assert [m.group(3) for _, m in said] == [s.what for s in FULL]
    assert [(int(m.group(1)), int(m.group(2))) for _, m in said] == \
        [(n, len(FULL)) for n in range(1, len(FULL) + 1)]
    at = {FULL[k].name: i for k, (i, _) in enumerate(said)}
    assert at["key"] < key < at["authorized"] and at["stop"] < stop < at["snapshots"]
    assert at["attach"] < attach < at["hidden"] and at["boot"] < boot < at["health"]
    # nothing changed: VMAPI, NAPI, both pools, zone configurations, keys,
    # and no journal, log, state or lock file on the head node
    assert without_ssh_cache(dc_state(dc, uuid)) == before
    assert "migrator-%s" % uuid not in before["headnode"]
    assert "sdc-migrate-%s.lock" % uuid not in before["headnode"]
    for host in (SRC, DST):
        assert "migr-" not in dc.exec(host, "ls", "/root/.ssh").stdout
    # and from the datacenter's own log: the CNs ran only what reads
    reads = {("zfs", "list"), ("zfs", "get"), ("ndd", "-get"), ("zoneadm", "list"),
             ("vmadm", "list"), ("vmadm", "get"), ("imgadm", "get"), ("imgadm", "list"),
             ("sysinfo",)}
    for e in dc.log():
        if e.get("agent"):      # the CN agents' own API traffic (vm-agent, net-agent)
            continue
        if e["start"] >= since and e["host"] in (SRC, DST):
            assert tuple(e["argv"][:2]) in reads or tuple(e["argv"][:1]) in reads or \
                e["argv"][0] == "zonecfg" and e["argv"][3:] == ["export"], e
        if e["start"] >= since and e["host"] == "napi":
            assert e["argv"][0] == "GET", e
        if e["start"] >= since and e["host"] == "cnapi":     # vm-agents' heartbeats POST
            assert e["argv"][0] == "GET" or e["argv"][1].startswith("/servers/"), e
        if e["start"] >= since and e["host"] == "vmapi":    # vm-agents report with PUT
            assert e["argv"][0] == "GET" or e["argv"][1].startswith("/vms?server_uuid="), e


def test_dry_run_with_json_gives_command_events_and_needs_no_y(dc):
    uuid = dc.provision("--size", "1", "--state", "stopped")
    before = without_ssh_cache(dc_state(dc, uuid))
    p = dc.migrate("--dry-run", "-j", uuid, DST)
    assert p.returncode == 0, p.stdout + p.stderr
    evs = events(p)
    hosts = {e["host"] for e in evs if e["event"] == "command"}
    assert hosts == {"headnode", SRC, DST}
    assert [e["step"] for e in evs if e["event"] == "plan_step"] == [s.name for s in FULL]
    assert not [e for e in evs if e["event"] == "command" and "vmadm stop" in e["command"]]
    assert (evs[-1]["event"], evs[-1]["outcome"], evs[-1]["log_file"]) == \
        ("summary", "dry-run", None)
    assert without_ssh_cache(dc_state(dc, uuid)) == before


def test_json_failure_reports_the_failed_step_each_undo_and_exit_4(dc):
    uuid = dc.provision("--size", "1")
    before = dc_state(dc, uuid)
    dc.simdc("fault", "add", DST, "--", "zoneadm", "-z", uuid, "attach")
    try:
        p = dc.migrate("-j", "-y", uuid, DST)
    finally:
        dc.simdc("fault", "clear")
    assert p.returncode == 4, p.stdout + p.stderr
    assert p.stderr.startswith("sdc-migrate: error (RolledBack): migration of %s failed and was rolled back"
                               % uuid)
    evs = events(p)
    assert_steps_pair(evs)
    names = [e["event"] for e in evs]
    failed = [e for e in evs if e["event"] == "step_failed"]
    assert [e["step"] for e in failed] == ["* Importing & Attaching Zone on %s..." % DST]
    failure = evs[names.index("failure")]
    assert "zoneadm -z %s attach" % uuid in failure["error"]
    undone = [e["what"] for e in evs if e["event"] == "undone"]
    for what in ("stop of the instance on %s" % SRC, "received datasets on %s" % DST,
                 "zone configuration on %s" % DST, "temporary key on %s" % SRC):
        assert what in undone, undone
    assert "undo_failed" not in names
    summary, error = evs[-2], evs[-1]
    assert (summary["event"], summary["outcome"], summary["exit_status"]) == \
        ("summary", "rolled-back", 4)
    assert (error["event"], error["code"], error["exit_status"]) == ("error", "RolledBack", 4)
    assert names.index("step_failed") < names.index("failure") < names.index("undone")
    # and it is so: the datacenter is as it was (the run's journal and log aside)
    after = dc_state(dc, uuid)
    before.pop("headnode"), after.pop("headnode")
    assert after == before
