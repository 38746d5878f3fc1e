"""migrator.sh's figures and format, from the seed's two transcripts."""
import datetime
import io

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
