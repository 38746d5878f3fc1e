"""The option parser SmartOS's vmadm uses: nopt, as smartos-live carries it
in src/vm/node_modules/nopt.js (isaacs/nopt of 2011-10-30), rewritten here.

What an operator meets through it, and what this copies:
- options and operands mix in any order (`vmadm list uuid=U -Ho alias`);
- single-letter shorthands combine (`-Ho` is `-H -o`), `-o=VALUE` and
  `--order=VALUE` work, long names abbreviate (`--ord`), `--no-X` negates;
- a `--` ends the options;
- an unknown option is not an error: it takes the next word as its value
  (`vmadm list -x uuid=U` lists every VM).

Types are BOOL, STRING or a list of them and literal strings (vmadm's
`[Boolean, 'false']`). parse() returns (data, remain) as nopt's
`parsed` and `parsed.argv.remain`.
"""
import re

BOOL = "Boolean"
STRING = "String"
NUMBER = "Number"
_DEFAULT_TYPES = [False, True, None, STRING, NUMBER]


def js_number(s):
    """JavaScript's Number(string): NaN for anything that is not a number."""
    s = s.strip()
    if s == "":
        return 0.0
    try:
        if re.fullmatch(r"[+-]?(Infinity|\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?)", s):
            return float(s.lstrip("+").replace("Infinity", "inf"))
        m = re.fullmatch(r"0([xXoObB])([0-9a-fA-F]+)", s)
        if m:
            return float(int(m.group(2), {"x": 16, "o": 8, "b": 2}[m.group(1).lower()]))
    except ValueError:
        pass
    return float("nan")


def _is_nan(s):
    n = js_number(s)
    return n != n


def abbrev(words):
    """Every unambiguous prefix of each word -> the word (abbrev-js)."""
    words = sorted(set(words))
    out = {}
    prev = ""
    for idx, cur in enumerate(words):
        nxt = words[idx + 1] if idx + 1 < len(words) else ""
        next_matches = prev_matches = True
        j = 0
        while j < len(cur):
            c = cur[j]
            next_matches = next_matches and c == nxt[j:j + 1]
            prev_matches = prev_matches and c == prev[j:j + 1]
            j += 1
            if not (next_matches or prev_matches):
                break
        prev = cur
        if j == len(cur):
            out[cur] = cur
            continue
        while j <= len(cur):
            out[cur[:j]] = cur
            j += 1
    return out


def _resolve_short(arg, shorthands, short_abbr, abbrevs):
    arg = re.sub(r"^-+", "", arg)
    if arg in abbrevs and arg not in shorthands:
        return None
    if arg in short_abbr:
        arg = short_abbr[arg]
    else:
        singles = {s for s in shorthands if len(s) == 1}
        if all(c in singles for c in arg):
            # glommed single-letter shorthands, `-Ho`; `-` alone expands to nothing
            return [w for c in arg for w in shorthands[c]]
    return shorthands.get(arg)


def _accepts(t, kind):
    return t == kind or (isinstance(t, list) and kind in t)


def parse(types, shorthands, args):
    args = list(args)
    data = {}
    remain = []
    abbrevs = abbrev(types)
    short_abbr = abbrev(shorthands)
    i = 0
    while i < len(args):
        arg = args[i]
        if re.fullmatch(r"-{2,}", arg):
            remain.extend(args[i + 1:])
            break
        if not arg.startswith("-"):
            remain.append(arg)
            i += 1
            continue
        if "=" in arg:
            name, _, value = arg.partition("=")
            args[i:i + 1] = [name, value]
            arg = name
        expanded = _resolve_short(arg, shorthands, short_abbr, abbrevs)
        if expanded is not None:
            args[i:i + 1] = expanded
            if not expanded or arg != expanded[0]:
                continue        # parse what it expanded to
        arg = re.sub(r"^-+", "", arg)
        negate = False
        while arg.lower().startswith("no-"):
            negate = not negate
            arg = arg[3:]
        arg = abbrevs.get(arg, arg)
        t = types.get(arg)
        la = args[i + 1] if i + 1 < len(args) else None
        if negate or _accepts(t, BOOL):
            val = not negate
            if la in ("true", "false"):
                val = (la == "true") != negate
                la = None
                i += 1
            if isinstance(t, list) and la:
                if la in t:
                    val = la
                    i += 1
                elif not re.match(r"^-{2,}[^-]", la) and not _is_nan(la) and NUMBER in t:
                    val = js_number(la)
                    i += 1
                elif not re.match(r"^-[^-]", la) and STRING in t:
                    val = la
                    i += 1
            data[arg] = val
            i += 1
            continue
        if la is not None and re.fullmatch(r"-{2,}", la):
            la = None
            i -= 1
        data[arg] = True if la is None else la
        i += 2
    return _clean(data, types), remain


def _clean(data, types):
    """nopt's clean(): strings trimmed and typed, each value validated."""
    out = {}
    for k, val in data.items():
        t = types.get(k, _DEFAULT_TYPES)
        tl = t if isinstance(t, list) else [t]
        if isinstance(val, str):
            val = val.strip()
            if val == "null" and None in tl:
                val = None
            elif val in ("true", "false") and (True in tl or False in tl or BOOL in tl):
                val = val == "true"
            elif NUMBER in tl and not _is_nan(val):
                val = js_number(val)
        if k not in types:
            out[k] = val
            continue
        for one in tl:
            if one == BOOL:
                if isinstance(val, str):
                    val = bool(js_number(val)) if not _is_nan(val) else val not in ("null", "false")
                else:
                    val = bool(val)
                out[k] = val
                break
            if one == STRING:
                out[k] = {True: "true", False: "false", None: "null"}.get(val, val) \
                    if not isinstance(val, str) else val
                break
            if val == one:
                out[k] = val
                break
    return out
