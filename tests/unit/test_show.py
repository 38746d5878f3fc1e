"""sdc-migrate show (one migration's story from its journal and log), list's
filters, and the rate past migrations measured (inflight.rate_for), which
estimate and the evacuation's plan use."""
import io
import json
import os

import pytest
from dateutil.parser import isoparse

from sdc_migrate import report
from sdc_migrate.commands import inflight, show
from sdc_migrate.errors import NotFound
from sdc_migrate.procedure import Journal

UUID = "fbcb4ea0-52e1-4c26-9a7e-8f7f4c0d9b11"
MB = 1048576


def t(sec):
    return "2026-12-03T10:00:%06.3f+00:00" % sec


def journal(state, uuid=UUID, src="source-server", dest="dest-server", epoch=1796400000,
            sends=((100 * MB, 2.0),), end="done", running=True):
    """A journal as a migration writes it, with the times given."""
    j = Journal(os.path.join(state, "migrator-%s-%s-%d.journal" % (uuid, dest, epoch)))
    j.write({"t": "begin", "uuid": uuid, "dest": dest, "alias": "web", "kind": "migration",
             "started": t(0), "incremental": len(sends) > 1, "was_running": running,
             "src": {"hostname": src}, "dst": {"hostname": dest}, "at": t(0)})
    j.write({"t": "step", "name": "gather", "what": "gather", "at": t(0.5)})
    for n, (nbytes, secs) in enumerate(sends):
        j.write({"t": "step", "name": "send-%d" % n, "what": "send %d" % n, "at": t(1 + 10 * n)})
        j.write({"t": "round", "n": n, "bytes": nbytes, "snapshot": "s-%d" % n,
                 "at": t(1 + 10 * n)})
        j.write({"t": "sent", "snapshot": "s-%d" % n, "bytes": nbytes, "seconds": secs,
                 "at": t(1 + 10 * n + secs)})
    if running:
        j.change("stop", "stop", uuid=uuid, at=isoparse(t(30)).timestamp())
    j.write({"t": "step", "name": "switch", "what": "switch", "at": t(31)})
    if running:
        j.write({"t": "booted", "at": t(33)})
    if end:
        j.write({"t": "end", "outcome": end, "downtime": 3.0 if running else None, "at": t(35)})
    return j


def run_show(state, *extra):
    out = io.StringIO()
    args = {"-j": "-j" in extra, "INST_UUID": UUID}
    assert show.main(args, report.Report(out), state_dir=state) == 0
    return out.getvalue()


def test_each_step_with_its_start_and_duration_rounds_stop_boot_and_downtime(tmp_path):
    journal(str(tmp_path), sends=((100 * MB, 2.0), (10 * MB, 0.5)))
    s = json.loads(run_show(str(tmp_path), "-j"))
    assert [(x["step"], x["seconds"]) for x in s["steps"]] == [
        ("gather", 0.5), ("send-0", 10.0), ("send-1", 20.0), ("switch", 4.0)]
    assert [(r["n"], r["bytes"], r["send_seconds"]) for r in s["rounds"]] == [
        (0, 100 * MB, 2.0), (1, 10 * MB, 0.5)]
    assert s["stopped"].startswith("2026-12-03T10:00:30") and s["booted"] == t(33)
    assert s["downtime_s"] == 3.0 and s["outcome"] == "done"
    text = run_show(str(tmp_path))
    assert "Downtime:  3 seconds" in text and "Outcome:  done" in text
    assert "100.00 MBytes" in text and "10.0 s" in text
    assert "`sdc-migrate cleanup-source %s`" % UUID in text
    assert "`sdc-migrate rollback %s`" % UUID in text


def test_an_interrupted_one_says_the_command_that_finishes_it(tmp_path):
    journal(str(tmp_path), end=None)
    s = json.loads(run_show(str(tmp_path), "-j"))
    assert s["outcome"] == "interrupted"
    assert s["left_to_do"] == ["`sdc-migrate -y %s dest-server` finishes or undoes it" % UUID]


def test_the_last_run_is_told_and_the_earlier_listed(tmp_path):
    journal(str(tmp_path), end="superseded", epoch=1796400000)
    journal(str(tmp_path), dest="spare-server", epoch=1796400100)
    s = json.loads(run_show(str(tmp_path), "-j"))
    assert s["destination"] == "spare-server" and len(s["earlier"]) == 1


def test_no_journal_is_not_found(tmp_path):
    with pytest.raises(NotFound):
        show.main({"-j": False, "INST_UUID": UUID}, report.Report(io.StringIO()),
                  state_dir=str(tmp_path))


def test_list_filters_by_instance_cn_and_outcome(tmp_path):
    other = "0" * 8 + "-0000-4000-8000-" + "0" * 12
    journal(str(tmp_path))
    journal(str(tmp_path), uuid=other, src="old-server", dest="spare-server", end=None)

    def listed(**f):
        out = io.StringIO()
        args = {"-j": True, "-H": False, "-o": None, "-s": None, "--instance": None,
                "--cn": None, "--outcome": None}
        args.update({"--" + k: v for k, v in f.items()})
        inflight.main(args, report.Report(out), state_dir=str(tmp_path))
        return [json.loads(l)["uuid"] for l in out.getvalue().splitlines()]
    assert sorted(listed()) == sorted([UUID, other])
    assert listed(instance=other) == [other]
    assert listed(cn="spare-server") == [other] and listed(cn="source-server") == [UUID]
    assert listed(outcome="interrupted") == [other] and listed(outcome="done") == [UUID]


def test_the_rate_is_bytes_over_send_time_of_the_pairs_migrations(tmp_path):
    state = str(tmp_path)
    journal(state, uuid="1" * 8 + UUID[8:], sends=((100 * MB, 2.0), (20 * MB, 2.0)))
    journal(state, uuid="2" * 8 + UUID[8:], sends=((80 * MB, 1.0),))
    journal(state, uuid="3" * 8 + UUID[8:], dest="spare-server", sends=((10 * MB, 1.0),))
    rate, words = inflight.rate_for("source-server", "dest-server", 20, state)
    assert rate == pytest.approx(200 / 5.0)
    assert words == "rate: 40 MB/s, measured by 2 migrations source-server -> dest-server"
    # per pair: spare-server's own; any destination: all three
    assert inflight.rate_for("source-server", "spare-server", 20, state)[0] == 10
    rate, words = inflight.rate_for("source-server", None, 20, state)
    assert rate == pytest.approx(210 / 6.0) and words.endswith(
        "3 migrations source-server -> dest-server, spare-server")
    # a pair no journal measured: --rate, and it says so
    rate, words = inflight.rate_for("dest-server", "source-server", 33, state)
    assert rate == 33 and "--rate" in words
