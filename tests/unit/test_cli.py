"""The command line: usage, version, refusals before any API is asked."""
import subprocess
import sys

from sdc_migrate import __version__


def run(*args):
    return subprocess.run([sys.executable, "-m", "sdc_migrate"] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_version():
    p = run("-v")
    assert (p.returncode, p.stdout) == (0, "sdc-migrate %s\n" % __version__)


def test_help_shows_the_usage_line():
    p = run("-h")
    assert p.returncode == 0
    assert "sdc-migrate [-i | -a] [-D] [-y] [--interval=SECS] [INST_UUID [DEST_CN_NAME]]" in p.stdout


def test_unknown_option_is_a_usage_error():
    p = run("--frobnicate")
    assert p.returncode == 2 and p.stderr.count("\n") == 1


def test_malformed_uuid_is_refused_in_one_line():
    p = run("-y", "not-a-uuid", "dest-server")
    assert p.returncode == 2
    assert p.stderr == "sdc-migrate: error: 'not-a-uuid' is not an instance UUID\n"


def test_interval_must_be_whole_seconds():
    p = run("-i", "--interval", "soon", "-y", "x", "y")
    assert p.returncode == 2 and "--interval" in p.stderr
