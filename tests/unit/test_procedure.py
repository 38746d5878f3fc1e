"""The step engine (procedure.Procedure) on its own, with a fake runner: a
world of facts that each step's command changes. A run is killed at every
point (SIGKILL: the journal on disk is all that is left), then the next run
reads the journal: before the switch it undoes everything, after it it
finishes; every undo fails once somewhere and a rerun ends the job. The real
procedures (FULL, INCREMENTAL, ROLLBACK) are checked for the rules the
engine relies on."""
import ast
import os
import pathlib

import pytest

from sdc_migrate.commands import migrate, nat_recreate, rollback
from sdc_migrate.errors import MigrateError
from sdc_migrate.procedure import Journal, Procedure, Step

STEPS_DIR = pathlib.Path(migrate.__file__).parent.parent / "steps"


class Killed(BaseException):
    """SIGKILL: nothing of the run's own handling runs after it."""


class Runner:
    """A compute node that keeps facts: run(argv) adds or removes one. It can
    be told to die (Killed) at its Nth command, or fail one command once."""

    def __init__(self, facts=()):
        self.facts = set(facts)
        self.commands = []
        self.kill_at = None
        self.fail_once = set()

    def run(self, verb, fact):
        self.commands.append((verb, fact))
        if self.kill_at is not None and len(self.commands) == self.kill_at:
            raise Killed()
        if (verb, fact) in self.fail_once:
            self.fail_once.discard((verb, fact))
            raise MigrateError("%s %s failed" % (verb, fact))
        if verb == "add":
            self.facts.add(fact)
        else:
            self.facts.discard(fact)


class Report:
    def __init__(self):
        self.events = []

    def event(self, name, text=None, **fields):
        self.events.append((name, fields))


class Context:
    """What the engine asks of a migration: r and checkpoint()."""

    def __init__(self, node):
        self.node, self.r = node, Report()
        self.proc = None

    def checkpoint(self):
        pass


def changing(name, fact, ahead):
    """A step that makes FACT true, journaled ahead of its command
    (write-ahead, then confirmed) or after it."""
    def do(m):
        if ahead:
            i = m.proc.will(name, "make " + fact, fact=fact)
            m.node.run("add", fact)
            m.proc.confirm(i)
        else:
            m.node.run("add", fact)
            m.proc.changed(name, "make " + fact, fact=fact)
    return do


def unmake(m, fact):
    m.node.run("remove", fact)


def procedure_steps():
    return [
        Step("key", changing("key", "key", ahead=True), unmake),
        Step("tunables", changing("tunables", "tunables", ahead=False), unmake, permanent=True),
        Step("snapshots", changing("snapshots", "snapshot", ahead=False), unmake,
             keeps_data=True),
        Step("stop", changing("stop", "stopped", ahead=True), unmake, permanent=True),
        Step("attach", changing("attach", "attached", ahead=True), unmake, permanent=True),
        Step("shown", changing("shown", "shown", ahead=True), unmake, permanent=True,
             switch=True),
        Step("clear-keys", lambda m: m.proc.undo_now(m, "key")),
        Step("cleanup", lambda m: m.proc.undo_now(m, "snapshots")),
    ]


BEFORE = {"zone"}                                   # the world before the migration
AFTER = {"zone", "tunables", "stopped", "attached", "shown"}   # after a finished one


def start(tmp_path, node):
    m = Context(node)
    m.proc = Procedure(procedure_steps(), Journal(str(tmp_path / "m.journal")))
    return m


def rerun(tmp_path, node):
    """The next run: reads the journal, finishes past the switch, else undoes."""
    m = Context(node)
    journal = Journal(str(tmp_path / "m.journal"))
    m.proc = Procedure(procedure_steps(), journal)
    if journal.switched:
        m.proc.run(m, m.proc.after_switch())
        return "finished", True
    return "undone", m.proc.undo_all(m)


def test_a_whole_run_makes_the_world_after_and_leaves_nothing_pending(tmp_path):
    node = Runner(BEFORE)
    m = start(tmp_path, node)
    m.proc.run(m, m.proc.steps)
    assert node.facts == AFTER
    assert m.proc.journal.switched and m.proc.journal.pending() == []


COMMANDS = len([s for s in procedure_steps() if s.undo]) + 2   # each change, 2 undone after


