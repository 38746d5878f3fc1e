"""sdc-migrate completion: print a bash completion script for sdc-migrate.

Usage:
  sdc-migrate completion
  sdc-migrate completion -h | --help

Prints a bash script that completes sdc-migrate's subcommands, options, the
compute nodes' hostnames (from CNAPI) and instance UUIDs where one is asked
for: the active instances (VMAPI) for a migration; for finish, the
instances of the migrations whose journal did not end; for rollback,
cleanup-source and show, those of this head node's journals. What CNAPI and
VMAPI said is kept for a minute in /var/tmp/sdc-migrate-complete-*. Install
it as sdcadm's and triton's completions are, on the head node:

  sdc-migrate completion > /etc/bash/bash_completion.d/sdc-migrate
  source /etc/bash/bash_completion.d/sdc-migrate

The global zone's /etc is on the ramdisk: a reboot wipes it (as it does
sdcadm's); run it again after one, or from a script under /opt/custom.

Options:
  -h --help   Show this help.

Exit status: 0 done; 2 bad usage.
"""
import importlib
import json
import os
import re
import sys
import time

from docopt import (Argument, Command, Either, LeafPattern, Option, formal_usage,
                    parse_docstring_sections, parse_options, parse_pattern)

from .. import paths
from ..node import Runner
from ..procedure import STATE_DIR, Journal
from ..report import column_name
from ..triton import Triton

USAGE = __doc__
# the environment variable the script sets to ask this command for candidates
# (node-triton's TRITON_COMPLETE, lib/cli.js, etc/triton-bash-completion-types.sh)
ASK = "SDC_MIGRATE_COMPLETE"
CACHE_SECONDS = 60
# where a subcommand asks for an INST_UUID, which instances it can take
INSTANCES = {"": "active", "finish": "unfinished"}      # the others: "journaled"


# ---- what to complete, read from the docopt usages ------------------------------

def module_of(sub):
    """The module of subcommand SUB (cli itself for "", the migration)."""
    from .. import cli
    if not sub:
        return cli
    return importlib.import_module("." + cli.SUBCOMMANDS[sub], __package__)


def arg_type(sub, name):
    """What completes an argument (positional or an option's) named NAME."""
    if name.endswith("CN_NAME"):
        return "cns"
    if name == "INST_UUID":
        return INSTANCES.get(sub, "journaled")
    if name == "COL":
        return "columns"
    return "-"


def ways(pattern):
    """Every way through a docopt pattern, each a list of its leaves in the
    usage's order (optional parts present; docopt's own transform reorders)."""
    if isinstance(pattern, LeafPattern):
        return [[pattern]]
    if type(pattern) is Either:
        return [way for child in pattern.children for way in ways(child)]
    out = [[]]
    for child in pattern.children:
        out = [a + b for a in out for b in ways(child)]
    return out


def spec(sub):
    """One command's completion, read from its docopt usage: its options,
    which take an argument (and what completes that), what each positional
    argument takes (the last one repeating if the usage repeats it), and its
    tables' column names."""
    module = module_of(sub)
    sections = parse_docstring_sections(module.__doc__ if not sub else module.USAGE)
    options = parse_options(sections.before_usage) + parse_options(sections.after_usage)
    pattern = parse_pattern(formal_usage(sections.usage_body), options).fix()
    mine = [w for w in ways(pattern)
            if [c.name for c in w if type(c) is Command] == ([sub] if sub else [])]
    used = {o.name for w in mine for o in w if type(o) is Option}
    words, takes = [], {}
    for o in options:
        if o.name not in used:
            continue
        for name in (o.short, o.longer):
            if name:
                words.append(name + ("=" if o.argcount and name.startswith("--") else ""))
    # an option's argument, as the usage names it: --to=CN_NAME,..., -o COL,...
    for name, arg in re.findall(r"(--?[\w-]+)[= ]([A-Z][A-Z_]*)", sections.usage_body):
        if any(name in (o.short, o.longer) and o.argcount for o in options):
            takes[name] = arg_type(sub, arg)
    positions, repeats = [], False
    for way in mine:
        args = []
        for a in way:
            if type(a) is Argument and a not in args:
                args.append(a)
        for k, a in enumerate(args):
            if k == len(positions):
                positions.append(set())
            positions[k].add(arg_type(sub, a.name))
            repeats = repeats or isinstance(a.value, list)
    columns = [column_name(h) for t in getattr(module, "TABLES", ()) for h in t]
    return {"options": sorted(set(words)), "takes": takes,
            "positions": [sorted(p - {"-"}) or ["-"] for p in positions],
            "repeats": repeats, "columns": list(dict.fromkeys(columns))}


