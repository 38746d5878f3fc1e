"""migrator.sh's figures and format, from the seed's two transcripts."""
import datetime
import io
import json

from dateutil import tz

from sdc_migrate import report


def test_estimate_matches_the_seeds_full_migration():
    # "207.98 MBytes across 1 datasets" -> "2.17 minutes (@ ~20 MB / second ..."
    nbytes = int(207.98 * 1048576)
    assert report.human_size(nbytes) == "207.98 MBytes"
    assert report.estimate_text(nbytes) == \
        "2.17 minutes (@ ~20 MB / second (~1.17 GB / minute); +2 minutes extra)"


def test_estimate_matches_the_seeds_incremental_migration():
    nbytes = int(97.72 * 1024 * 1048576)
    assert report.human_size(nbytes) == "97.72 GBytes"
    assert report.estimate_text(nbytes).startswith("1.42 hours (@ ~20 MB / second")


def test_durations_read_like_the_seed():
    assert report.human_duration(17) == "17 seconds"
    assert report.human_duration(2.23 * 60) == "2.23 minutes"
    assert report.human_duration(1.5 * 3600) == "1.50 hours"


def test_times_read_like_the_seed():
    when = datetime.datetime(2014, 4, 28, 15, 43, 40, tzinfo=tz.tzutc())
    assert report.human_time(when) == "April 28, 2014 03:43:40 PM UTC"


def test_step_lines_end_in_done_at_one_column_and_go_to_the_log(tmp_path):
    out = io.StringIO()
    r = report.Report(out)
    r.open_log(str(tmp_path / "x.log"))
    r.step("* Transferring Zone XML to the destination...")
    r.done()
    r.line("plain")
    r.close()
    first = out.getvalue().splitlines()[0]
    assert first.endswith("[ DONE ]") and first.index("[ DONE ]") == report.DONE_COLUMN
    assert (tmp_path / "x.log").read_text() == out.getvalue()
    assert oct((tmp_path / "x.log").stat().st_mode & 0o777) == "0o600"


def test_label_blocks_right_align_as_migrator_sh():
    out = io.StringIO()
    r = report.Report(out)
    r.block("INSTANCE:", [("uuid", "u"), ("total dataset size", "1 MBytes")])
    assert out.getvalue().splitlines() == ["     INSTANCE:", "                uuid:  u",
                                           "  total dataset size:  1 MBytes"]


# ---- -j: one JSON event a line, the log as without -j ----------------------

class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def events(out):
    return [json.loads(l) for l in out.getvalue().splitlines()]


def narrate(r):
    """What a migration says through its Report, in a few calls."""
    r.line("* Please wait, gathering instance and CN data....")
    r.step("    + retrieving SRC CN hostname, SDC Version, reservation status, and\n"
           "      IP addr ...")
    r.done()
    r.line()
    r.step("    + Tranferring zones/x@s1 ...")
    r.done("done")
    r.step("* Importing & Attaching Zone on dest-server...")
    r.failed()
    r.event("failure", "* Migration failed: attach exited 1", error="attach exited 1")
    r.event("undone", "    - undone: stop of the instance", what="stop of the instance")
    r.event("summary", outcome="rolled-back", exit_status=4)


def test_json_mode_is_one_event_a_line_and_the_log_reads_as_without_it(tmp_path):
    human, out = io.StringIO(), io.StringIO()
    for r, log in ((report.Report(human), "human.log"), (report.JsonReport(out), "json.log")):
        r.open_log(str(tmp_path / log))
        narrate(r)
        r.close()
    evs = events(out)
    assert [e["event"] for e in evs] == [
        "info", "step_start", "step_done", "step_start", "step_done", "step_start",
        "step_failed", "failure", "undone", "summary"]
    assert evs[1]["step"] == evs[2]["step"] == \
        "+ retrieving SRC CN hostname, SDC Version, reservation status, and IP addr ..."
    assert evs[4]["mark"] == "done"
    assert evs[6]["step"] == "* Importing & Attaching Zone on dest-server..."
    assert evs[7]["error"] == "attach exited 1"
    assert evs[8]["what"] == "stop of the instance"
    assert (evs[9]["outcome"], evs[9]["exit_status"]) == ("rolled-back", 4)
    assert all("time" in e for e in evs)
    # the log is the human one, line for line
    assert (tmp_path / "json.log").read_text() == (tmp_path / "human.log").read_text()
    assert "[ FAILED ]" in (tmp_path / "json.log").read_text()
    # without -j, events with a text are lines and the others say nothing
    assert "    - undone: stop of the instance" in human.getvalue()
    assert "rolled-back" not in human.getvalue()


def test_json_progress_comes_off_a_terminal_too_but_not_too_often():
    from sdc_migrate import progress
    out, clock = io.StringIO(), Clock()
    r = report.JsonReport(out, clock=clock)
    assert not r.isatty() and r.wants_progress()
    assert not report.Report(io.StringIO()).wants_progress()
    m = progress.Meter(show=r.meter, clock=clock)
    r.step("    + Tranferring zones/x@s1 ...")
    m.feed("full\tzones/x@s1\t%d" % (100 << 20))
    for i in range(1, 9):            # eight samples in a second: two events
        clock.now += 0.125
        m.feed("00:00:0%d\t%d\tzones/x@s1" % (i, i * (4 << 20)))
    clock.now += 1
    m.feed("00:00:09\t%d\tzones/x@s1" % (40 << 20))
    r.done("done")
    evs = [e for e in events(out) if e["event"] == "progress"]
    assert len(evs) == 3
    assert evs[-1]["sent_bytes"] == 40 << 20 and evs[-1]["total_bytes"] == 100 << 20
    assert evs[-1]["rate_bytes_per_s"] > 0 and evs[-1]["eta_s"] > 0
    assert evs[-1]["step"] == "+ Tranferring zones/x@s1 ..."


def test_json_mode_asks_nothing():
    import pytest
    from sdc_migrate.errors import Usage
    r = report.JsonReport(io.StringIO())
    with pytest.raises(Usage) as e:
        r.ask("Are you ready to proceed? [y|n]")
    assert e.value.exit_status == 2 and "-y" in str(e.value)
    with pytest.raises(Usage):
        r.prompt("UUID of Instance to Move:")


def test_dry_run_mutes_the_narrative_but_not_the_commands():
    for cls in (report.Report, report.JsonReport):
        out = io.StringIO()
        r = cls(out)
        r.muted = True
        r.line("* Creating dataset snapshots on source-server")
        r.step("    + Creating zones/x snapshot...")
        r.done()
        r.dot()
        r.event("command", "source-server: zfs snapshot zones/x@s1", host="source-server",
                command="zfs snapshot zones/x@s1")
        text = out.getvalue()
        assert "snapshots on" not in text and "Creating" not in text and "." not in text[:1]
        if cls is report.Report:
            assert text == "source-server: zfs snapshot zones/x@s1\n"
        else:
            (ev,) = events(out)
            assert (ev["event"], ev["host"], ev["command"]) == \
                ("command", "source-server", "zfs snapshot zones/x@s1")