@pytest.mark.parametrize("kill_at", range(1, COMMANDS + 1))
def test_killed_at_every_command_the_next_run_undoes_or_finishes(tmp_path, kill_at):
    node = Runner(BEFORE)
    node.kill_at = kill_at
    m = start(tmp_path, node)
    with pytest.raises(Killed):
        m.proc.run(m, m.proc.steps)
    node.kill_at = None
    how, clean = rerun(tmp_path, node)
    assert clean
    # the kill landed on the switch's own command or later: only forward
    switch_command = [s.name for s in procedure_steps()].index("shown") + 1
    if kill_at > switch_command:
        assert how == "finished" and node.facts == AFTER
    else:
        assert how == "undone" and node.facts == BEFORE
    assert Journal(str(tmp_path / "m.journal")).pending() == []


@pytest.mark.parametrize("kill_after_journal", ["key", "stop", "attach"])
def test_a_change_announced_but_never_made_is_not_undone_as_made(tmp_path, kill_after_journal):
    """Killed between the write-ahead record and the command: the undo runs
    (harmless); if the undo fails, the change is taken as never made."""
    node = Runner(BEFORE)
    m = start(tmp_path, node)
    steps = m.proc.steps
    k = [s.name for s in steps].index(kill_after_journal)
    m.proc.run(m, steps[:k])
    m.proc.will(kill_after_journal, "about to", fact=steps[k].name)   # then the kill
    node.fail_once = {("remove", steps[k].name)}
    how, clean = rerun(tmp_path, node)
    assert (how, clean, node.facts) == ("undone", True, BEFORE)


UNDONE = [s.name for s in procedure_steps() if s.undo and not s.switch]


@pytest.mark.parametrize("failing", UNDONE)
def test_an_undo_that_fails_leaves_its_change_pending_and_the_rest_undone(tmp_path, failing):
    node = Runner(BEFORE)
    m = start(tmp_path, node)
    steps = m.proc.steps
    m.proc.run(m, steps[:[s.name for s in steps].index("shown")])     # up to the switch
    fact = {"snapshots": "snapshot", "stop": "stopped", "attach": "attached"}.get(failing,
                                                                                  failing)
    node.fail_once = {("remove", fact)}
    assert m.proc.undo_all(m) is False
    assert node.facts == BEFORE | {fact}
    assert [r["undo"] for _, r in m.proc.journal.pending()] == [failing]
    assert ("undo_failed", {"what": "make " + fact, "error": "remove %s failed" % fact}) \
        in m.r.events
    # what the operator's message names as left to undo
    assert m.proc.undo_failures == [("make " + fact, "remove %s failed" % fact)]
    # the operator fixes it and runs the same command again
    how, clean = rerun(tmp_path, node)
    assert (how, clean, node.facts) == ("undone", True, BEFORE)


def test_at_the_switch_permanent_changes_stay_and_the_others_are_finished(tmp_path):
    node = Runner(BEFORE)
    m = start(tmp_path, node)
    m.proc.run(m, m.proc.before_switch())
    assert [r["undo"] for _, r in m.proc.journal.pending()] == ["key", "snapshots"]
    assert m.proc.undo_all(m)               # even now, nothing permanent is undone
    assert node.facts == AFTER


def test_keep_data_keeps_what_a_rerun_reuses(tmp_path):
    node = Runner(BEFORE)
    m = start(tmp_path, node)
    steps = m.proc.steps
    m.proc.run(m, steps[:[s.name for s in steps].index("attach")])
    assert m.proc.undo_all(m, keep_data=True)
    assert node.facts == BEFORE | {"snapshot"}
    assert [r["undo"] for _, r in m.proc.journal.pending()] == ["snapshots"]


def test_an_interrupt_stops_the_run_before_the_next_step(tmp_path):
    node = Runner(BEFORE)
    m = start(tmp_path, node)

    def checkpoint():
        if "stopped" in node.facts:
            raise KeyboardInterrupt
    m.checkpoint = checkpoint
    with pytest.raises(KeyboardInterrupt):
        m.proc.run(m, m.proc.steps)
    assert node.facts == {"zone", "key", "tunables", "snapshot", "stopped"}
    assert m.proc.undo_all(m) and node.facts == BEFORE


def test_a_journal_naming_a_change_no_step_undoes_is_an_error(tmp_path):
    journal = Journal(str(tmp_path / "m.journal"))
    journal.change("no-such-step", "something", uuid="u")
    m = Context(Runner())
    m.proc = Procedure(procedure_steps(), journal)
    assert m.proc.undo_all(m) is False
    assert m.r.events[-1][1]["error"].startswith("the journal names a change 'no-such-step'")
    with pytest.raises(MigrateError):
        m.proc.changed("no-such-step", "x")


