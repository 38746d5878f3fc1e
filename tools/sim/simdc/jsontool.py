"""`json`: the subset of the npm `json` tool (trentm/json, shipped on Triton
head nodes) that Triton's scripts and operators use.

Behaviour follows lib/json.js of that project: a leading HTTP header block is
passed through (dropped with -H), -g groups adjacent objects/arrays, -a
processes arrays item by item with tabular output, -c filters with a
condition, -e executes an expression, -k lists keys, lookups with dots and
bracketed strings, output modes jsony (default), json (-j, -o json-N),
inspect (-i). JavaScript snippets (-c, -e) are evaluated by a small, safe
interpreter of a JS expression subset: property access, comparisons
(== === != !== < <= > >=), && || ! ?:, arithmetic, string/array/regexp
methods, Object.keys, JSON.stringify, assignment and delete (for -e); never
by eval.
"""
import json
import math
import os
import re
import sys

VERSION = "9.0.2"     # what sdc-headnode ships (tools/bin/json)
VM_MODE = False


class _Undefined:
    _inst = None

    def __new__(cls):
        if cls._inst is None:
            cls._inst = object.__new__(cls)
        return cls._inst

    def __repr__(self):
        return "undefined"

    def __bool__(self):
        return False


UNDEF = _Undefined()


class JSError(Exception):
    pass


class UsageError(Exception):
    pass


# ---- JS value semantics --------------------------------------------------------

def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def truthy(v):
    if v is None or v is UNDEF or v is False:
        return False
    if is_num(v):
        return not (v == 0 or (isinstance(v, float) and math.isnan(v)))
    if isinstance(v, str):
        return v != ""
    return True


def num_str(v):
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        if v == int(v) and abs(v) < 1e21:
            return str(int(v))
        r = repr(v)
        if "e" in r:
            mant, exp = r.split("e")
            return "%se%s%d" % (mant, "+" if int(exp) > 0 else "-", abs(int(exp)))
        return r
    return str(v)


def to_str(v):
    if isinstance(v, str):
        return v
    if v is None:
        return "null"
    if v is UNDEF:
        return "undefined"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if is_num(v):
        return num_str(v)
    if isinstance(v, list):
        return ",".join("" if x is None or x is UNDEF else to_str(x) for x in v)
    if isinstance(v, dict):
        return "[object Object]"
    if isinstance(v, JSRegExp):
        return "/%s/%s" % (v.source, v.flags)
    return str(v)


def to_num(v):
    if v is True:
        return 1
    if v is False or v is None:
        return 0
    if v is UNDEF:
        return float("nan")
    if is_num(v):
        return v
    if isinstance(v, str):
        s = v.strip()
        if s == "":
            return 0
        try:
            if re.match(r"^[-+]?0[xX][0-9a-fA-F]+$", s):
                return int(s, 16)
            f = float(s)
            return int(f) if f == int(f) and "." not in s and "e" not in s.lower() else f
        except (ValueError, OverflowError):
            if s in ("Infinity", "+Infinity"):
                return float("inf")
            if s == "-Infinity":
                return float("-inf")
            return float("nan")
    if isinstance(v, list):
        if not v:
            return 0
        if len(v) == 1:
            return to_num(to_str(v[0]))
    return float("nan")


def js_type(v):
    if v is UNDEF:
        return "undefined"
    if v is None:
        return "object"
    if isinstance(v, bool):
        return "boolean"
    if is_num(v):
        return "number"
    if isinstance(v, str):
        return "string"
    if callable(v):
        return "function"
    return "object"


def strict_eq(a, b):
    ta, tb = js_type(a), js_type(b)
    if ta != tb:
        return False
    if ta == "number":
        return a == b
    if ta in ("string", "boolean"):
        return a == b
    if ta == "undefined":
        return True
    if a is None or b is None:
        return a is b
    return a is b


def loose_eq(a, b):
    if (a is None or a is UNDEF) and (b is None or b is UNDEF):
        return True
    if a is None or a is UNDEF or b is None or b is UNDEF:
        return False
    ta, tb = js_type(a), js_type(b)
    if ta == tb:
        return strict_eq(a, b)
    if isinstance(a, bool):
        return loose_eq(to_num(a), b)
    if isinstance(b, bool):
        return loose_eq(a, to_num(b))
    if ta == "number" and tb == "string":
        return a == to_num(b)
    if ta == "string" and tb == "number":
        return to_num(a) == b
    if ta == "object" and tb in ("string", "number"):
        return loose_eq(to_str(a), b)
    if tb == "object" and ta in ("string", "number"):
        return loose_eq(a, to_str(b))
    return False


def compare(a, b, op):
    if isinstance(a, str) and isinstance(b, str):
        x, y = a, b
    else:
        x, y = to_num(a if not isinstance(a, (list, dict)) else to_str(a)), \
            to_num(b if not isinstance(b, (list, dict)) else to_str(b))
        if (isinstance(x, float) and math.isnan(x)) or (isinstance(y, float) and math.isnan(y)):
            return False
    return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]


def _num_result(v):
    if isinstance(v, float) and v == int(v) and not math.isinf(v) and abs(v) < 2 ** 53:
        return int(v)
    return v


class JSRegExp:
    def __init__(self, source, flags):
        self.source = source
        self.flags = flags
        pyflags = 0
        if "i" in flags:
            pyflags |= re.IGNORECASE
        if "m" in flags:
            pyflags |= re.MULTILINE
        if "s" in flags:
            pyflags |= re.DOTALL
        src = re.sub(r"\(\?<([A-Za-z_]\w*)>", r"(?P<\1>", source)
        try:
            self.rx = re.compile(src, pyflags)
        except re.error as e:
            raise JSError("SyntaxError: Invalid regular expression: /%s/: %s" % (source, e))


class Func:
    def __init__(self, fn, name="fn"):
        self.fn = fn
        self.name = name

    def __call__(self, *args):
        return self.fn(*args)


def _arg(args, i, default=UNDEF):
    return args[i] if len(args) > i else default


def _index_arg(v, length, default):
    if v is UNDEF:
        return default
    n = to_num(v)
    if isinstance(n, float) and math.isnan(n):
        n = 0
    n = int(n)
    if n < 0:
        n = max(length + n, 0)
    return min(n, length)


