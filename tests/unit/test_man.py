"""The man pages: clean under `mandoc -Tlint`, installed with the package, and
each page's SYNOPSIS the usage its command's --help prints."""
import configparser
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAN = os.path.join(ROOT, "man")
PAGES = sorted(f for f in os.listdir(MAN) if f.endswith(".1"))
# page -> the command line whose --help it documents
COMMANDS = {"sdc-migrate.1": [], "sdc-migrate-estimate.1": ["estimate"],
            "sdc-migrate-cleanup-source.1": ["cleanup-source"],
            "sdc-migrate-nat-recreate.1": ["nat-recreate"],
            "sdc-migrate-evacuate.1": ["evacuate"], "sdc-migrate-list.1": ["list"],
            "sdc-migrate-finish.1": ["finish"], "sdc-migrate-rollback.1": ["rollback"],
            "sdc-migrate-restore.1": ["restore"],
            "sdc-migrate-completion.1": ["completion"], "sdc-migrate-show.1": ["show"]}

needs_mandoc = pytest.mark.skipif(not shutil.which("mandoc"), reason="mandoc not installed")


def squeeze(line):
    return " ".join(line.split())


@needs_mandoc
@pytest.mark.parametrize("page", PAGES)
def test_page_is_clean_under_mandoc_lint(page):
    p = subprocess.run(["mandoc", "-Tlint", os.path.join(MAN, page)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert (p.returncode, p.stdout) == (0, "")


def synopsis(page):
    """The SYNOPSIS of a page as mandoc renders it, one line a form."""
    out = subprocess.run(["mandoc", "-Tascii", "-O", "width=400", os.path.join(MAN, page)],
                         stdout=subprocess.PIPE, check=True, text=True).stdout
    out = re.sub(".\b", "", out)                     # bold and underline overstrikes
    section = out.split("\nSYNOPSIS\n", 1)[1].split("\n\n", 1)[0]
    return [squeeze(l) for l in section.splitlines() if l.strip()]


def usage(argv):
    """The usage lines `sdc-migrate ARGV --help` prints."""
    p = subprocess.run([sys.executable, "-m", "sdc_migrate"] + argv + ["--help"],
                       stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert p.returncode == 0
    section = p.stdout.split("Usage:\n", 1)[1].split("\n\n", 1)[0]
    return [squeeze(l) for l in section.splitlines() if l.strip()]


@needs_mandoc
@pytest.mark.parametrize("page", PAGES)
def test_synopsis_is_the_help_usage(page):
    assert page in COMMANDS, "a page for a command this test does not know: " + page
    assert synopsis(page) == usage(COMMANDS[page])


def test_every_subcommand_has_a_page_and_every_page_is_installed():
    from sdc_migrate.cli import SUBCOMMANDS
    assert set(PAGES) == {"sdc-migrate.1"} | {"sdc-migrate-%s.1" % s for s in SUBCOMMANDS}
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    installed = cfg["options.data_files"]["share/man/man1"].split()
    assert sorted(installed) == sorted("man/" + p for p in PAGES)


# the pages with a SECURITY section, before FILES: what the temporary CN-to-CN
# key can do (issue 25)
SECURITY = {"sdc-migrate.1"}


@pytest.mark.parametrize("page", PAGES)
def test_page_has_the_sections_operators_expect(page):
    text = open(os.path.join(MAN, page)).read()
    sections = re.findall(r"^\.SH (.+)$", text, re.M)
    assert sections == ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS"] + \
        (["SECURITY"] if page in SECURITY else []) + ["FILES", "EXAMPLES", "SEE ALSO"]
    for other in PAGES:
        if other != page:
            assert ".BR %s (1)" % other[:-2] in text, "%s does not refer to %s" % (page, other)


def test_top_help_lists_each_subcommands_usage():
    from sdc_migrate.cli import SUBCOMMANDS
    p = subprocess.run([sys.executable, "-m", "sdc_migrate", "--help"],
                       stdout=subprocess.PIPE, text=True, cwd=ROOT)
    listed = forms([squeeze(l) for l in p.stdout.split("Subcommands", 1)[1]
                    .split("\n\n", 1)[0].splitlines()[1:]])
    assert listed == [forms(usage([s]))[0] for s in SUBCOMMANDS]


def forms(lines):
    """Usage lines joined into forms: a line that does not start with the
    program's name continues the form before it (as docopt reads it)."""
    out = []
    for line in lines:
        if out and not line.startswith("sdc-migrate"):
            out[-1] += " " + line
        else:
            out.append(line)
    return out
