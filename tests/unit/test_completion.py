"""`sdc-migrate completion`: the bash script it prints, driven as bash drives
it (COMP_WORDS/COMP_CWORD, then the function `complete -F` names; bash(1),
"Programmable Completion"), with CNAPI and VMAPI stubbed; its options come
from the docopt usages. After node-triton's `triton completion` (lib/
do_completion.js; etc/triton-bash-completion-types.sh asks the command
itself, TRITON_COMPLETE=type, for server-side words and keeps them in a
cache file) and sdcadm's (lib/cli/do_completion.js: installed as
/etc/bash/bash_completion.d/sdcadm on a head node)."""
import os
import subprocess
import sys
import textwrap
import time

import pytest

from sdc_migrate import paths
from sdc_migrate.cli import SUBCOMMANDS
from sdc_migrate.commands import completion, estimate, evacuate, inflight
from sdc_migrate.procedure import Journal

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ACTIVE = "11111111-0000-4000-8000-000000000001"
MOVING = "22222222-0000-4000-8000-000000000002"       # a journal that did not end
MOVED = "33333333-0000-4000-8000-000000000003"        # a journal that ended

# the tool the script calls for candidates: the real completion command, with
# Triton's APIs stubbed and every call counted in calls.log
STUB = """#!%(python)s
import os, sys
sys.path.insert(0, %(root)r)
from sdc_migrate.commands import completion

class Api:
    def log(self, what):
        with open(os.path.join(%(state)r, "calls.log"), "a") as f:
            f.write(what + "\\n")
    def servers(self):
        self.log("cnapi")
        return [{"hostname": "headnode", "headnode": True, "setup": True},
                {"hostname": "source-server"}, {"hostname": "dest-server"},
                {"hostname": "spare-server"}]
    def vms(self, **query):
        self.log("vmapi " + ",".join("%%s=%%s" %% kv for kv in sorted(query.items())))
        return [{"uuid": %(active)r}]

completion.Triton = lambda runner: Api()
completion.STATE_DIR = %(state)r
sys.exit(completion.main({}))
"""


def journal(state, uuid, ended):
    j = Journal(os.path.join(state, "migrator-%s-dest-server-1796400000.journal" % uuid))
    j.write({"t": "begin", "uuid": uuid, "dest": "dest-server"})
    if ended:
        j.write({"t": "end", "outcome": "done"})


@pytest.fixture
def setup(tmp_path):
    state = str(tmp_path)
    tool = tmp_path / "sdc-migrate"
    tool.write_text(STUB % {"python": sys.executable, "root": ROOT, "state": state,
                            "active": ACTIVE})
    tool.chmod(0o755)
    journal(state, MOVING, ended=False)
    journal(state, MOVED, ended=True)
    script = tmp_path / "completion.sh"
    script.write_text(completion.script(str(tool)))
    return script, str(tool), state


def complete(setup, *words):
    """What bash offers for the command line WORDS, the last being the word
    under the cursor, as `complete -F` calls the function."""
    script, tool, _ = setup
    p = subprocess.run(["bash", "-c", textwrap.dedent("""
        source "$1"; shift
        COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
        COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
        fn=$(complete -p sdc-migrate | sed -E 's/.*-F ([^ ]+) .*/\\1/')
        $fn sdc-migrate "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
        printf '%s\\n' "${COMPREPLY[@]}"
        """), "bash", str(script), tool] + list(words),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=True)
    assert p.stderr == ""
    return [w for w in p.stdout.splitlines() if w]


def calls(setup):
    try:
        with open(os.path.join(setup[2], "calls.log")) as f:
            return f.read().split("\n")[:-1]
    except FileNotFoundError:
        return []


def test_subcommands_and_the_active_instances_come_first(setup):
    assert complete(setup, "") == list(SUBCOMMANDS) + [ACTIVE]
    assert complete(setup, "ev") == ["evacuate"]
    assert calls(setup) == ["vmapi state=active"]


def test_a_migration_takes_an_active_instance_then_a_cn_not_the_head_node(setup):
    assert complete(setup, "-y", "-i", "") == [ACTIVE]
    assert complete(setup, "-y", ACTIVE, "") == ["dest-server", "source-server", "spare-server"]
    assert complete(setup, "-y", ACTIVE, "sp") == ["spare-server"]
    assert complete(setup, "--interval=30", ACTIVE, "d") == ["dest-server"]
    assert complete(setup, "--interval", "=", "30", ACTIVE, "d") == ["dest-server"]