def _str_method(s, name):
    m = {
        "indexOf": lambda *a: s.find(to_str(_arg(a, 0)), _index_arg(_arg(a, 1), len(s), 0)),
        "lastIndexOf": lambda *a: s.rfind(to_str(_arg(a, 0))),
        "includes": lambda *a: to_str(_arg(a, 0)) in s,
        "startsWith": lambda *a: s.startswith(to_str(_arg(a, 0)),
                                              _index_arg(_arg(a, 1), len(s), 0)),
        "endsWith": lambda *a: s.endswith(to_str(_arg(a, 0))),
        "toLowerCase": lambda *a: s.lower(),
        "toUpperCase": lambda *a: s.upper(),
        "trim": lambda *a: s.strip(),
        "trimLeft": lambda *a: s.lstrip(),
        "trimRight": lambda *a: s.rstrip(),
        "charAt": lambda *a: (s[int(to_num(_arg(a, 0, 0)))]
                              if 0 <= int(to_num(_arg(a, 0, 0))) < len(s) else ""),
        "slice": lambda *a: s[_index_arg(_arg(a, 0), len(s), 0):
                              _index_arg(_arg(a, 1), len(s), len(s))],
        "substring": lambda *a: s[min(max(int(to_num(_arg(a, 0, 0))), 0), len(s)):
                                  (len(s) if _arg(a, 1) is UNDEF
                                   else min(max(int(to_num(_arg(a, 1))), 0), len(s)))],
        "substr": lambda *a: s[_index_arg(_arg(a, 0), len(s), 0):][
            :(len(s) if _arg(a, 1) is UNDEF else max(int(to_num(_arg(a, 1))), 0))],
        "split": lambda *a: _str_split(s, _arg(a, 0), _arg(a, 1)),
        "concat": lambda *a: s + "".join(to_str(x) for x in a),
        "match": lambda *a: _str_match(s, _arg(a, 0)),
        "search": lambda *a: _str_search(s, _arg(a, 0)),
        "replace": lambda *a: _str_replace(s, _arg(a, 0), _arg(a, 1)),
        "toString": lambda *a: s,
        "valueOf": lambda *a: s,
    }
    return m.get(name)


def _to_regexp(v):
    if isinstance(v, JSRegExp):
        return v
    return JSRegExp(re.escape(to_str(v)), "")


def _str_split(s, sep, limit):
    if sep is UNDEF:
        parts = [s]
    elif isinstance(sep, JSRegExp):
        parts = sep.rx.split(s)
    else:
        sep = to_str(sep)
        parts = list(s) if sep == "" else s.split(sep)
    if limit is not UNDEF:
        parts = parts[:int(to_num(limit))]
    return parts


def _str_match(s, r):
    r = _to_regexp(r)
    if "g" in r.flags:
        found = [m.group(0) for m in r.rx.finditer(s)]
        return found or None
    m = r.rx.search(s)
    if not m:
        return None
    return [m.group(0)] + [g if g is not None else UNDEF for g in m.groups()]


def _str_search(s, r):
    m = _to_regexp(r).rx.search(s)
    return m.start() if m else -1


def _str_replace(s, pat, rep):
    rep = to_str(rep)

    def expand(m):
        out = rep.replace("$&", m.group(0))
        for i in range(len(m.groups()), 0, -1):
            out = out.replace("$%d" % i, m.group(i) or "")
        return out
    if isinstance(pat, JSRegExp):
        count = 0 if "g" in pat.flags else 1
        return pat.rx.sub(expand, s, count=count)
    pat = to_str(pat)
    i = s.find(pat)
    if i < 0:
        return s
    return s[:i] + rep.replace("$&", pat) + s[i + len(pat):]


def _list_method(lst, name):
    m = {
        "indexOf": lambda *a: next((i for i, x in enumerate(lst) if strict_eq(x, _arg(a, 0))),
                                   -1),
        "lastIndexOf": lambda *a: next((i for i in range(len(lst) - 1, -1, -1)
                                        if strict_eq(lst[i], _arg(a, 0))), -1),
        "includes": lambda *a: any(strict_eq(x, _arg(a, 0)) or
                                   (is_num(x) and is_num(_arg(a, 0)) and x == _arg(a, 0))
                                   for x in lst),
        "join": lambda *a: (to_str(_arg(a, 0)) if _arg(a, 0) is not UNDEF else ",").join(
            "" if x is None or x is UNDEF else to_str(x) for x in lst),
        "slice": lambda *a: lst[_index_arg(_arg(a, 0), len(lst), 0):
                                _index_arg(_arg(a, 1), len(lst), len(lst))],
        "concat": lambda *a: lst + [y for x in a for y in (x if isinstance(x, list) else [x])],
        "toString": lambda *a: to_str(lst),
        "reverse": lambda *a: _reverse(lst),
        "sort": lambda *a: _sort(lst),
        "push": lambda *a: _push(lst, a),
    }
    return m.get(name)


def _reverse(lst):
    lst.reverse()
    return lst


def _sort(lst):
    lst.sort(key=to_str)
    return lst


def _push(lst, items):
    lst.extend(items)
    return len(lst)


def _num_method(n, name):
    m = {
        "toString": lambda *a: num_str(n),
        "toFixed": lambda *a: "%.*f" % (int(to_num(_arg(a, 0, 0))), n),
        "valueOf": lambda *a: n,
    }
    return m.get(name)


def get_prop(obj, key):
    if obj is None or obj is UNDEF:
        raise JSError("TypeError: Cannot read properties of %s (reading '%s')"
                      % (to_str(obj), to_str(key)))
    if isinstance(key, float) and key == int(key):
        key = int(key)
    if isinstance(obj, dict):
        k = to_str(key)
        if k in obj:
            return obj[k]
        if k == "hasOwnProperty":
            return Func(lambda *a: to_str(_arg(a, 0)) in obj)
        return UNDEF
    if isinstance(obj, list):
        if is_num(key) or (isinstance(key, str) and re.match(r"^(0|[1-9]\d*)$", key)):
            i = int(key)
            return obj[i] if 0 <= i < len(obj) else UNDEF
        k = to_str(key)
        if k == "length":
            return len(obj)
        m = _list_method(obj, k)
        return Func(m) if m else UNDEF
    if isinstance(obj, str):
        if is_num(key) or (isinstance(key, str) and re.match(r"^(0|[1-9]\d*)$", key)):
            i = int(key)
            return obj[i] if 0 <= i < len(obj) else UNDEF
        k = to_str(key)
        if k == "length":
            return len(obj)
        m = _str_method(obj, k)
        return Func(m) if m else UNDEF
    if isinstance(obj, JSRegExp):
        k = to_str(key)
        if k == "test":
            return Func(lambda *a: obj.rx.search(to_str(_arg(a, 0))) is not None)
        if k == "exec":
            return Func(lambda *a: _str_match(to_str(_arg(a, 0)),
                                              JSRegExp(obj.source, obj.flags.replace("g", ""))))
        if k == "source":
            return obj.source
        if k == "flags":
            return obj.flags
        return UNDEF
    if is_num(obj) and not isinstance(obj, bool):
        m = _num_method(obj, to_str(key))
        return Func(m) if m else UNDEF
    if isinstance(obj, bool):
        if to_str(key) == "toString":
            return Func(lambda *a: to_str(obj))
        return UNDEF
    if isinstance(obj, Namespace):
        return obj.attrs.get(to_str(key), UNDEF)
    return UNDEF


