"""The randomized soak (tools/soak, issue 23) inside the suite: a few trials of
fixed seeds in the suite's datacenter, and the CN reboots of the issue's
"Also" as trials with a schedule of their own. Each trial is judged from the
datacenter (tools/soaklib.py Trial.judge: VMAPI, NAPI, both CNs, the
workload's record, the head node's journals), never from the tool."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "tools"))

import soaklib  # noqa: E402

# Seeds whose trials are short: a full migration SIGKILLed at 3.9 s then run
# again, and a failing receive that rolls back.
SEEDS = [3, 4]


def test_a_short_soak_of_fixed_seeds_finds_no_violation(dc):
    for seed in SEEDS:
        t = soaklib.trial(dc, seed)
        assert not t.violations, soaklib.report(t)


def hung(role, prefix, delay):
    return {"what": "hang", "role": role, "prefix": prefix, "remote": False, "delay": delay}


def test_source_cn_reboot_mid_transfer_loses_nothing(dc):
    """The source CN power-cycles while the data is on its way (the receive held
    on the destination, the send running): its zones' processes end and the
    autoboot ones boot again (`simdc reboot`, after smartos-live's
    svc:/system/zones and vmadmd's autoboot). The migration ends moved or
    rolled back, the instance running in one place with every line it wrote."""
    plan = {"seed": 0, "kind": {"brand": "joyent", "size": 2, "state": "running"},
            "command": "full",
            "events": [hung("to", ["zfs", "recv"], 3),
                       {"what": "reboot", "role": "from", "when": "hang"}]}
    t = soaklib.trial(dc, 0, plan=plan)
    assert t.fired == ["reboot from at the hang"], soaklib.report(t)
    assert t.outcome in ("moved", "rolled back"), soaklib.report(t)
    assert not t.violations, soaklib.report(t)


def test_destination_cn_reboot_before_the_switch_loses_nothing(dc):
    """The destination CN power-cycles after its copy is attached, hidden, and
    before the switch (the source copy's `vmadm update autoboot=false` held):
    the hidden copy must not boot there beside the source's, and the
    migration ends moved or rolled back with nothing lost."""
    plan = {"seed": 0, "kind": {"brand": "joyent", "size": 1, "state": "running"},
            "command": "full",
            "events": [hung("from", ["vmadm", "update", "UUID"], 3),
                       {"what": "reboot", "role": "to", "when": "hang"}]}
    t = soaklib.trial(dc, 0, plan=plan)
    assert t.fired == ["reboot to at the hang"], soaklib.report(t)
    assert t.outcome in ("moved", "rolled back"), soaklib.report(t)
    assert not t.violations, soaklib.report(t)
