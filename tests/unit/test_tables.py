"""-H, -o COL,... and -s COL,... on every table, as node-triton's tables take
them (node-triton lib/common.js getCliTableOptions: -H "Omit table header
row", -o "Specify fields (columns) to output", -s "Sort on the given
fields"; drawn by tabula, whose '-field' sorts descending): one place,
report.TableOptions, for list, estimate and evacuate."""
import io
import subprocess
import sys

import pytest

from sdc_migrate import report
from sdc_migrate.commands import evacuate, inflight
from sdc_migrate.errors import Usage
from sdc_migrate.procedure import Journal

HEADERS = ["INSTANCE", "SIZE", "LAST DELTA"]
ROWS = [["b-inst", ("2.00 MBytes", 2 << 20), ("-", None)],
        ["a-inst", ("10.00 MBytes", 10 << 20), ("1.00 MBytes", 1 << 20)],
        ["c-inst", ("512.00 MBytes", 512 << 20), ("3.00 MBytes", 3 << 20)]]


def drawn(opts):
    out = io.StringIO()
    r = report.Report(out)
    r.table_options = opts
    r.table(HEADERS, ROWS)
    return out.getvalue().splitlines()


def options(**args):
    return report.TableOptions.from_args(
        {"-H": args.get("H", False), "-o": args.get("o"), "-s": args.get("s")}, HEADERS)


def test_names_are_the_headers_in_lower_case():
    assert [report.column_name(h) for h in ["LAST DELTA", "EST. TIME", "UUID"]] == \
        ["last_delta", "est_time", "uuid"]


def test_without_options_the_table_is_as_it_was():
    lines = drawn(options())
    assert lines[0].split() == ["INSTANCE", "SIZE", "LAST", "DELTA"]
    assert [l.split()[0] for l in lines[2:]] == ["b-inst", "a-inst", "c-inst"]


def test_sizes_sort_by_bytes_not_by_their_text():
    # as text "10.00" < "2.00" < "512.00"; by bytes 2M < 10M < 512M
    lines = drawn(options(s="size"))
    assert [l.split()[0] for l in lines[2:]] == ["b-inst", "a-inst", "c-inst"]
    lines = drawn(options(s="-size"))
    assert [l.split()[0] for l in lines[2:]] == ["c-inst", "a-inst", "b-inst"]


def test_a_cell_with_no_value_sorts_first_and_text_sorts_as_text():
    assert [l.split()[0] for l in drawn(options(s="last_delta"))[2:]] == \
        ["b-inst", "a-inst", "c-inst"]
    assert [l.split()[0] for l in drawn(options(s="instance"))[2:]] == \
        ["a-inst", "b-inst", "c-inst"]


def test_H_drops_the_header_and_o_picks_and_orders_columns():
    lines = drawn(options(H=True, o="last_delta,instance", s="instance"))
    assert [l.split() for l in lines] == [["1.00", "MBytes", "a-inst"], ["-", "b-inst"],
                                          ["3.00", "MBytes", "c-inst"]]


def test_docopts_repeated_o_is_read_as_one_list():
    opts = report.TableOptions.from_args({"-o": ["size", "instance"], "-s": []}, HEADERS)
    assert opts.columns == ["size", "instance"] and opts.sort == []


@pytest.mark.parametrize("args", [{"-o": "instance,bogus"}, {"-s": "-nosuch"}])
def test_an_unknown_column_is_a_usage_error_naming_the_columns(args):
    with pytest.raises(Usage) as e:
        report.TableOptions.from_args(args, HEADERS)
    assert "instance,size,last_delta" in str(e.value)


def test_one_set_for_two_tables_each_shows_the_columns_it_has():
    opts = report.TableOptions.from_args({"-o": "instance,result"},
                                         evacuate.PLAN_HEADERS, evacuate.SUMMARY_HEADERS)
    assert opts.apply(evacuate.PLAN_HEADERS, [["u", "a", "joyent", "1", "s", "src", "d",
                                               "t"]]) == (["INSTANCE"], [["u"]])
    assert opts.apply(evacuate.SUMMARY_HEADERS, [["u", "a", "src", "d", "moved", "-"]]) == \
        (["INSTANCE", "RESULT"], [["u", "moved"]])


def journal(tmp_path, uuid, epoch, rounds, dest="dest-server"):
    j = Journal(str(tmp_path / ("migrator-%s-%s-%d.journal" % (uuid, dest, epoch))))
    j.write({"t": "begin", "uuid": uuid, "dest": dest, "alias": "z" + uuid[:1],
             "started": "2026-12-0%dT10:00:00+00:00" % (epoch % 10),
             "src": {"hostname": "source-server"}})
    for n in range(rounds):
        j.write({"t": "round", "n": n, "bytes": 1000 * (n + 1)})
    j.write({"t": "end", "outcome": "done", "downtime": None})


def test_list_takes_them(tmp_path):
    a, b = "a" * 8 + "-0000-4000-8000-" + "0" * 12, "b" * 8 + "-0000-4000-8000-" + "0" * 12
    journal(tmp_path, a, 1796400001, rounds=3)
    journal(tmp_path, b, 1796400002, rounds=1)
    out = io.StringIO()
    args = {"-j": False, "-H": True, "-o": "rounds,instance", "-s": "-rounds"}
    assert inflight.main(args, report.Report(out), state_dir=str(tmp_path)) == 0
    assert [l.split() for l in out.getvalue().splitlines()] == [["3", a], ["1", b]]


@pytest.mark.parametrize("sub", ["list", "estimate", "evacuate source-server"])
def test_a_bad_column_on_the_command_line_is_one_line_and_status_2(sub):
    p = subprocess.run([sys.executable, "-m", "sdc_migrate"] + sub.split() + ["-s", "nope"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and "-s: no column 'nope'" in p.stderr