def set_prop(obj, key, value):
    if obj is None or obj is UNDEF:
        raise JSError("TypeError: Cannot set properties of %s (setting '%s')"
                      % (to_str(obj), to_str(key)))
    if isinstance(obj, dict):
        obj[to_str(key)] = value
    elif isinstance(obj, list):
        if to_str(key) == "length":
            del obj[int(to_num(value)):]
        else:
            i = int(to_num(key))
            while len(obj) <= i:
                obj.append(None)
            obj[i] = value
    return value


class Namespace:
    def __init__(self, **attrs):
        self.attrs = attrs


def _json_stringify(*a):
    v = _arg(a, 0)
    if v is UNDEF:
        return UNDEF
    indent = _arg(a, 2)
    ind = int(to_num(indent)) if is_num(indent) else (indent if isinstance(indent, str)
                                                         else None)
    return stringify_json(v, ind)


def _parse_int(*a):
    s = to_str(_arg(a, 0)).strip()
    radix = _arg(a, 1)
    base = int(to_num(radix)) if radix is not UNDEF else 10
    m = re.match(r"^[-+]?[0-9a-zA-Z]+", s)
    if not m:
        return float("nan")
    digits = m.group(0)
    for end in range(len(digits), 0, -1):
        try:
            return int(digits[:end], base or 10)
        except ValueError:
            continue
    return float("nan")


def _parse_float(*a):
    m = re.match(r"^\s*[-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?)",
                 to_str(_arg(a, 0)))
    return _num_result(float(m.group(0))) if m else float("nan")


def _object_keys(*a):
    v = _arg(a, 0)
    if isinstance(v, dict):
        return list(v.keys())
    if isinstance(v, (list, str)):
        return [str(i) for i in range(len(v))]
    if v is None or v is UNDEF:
        raise JSError("TypeError: Cannot convert undefined or null to object")
    return []


GLOBALS = {
    "Object": Namespace(keys=Func(_object_keys),
                        values=Func(lambda *a: list(_arg(a, 0).values())
                                    if isinstance(_arg(a, 0), dict) else [])),
    "JSON": Namespace(stringify=Func(_json_stringify),
                      parse=Func(lambda *a: json.loads(to_str(_arg(a, 0))))),
    "Math": Namespace(max=Func(lambda *a: _num_result(max([to_num(x) for x in a]
                                                          or [float("-inf")]))),
                      min=Func(lambda *a: _num_result(min([to_num(x) for x in a]
                                                          or [float("inf")]))),
                      floor=Func(lambda *a: math.floor(to_num(_arg(a, 0)))),
                      ceil=Func(lambda *a: math.ceil(to_num(_arg(a, 0)))),
                      round=Func(lambda *a: math.floor(to_num(_arg(a, 0)) + 0.5)),
                      abs=Func(lambda *a: abs(to_num(_arg(a, 0))))),
    "Array": Namespace(isArray=Func(lambda *a: isinstance(_arg(a, 0), list))),
    "Number": Func(lambda *a: to_num(_arg(a, 0, 0))),
    "String": Func(lambda *a: to_str(_arg(a, 0, ""))),
    "Boolean": Func(lambda *a: truthy(_arg(a, 0))),
    "parseInt": Func(_parse_int),
    "parseFloat": Func(_parse_float),
    "isNaN": Func(lambda *a: isinstance(to_num(_arg(a, 0)), float)
                  and math.isnan(to_num(_arg(a, 0)))),
    "NaN": float("nan"),
    "Infinity": float("inf"),
}


# ---- JS subset: tokenizer and parser -------------------------------------------

_PUNCT = ["===", "!==", "**", "==", "!=", "<=", ">=", "&&", "||", "+=", "-=", "++", "--",
          "<", ">", "+", "-", "*", "/", "%", "!", "(", ")", "[", "]", ".", ",", "?", ":",
          "=", ";", "{", "}"]
_KEYWORDS = {"true", "false", "null", "undefined", "this", "typeof", "delete", "return",
             "in", "instanceof", "var", "let", "const", "new"}


def tokenize(src):
    toks = []
    i = 0
    n = len(src)

    def regex_allowed():
        if not toks:
            return True
        kind, val = toks[-1]
        if kind in ("num", "str", "regex", "name"):
            return False
        if kind == "kw" and val in ("this", "true", "false", "null", "undefined"):
            return False
        if kind == "punct" and val in (")", "]", "}"):
            return False
        return True

    while i < n:
        c = src[i]
        if c.isspace():
            i += 1
            continue
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
            continue
        if src.startswith("/*", i):
            j = src.find("*/", i + 2)
            i = n if j < 0 else j + 2
            continue
        if c.isdigit() or (c == "." and i + 1 < n and src[i + 1].isdigit()):
            m = re.compile(r"0[xX][0-9a-fA-F]+|(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?").match(src, i)
            text = m.group(0)
            if text.lower().startswith("0x"):
                val = int(text, 16)
            else:
                val = _num_result(float(text)) if re.search(r"[.eE]", text) else int(text)
            toks.append(("num", val))
            i = m.end()
            continue
        if c in "'\"`":
            j = i + 1
            buf = []
            while j < n and src[j] != c:
                if src[j] == "\\" and j + 1 < n:
                    e = src[j + 1]
                    esc = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v",
                           "0": "\0"}
                    if e == "u" and re.match(r"[0-9a-fA-F]{4}", src[j + 2:j + 6]):
                        buf.append(chr(int(src[j + 2:j + 6], 16)))
                        j += 6
                        continue
                    if e == "x" and re.match(r"[0-9a-fA-F]{2}", src[j + 2:j + 4]):
                        buf.append(chr(int(src[j + 2:j + 4], 16)))
                        j += 4
                        continue
                    buf.append(esc.get(e, e))
                    j += 2
                    continue
                buf.append(src[j])
                j += 1
            if j >= n:
                raise JSError("SyntaxError: Invalid or unexpected token")
            toks.append(("str", "".join(buf)))
            i = j + 1
            continue
        if c == "/" and regex_allowed():
            j = i + 1
            in_class = False
            while j < n:
                if src[j] == "\\":
                    j += 2
                    continue
                if src[j] == "[":
                    in_class = True
                elif src[j] == "]":
                    in_class = False
                elif src[j] == "/" and not in_class:
                    break
                j += 1
            if j >= n:
                raise JSError("SyntaxError: Invalid regular expression: missing /")
            body = src[i + 1:j]
            m = re.compile(r"[gimsuy]*").match(src, j + 1)
            toks.append(("regex", (body, m.group(0))))
            i = m.end()
            continue
        if c.isalpha() or c in "_$":
            m = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*").match(src, i)
            word = m.group(0)
            toks.append(("kw" if word in _KEYWORDS else "name", word))
            i = m.end()
            continue
        for p in _PUNCT:
            if src.startswith(p, i):
                toks.append(("punct", p))
                i += len(p)
                break
        else:
            raise JSError("SyntaxError: Invalid or unexpected token '%s'" % c)
    toks.append(("eof", None))
    return toks