def test_finish_takes_unfinished_migrations_rollback_and_cleanup_any_journal(setup):
    assert complete(setup, "finish", "") == [MOVING]
    for sub in ("rollback", "cleanup-source"):
        assert complete(setup, sub, "-y", "") == [MOVING, MOVED]
    assert calls(setup) == []         # the journals are local: no API call


def test_options_are_the_usages_own(setup):
    # docopt's usage of each subcommand, not a list of the script's own
    for sub in SUBCOMMANDS:
        usage = completion.module_of(sub).USAGE.split("\n\n")[1]
        offered = complete(setup, sub, "-")
        assert offered and all(o.rstrip("=") in usage for o in offered), sub
    assert complete(setup, "evacuate", "--c") == ["--concurrency="]
    assert complete(setup, "--no") == ["--no-rollback"]
    assert "--measure=" in complete(setup, "estimate", "--")


def test_cn_options_and_comma_lists(setup):
    cns = ["dest-server", "source-server", "spare-server"]
    # bash splits --to=VALUE at the = (COMP_WORDBREAKS): "--to" "=" "VALUE"
    assert complete(setup, "evacuate", "--to", "=") == cns
    assert complete(setup, "evacuate", "--to", "=", "dest-server,sp") == \
        ["dest-server,spare-server"]
    assert complete(setup, "evacuate", "--to=de") == ["--to=dest-server"]
    assert complete(setup, "evacuate", "--to", "=", "dest-server", "") == cns
    assert complete(setup, "estimate", "--measure", "=", "d") == ["dest-server"]
    assert complete(setup, "estimate", "source-server", "") == cns      # CN_NAME...
    assert complete(setup, "nat-recreate", "--list", "s") == ["source-server", "spare-server"]


def test_table_columns_after_o_and_s(setup):
    assert complete(setup, "list", "-o", "instance,out") == ["instance,outcome"]
    assert complete(setup, "list", "-s", "-st") == ["-started"]
    assert complete(setup, "estimate", "-s", "si") == ["size"]
    assert complete(setup, "evacuate", "-o", "re") == ["result"]
    assert complete(setup, "list", "-o", "instance", "") == []      # list takes no argument


def test_cnapi_and_vmapi_are_asked_once_a_minute(setup):
    for _ in range(3):
        assert complete(setup, "evacuate", "d") == ["dest-server"]
        assert complete(setup, "-y", "1") == [ACTIVE]
    assert calls(setup) == ["cnapi", "vmapi state=active"]
    cache = paths.completion_cache("cns", setup[2])
    assert oct(os.stat(cache).st_mode & 0o777) == "0o600"
    old = time.time() - completion.CACHE_SECONDS - 1
    os.utime(cache, (old, old))
    assert complete(setup, "evacuate", "d") == ["dest-server"]
    assert calls(setup) == ["cnapi", "vmapi state=active", "cnapi"]


def test_an_api_that_fails_offers_nothing_and_says_nothing(tmp_path):
    class Down:
        def servers(self):
            raise OSError("no CNAPI")
    with pytest.raises(OSError):
        completion.candidates("cns", Down(), str(tmp_path))
    p = subprocess.run([sys.executable, "-m", "sdc_migrate", "completion"], cwd=ROOT,
                       env=dict(os.environ, SDC_MIGRATE_COMPLETE="cns"),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # here there is no /opt/smartdc/bin/sdc-cnapi: the call fails
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")


def test_the_tables_columns_are_the_commands():
    assert completion.spec("list")["columns"] == [c.lower().replace(" ", "_")
                                                  for c in inflight.HEADERS]
    assert completion.spec("estimate")["columns"] == [c.lower() for c in estimate.HEADERS]
    assert set(completion.spec("evacuate")["columns"]) >= {"est_time", "result", "downtime"}
    assert evacuate.TABLES


def test_the_script_is_bash_and_names_where_it_goes():
    p = subprocess.run([sys.executable, "-m", "sdc_migrate", "completion"], cwd=ROOT,
                       stdout=subprocess.PIPE, text=True, check=True)
    assert "/etc/bash/bash_completion.d/sdc-migrate" in p.stdout
    subprocess.run(["bash", "-n"], input=p.stdout, text=True, check=True)