# ---- the script -----------------------------------------------------------------

# The script: constant bash; what it completes is data, lines of
# SUB;OPTIONS;TAKES;POSITIONS;REPEATS;COLUMNS that script() writes between its
# two halves, read by bash from a quoted here-document, never run.
SCRIPT_HEAD = r'''# bash completion for sdc-migrate (`sdc-migrate completion`): on the head node
#   sdc-migrate completion > /etc/bash/bash_completion.d/sdc-migrate
# The lines below are data: per command (- for a migration) its options, the
# options that take an argument (OPTION:TYPE), what each positional argument
# takes (TYPE/TYPE, in order), 1 if the last repeats, its tables' columns.
_sdc_migrate_data=$(cat <<'SDC_MIGRATE_SPEC'
'''

SCRIPT_TAIL = r'''SDC_MIGRATE_SPEC
)

# _sdc_migrate_spec SUB: sets opts, takes, pos, repeats and cols for SUB
# ("" for a migration) from the data above
_sdc_migrate_spec() {
    local want=${1:--} sub
    while IFS=';' read -r sub opts takes pos repeats cols; do
        [[ $sub == "$want" ]] && return 0
    done <<< "$_sdc_migrate_data"
    opts="" takes="" pos="" repeats=0 cols=""
}

# _sdc_migrate_candidates TYPE: the words of TYPE (cns, active, unfinished,
# journaled), from this sdc-migrate itself (which keeps what CNAPI and VMAPI
# said for a minute)
_sdc_migrate_candidates() {
    local tool=${_sdc_migrate_tool:-${COMP_WORDS[0]}}
    SDC_MIGRATE_COMPLETE=$1 "$tool" completion 2>/dev/null
}

# _sdc_migrate_words TYPES VALUE [LEAD]: candidates of TYPES (T1/T2) for
# VALUE, each after LEAD; in a comma list (--to=A,B -o a,b) for the part
# after the last comma, and after -s's - (descending)
_sdc_migrate_words() {
    local types=$1 value=$2 prefix=$3 t words=""
    if [[ $value == *,* ]]; then
        prefix+=${value%"${value##*,}"}
        value=${value##*,}
    fi
    if [[ $value == -* ]]; then
        prefix+=-; value=${value#-}
    fi
    for t in ${types//\// }; do
        case $t in
            -) ;;
            columns) words+=" $cols" ;;
            *) words+=" $(_sdc_migrate_candidates "$t")" ;;
        esac
    done
    COMPREPLY=($(compgen -P "$prefix" -W "$words" -- "$value"))
}

_sdc_migrate() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local sub="" first=1 i w n=0 opt="" value type lead="" subs
    local opts takes pos repeats cols
    COMPREPLY=()
    _sdc_migrate_spec subcommands
    subs=$opts
    if (( COMP_CWORD == 1 )) && [[ $cur != -* ]]; then
        _sdc_migrate_spec ""
        _sdc_migrate_words "${pos%% *}" "$cur"
        COMPREPLY=($(compgen -W "$subs" -- "$cur") "${COMPREPLY[@]}")
        return 0
    fi
    for w in $subs; do
        [[ ${COMP_WORDS[1]} == "$w" ]] && sub=$w && first=2
    done
    _sdc_migrate_spec "$sub"
    # an option's argument: --opt=VALUE (bash splits the = off) or -o VALUE
    if [[ $cur == "=" ]]; then
        opt=$prev; value=""
    elif [[ $prev == "=" ]]; then
        opt=${COMP_WORDS[COMP_CWORD-2]}; value=$cur
    elif [[ $cur == --*=* ]]; then
        opt=${cur%%=*}; value=${cur#*=}; lead=$opt=      # no = in COMP_WORDBREAKS
    elif [[ " $takes " == *" $prev:"* ]]; then
        opt=$prev; value=$cur
    fi
    if [[ -n $opt ]]; then
        type=" $takes "; type=${type#*" $opt:"}; type=${type%% *}
        [[ " $takes " == *" $opt:"* ]] && _sdc_migrate_words "$type" "$value" "$lead"
        return 0
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        [[ ${COMPREPLY[*]} == *= ]] && compopt -o nospace 2>/dev/null
        return 0
    fi
    # which positional argument this is: the words before it that are not
    # options or their arguments
    for ((i = first; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        if [[ ${COMP_WORDS[i+1]} == "=" ]]; then
            ((i += 2))
        elif [[ $w == -* ]]; then
            [[ $w != *=* && " $takes " == *" $w:"* ]] && ((i++))
        else
            ((n++))
        fi
    done
    set -- $pos
    if (( n < $# )); then
        shift $n; type=$1
    elif (( repeats && $# )); then
        type=${!#}
    else
        return 0
    fi
    _sdc_migrate_words "$type" "$cur"
    return 0
}
_sdc_migrate_spec tool
_sdc_migrate_tool=$opts
complete -F _sdc_migrate sdc-migrate
[[ -n $_sdc_migrate_tool ]] && complete -F _sdc_migrate "$_sdc_migrate_tool"
'''