_BINARY = {
    "||": 1, "&&": 2,
    "==": 3, "!=": 3, "===": 3, "!==": 3,
    "<": 4, "<=": 4, ">": 4, ">=": 4, "in": 4, "instanceof": 4,
    "+": 5, "-": 5,
    "*": 6, "/": 6, "%": 6,
}


class Parser:
    def __init__(self, src):
        self.toks = tokenize(src)
        self.pos = 0

    def peek(self, k=0):
        return self.toks[self.pos + k]

    def next(self):
        t = self.toks[self.pos]
        self.pos += 1
        return t

    def accept(self, kind, val=None):
        t = self.peek()
        if t[0] == kind and (val is None or t[1] == val):
            self.pos += 1
            return t
        return None

    def expect(self, kind, val=None):
        t = self.accept(kind, val)
        if t is None:
            got = self.peek()
            raise JSError("SyntaxError: Unexpected %s" % (
                "end of input" if got[0] == "eof" else "token %s" % (got[1],)))
        return t

    def program(self):
        stmts = []
        while self.peek()[0] != "eof":
            if self.accept("punct", ";"):
                continue
            if self.accept("kw", "return"):
                if self.peek()[0] == "eof" or self.peek() == ("punct", ";"):
                    stmts.append(("return", ("lit", UNDEF)))
                else:
                    stmts.append(("return", self.expression()))
            elif self.peek()[0] == "kw" and self.peek()[1] in ("var", "let", "const"):
                self.next()
                name = self.expect("name")[1]
                init = ("lit", UNDEF)
                if self.accept("punct", "="):
                    init = self.assignment()
                stmts.append(("var", name, init))
            else:
                stmts.append(("expr", self.expression()))
            if self.peek()[0] != "eof":
                self.expect("punct", ";")
        return stmts

    def expression(self):
        e = self.assignment()
        while self.accept("punct", ","):
            e = ("seq", e, self.assignment())
        return e

    def assignment(self):
        left = self.ternary()
        t = self.peek()
        if t[0] == "punct" and t[1] in ("=", "+=", "-="):
            self.next()
            if left[0] not in ("member", "name"):
                raise JSError("SyntaxError: Invalid left-hand side in assignment")
            right = self.assignment()
            return ("assign", t[1], left, right)
        return left

    def ternary(self):
        cond = self.binary(1)
        if self.accept("punct", "?"):
            a = self.assignment()
            self.expect("punct", ":")
            b = self.assignment()
            return ("cond", cond, a, b)
        return cond

    def binary(self, minprec):
        left = self.unary()
        while True:
            t = self.peek()
            op = t[1] if t[0] in ("punct", "kw") else None
            prec = _BINARY.get(op)
            if prec is None or prec < minprec:
                return left
            self.next()
            right = self.binary(prec + 1)
            if op in ("&&", "||"):
                left = ("logic", op, left, right)
            else:
                left = ("bin", op, left, right)

    def unary(self):
        t = self.peek()
        if t[0] == "punct" and t[1] in ("!", "-", "+"):
            self.next()
            return ("unary", t[1], self.unary())
        if t[0] == "kw" and t[1] in ("typeof", "delete"):
            self.next()
            return ("unary", t[1], self.unary())
        return self.postfix()

    def postfix(self):
        e = self.primary()
        while True:
            if self.accept("punct", "."):
                t = self.next()
                if t[0] not in ("name", "kw"):
                    raise JSError("SyntaxError: Unexpected token %s" % (t[1],))
                e = ("member", e, ("lit", t[1]))
            elif self.accept("punct", "["):
                idx = self.expression()
                self.expect("punct", "]")
                e = ("member", e, idx)
            elif self.accept("punct", "("):
                args = []
                if not self.accept("punct", ")"):
                    while True:
                        args.append(self.assignment())
                        if self.accept("punct", ")"):
                            break
                        self.expect("punct", ",")
                e = ("call", e, args)
            else:
                return e

    def primary(self):
        t = self.next()
        kind, val = t
        if kind in ("num", "str"):
            return ("lit", val)
        if kind == "regex":
            return ("regex", val[0], val[1])
        if kind == "kw":
            if val == "this":
                return ("this",)
            if val in ("true", "false"):
                return ("lit", val == "true")
            if val == "null":
                return ("lit", None)
            if val == "undefined":
                return ("lit", UNDEF)
        if kind == "name":
            return ("name", val)
        if kind == "punct" and val == "(":
            e = self.expression()
            self.expect("punct", ")")
            return e
        if kind == "punct" and val == "[":
            items = []
            if not self.accept("punct", "]"):
                while True:
                    items.append(self.assignment())
                    if self.accept("punct", "]"):
                        break
                    self.expect("punct", ",")
            return ("array", items)
        if kind == "punct" and val == "{":
            props = []
            if not self.accept("punct", "}"):
                while True:
                    k = self.next()
                    if k[0] not in ("name", "str", "num", "kw"):
                        raise JSError("SyntaxError: Unexpected token %s" % (k[1],))
                    self.expect("punct", ":")
                    props.append((to_str(k[1]), self.assignment()))
                    if self.accept("punct", "}"):
                        break
                    self.expect("punct", ",")
            return ("object", props)
        raise JSError("SyntaxError: Unexpected %s" % (
            "end of input" if kind == "eof" else "token %s" % (val,)))


class _Return(Exception):
    def __init__(self, value):
        self.value = value


