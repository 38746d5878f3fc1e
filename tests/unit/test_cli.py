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
    assert "sdc-migrate [-i | -a] [-D] [-y] [-j] [--dry-run] [--interval=SECS]" in p.stdout


def test_unknown_option_is_a_usage_error():
    p = run("--frobnicate")
    assert p.returncode == 2 and p.stderr.count("\n") == 1


def test_malformed_uuid_is_refused_in_one_line():
    p = run("-y", "not-a-uuid", "dest-server")
    assert p.returncode == 2
    assert p.stderr == "sdc-migrate: error (Refused): 'not-a-uuid' is not an instance UUID\n"


def test_interval_must_be_whole_seconds():
    p = run("-i", "--interval", "soon", "-y", "x", "y")
    assert p.returncode == 2 and "--interval" in p.stderr


def test_json_without_yes_is_refused_before_anything_is_asked():
    import json
    p = run("-j", "5ca5b3dc-48fe-6f75-ed8c-8d8fbd77e2aa", "dest-server")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "-y" in p.stderr
    (ev,) = [json.loads(l) for l in p.stdout.splitlines()]
    assert (ev["event"], ev["exit_status"], ev["code"]) == ("error", 2, "Usage")
    p = run("-jy")
    assert p.returncode == 2 and "INST_UUID" in p.stderr


def test_json_errors_are_an_error_event_on_stdout_too():
    import json
    p = run("-j", "-y", "not-a-uuid", "dest-server")
    assert p.returncode == 2
    assert p.stderr == "sdc-migrate: error (Refused): 'not-a-uuid' is not an instance UUID\n"
    evs = [json.loads(l) for l in p.stdout.splitlines()]
    assert evs[-1]["event"] == "error" and evs[-1]["exit_status"] == 2
    assert evs[-1]["message"] == "'not-a-uuid' is not an instance UUID"
    p = run("-j", "--frobnicate")
    assert p.returncode == 2 and json.loads(p.stdout)["event"] == "error"