def test_a_dry_run_lists_each_step_before_its_commands(tmp_path):
    node = Runner(BEFORE)
    m = start(tmp_path, node)
    m.proc.run(m, m.proc.steps, listing=True)
    listed = [f["step"] for name, f in m.r.events if name == "plan_step"]
    assert listed == [s.name for s in procedure_steps()]
    assert [f["n"] for name, f in m.r.events if name == "plan_step"] == \
        list(range(1, len(listed) + 1))


# ---- the real procedures ----------------------------------------------------------

PROCEDURES = {"full": migrate.FULL, "incremental": migrate.INCREMENTAL,
              "rollback": rollback.ROLLBACK}


def journaled_names():
    """Every name a step module journals a change under (proc.changed/will)."""
    names = set()
    for path in STEPS_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in ("changed", "will") and node.args and \
                    isinstance(node.args[0], ast.Constant):
                names.add(node.args[0].value)
    return names


@pytest.mark.parametrize("name", PROCEDURES)
def test_every_real_procedure_keeps_the_engines_rules(name):
    steps = PROCEDURES[name]
    proc = Procedure(steps, Journal(None))
    switches = [s for s in steps if s.switch]
    assert len(switches) == 1
    before, after = proc.before_switch(), proc.after_switch()
    # after the switch only forward: nothing there is undone or permanent
    assert after and all(s.undo is None and not s.permanent for s in after)
    # what stays after the switch is what the switch needs: the instance stopped
    # and received there
    assert {"stop", "received"} <= {s.name for s in before if s.permanent}
    # the key goes first, the stop comes after everything that needs no stop
    names = [s.name for s in steps]
    assert names[0] == "key" and names.index("stop") > names.index("reservation")
    # a step that keeps data is one a rerun reuses: snapshots, received datasets
    assert {s.name for s in steps if s.keeps_data} == {"snapshots", "received"}


def test_every_change_a_step_journals_has_its_undo_in_every_procedure_that_runs_it():
    names = journaled_names()
    assert {"key", "authorized", "tunables", "reservation", "quota", "hold", "snapshots",
            "received", "stop", "cores", "config", "attach", "reattached", "hidden",
            "shown"} == names
    for label, steps in PROCEDURES.items():
        by_name = {s.name: s for s in steps}
        for n in names & set(by_name):
            assert by_name[n].undo is not None, (label, n)
    # the rollback has no image, cores, configuration or attach of its own
    assert not {"origin", "cores", "config", "attach"} & {s.name for s in rollback.ROLLBACK}


def test_the_incremental_procedure_is_the_full_one_with_live_rounds_before_the_hold():
    """The instance is held in the waitlist right before the stop: the live
    rounds, which may last hours, leave the customer's jobs be."""
    full = [s.name for s in migrate.FULL]
    inc = [s.name for s in migrate.INCREMENTAL]
    k = full.index("hold")
    assert full[k + 1] == "stop"
    assert inc == full[:k] + ["rounds"] + full[k:]


def test_the_hold_spans_the_stop_to_the_boot_and_no_call_of_it_is_inside():
    """Taken before the stop, released after the boot, in every procedure that
    stops the instance; nothing between the stop and the boot asks CNAPI."""
    for label, steps in PROCEDURES.items():
        names = [s.name for s in steps]
        if "stop" not in names:
            continue
        assert names.index("hold") == names.index("stop") - 1, label
        # the old copy detached after the boot (no command more in the
        # downtime), before the jobs made for the source go
        assert names.index("detach") == names.index("boot") + 1, label
        assert names.index("release") == names.index("detach") + 1, label
        # before the boot, a rerun's look (hold_again) asks only when in doubt
        assert names.index("held") == names.index("boot") - 1, label


def test_the_journal_file_stays_root_only(tmp_path):
    node = Runner(BEFORE)
    m = start(tmp_path, node)
    m.proc.run(m, m.proc.steps[:2])
    assert os.stat(tmp_path / "m.journal").st_mode & 0o777 == 0o600


def test_nat_recreate_is_a_destroy_then_a_create_with_nothing_to_undo():
    """A NAT zone holds no data: its destroy is the point of no return and a
    rerun after it only creates (nat_recreate.recreate runs after_switch)."""
    proc = Procedure(nat_recreate.RECREATE, Journal(None))
    assert [s.name for s in proc.before_switch()] == ["destroy"]
    assert [s.name for s in proc.after_switch()] == ["create"]
    assert all(s.undo is None for s in nat_recreate.RECREATE)