class Snippet:
    """A compiled -c/-e snippet run with `this` bound to a datum."""

    def __init__(self, src, auto_return):
        code = src
        if auto_return and "return" not in code:
            code = code.rstrip()
            if code.endswith(";"):
                code = code[:-1]
            code = "return (" + code + ")"
        self.stmts = Parser(code).program()

    def run(self, this):
        scope = {}
        try:
            for st in self.stmts:
                if st[0] == "return":
                    return self.ev(st[1], this, scope)
                if st[0] == "var":
                    scope[st[1]] = self.ev(st[2], this, scope)
                else:
                    self.ev(st[1], this, scope)
        except RecursionError:
            raise JSError("RangeError: Maximum call stack size exceeded")
        return UNDEF

    def ev(self, node, this, scope):
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "this":
            return this
        if kind == "regex":
            return JSRegExp(node[1], node[2])
        if kind == "name":
            name = node[1]
            if name in scope:
                return scope[name]
            if name in GLOBALS:
                return GLOBALS[name]
            # `new Function` semantics: bare names are globals, not the
            # datum's keys -- unless JSON_EXEC=vm (runInNewContext(datum)).
            if VM_MODE and isinstance(this, dict) and name in this:
                return this[name]
            if name in GLOBALS:
                return GLOBALS[name]
            raise JSError("ReferenceError: %s is not defined" % name)
        if kind == "array":
            return [self.ev(x, this, scope) for x in node[1]]
        if kind == "object":
            return {k: self.ev(v, this, scope) for k, v in node[1]}
        if kind == "member":
            obj = self.ev(node[1], this, scope)
            key = self.ev(node[2], this, scope)
            return get_prop(obj, key)
        if kind == "call":
            fn = self.ev(node[1], this, scope)
            args = [self.ev(a, this, scope) for a in node[2]]
            if not isinstance(fn, Func):
                raise JSError("TypeError: %s is not a function" % _describe(node[1]))
            return fn(*args)
        if kind == "unary":
            op = node[1]
            if op == "delete":
                target = node[2]
                if target[0] != "member":
                    return True
                obj = self.ev(target[1], this, scope)
                key = self.ev(target[2], this, scope)
                if isinstance(obj, dict):
                    obj.pop(to_str(key), None)
                elif isinstance(obj, list):
                    i = int(to_num(key))
                    if 0 <= i < len(obj):
                        obj[i] = None
                return True
            if op == "typeof":
                try:
                    return js_type(self.ev(node[2], this, scope))
                except JSError:
                    return "undefined"
            v = self.ev(node[2], this, scope)
            if op == "!":
                return not truthy(v)
            if op == "-":
                return _num_result(-to_num(v))
            return to_num(v)
        if kind == "logic":
            a = self.ev(node[2], this, scope)
            if node[1] == "&&":
                return self.ev(node[3], this, scope) if truthy(a) else a
            return a if truthy(a) else self.ev(node[3], this, scope)
        if kind == "cond":
            return self.ev(node[2] if truthy(self.ev(node[1], this, scope)) else node[3],
                           this, scope)
        if kind == "seq":
            self.ev(node[1], this, scope)
            return self.ev(node[2], this, scope)
        if kind == "bin":
            return binop(node[1], self.ev(node[2], this, scope), self.ev(node[3], this, scope))
        if kind == "assign":
            op, target, value = node[1], node[2], node[3]
            v = self.ev(value, this, scope)
            if op != "=":
                v = binop(op[0], self.ev(target, this, scope), v)
            if target[0] == "name":
                if target[1] in scope:
                    scope[target[1]] = v
                elif isinstance(this, dict):
                    this[target[1]] = v
                return v
            obj = self.ev(target[1], this, scope)
            key = self.ev(target[2], this, scope)
            return set_prop(obj, key, v)
        raise JSError("SyntaxError: unsupported expression")


def _describe(node):
    if node[0] == "member" and node[2][0] == "lit":
        return "%s.%s" % (_describe(node[1]), node[2][1])
    if node[0] == "name":
        return node[1]
    if node[0] == "this":
        return "this"
    return "expression"


def binop(op, a, b):
    if op == "===":
        return strict_eq(a, b)
    if op == "!==":
        return not strict_eq(a, b)
    if op == "==":
        return loose_eq(a, b)
    if op == "!=":
        return not loose_eq(a, b)
    if op in ("<", "<=", ">", ">="):
        return compare(a, b, op)
    if op == "in":
        if isinstance(b, dict):
            return to_str(a) in b
        if isinstance(b, list):
            i = to_num(a)
            return is_num(i) and not (isinstance(i, float) and math.isnan(i)) and \
                0 <= int(i) < len(b)
        raise JSError("TypeError: Cannot use 'in' operator to search for '%s' in %s"
                      % (to_str(a), to_str(b)))
    if op == "instanceof":
        return False
    if op == "+":
        pa = to_str(a) if isinstance(a, (list, dict)) else a
        pb = to_str(b) if isinstance(b, (list, dict)) else b
        if isinstance(pa, str) or isinstance(pb, str):
            return to_str(pa) + to_str(pb)
        return _num_result(to_num(pa) + to_num(pb))
    x, y = to_num(a), to_num(b)
    try:
        if op == "-":
            return _num_result(x - y)
        if op == "*":
            return _num_result(x * y)
        if op == "/":
            if y == 0:
                if x == 0 or (isinstance(x, float) and math.isnan(x)):
                    return float("nan")
                return float("inf") if x > 0 else float("-inf")
            return _num_result(x / y)
        if op == "%":
            if y == 0:
                return float("nan")
            return _num_result(math.fmod(x, y))
    except TypeError:
        return float("nan")
    raise JSError("SyntaxError: unsupported operator %s" % op)


# ---- output --------------------------------------------------------------------

