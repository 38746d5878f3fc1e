"""No value is ever formatted into shell text (issue 15).

Scripts the CNs run are constants that take their values as arguments
(`sh -c SCRIPT sh VALUE...`: "$1"), and words become shell text in one place
only, sdc_migrate/node.py's command_line (ssh's remote command, Node.script,
pipeline). This reads the package's source: a new `"vmadm stop %s" % uuid`
fails here, whatever the value's origin (VMAPI data, a journal on undo)."""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "sdc_migrate"
QUOTING = PACKAGE / "node.py"           # the one place words become shell text
SHELLS = {"sh", "/bin/sh", "bash", "/bin/bash"}
# what only shell text has (a human message may say "zfs send | ssh", so not "|")
MARKERS = ("&&", "||", "$(", '"$1', '"$2', '"$@', "; do", "2>/dev/null")


def sources():
    return sorted(p for p in PACKAGE.rglob("*.py"))


def is_constant_name(node):
    name = node.id if isinstance(node, ast.Name) else \
        node.attr if isinstance(node, ast.Attribute) else None
    return bool(name) and name.isupper()


def script_argument_problems(tree):
    """`["sh", "-c", X, ...]` whose X is not a literal or a CONSTANT."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.List, ast.Tuple)) or not node.elts:
            continue
        words = node.elts
        first = words[0]
        if not (isinstance(first, ast.Constant) and first.value in SHELLS):
            continue
        for i, w in enumerate(words[:-1]):
            if isinstance(w, ast.Constant) and w.value == "-c":
                script = words[i + 1]
                if not (isinstance(script, ast.Constant) or is_constant_name(script)):
                    found.append((node.lineno, "sh -c with a script made at run time"))
    return found


def formatting_problems(tree):
    """Shell text formatted inside a function (module constants are built
    once, from constants)."""
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            text = None
            if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
                for side in (node.left, node.right):
                    if isinstance(side, ast.Constant) and isinstance(side.value, str):
                        text = side.value
            elif isinstance(node, ast.JoinedStr):
                text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("format", "join") \
                    and isinstance(node.func.value, ast.Constant) \
                    and isinstance(node.func.value.value, str):
                text = node.func.value.value
                if node.func.attr == "join" and text.strip() in ("&&", "|", "||"):
                    text = "&&"
            if text and any(m in text for m in MARKERS):
                found.append((node.lineno, "shell text formatted in %s(): %r" % (fn.name, text[:40])))
    return found


def quoting_problems(tree):
    return [(n.lineno, "shlex.%s outside node.py" % n.attr) for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
            and n.value.id == "shlex"]


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_value_is_formatted_into_shell_text(path):
    tree = ast.parse(path.read_text(), str(path))
    problems = [] if path == QUOTING else \
        formatting_problems(tree) + script_argument_problems(tree) + quoting_problems(tree)
    assert not problems, "%s: %s" % (path.name, problems)


def test_the_scan_finds_what_it_forbids():
    """The scan itself: each way of building shell text from a value is caught."""
    bad = [
        'def f(uuid):\n    return ["sh", "-c", "vmadm stop %s && true" % uuid]\n',
        'def f(uuid):\n    return ["sh", "-c", f"vmadm stop {uuid} && true"]\n',
        'def f(names):\n    return " && ".join("ndd -get /dev/tcp " + n for n in names)\n',
        'import shlex\ndef f(d):\n    return shlex.quote(d)\n',
        'def f(s):\n    return ["bash", "-o", "pipefail", "-c", s]\n',
    ]
    for src in bad:
        tree = ast.parse(src)
        assert formatting_problems(tree) + script_argument_problems(tree) + \
            quoting_problems(tree), src
    good = 'S = "vmadm stop \\"$1\\""\ndef f(uuid):\n    return ["sh", "-c", S, "sh", uuid]\n'
    tree = ast.parse(good)
    assert not formatting_problems(tree) + script_argument_problems(tree)
