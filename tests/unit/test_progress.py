"""The progress line of a transfer: `zfs send -vP` stderr in, one line on a terminal out."""
import io

from sdc_migrate import progress, report
from sdc_migrate.node import Runner

DS = "zones/5ca5b3dc-48fe-6f75-ed8c-8d8fbd77e2aa"
MB = 1048576


def test_the_illumos_lines_parse():
    assert progress.parse_line("full\t%s@s1\t63507240\n" % DS) == \
        progress.Estimate(DS + "@s1", None, 63507240)
    assert progress.parse_line("incremental\t%s@s1\t%s@s2\t1024" % (DS, DS)) == \
        progress.Estimate(DS + "@s2", DS + "@s1", 1024)
    assert progress.parse_line("full\t%s@s1" % DS) == progress.Estimate(DS + "@s1", None, 0)
    assert progress.parse_line("size\t63507240") == progress.Total(63507240)
    assert progress.parse_line("15:43:40\t4194304\t%s@s1" % DS) == \
        progress.Sent("15:43:40", 4194304, DS + "@s1")


def test_anything_else_is_not_progress():
    for line in ("", "cannot open 'zones/x@y': dataset does not exist",
                 "full send of zones/x@y estimated size is 60.5M",
                 "TIME        SENT   SNAPSHOT", "size\tlots", "12:00:00\t10\tno-snapshot"):
        assert progress.parse_line(line) is None, line


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def feed_seconds(meter, clock, snap, per_second, seconds):
    for i in range(1, seconds + 1):
        clock.now += 1
        meter.feed("00:00:%02d\t%d\t%s" % (i, per_second * i, snap))


def test_a_stream_shows_percent_rate_and_time_left():
    clock, shown = Clock(), []
    m = progress.Meter(show=shown.append, clock=clock)
    assert m.feed("full\t%s@s1\t%d" % (DS, 100 * MB))
    assert m.feed("size\t%d" % (100 * MB))
    assert m.text() == "      >   0%  0 B of 100.0 MB  -- MB/s"
    feed_seconds(m, clock, DS + "@s1", 20 * MB, 3)
    assert len(shown) == 3 and m.done == 60 * MB
    assert m.rate == 20 * MB
    assert m.eta == 2.0
    assert m.text() == "      >  60%  60.0 MB of 100.0 MB  20.0 MB/s  0:00:02 left"
    assert m.event() == {"event": "progress", "sent_bytes": 60 * MB, "total_bytes": 100 * MB,
                         "rate_bytes_per_s": 20 * MB, "eta_s": 2.0}


def test_the_rate_follows_the_last_seconds():
    clock = Clock()
    m = progress.Meter(clock=clock)
    m.feed("full\t%s@s1\t%d" % (DS, 1000 * MB))
    feed_seconds(m, clock, DS + "@s1", 10 * MB, 10)
    for i in range(11, 16):     # then it speeds up to 50 MB/s
        clock.now += 1
        m.feed("00:00:%02d\t%d\t%s@s1" % (i, 100 * MB + 50 * MB * (i - 10), DS))
    assert m.rate == 50 * MB


def test_several_streams_count_as_one_transfer():
    # a round sends each dataset in its own pipeline: the next stream's
    # estimate says the one before it ended, whatever its last line said.
    clock = Clock()
    m = progress.Meter(total=30 * MB, clock=clock)
    m.feed("full\t%s@s1\t%d" % (DS, 20 * MB))
    feed_seconds(m, clock, DS + "@s1", 8 * MB, 2)
    assert m.done == 16 * MB and m.total == 30 * MB
    m.feed("full\t%s-disk0@s1\t%d" % (DS, 10 * MB))
    assert m.done == 20 * MB
    feed_seconds(m, clock, DS + "-disk0@s1", 5 * MB, 1)
    assert m.done == 25 * MB
    m.complete()
    assert m.done == 30 * MB and m.eta == 0.0
    assert m.text().startswith("      > 100%  30.0 MB of 30.0 MB")


def test_no_estimate_still_shows_bytes_and_rate():
    clock = Clock()
    m = progress.Meter(clock=clock)
    feed_seconds(m, clock, DS + "@s1", 2 * MB, 2)
    assert m.text() == "      > 4.0 MB  2.0 MB/s"


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_the_line_is_redrawn_and_kept_out_of_the_log(tmp_path):
    out = Tty()
    r = report.Report(out)
    r.open_log(str(tmp_path / "m.log"))
    r.step("    + Tranferring %s@s1 ..." % DS)
    r.progress("      >  10%")
    r.progress("      >  60%")
    r.done("done")
    r.line("next")
    r.close()
    text = out.getvalue()
    assert "\r      >  10%\x1b[K\r      >  60%\x1b[K\r\x1b[K" in text
    # the step's mark still comes at its column, on the line the progress used
    assert text.endswith(" " * report.DONE_COLUMN + "done\nnext\n")
    log = (tmp_path / "m.log").read_text()
    assert "%" not in log and "\r" not in log
    assert log.splitlines() == [report.Report._pad("    + Tranferring %s@s1 ..." % DS) + "done",
                                "next"]


def test_a_line_printed_during_progress_clears_it_first():
    out = Tty()
    r = report.Report(out)
    r.progress("      >  10%")
    r.line("a warning")
    assert out.getvalue() == "\r      >  10%\x1b[K\r\x1b[Ka warning\n"


def test_not_a_terminal_no_progress_at_all(tmp_path):
    out = io.StringIO()
    r = report.Report(out)
    r.step("    + Tranferring x ...")
    r.progress("      >  10%")
    r.done("done")
    assert out.getvalue() == report.Report._pad("    + Tranferring x ...") + "done\n"


def test_stream_hands_stderr_lines_over_as_they_come_and_keeps_the_rest():
    seen = []

    def on_line(line):
        seen.append(line)
        return progress.parse_line(line) is not None

    script = ("echo data; printf 'full\\tzones/a@s\\t10\\n' >&2; "
              "printf '00:00:01\\t5\\tzones/a@s\\n' >&2; echo 'cannot receive' >&2; exit 1")
    status, out, err = Runner().stream(["sh", "-c", script], on_line)
    assert (status, out, err) == (1, "data\n", "cannot receive\n")
    assert seen == ["full\tzones/a@s\t10", "00:00:01\t5\tzones/a@s", "cannot receive"]


def test_stream_survives_a_broken_display_and_honours_dry_run():
    def broken(line):
        raise RuntimeError("display")
    assert Runner().stream(["sh", "-c", "echo x >&2"], broken) == (0, "", "x\n")
    assert Runner(dry_run=True).stream(["false"], broken) == (0, "", "")