def _clean(v):
    """JSON.stringify's view of a value: undefined dropped, integral floats
    as integers, NaN/Infinity as null."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items() if x is not UNDEF and not isinstance(x, Func)}
    if isinstance(v, list):
        return [None if x is UNDEF or isinstance(x, Func) else _clean(x) for x in v]
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return None
        if v == int(v) and abs(v) < 1e21:
            return int(v)
    if isinstance(v, JSRegExp):
        return {}
    return v


def stringify_json(v, indent):
    if v is UNDEF or isinstance(v, Func):
        return UNDEF
    v = _clean(v)
    if indent in (None, 0, ""):
        return json.dumps(v, separators=(",", ":"), ensure_ascii=False)
    if isinstance(indent, str):
        return json.dumps(v, indent=indent[:10], ensure_ascii=False)
    return json.dumps(v, indent=min(indent, 10), ensure_ascii=False)


def _inspect_str(v):
    body = json.dumps(v, ensure_ascii=False)[1:-1]
    return "'" + body.replace("'", "\\'").replace('\\"', '"') + "'"


def _reduce(output, braces):
    length = sum(len(x) + 1 for x in output)
    if length > 60:
        return braces[0] + " " + ",\n  ".join(output) + " " + braces[1]
    return braces[0] + " " + ", ".join(output) + " " + braces[1]


def inspect(v):
    """node 0.10's util.inspect (what `json -i` prints on a Triton head node)."""
    if v is UNDEF:
        return "undefined"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if is_num(v):
        return num_str(v)
    if isinstance(v, str):
        return _inspect_str(v)
    if isinstance(v, list):
        if not v:
            return "[]"
        out = []
        for x in v:
            s = inspect(x)
            if "\n" in s:
                s = "\n".join("  " + line for line in s.split("\n"))[2:]
            out.append(s)
        return _reduce(out, "[]")
    if isinstance(v, dict):
        if not v:
            return "{}"
        out = []
        for k, x in v.items():
            s = inspect(x)
            if "\n" in s:
                s = "\n" + "\n".join("   " + line for line in s.split("\n"))
            if re.match(r"^[a-zA-Z_][a-zA-Z_0-9]*$", k):
                name = k
            else:
                name = _inspect_str(k)
            out.append("%s: %s" % (name, s))
        return _reduce(out, "{}")
    return str(v)


OM_JSONY, OM_JSON, OM_INSPECT, OM_COMPACT = 1, 2, 3, 4
OM_FROM_NAME = {"jsony": OM_JSONY, "json": OM_JSON, "inspect": OM_INSPECT,
                "compact": OM_COMPACT}


def stringify_datum(datum, opts):
    mode = opts["outputMode"]
    if mode == OM_INSPECT:
        return inspect(datum)
    if mode == OM_JSON:
        s = stringify_json(datum, opts["jsonIndent"])
        return None if s is UNDEF else s
    if mode == OM_COMPACT:
        if datum is UNDEF:
            return None
        if isinstance(datum, list):
            if not datum:
                return "[\n]"
            bits = ["  " + re.sub(r',"(?![,:])', ', "', stringify_json(d, 0)) for d in datum]
            return "[\n" + ",\n".join(bits) + "\n]"
        return stringify_json(datum, 0)
    if isinstance(datum, str):
        return datum
    s = stringify_json(datum, opts["jsonIndent"])
    return None if s is UNDEF else s


# ---- argv and lookups ----------------------------------------------------------

def parse_argv(args):
    parsed = {"args": [], "help": False, "quiet": False, "dropHeaders": False,
              "exeSnippets": [], "condSnippets": [], "outputMode": OM_JSONY,
              "jsonIndent": 2, "array": None, "delim": " ", "lookupDelim": ".",
              "items": False, "outputKeys": False, "group": False, "merge": None,
              "inputFiles": [], "validate": False, "inPlace": False, "version": False}
    opt_takes_arg = {"d", "o", "D"}
    new_args = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            new_args.extend(args[i:])
            break
        if a.startswith("-") and not a.startswith("--") and len(a) > 2:
            letters = a[1:]
            for j, ch in enumerate(letters):
                new_args.append("-" + ch)
                if ch in opt_takes_arg:
                    rest = letters[j + 1:]
                    if rest:
                        new_args.append(rest)
                    break
        else:
            new_args.append(a)
        i += 1
    args = new_args
    end_of_options = False
    i = 0

    def take():
        nonlocal i
        i += 1
        if i >= len(args):
            raise UsageError('no argument given for "%s" option' % args[i - 1])
        return args[i]

    while i < len(args):
        a = args[i]
        if end_of_options:
            parsed["args"].append(a)
            i += 1
            continue
        if a == "--":
            end_of_options = True
        elif a in ("-h", "--help"):
            parsed["help"] = True
        elif a == "--version":
            parsed["version"] = True
        elif a in ("-q", "--quiet"):
            parsed["quiet"] = True
        elif a == "-H":
            parsed["dropHeaders"] = True
        elif a in ("-o", "--output"):
            name = take()
            idx = name.rfind("-")
            if idx != -1:
                ind = name[idx + 1:]
                if re.match(r"^\d+$", ind):
                    parsed["jsonIndent"] = int(ind)
                    name = name[:idx]
                elif ind == "tab":
                    parsed["jsonIndent"] = "\t"
                    name = name[:idx]
            if name not in OM_FROM_NAME:
                raise UsageError('unknown output mode: "%s"' % name)
            parsed["outputMode"] = OM_FROM_NAME[name]
        elif a == "-0":
            parsed["jsonIndent"] = 0
        elif a == "-2":
            parsed["jsonIndent"] = 2
        elif a == "-4":
            parsed["jsonIndent"] = 4
        elif a in ("-I", "--in-place"):
            parsed["inPlace"] = True
        elif a == "-i":
            parsed["outputMode"] = OM_INSPECT
        elif a == "-j":
            parsed["outputMode"] = OM_JSON
        elif a in ("-a", "--array"):
            parsed["array"] = True
        elif a == "-A":
            parsed["array"] = False
        elif a == "-d":
            parsed["delim"] = _parse_string(take())
        elif a == "-D":
            parsed["lookupDelim"] = take()
            if len(parsed["lookupDelim"]) != 1:
                raise UsageError('invalid lookup delim "%s" (must be a single char)'
                                 % parsed["lookupDelim"])
        elif a in ("-e", "-E"):
            parsed["exeSnippets"].append(take())
        elif a in ("-c", "-C"):
            parsed["condSnippets"].append(take())
        elif a in ("-M", "--items"):
            parsed["items"] = True
        elif a in ("-k", "--keys"):
            parsed["outputKeys"] = True
        elif a in ("-g", "--group"):
            parsed["group"] = True
        elif a == "--merge":
            parsed["merge"] = "shallow"
        elif a == "--deep-merge":
            parsed["merge"] = "deep"
        elif a == "-f":
            parsed["inputFiles"].append(take())
        elif a in ("-n", "--validate"):
            parsed["validate"] = True
        else:
            if a.startswith("-") and len(a) > 0:
                raise UsageError('unknown option "%s"' % a)
            parsed["args"].append(a)
        i += 1
    if parsed["group"] and parsed["merge"]:
        raise UsageError("cannot use -g|--group and --merge options together")
    if parsed["outputKeys"] and parsed["args"]:
        raise UsageError("cannot use -k|--keys option and lookup arguments together")
    if parsed["inPlace"] and len(parsed["inputFiles"]) != 1:
        raise UsageError('must specify exactly one file with "-f FILE" to use -I/--in-place')
    if parsed["inPlace"] and parsed["args"]:
        raise UsageError("lookups cannot be specified with in-place editing "
                         "(-I/--in-place), too easy to lose content")
    return parsed


