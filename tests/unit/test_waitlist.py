"""steps/waitlist.py against a CNAPI waitlist kept in memory, as sdc-cnapi
lib/models/waitlist.js keeps it: a queue per server, scope and id, the oldest
queued ticket active once none is. The migration waits behind a job that
holds the instance, says so, and fails (to be rolled back) when it never
gets its turn; a rerun finds a killed run's tickets by their tag; how long
they last follows what is left to send."""
import types

import pytest

from sdc_migrate.errors import MigrateError
from sdc_migrate.procedure import Journal, Procedure
from sdc_migrate.commands import migrate
from sdc_migrate.steps import waitlist

UUID = "5ca5b3dc-48fe-6f75-ed8c-8d8fbd77e2aa"
SRC, DST = "src00000-0000-0000-0000-000000000000", "dst00000-0000-0000-0000-000000000000"


class Waitlist:
    """CNAPI's tickets; a job's ticket ends when wait_ticket is called for ours
    (the job ran meanwhile) unless it holds on."""

    def __init__(self, job_holds_on=False):
        self.all, self.job_holds_on = [], job_holds_on

    def _activate(self, server):
        queue = [t for t in self.all if t["server_uuid"] == server
                 and t["status"] in ("active", "queued")]
        if queue and not any(t["status"] == "active" for t in queue):
            queue[0]["status"] = "active"

    def create_ticket(self, server, scope, ident, expires_at, action, extra):
        t = {"uuid": "t%d" % len(self.all), "server_uuid": server, "scope": scope,
             "id": ident, "expires_at": expires_at, "action": action, "extra": extra,
             "status": "queued", "created_at": "2026-12-08T00:00:%02d.000Z" % len(self.all)}
        self.all.append(t)
        self._activate(server)
        return {"uuid": t["uuid"], "queue": [dict(x) for x in self.all
                                             if x["server_uuid"] == server]}

    def tickets(self, server):
        return [dict(t) for t in self.all if t["server_uuid"] == server]

    def wait_ticket(self, uuid, seconds):
        t = [t for t in self.all if t["uuid"] == uuid][0]
        if t["status"] != "active" and not self.job_holds_on:
            for job in self.all:
                if job["server_uuid"] == t["server_uuid"] and job["status"] == "active":
                    job["status"] = "finished"
            self._activate(t["server_uuid"])
        return None if t["status"] == "active" else "500 ticket has expired"

    def release_ticket(self, uuid):
        t = [t for t in self.all if t["uuid"] == uuid][0]
        t["status"] = "finished"
        self._activate(t["server_uuid"])
        return True

    def held(self):
        return sorted((t["server_uuid"], t["status"]) for t in self.all
                      if t["status"] in ("active", "queued"))


class Lines:
    def __init__(self):
        self.lines = []

    def line(self, text=""):
        self.lines.append(text)

    def step(self, text):
        self.lines.append(text)

    def done(self, mark=None):
        pass

    def event(self, name, text=None, **fields):
        self.lines.append(text)


def migration(api, total=10 << 20, incremental=False, delta=None):
    m = types.SimpleNamespace(
        api=api, r=Lines(), tag="1234-5ca5b3dc", KIND="migration", tickets={}, hold_until=0,
        total=total, delta=delta, vm={"uuid": UUID, "alias": "web0"},
        opts=types.SimpleNamespace(uuid=UUID, incremental=incremental, bwlimit=None,
                                   dry_run=False),
        src=types.SimpleNamespace(uuid=SRC, hostname="source-server"),
        dst=types.SimpleNamespace(uuid=DST, hostname="dest-server"))
    m.proc = Procedure(migrate.FULL, Journal(None))
    return m


def a_job_holds_the_instance(api, server=SRC):
    api.create_ticket(server, "vm", UUID, "2026-12-08T00:10:00.000Z", None, {})


def test_held_on_both_cns_then_released_after_the_boot():
    api = Waitlist()
    m = migration(api)
    waitlist.hold(m)
    assert api.held() == [(DST, "active"), (SRC, "active")]
    mine = [t for t in api.all if t["server_uuid"] == SRC][0]
    assert (mine["scope"], mine["id"], mine["action"]) == ("vm", UUID, "sdc-migrate")
    assert mine["extra"]["sdc_migrate"] == m.tag
    waitlist.hold_again(m)          # a run that holds them asks nothing
    assert len(api.all) == 2
    waitlist.let_go(m)
    assert api.held() == [] and not m.proc.pending("hold")


def test_the_migration_waits_for_a_job_that_holds_the_instance_and_says_so():
    api = Waitlist()
    a_job_holds_the_instance(api)
    m = migration(api)
    waitlist.hold(m)
    assert any("waiting for ticket t0 on source-server" in l for l in m.r.lines), m.r.lines
    assert api.held() == [(DST, "active"), (SRC, "active")]


def test_a_job_that_never_lets_go_fails_the_migration_with_its_ticket_named():
    api = Waitlist(job_holds_on=True)
    a_job_holds_the_instance(api)
    m = migration(api)
    with pytest.raises(MigrateError, match="held in CNAPI's waitlist on source-server by t0"):
        waitlist.hold(m)
    # the rollback's undo releases ours, queued or not
    assert m.proc.undo_all(m)
    assert api.held() == [(SRC, "active")]          # the job's, not ours


def test_a_rerun_finds_a_killed_runs_tickets_by_their_tag():
    api = Waitlist()
    killed = migration(api)
    waitlist.hold(killed)
    rerun = migration(api)
    rerun.proc = Procedure(migrate.FULL, killed.proc.journal)     # the journal only
    waitlist.hold_again(rerun)      # past the switch: its ticket there is still active
    assert len(api.all) == 2 and rerun.tickets == {DST: killed.tickets[DST]}
    waitlist.let_go(rerun)
    assert api.held() == []


def test_a_rerun_whose_ticket_expired_takes_one_again_before_the_boot():
    api = Waitlist()
    killed = migration(api)
    waitlist.hold(killed)
    for t in api.all:
        t["status"] = "expired"
    rerun = migration(api)
    rerun.proc = Procedure(migrate.FULL, killed.proc.journal)
    waitlist.hold_again(rerun)
    assert api.held() == [(DST, "active")]
    waitlist.let_go(rerun)
    assert api.held() == []


def test_they_last_what_vmapi_gives_its_jobs_plus_twice_the_estimate_of_what_is_left():
    full = waitlist.seconds_to_hold(migration(Waitlist(), total=20 << 30))
    # 20 GB at the seed's 20 MB/s is 1024 s, and two minutes: twice that, 12 minutes more
    assert full == 600 + 120 + 2 * (1024 + 120)
    live = waitlist.seconds_to_hold(migration(Waitlist(), total=20 << 30, incremental=True,
                                              delta=20 << 20))
    assert live == 600 + 120 + 2 * (1 + 120)