def data_line(fields):
    """One line of the script's data: fields separated by ';' (no field has one)."""
    assert not any(";" in f or "\n" in f for f in fields)
    return ";".join(fields) + "\n"


def spec_line(sub, s):
    return data_line([sub or "-", " ".join(s["options"]),
                      " ".join("%s:%s" % kv for kv in sorted(s["takes"].items())),
                      " ".join("/".join(p) for p in s["positions"]), str(int(s["repeats"])),
                      " ".join(s["columns"])])


def script(tool=None):
    """The completion script: constant bash around the data it completes."""
    from ..cli import SUBCOMMANDS
    lines = [data_line(["subcommands", " ".join(SUBCOMMANDS)]),
             data_line(["tool", tool or ""]), spec_line("", spec(""))]
    lines += [spec_line(sub, spec(sub)) for sub in SUBCOMMANDS]
    return SCRIPT_HEAD + "".join(lines) + SCRIPT_TAIL


def this_tool():
    """This sdc-migrate's path, which the script calls for candidates (Triton's
    own sdc-migrate comes first on root's PATH): its launcher's or console
    script's, None when run with python -m."""
    argv0 = os.environ.get("SDC_MIGRATE_ARGV0") or sys.argv[0]
    if argv0.endswith(".py") or not os.path.isfile(argv0):
        return None
    return os.path.abspath(argv0)


# ---- candidates -----------------------------------------------------------------

def cached(kind, fetch, state_dir=STATE_DIR, clock=time.time):
    """fetch()'s words, kept CACHE_SECONDS in state_dir (root's alone)."""
    path = paths.completion_cache(kind, state_dir)
    try:
        if clock() - os.stat(path).st_mtime < CACHE_SECONDS:
            with open(path) as f:
                return json.load(f)
    except (OSError, ValueError):
        pass
    words = fetch()
    tmp = "%s.%d" % (path, os.getpid())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(words, f)
        os.rename(tmp, path)
    except OSError:
        pass
    return words


def candidates(kind, api=None, state_dir=None, clock=time.time):
    """The words of KIND: cns, active, unfinished or journaled."""
    state_dir = state_dir or STATE_DIR
    if kind in ("unfinished", "journaled"):
        journals = [j for j in Journal.all(state_dir=state_dir) if j.begin]
        if kind == "unfinished":
            journals = [j for j in journals if not j.ended]
        return sorted({j.begin["uuid"] for j in journals})
    api = api or Triton(Runner())
    if kind == "cns":
        return cached(kind, lambda: sorted(
            s["hostname"] for s in api.servers()
            if s.get("hostname") and not s.get("headnode")), state_dir, clock)
    if kind == "active":
        return cached(kind, lambda: sorted(v["uuid"] for v in api.vms(state="active")),
                      state_dir, clock)
    return []


def main(args):
    kind = os.environ.get(ASK)
    if kind:
        try:
            words = candidates(kind)
        except Exception:       # noqa: BLE001 - a TAB press gets no candidates, no trace
            return 0
        sys.stdout.write("".join(w + "\n" for w in words))
        return 0
    sys.stdout.write(script(this_tool()))
    return 0