def _parse_string(s):
    try:
        return json.loads('"' + re.sub(r'(^|[^\\])((\\\\)*")', r"\1\\\2", s) + '"')
    except ValueError:
        return s


_ESCAPES = {"'": "'", '"': '"', "`": "`", "\\": "\\", "n": "\n", "r": "\r", "t": "\t",
            "v": "\v", "b": "\b", "f": "\f"}


def parse_lookup(lookup, delim="."):
    bits = []
    bit = ""
    states = [None]
    i = 0
    while i < len(lookup):
        ch = lookup[i]
        if ch == "\\" and i + 1 < len(lookup) and lookup[i + 1] in _ESCAPES:
            bit += _ESCAPES[lookup[i + 1]]
            i += 2
            continue
        state = states[-1]
        if state is None:
            if ch in ('"', "'"):
                states.append(ch)
                bit += ch
            elif ch == "[":
                states.append(ch)
                if bit != "":
                    bits.append(bit)
                    bit = ""
                bit += ch
            elif ch == delim:
                if bit != "":
                    bits.append(bit)
                    bit = ""
            else:
                bit += ch
        elif state == "[":
            bit += ch
            if ch in ('"', "'", "["):
                states.append(ch)
            elif ch == "]":
                states.pop()
                if states[-1] is None:
                    # json 9.x (what Triton ships) evaluated the bracketed
                    # text; string and integer literals are what is used.
                    inner = bit[1:-1].strip()
                    if len(inner) >= 2 and inner[0] in "\"'`" and inner[-1] == inner[0]:
                        bits.append(_parse_string(inner[1:-1]) if inner[0] == '"'
                                    else inner[1:-1])
                    elif re.match(r"^-?\d+$", inner):
                        bits.append(inner)
                    else:
                        raise UsageError("invalid bracketed lookup string: %s (must be of "
                                         "the form ['...'], [\"...\"], [`...`] or [N])"
                                         % json.dumps(bit))
                    bit = ""
        elif state in ('"', "'"):
            bit += ch
            if ch == state:
                states.pop()
                if states[-1] is None:
                    bits.append(bit)
                    bit = ""
        i += 1
    if bit != "":
        bits.append(bit)
    out = []
    for b in bits:
        if isinstance(b, str) and re.match(r"^-\d+$", b):
            out.append(int(b))
        else:
            out.append(b)
    return out


def lookup_datum(datum, lookup):
    d = datum
    for bit in lookup:
        if d is None:
            return UNDEF
        if isinstance(bit, int) and bit < 0:
            if isinstance(d, (list, str)) and len(d) + bit >= 0:
                d = d[len(d) + bit]
            else:
                return UNDEF
        else:
            try:
                d = get_prop(d, bit)
            except JSError:
                return UNDEF
            if isinstance(d, Func):
                return UNDEF
        if d is UNDEF:
            return UNDEF
    return d


def _lookup_key(lookup):
    return ".".join(str(b) for b in lookup)


# ---- main ----------------------------------------------------------------------

HELP = """Usage:
  <something generating JSON on stdout> | json [OPTIONS] [LOOKUPS...]
  json -f FILE [OPTIONS] [LOOKUPS...]

Pipe in your JSON for pretty-printing, JSON validation, filtering,
and modification. Supply one or more `LOOKUPS` to extract a
subset of the JSON. HTTP header blocks are skipped by default.

Options (subset implemented by the simulated datacenter):
  -h, --help    Print this help info and exit.
  --version     Print version of this command and exit.
  -q, --quiet   Don't warn if input isn't valid JSON.
  -f FILE       Path to a file to process. If not given, then stdin is used.
  -I, --in-place  In-place edit of the file given with "-f".
  -H            Drop any HTTP header block (as from `curl -i ...`).
  -g, --group   Group adjacent objects or arrays into an array.
  --merge       Merge adjacent objects into one. Keys in last object win.
  --deep-merge  Same as "--merge", but will recurse into objects.
  -a, --array   Process input as an array of separate inputs
                and output in tabular form.
  -A            Process input as a single object.
  -d DELIM      Delimiter char for tabular output (default is " ").
  -D DELIM      Delimiter char between lookups (default is ".").
  -M, --items   Itemize an object into an array of {"key", "value"} objects.
  -e CODE       Execute the given JavaScript (subset) code on the input.
  -c CODE       Filter the input with JavaScript (subset) `CODE`.
  -k, --keys    Output the input object's keys.
  -n, --validate  Just validate the input (no processing or output).
  -o, --output MODE  jsony (default), json, json-N, inspect
  -i            Shortcut for `-o inspect`
  -j            Shortcut for `-o json`
  -0, -2, -4    Set indentation to the given value w/o setting MODE.
"""


def _strip_headers(buf, drop, emit):
    while True:
        if buf[:5] == "HTTP/":
            idx = buf.find("\r\n\r\n")
            sep = 4
            if idx == -1:
                idx = buf.find("\n\n")
                sep = 2
            if idx != -1:
                if not drop:
                    emit(buf[:idx + sep])
                is100 = buf[:21] == "HTTP/1.1 100 Continue"
                buf = buf[idx + sep:]
                if is100:
                    continue
        break
    return buf


def _group(buf):
    b = re.sub(r"(})\s*\n\s*({)", r"\1,\n\2", buf)
    b = re.sub(r'(})({")', r"\1,\n\2", b)
    b = re.sub(r"(\])\s*\n\s*(\[)", ",\n", b)
    b = b.strip()
    if not b.startswith("["):
        b = "[\n" + b
    if not b.endswith("]"):
        b = b + "\n]\n"
    return json.loads(b)


def _merge(buf, mode):
    b = re.sub(r"(})\s*\n\s*({)", r"\1,\n\2", buf)
    b = re.sub(r'(})({")', r"\1,\n\2", b)
    objs = json.loads("[\n" + b + "\n]\n")
    merged = objs[0]

    def deep(a, c):
        for k, v in c.items():
            if isinstance(a.get(k), dict) and isinstance(v, dict):
                deep(a[k], v)
            else:
                a[k] = v
    for o in objs[1:]:
        if mode == "shallow":
            merged.update(o)
        else:
            deep(merged, o)
    return merged


def _json_error_details(chunk, err):
    if isinstance(err, json.JSONDecodeError):
        lines = chunk.split("\n")
        ln = err.lineno - 1
        line = lines[ln] if ln < len(lines) else ""
        return "%s at line %d, column %d:\n        %s\n        %s^" % (
            err.msg, err.lineno, err.colno, line, "." * (err.colno - 1))
    return str(err)


def main(argv, stdin_text=None, stdout=None, stderr=None):
    global VM_MODE
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    VM_MODE = os.environ.get("JSON_EXEC") == "vm"

    def emit(s):
        out.write(s)

    try:
        opts = parse_argv(list(argv))
    except UsageError as e:
        err.write("json: error: %s\n" % e)
        return 1
    if opts["help"]:
        out.write(HELP)
        return 0
    if opts["version"]:
        if opts["outputMode"] == OM_JSON:
            out.write(json.dumps({"version": VERSION, "author": "Trent Mick",
                                  "project": "https://github.com/trentm/json"},
                                 indent=opts["jsonIndent"]) + "\n")
        else:
            out.write("json %s\nwritten by Trent Mick\nhttps://github.com/trentm/json\n"
                      % VERSION)
        return 0
    try:
        lookups = [parse_lookup(s, opts["lookupDelim"]) for s in opts["args"]]
        conds = [Snippet(s, True) for s in opts["condSnippets"]]
        exes = [Snippet(s, False) for s in opts["exeSnippets"]]
    except (UsageError, JSError) as e:
        err.write("json: error: %s\n" % e)
        return 1

    filename = None
    if opts["inputFiles"]:
        chunks = []
        for fn in opts["inputFiles"]:
            try:
                with open(fn, encoding="utf-8") as f:
                    chunks.append(f.read())
            except OSError as e:
                err.write('json: error: could not read "%s": %s\n' % (fn, e))
                return 1
        buf = "".join(chunks)
        if len(opts["inputFiles"]) == 1:
            filename = opts["inputFiles"][0]
    elif stdin_text is not None:
        buf = stdin_text
    else:
        buf = sys.stdin.buffer.read().decode("utf-8", "replace")

    header_parts = []
    if opts["inPlace"]:
        buf = _strip_headers(buf, opts["dropHeaders"], header_parts.append)
    else:
        buf = _strip_headers(buf, opts["dropHeaders"], emit)
    if not buf:
        return 0
    try:
        if opts["group"]:
            data = _group(buf)
        elif opts["merge"]:
            data = _merge(buf, opts["merge"])
        else:
            data = json.loads(buf)
    except ValueError as e:
        if not opts["quiet"]:
            err.write("json: error: %s is not JSON: %s\n" % (
                '"%s"' % filename if filename else "input", _json_error_details(buf, e)))
        if not opts["validate"]:
            emit(buf)
            if buf and not buf.endswith("\n"):
                emit("\n")
        return 1
    if opts["validate"]:
        return 0
    try:
        data, datasets = process(data, opts, lookups, conds, exes)
    except JSError as e:
        err.write("json: error: %s\n" % e)
        return 1
    text = []
    for value, sep, always in datasets:
        s = stringify_datum(value, opts)
        if s:
            text.append(s)
            text.append(sep)
        elif always:
            text.append(sep)
    if opts["inPlace"]:
        with open(filename, "w", encoding="utf-8") as f:
            f.write("".join(header_parts) + "".join(text))
        if not opts["quiet"]:
            err.write('json: updated "%s" in-place\n' % filename)
        return 0
    emit("".join(text))
    return 0


def _copy(d):
    if isinstance(d, list):
        return list(d)
    if isinstance(d, dict):
        return dict(d)
    return d


def process(data, opts, lookups, conds, exes):
    if opts["items"] and not isinstance(data, list):
        if isinstance(data, dict):
            data = [{"key": k, "value": v} for k, v in data.items()]
    arrayish = opts["array"] or (opts["array"] is None and isinstance(data, list))
    if exes:
        if arrayish:
            arrayified = not isinstance(data, list)
            items = [data] if arrayified else data
            for d in items:
                for e in exes:
                    e.run(d)
            data = items[0] if arrayified else items
        else:
            for e in exes:
                e.run(data)
    if conds:
        if arrayish:
            arrayified = not isinstance(data, list)
            items = [data] if arrayified else data
            filtered = [d for d in items if all(truthy(c.run(_copy(d))) for c in conds)]
            data = (filtered[0] if filtered else []) if arrayified else filtered
        else:
            if not all(truthy(c.run(_copy(data))) for c in conds):
                data = UNDEF
    indices = False
    if lookups:
        if opts["array"]:
            items = data if isinstance(data, list) else [data]
            table = []
            for d in items:
                row = {}
                for lk in lookups:
                    v = lookup_datum(d, lk)
                    if v is not UNDEF:
                        row[_lookup_key(lk)] = v
                table.append(row)
            data = table
        else:
            if isinstance(data, list):
                indices = all(len(lk) == 1 and _is_number_like(lk[0]) for lk in lookups)
            row = {}
            for lk in lookups:
                v = lookup_datum(data, lk)
                if v is not UNDEF:
                    row[_lookup_key(lk)] = v
            data = row
    if opts["outputKeys"]:
        if isinstance(data, dict):
            data = list(data.keys())
        elif isinstance(data, (list, str)):
            data = [str(i) for i in range(len(data))]
        else:
            raise JSError("TypeError: Cannot convert undefined or null to object")
    datasets = []
    if opts["outputMode"] == OM_JSON:
        if len(lookups) == 1 and not opts["array"]:
            data = data.get(_lookup_key(lookups[0]), UNDEF)
        elif indices:
            data = [data[_lookup_key(lk)] for lk in lookups if _lookup_key(lk) in data]
        datasets.append((data, "\n", False))
    elif lookups:
        if opts["array"]:
            for row in data:
                for lk in lookups[:-1]:
                    datasets.append((row.get(_lookup_key(lk), UNDEF), opts["delim"], True))
                datasets.append((row.get(_lookup_key(lookups[-1]), UNDEF), "\n", True))
        else:
            for lk in lookups:
                datasets.append((data.get(_lookup_key(lk), UNDEF), "\n", False))
    elif opts["array"]:
        items = data if isinstance(data, list) else [data]
        for d in items:
            datasets.append((d, "\n", False))
    else:
        datasets.append((data, "\n", False))
    return data, datasets


def _is_number_like(b):
    if isinstance(b, int):
        return True
    try:
        float(b)
        return True
    except (TypeError, ValueError):
        return False
