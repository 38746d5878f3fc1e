"""zonecfg(8) of a simulated SmartOS compute node.

  zonecfg -z ZONE [command[; command...]]     commands given as arguments
  zonecfg -z ZONE -f FILE                     commands from FILE ('-': stdin)
  zonecfg -z ZONE < FILE                      commands from stdin (as VM.js does)

The illumos command language on /etc/zones/ZONE.xml and /etc/zones/index:
create [-b] [-F], set/clear of global properties (zonepath, brand, autoboot,
limitpriv, ip-type, uuid, fs-allowed, the rctl aliases cpu-shares, max-lwps...),
add/select/remove of attr, net, device, rctl, dataset, fs, capped-memory and
capped-cpu resources with their properties, end, cancel, info, export [-f],
delete [-F], commit, verify, revert, exit. Errors print as illumos zonecfg
does (`remove attr: No such resource with that id`) and make the exit status 1.
The words are read as illumos zonecfg_lex.l reads them (an unquoted word ends
at '='), a command that is no sentence of zonecfg_grammar.y is yacc's syntax
error, and the run goes on or stops, then commits or not, as zonecfg.c's
read_input() and cleanup() decide (Session). `export` quotes as the CN's
platform does (QUOTES_EVERY_VALUE_SINCE).
"""
import os
import sys
import uuid as uuidlib

from .. import common, zones


USAGE = """usage:	zonecfg help
	zonecfg {-z <zone>|-u <uuid>}			(interactive)
	zonecfg {-z <zone>|-u <uuid>} <command>
	zonecfg {-z <zone>|-u <uuid>} -f <command-file>
"""

# libzonecfg_strerror()
Z_NO_ZONE = "No such zone configured"
Z_NO_RESOURCE_ID = "No such resource with that id"
Z_NO_RESOURCE_TYPE = "No such resource type"
Z_NO_PROPERTY_TYPE = "No such property type"
Z_NO_PROPERTY_ID = "No such property with that id"
Z_INSUFFICIENT_SPEC = "Insufficient specification"
Z_NO_ENTRY = "No such entry"
Z_REQD_RESOURCE_MISSING = "Required resource missing"

GLOBAL_PROPS = {"zonepath": "zonepath", "brand": "brand", "autoboot": "autoboot",
                "bootargs": "bootargs", "pool": "pool", "limitpriv": "limitpriv",
                "scheduling-class": "scheduling-class", "ip-type": "ip-type",
                "hostid": "hostid", "fs-allowed": "fs-allowed"}
# global properties that are really rctls (zonecfg's aliases)
RCTL_ALIASES = {"cpu-shares": ("zone.cpu-shares", "none"),
                "zfs-io-priority": ("zone.zfs-io-priority", "none"),
                "max-lwps": ("zone.max-lwps", "deny"),
                "max-processes": ("zone.max-processes", "deny"),
                "max-shm-memory": ("zone.max-shm-memory", "deny"),
                "max-shm-ids": ("zone.max-shm-ids", "deny"),
                "max-msg-ids": ("zone.max-msg-ids", "deny"),
                "max-sem-ids": ("zone.max-sem-ids", "deny")}
MEMORY_RCTLS = {"physical": "zone.max-physical-memory", "swap": "zone.max-swap",
                "locked": "zone.max-locked-memory"}
RESOURCES = {"attr": "attr", "net": "network", "device": "device", "rctl": "rctl",
             "dataset": "dataset", "fs": "filesystem", "capped-memory": None,
             "capped-cpu": None, "dedicated-cpu": None, "admin": None}
RES_PROPS = {
    "attr": ("name", "type", "value"),
    "net": ("address", "allowed-address", "physical", "mac-addr", "vlan-id", "global-nic",
            "defrouter"),
    "device": ("match",),
    "rctl": ("name",),
    "dataset": ("name", "alias"),
    "fs": ("dir", "special", "raw", "type"),
    "capped-memory": ("physical", "swap", "locked"),
    "capped-cpu": ("ncpus",),
}
FS_XML = (("special", "special"), ("raw", "raw"), ("dir", "directory"), ("type", "type"))


# ---- the lexer (illumos usr/src/cmd/zonecfg/zonecfg_lex.l) ------------------------------

# A command word starts it (INITIAL state); the words after it are TOKENs of
# TSTATE, of LSTATE inside [ ] and of CSTATE inside ( ). A TOKEN is a run of
# characters but those below, so an unquoted word ends at '=': `set
# value=d2luZG93cw==` is SET VALUE EQUAL TOKEN EQUAL EQUAL, a syntax error.
# A double-quoted string is one TOKEN (an unterminated one runs to the end of
# its line and takes the newline with it); ';' and a newline end a command.
INITIAL, TSTATE, LSTATE, CSTATE = "INITIAL", "TSTATE", "LSTATE", "CSTATE"
NOT_IN_TOKEN = {TSTATE: ' \t\n";=[]()', LSTATE: ' \t\n",;=[]()', CSTATE: ' \t\n",;=()'}
COMMAND_WORDS = ("add", "cancel", "commit", "create", "delete", "end", "exit", "export",
                 "?", "help", "info", "remove", "revert", "select", "set", "clear", "verify")


class Tok:
    """One token: kind 'word' (a TOKEN or keyword), '=', '(', ')', '[', ']',
    ',', 'end' (the terminator ';' or a newline) or 'char' (any other
    character, lex's '.' rule); line: lex_lineno once it was read."""
    __slots__ = ("kind", "text", "line", "quoted")

    def __init__(self, kind, text, line, quoted=False):
        self.kind, self.text, self.line, self.quoted = kind, text, line, quoted

    def __repr__(self):
        return "Tok(%s %r)" % (self.kind, self.text)


def lex(text):
    """The tokens of text as zonecfg_lex.l reads them."""
    toks, state, outer, line = [], INITIAL, TSTATE, 1
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            toks.append(Tok("end", c, line))
            state = INITIAL
            i += 1
        elif c == ";":
            toks.append(Tok("end", c, line))
            state = INITIAL
            i += 1
        elif c in " \t":
            i += 1
        elif state == INITIAL:
            if c == "#":
                while i < n and text[i] != "\n":
                    i += 1
                continue
            # lex takes the longest match: a command word, else one character
            kw = max((w for w in COMMAND_WORDS if text.startswith(w, i)), key=len, default=None)
            if kw is None:
                toks.append(Tok("char", c, line))
                i += 1
            else:
                toks.append(Tok("word", kw, line))
                state = outer = TSTATE
                i += len(kw)
        elif c == '"':
            j = i + 1
            while j < n and text[j] not in '"\n':
                j += 1
            if j == n:                  # no closing quote nor newline: lex's '.' rule
                toks.append(Tok("char", c, line))
                i += 1
                continue
            # the closing quote is dropped, a newline that ends it is kept
            toks.append(Tok("word", text[i + 1:j] if text[j] == '"' else text[i + 1:j + 1],
                            line, quoted=True))
            i = j + 1
        elif c == "=":
            toks.append(Tok("=", c, line))
            i += 1
        elif c == "[" and state == TSTATE:
            toks.append(Tok("[", c, line))
            state = outer = LSTATE
            i += 1
        elif c == "]" and state == LSTATE:
            toks.append(Tok("]", c, line))
            state = outer = TSTATE
            i += 1
        elif c == "(" and state in (TSTATE, LSTATE):
            toks.append(Tok("(", c, line))
            state = CSTATE
            i += 1
        elif c == ")" and state == CSTATE:
            toks.append(Tok(")", c, line))
            state = outer
            i += 1
        elif c == "," and state in (LSTATE, CSTATE):
            toks.append(Tok(",", c, line))
            i += 1
        elif c in NOT_IN_TOKEN[state]:
            toks.append(Tok("char", c, line))
            i += 1
        else:
            j = i
            while j < n and text[j] not in NOT_IN_TOKEN[state]:
                j += 1
            toks.append(Tok("word", text[i:j], line))
            i = j
    return toks


def commands(toks):
    """[(tokens, terminator or None at the end of the input)], empty commands left out."""
    out, cur = [], []
    for t in toks:
        if t.kind == "end":
            if cur:
                out.append((cur, t))
            cur = []
        else:
            cur.append(t)
    if cur:
        out.append((cur, None))
    return out


# ---- the grammar (zonecfg_grammar.y), as far as the commands' shapes --------------------

def _next_piece(toks, i, closer):
    """After a piece of a ( ) or [ ] value: (past the comma, None) for another
    piece, (past the closer, True) at its end, else (i, False)."""
    if i < len(toks) and toks[i].kind == ",":
        return i + 1, None
    if i < len(toks) and toks[i].kind == closer:
        return i + 1, True
    return i, False


def _value_end(toks, i):
    """Past a property_value at toks[i] (a word, (name=value,...) or [a,(..),...]),
    or the index of the token where it goes wrong."""
    if i >= len(toks):
        return i, False
    t = toks[i]
    if t.kind == "word":
        return i + 1, True
    if t.kind == "(":
        i += 1
        while True:     # complex_piece: name EQUAL value [COMMA complex_piece]
            for kind in ("word", "=", "word"):
                if i >= len(toks) or toks[i].kind != kind:
                    return i, False
                i += 1
            i, done = _next_piece(toks, i, ")")
            if done is not None:
                return i, done
    if t.kind == "[":
        i += 1
        if i < len(toks) and toks[i].kind == "]":
            return i + 1, True
        while True:     # list_piece: simple or complex [COMMA list_piece]
            if i >= len(toks) or toks[i].kind not in ("word", "("):
                return i, False
            i, ok = _value_end(toks, i)
            if not ok:
                return i, False
            i, done = _next_piece(toks, i, "]")
            if done is not None:
                return i, done
    return i, False


def _pairs_end(toks, i, most=3):
    """Past up to MOST `name=value` pairs from toks[i]."""
    for _ in range(most):
        if i >= len(toks):
            return i, True
        if toks[i].kind != "word" or i + 1 >= len(toks) or toks[i + 1].kind != "=":
            return i, i >= len(toks)
        i, ok = _value_end(toks, i + 2)
        if not ok:
            return i, False
    return i, True


def syntax_error_at(toks):
    """The index of the token where yacc's parse of one command fails (len(toks):
    at its terminator), or None if the command has a shape of the grammar."""
    if toks[0].kind != "word":
        return 0
    verb, n = toks[0].text, len(toks)

    def words(i, most):
        j = i
        while j < n and j - i < most and toks[j].kind == "word":
            j += 1
        return j

    i, ok = 1, True
    if verb == "set":
        if n == 1:
            return None                     # SET alone: its usage
        j = 2 if n > 2 and toks[1].kind == "word" and toks[2].kind == "word" else 1
        if toks[j].kind != "word":
            return j
        if j + 1 >= n or toks[j + 1].kind != "=":
            return j + 1
        i, ok = _value_end(toks, j + 2)
    elif verb == "add":
        i = words(1, 1)
        if i < n:
            i, ok = _value_end(toks, i)
    elif verb in ("select", "remove", "info"):
        if verb == "remove" and n > 2 and toks[1].kind == toks[2].kind == "word" and \
                toks[1].text.startswith("-"):
            i = 2
        if i < n and toks[i].kind == "word":
            i += 1
            if verb == "remove" and i < n and not (i + 1 < n and toks[i + 1].kind == "="):
                i, ok = _value_end(toks, i)         # remove <property> <value>
            else:
                i, ok = _pairs_end(toks, i)
    else:
        i = words(1, {"create": 3, "export": 2}.get(verb, 1))
    if not ok or i < n:
        return i
    return None


def yyerror_text(tok, cmd_file_mode):
    """yyerror()'s line for a syntax error at tok (None: at the end of the
    input, which is no error: nothing is printed), then usage(HELP_SUBCMDS)."""
    if tok is None:
        return ""
    where = "\\n" if tok.text == "\n" else tok.text
    if cmd_file_mode:
        head = "syntax error on line %d at '%s'\n" % (tok.line, where)
    else:
        head = "syntax error at '%s'\n" % where
    return head + "Commands:\n\n" + "".join(u + "\n" for u in SHORT_USAGE)


# zonecfg.c helptab[]: each command's short usage, in order
SHORT_USAGE = (
    "add <resource-type>\n\t(global scope)\nadd <property-name> <property-value>\n"
    "\t(resource scope)",
    "cancel", "clear <property-name>", "commit",
    "create [-F] [ -a <path> | -b | -t <template> ]", "delete [-F]", "end", "exit [-F]",
    "export [-f output-file]", "help [commands] [syntax] [usage] [<command-name>]",
    "info [<resource-type> [property-name=property-value]*]",
    "remove [-F] <resource-type> [ <property-name>=<property-value> ]*\n\t(global scope)\n"
    "remove [-F] <property-name> <property-value>\n\t(resource scope)",
    "revert [-F]", "select <resource-type> { <property-name>=<property-value> }",
    "set <property-name>=<property-value>", "verify")


def parse_value(toks, i):
    """A property value at toks[i] (checked by syntax_error_at): a word, (k=v,...)
    as a list of pairs, or [a,b] as a list."""
    t = toks[i]
    if t.kind == "(":
        pairs, i = [], i + 1
        while toks[i].kind != ")":
            if toks[i].kind == ",":
                i += 1
                continue
            pairs.append((toks[i].text, toks[i + 2].text))
            i += 3
        return pairs, i + 1
    if t.kind == "[":
        items, i = [], i + 1
        while toks[i].kind != "]":
            if toks[i].kind == ",":
                i += 1
                continue
            v, i = parse_value(toks, i)
            items.append(v)
        return items, i + 1
    return t.text, i + 1


def parse_args(toks):
    """flags, words, assignments [(name, value)] and bare values of one command."""
    flags, words, assigns, values = [], [], [], []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.kind == "word" and not t.quoted and t.text.startswith("-") and not words \
                and not assigns:
            flags.append(t.text)
            i += 1
        elif t.kind == "word" and i + 1 < len(toks) and toks[i + 1].kind == "=":
            v, i = parse_value(toks, i + 2)
            assigns.append((t.text, v))
        elif t.kind == "word":
            words.append(t.text)
            i += 1
        else:
            v, i = parse_value(toks, i)
            values.append(v)
    return flags, words, assigns, values


def parse_size(v):
    v = str(v).strip()
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    if v and v[-1].lower() in units:
        return int(float(v[:-1]) * units[v[-1].lower()])
    if v.lower().endswith("b") and len(v) > 1 and v[-2].lower() in units:
        return int(float(v[:-2]) * units[v[-2].lower()])
    return int(v)


def normalize_mac(v):
    try:
        parts = [int(p, 16) for p in v.split(":")]
    except ValueError:
        return v
    if any(p > 255 for p in parts):
        return v
    return ":".join("%02x" % p for p in parts)


# illumos-joyent c8236ea ("11894 zonecfg export should quote strings", merged
# into illumos-joyent's master on 2019-12-18, dfbd50d8db): export_prop() quotes
# every value it prints. Before it, quoteit() quoted only a value with a space:
# a base64 alias `d2luZG93cw==` came out bare and did not import again
# (smartos-live#912). The lines export_func() prints itself (zonepath, brand,
# autoboot, ip-type, uuid, rctl and property values...) stay as they were.
QUOTES_EVERY_VALUE_SINCE = "20191219T000000Z"


def quotes_every_value(host):
    """Whether HOST's platform has c8236ea (a platform stamp is its build's UTC time)."""
    return common.platform_of(host) >= QUOTES_EVERY_VALUE_SINCE


def quoteit(v):
    return '"%s"' % v if " " in v else v


# ---- the session ----------------------------------------------------------------------

class Session:
    """One run of zonecfg, as zonecfg.c's read_input() and cleanup() drive it.

    mode: "file" (-f FILE), "-" (-f -), "stdin" (commands on a stdin that is
    no terminal, as VM.js feeds them) or "args" (one command line). With -f
    FILE (cmd_file_mode, not interactive) the first error ends the reading;
    the others go on to the end, past errors. At the end what was changed is
    committed if the scope is global and it verifies; the exit status is 1
    after any error, saved or not. No prompt: input is never a terminal here.
    """

    def __init__(self, zone, mode="args", cmd_file=None):
        self.zone = zone
        self.mode = mode
        self.cmd_file = cmd_file
        self.cmd_file_mode = mode in ("file", "-")
        self.interactive = mode in ("-", "stdin")
        self.cfg = None
        self.entry = zones.index_entry(zone)
        self.new_uuid = None
        self.is_new = False
        self.need_commit = False
        self.saw_error = False
        self.scope = None
        self.lex_lineno = 1
        self.last_lineno = 0
        self.time_to_exit = False
        self.exit_now = False
        self.rc_override = None

    # -- messages
    def zerr(self, msg):
        """zonecfg.c zerr(): in command file mode, the line (once a line) first."""
        if self.cmd_file_mode and self.lex_lineno > self.last_lineno:
            if self.cmd_file == "-":
                sys.stderr.write("On line %d:\n" % (self.lex_lineno - 1))
            else:
                sys.stderr.write("On line %d of %s:\n" % (self.lex_lineno - 1, self.cmd_file))
            self.last_lineno = self.lex_lineno
        sys.stderr.write(msg + "\n")
        self.saw_error = True

    def initialize(self):
        if self.cfg is not None:
            return True
        try:
            self.cfg = zones.ZoneConfig.load(self.zone)
            return True
        except zones.NoSuchZone:
            self.zerr("%s: %s" % (self.zone, Z_NO_ZONE))
            return False

    # -- dispatch
    def run(self, text):
        tokens = lex(text)
        for toks, term in commands(tokens):
            # lex_lineno as the lexer leaves it once the command's terminator is read
            self.lex_lineno = term.line if term else toks[-1].line
            bad = syntax_error_at(toks)
            if bad is not None:
                # yacc's error recovery drops the command up to its terminator;
                # at the end of the input (no terminator) yyerror says nothing
                at = toks[bad] if bad < len(toks) else term
                if at is not None:
                    sys.stderr.write(yyerror_text(at, self.cmd_file_mode))
                    self.saw_error = True
            else:
                verb = "help" if toks[0].text == "?" else toks[0].text
                fn = getattr(self, "do_" + verb)
                fn(*parse_args(toks[1:]))
                if self.exit_now:
                    return self.rc_override
            # read_input(): "Bail out on an error in command file mode."
            if self.saw_error and self.cmd_file_mode and not self.interactive:
                self.time_to_exit = True
            if self.time_to_exit and self.mode != "args":
                break
        else:
            self.lex_lineno = tokens[-1].line if tokens else 1      # read to the end
        return self.cleanup()

    def cleanup(self):
        """zonecfg.c cleanup(): nobody to ask, so an incomplete resource or an
        unsaved configuration is an error."""
        if self.scope is not None:
            if not self.time_to_exit:
                self.zerr("Resource incomplete.")
                return 1
            self.saw_error = True
        if self.need_commit and self.cfg is not None:
            self.commit()
            if self.need_commit:
                self.zerr("Configuration not saved.")
                return 1
        return 1 if self.saw_error else 0

    def verify(self, save):
        """verify_func() (commit_func() is verify save): the checks, then the save."""
        error = None
        if not self.cfg.zonepath:
            self.zerr("zonepath cannot be empty.")
            error = Z_REQD_RESOURCE_MISSING
        if self.scope is not None:
            self.zerr("resource specification incomplete")
            error = error or Z_INSUFFICIENT_SPEC
        if save:
            if error is None:
                self.save()
            else:
                self.zerr("Zone %s failed to verify" % self.zone)
        if error is not None:
            self.zerr("%s: %s" % (self.zone, error))
        return error is None

    def commit(self):
        return self.verify(save=True)

    def save(self):
        with zones.lock():
            if self.cfg.root.get("debugid") is None:
                self.cfg.root.set("debugid", str(zones.next_debugid()))
            self.cfg.save(self.zone)
            entry = zones.index_entry(self.zone)
            if entry is None:
                # libzonecfg indexes the zones that `create` made; an XML
                # without an index line (copied over, say) stays unindexed.
                if self.is_new:
                    zones.put_index(self.zone, "configured", self.cfg.zonepath,
                                    self.new_uuid or str(uuidlib.uuid4()))
            elif self.new_uuid or entry["path"] != self.cfg.zonepath:
                zones.put_index(self.zone, entry["state"], self.cfg.zonepath,
                                self.new_uuid or entry["uuid"])
        self.need_commit = False
        self.is_new = False
        return True

    # -- global scope commands
    def do_create(self, flags, words, assigns, values):
        force = "-F" in flags
        entry = zones.index_entry(self.zone)
        exists = zones.ZoneConfig.exists(self.zone) or entry is not None
        if exists:
            if entry is not None and entry["state"] != "configured":
                self.zerr("Zone %s already installed; create not allowed." % self.zone)
                return
            if not force:
                self.zerr("Zone exists, input not from terminal and -F not specified:\n"
                          "create command ignored, exiting.")
                self.rc_override = 1
                self.exit_now = True
                return
            sys.stdout.write("Zone %s already exists; overwriting.\n" % self.zone)
        root = zones.el("zone", name=self.zone, zonepath="", autoboot="false")
        self.cfg = zones.ZoneConfig(root)
        self.is_new = True
        self.need_commit = True
        self.new_uuid = None

    def do_delete(self, flags, words, assigns, values):
        if "-F" not in flags:
            self.zerr("Input not from terminal and -F not specified:\n"
                      "delete command ignored, exiting.")
            self.rc_override = 1
            self.exit_now = True
            return
        with zones.lock():
            # libzonecfg zonecfg_destroy(): an installed (or running) zone is
            # Z_BAD_ZONE_STATE, -F or not; zonecfg delete_func prints it with
            # zone_perror() (illumos usr/src/cmd/zonecfg/zonecfg.c). Detach first.
            entry = zones.index_entry(self.zone)
            if entry is not None and zones.zone_state(entry) not in ("configured", "incomplete"):
                self.zerr("%s: Zone state is invalid for the requested operation" % self.zone)
                self.cfg = None
                self.need_commit = False
                return
            had_index = zones.remove_index(self.zone)
            had_xml = False
            try:
                os.unlink(zones.xml_path(self.zone))
                had_xml = True
            except FileNotFoundError:
                pass
        if not had_index and not had_xml:
            self.zerr("%s: %s" % (self.zone, Z_NO_ZONE))
        self.cfg = None
        self.need_commit = False

    def do_set(self, flags, words, assigns, values):
        if not assigns:
            self.zerr("usage:\nset <property-name>=<property-value>")
            return
        name, value = assigns[0]
        if self.scope is not None:
            return self.set_in_resource(name, value)
        if not self.initialize():
            return
        if name == "uuid":
            self.new_uuid = str(value)
            self.need_commit = True
            return
        if name == "zonepath":
            entry = zones.index_entry(self.zone)
            if entry is not None and entry["state"] != "configured" and not self.is_new:
                self.zerr("Zone %s already installed; set zonepath not allowed." % self.zone)
                return
        if name in GLOBAL_PROPS:
            if name == "autoboot" and value not in ("true", "false"):
                self.zerr("autoboot: Invalid property value")
                return
            if name == "ip-type" and value not in ("exclusive", "shared"):
                self.zerr("ip-type: Invalid property value")
                return
            if isinstance(value, list):
                value = ",".join(str(v) for v in value)
            self.cfg.root.set(GLOBAL_PROPS[name], str(value))
            self.need_commit = True
        elif name in RCTL_ALIASES:
            rctl, action = RCTL_ALIASES[name]
            try:
                limit = parse_size(value)
            except ValueError:
                self.zerr("%s: Invalid property value" % name)
                return
            self.cfg.set_rctl(rctl, limit, action)
            self.need_commit = True
        elif name == "zonename":
            self.zerr("zonename: renaming a zone is not supported here")
        else:
            self.zerr("%s: %s" % (name, Z_NO_PROPERTY_TYPE))

    def do_clear(self, flags, words, assigns, values):
        if not words:
            self.zerr("usage:\nclear <property-name>")
            return
        name = words[0]
        if self.scope is not None:
            if name in self.scope["props"]:
                del self.scope["props"][name]
            return
        if not self.initialize():
            return
        if name in GLOBAL_PROPS and name not in ("zonepath", "brand"):
            if GLOBAL_PROPS[name] in self.cfg.root.attrib:
                del self.cfg.root.attrib[GLOBAL_PROPS[name]]
            self.need_commit = True
        elif name in RCTL_ALIASES:
            if not self.cfg.remove_rctl(RCTL_ALIASES[name][0]):
                self.zerr("clear %s: %s" % (name, Z_NO_ENTRY))
                return
            self.need_commit = True
        else:
            self.zerr("%s: %s" % (name, Z_NO_PROPERTY_TYPE))

    def _find(self, rtype, assigns):
        """Elements of resource type RTYPE matching every given property."""
        tag = RESOURCES.get(rtype)
        found = []
        for e in (self.cfg.children(tag) if tag else []):
            ok = True
            for k, v in assigns:
                have = self._elem_prop(rtype, e, k)
                if k == "mac-addr":
                    v, have = normalize_mac(str(v)), normalize_mac(have or "")
                if have != str(v):
                    ok = False
            if ok:
                found.append(e)
        return found

    @staticmethod
    def _elem_prop(rtype, e, k):
        if rtype == "fs":
            k = dict(FS_XML).get(k, k)
        return e.get(k)

    def do_add(self, flags, words, assigns, values):
        if self.scope is not None:
            return self.add_in_resource(words, values)
        if not words:
            self.zerr("usage:\nadd <resource-type>\n\t(global scope)\n"
                      "add <property-name> <property-value>\n\t(resource scope)")
            return
        rtype = words[0]
        if rtype not in RESOURCES:
            self.zerr("%s: %s" % (rtype, Z_NO_RESOURCE_TYPE))
            return
        if not self.initialize():
            return
        if rtype == "capped-memory":
            if any(self.cfg.rctl(r) is not None for r in MEMORY_RCTLS.values()):
                self.zerr("The capped-memory resource or a related resource control "
                          "already exists.")
                return
        if rtype == "capped-cpu" and self.cfg.rctl("zone.cpu-cap") is not None:
            self.zerr("The capped-cpu resource already exists.")
            return
        self.scope = {"type": rtype, "op": "add", "props": {}, "nprops": [], "values": [],
                      "options": [], "orig": None}

    def do_select(self, flags, words, assigns, values):
        if self.scope is not None:
            self.zerr("The select command only makes sense in the global scope.")
            return
        if not words:
            self.zerr("usage:\nselect <resource-type> { <property-name>=<property-value> }")
            return
        rtype = words[0]
        if rtype not in RESOURCES:
            self.zerr("%s: %s" % (rtype, Z_NO_RESOURCE_TYPE))
            return
        if not self.initialize():
            return
        sc = {"type": rtype, "op": "select", "props": {}, "nprops": [], "values": [],
              "options": [], "orig": None}
        if rtype == "capped-memory":
            have = {k: self.cfg.rctl(r) for k, r in MEMORY_RCTLS.items()}
            if all(v is None for v in have.values()):
                self.zerr("select capped-memory: %s" % Z_NO_RESOURCE_TYPE)
                return
            sc["props"] = {k: str(v) for k, v in have.items() if v is not None}
            self.scope = sc
            return
        if rtype == "capped-cpu":
            cap = self.cfg.rctl("zone.cpu-cap")
            if cap is None:
                self.zerr("select capped-cpu: %s" % Z_NO_RESOURCE_TYPE)
                return
            sc["props"] = {"ncpus": str(cap / 100.0)}
            self.scope = sc
            return
        found = self._find(rtype, assigns)
        if not found:
            self.zerr("select %s: %s" % (rtype, Z_NO_RESOURCE_ID))
            return
        if len(found) > 1 and rtype != "attr":
            self.zerr("select %s: %s" % (rtype, Z_INSUFFICIENT_SPEC))
            return
        e = found[0]
        sc["orig"] = e
        for k in RES_PROPS.get(rtype, ()):
            v = self._elem_prop(rtype, e, k)
            if v is not None:
                sc["props"][k] = v
        for c in e:
            if c.tag == "net-attr":
                sc["nprops"].append((c.get("name"), c.get("value")))
            elif c.tag == "rctl-value":
                sc["values"].append((c.get("priv"), c.get("limit"), c.get("action")))
            elif c.tag == "fsoption":
                sc["options"].append(c.get("name"))
        self.scope = sc

    def do_remove(self, flags, words, assigns, values):
        if self.scope is not None:
            return self.remove_in_resource(flags, words, values)
        force = "-F" in flags
        if not words:
            self.zerr("usage:\nremove [-F] <resource-type> "
                      "[ <property-name>=<property-value> ]*")
            return
        rtype = words[0]
        if rtype not in RESOURCES:
            self.zerr("%s: %s" % (rtype, Z_NO_RESOURCE_TYPE))
            return
        if not self.initialize():
            return
        if rtype == "capped-memory":
            gone = [self.cfg.remove_rctl(r) for r in MEMORY_RCTLS.values()]
            if not any(gone) and not force:
                self.zerr("remove capped-memory: %s" % Z_NO_RESOURCE_TYPE)
            self.need_commit = self.need_commit or any(gone)
            return
        if rtype == "capped-cpu":
            if not self.cfg.remove_rctl("zone.cpu-cap") and not force:
                self.zerr("remove capped-cpu: %s" % Z_NO_RESOURCE_TYPE)
                return
            self.need_commit = True
            return
        tag = RESOURCES[rtype]
        if assigns:
            found = self._find(rtype, assigns)
            if not found:
                if not force:
                    self.zerr("remove %s: %s" % (rtype, Z_NO_RESOURCE_ID))
                return
            self.cfg.root.remove(found[0])
            self.need_commit = True
            return
        everything = self.cfg.children(tag) if tag else []
        if not everything:
            if not force:
                self.zerr("remove %s: %s" % (rtype, Z_NO_ENTRY))
            return
        if len(everything) > 1 and not force:
            self.zerr("There are multiple instances of this resource.  Either qualify the "
                      "resource to\nremove a single instance or use the -F option to remove "
                      "all instances.")
            return
        for e in everything:
            self.cfg.root.remove(e)
        self.need_commit = True

    # -- resource scope
    def set_in_resource(self, name, value):
        sc = self.scope
        if name not in RES_PROPS.get(sc["type"], ()):
            self.zerr("%s: %s" % (name, Z_NO_PROPERTY_TYPE))
            return
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        value = str(value)
        if name == "mac-addr":
            value = normalize_mac(value)
        sc["props"][name] = value

    def add_in_resource(self, words, values):
        sc = self.scope
        if not words or not values and len(words) < 2:
            # `add RESOURCE` in a resource's scope (an `end` that failed):
            # add_property() has no property, long_usage(CMD_ADD)
            sys.stderr.write("usage:\n%s\n\t%s\n" % (SHORT_USAGE[0],
                                                    "Add specified resource to configuration."))
            self.saw_error = True
            return
        prop = words[0]
        value = values[0] if values else words[1]
        if prop == "property" and sc["type"] in ("net", "device"):
            pairs = dict(value) if isinstance(value, list) and value and \
                isinstance(value[0], tuple) else None
            if not pairs or "name" not in pairs or "value" not in pairs:
                self.zerr("A complex value was expected here.")
                return
            sc["nprops"].append((pairs["name"], pairs["value"]))
        elif prop == "value" and sc["type"] == "rctl":
            items = value if isinstance(value, list) and value and isinstance(value[0], list) \
                else [value]
            for it in items:
                pairs = dict(it) if isinstance(it, list) else {}
                missing = [k for k in ("priv", "limit", "action") if k not in pairs]
                if missing:
                    for k in missing:
                        self.zerr("%s not specified" % k)
                    return
                sc["values"].append((pairs["priv"], pairs["limit"], pairs["action"]))
        elif prop == "options" and sc["type"] == "fs":
            for o in (value if isinstance(value, list) else [value]):
                sc["options"].append(str(o))
        else:
            self.zerr("%s: %s" % (prop, Z_NO_PROPERTY_TYPE))

    def remove_in_resource(self, flags, words, values):
        sc = self.scope
        if not words:
            self.zerr("usage:\nremove <property-name> <property-value>")
            return
        prop = words[0]
        value = values[0] if values else (words[1] if len(words) > 1 else None)
        if prop == "property" and isinstance(value, list):
            pairs = dict(value)
            key = (pairs.get("name"), pairs.get("value"))
            if key in sc["nprops"]:
                sc["nprops"].remove(key)
            elif "-F" not in flags:
                self.zerr("remove property: %s" % Z_NO_PROPERTY_ID)
        elif prop == "value" and isinstance(value, list):
            pairs = dict(value)
            key = (pairs.get("priv"), pairs.get("limit"), pairs.get("action"))
            if key in sc["values"]:
                sc["values"].remove(key)
            else:
                self.zerr("remove value: %s" % Z_NO_PROPERTY_ID)
        elif prop == "options":
            for o in (value if isinstance(value, list) else [value]):
                if o in sc["options"]:
                    sc["options"].remove(o)
        else:
            self.zerr("%s: %s" % (prop, Z_NO_PROPERTY_TYPE))

    def do_cancel(self, flags, words, assigns, values):
        if self.scope is None:
            self.zerr("The cancel command only makes sense in the resource scope.")
            return
        self.scope = None

    def do_end(self, flags, words, assigns, values):
        sc = self.scope
        if sc is None:
            self.zerr("The end command only makes sense in the resource scope.")
            return
        rtype, p = sc["type"], sc["props"]
        if rtype == "capped-memory":
            for k, rctl in MEMORY_RCTLS.items():
                if k in p:
                    self.cfg.set_rctl(rctl, parse_size(p[k]), "deny")
            self.scope = None
            self.need_commit = True
            return
        if rtype == "capped-cpu":
            if "ncpus" not in p:
                self.zerr("ncpus not specified")
                return
            self.cfg.set_rctl("zone.cpu-cap", int(round(float(p["ncpus"]) * 100)), "deny")
            self.scope = None
            self.need_commit = True
            return
        required = {"attr": ("name", "type", "value"), "net": ("physical",),
                    "device": ("match",), "rctl": ("name",), "dataset": ("name",),
                    "fs": ("dir", "special", "type")}.get(rtype, ())
        missing = [k for k in required if not p.get(k)]
        if rtype == "attr" and "value" in missing and "value" in p:
            missing.remove("value")
        if missing:
            for k in missing:
                self.zerr("%s not specified" % k)
            return
        if rtype == "rctl" and not sc["values"]:
            self.zerr("value not specified")
            return
        e = self.build(sc)
        if e is None:
            return
        if sc["orig"] is not None and sc["orig"] in list(self.cfg.root):
            # libzonecfg modifies by deleting the old entry and adding the new one
            self.cfg.root.remove(sc["orig"])
        self.cfg.root.append(e)
        self.scope = None
        self.need_commit = True

    def build(self, sc):
        rtype, p = sc["type"], sc["props"]
        if rtype == "attr":
            return zones.el("attr", name=p["name"], type=p["type"], value=p.get("value", ""))
        if rtype == "net":
            e = zones.el("network")
            for k in RES_PROPS["net"]:
                if p.get(k):
                    e.set(k, p[k])
            for k, v in sc["nprops"]:
                zones.net_attr(e, k, v)
            return e
        if rtype == "device":
            e = zones.el("device", match=p["match"])
            for k, v in sc["nprops"]:
                zones.net_attr(e, k, v)
            return e
        if rtype == "rctl":
            e = zones.el("rctl", name=p["name"])
            for priv, limit, action in sc["values"]:
                e.append(zones.el("rctl-value", priv=priv, limit=limit, action=action))
            return e
        if rtype == "dataset":
            if sc["op"] == "add" and p["name"] in self.cfg.datasets():
                self.zerr("add dataset: Resource already exists")
                return None
            e = zones.el("dataset", name=p["name"])
            if p.get("alias"):
                e.set("alias", p["alias"])
            return e
        if rtype == "fs":
            e = zones.el("filesystem")
            for k, xk in FS_XML:
                if p.get(k):
                    e.set(xk, p[k])
            for o in sc["options"]:
                e.append(zones.el("fsoption", name=o))
            return e
        self.zerr("%s: %s" % (rtype, Z_NO_RESOURCE_TYPE))
        return None

    # -- output
    def do_export(self, flags, words, assigns, values):
        out_file = None
        args = list(flags) + list(words)
        if "-f" in args:
            i = args.index("-f")
            out_file = args[i + 1] if i + 1 < len(args) else None
            if out_file is None:
                self.zerr("usage:\nexport [-f output-file]")
                return
        elif any(a.startswith("-f") and len(a) > 2 for a in args):
            out_file = [a for a in args if a.startswith("-f")][0][2:]
        if not self.initialize():
            return
        text = export_text(self.cfg, zones.index_entry(self.zone), self.new_uuid,
                           quote_all=quotes_every_value(zones.host()))
        if out_file:
            try:
                with open(out_file, "w") as f:
                    f.write(text)
            except OSError as e:
                self.zerr("opening file %s: %s" % (out_file, e.strerror))
        else:
            sys.stdout.write(text)

    def do_info(self, flags, words, assigns, values):
        if not self.initialize():
            return
        sys.stdout.write(info_text(self.cfg, zones.index_entry(self.zone), words, assigns))

    def do_commit(self, flags, words, assigns, values):
        if self.initialize():
            self.commit()

    def do_verify(self, flags, words, assigns, values):
        if not self.initialize():
            return
        if not self.cfg.zonepath:
            self.zerr("zonepath cannot be empty.")
        if not self.cfg.brand:
            self.zerr("brand cannot be empty.")

    def do_revert(self, flags, words, assigns, values):
        self.cfg = None
        self.need_commit = False
        self.scope = None

    def do_exit(self, flags, words, assigns, values):
        # exit_func(): in a resource, -F or nothing saved (no one to ask)
        if self.scope is None or "-F" in flags:
            self.time_to_exit = True
            return
        self.zerr("Resource incomplete, input not from terminal and -F not specified:\n"
                  "exit command ignored, but exiting anyway.")
        self.rc_override = 1
        self.exit_now = True

    def do_help(self, flags, words, assigns, values):
        sys.stdout.write(USAGE)


def export_text(cfg, entry, new_uuid=None, quote_all=True):
    """zonecfg export (illumos export_func): the commands that recreate the
    zone; export_prop()'s values all quoted, or (before c8236ea) those with a space."""
    r = cfg.root
    out = ["create -b"]

    def setp(name, value):
        if value:
            out.append('set %s="%s"' % (name, value) if quote_all else
                       "set %s=%s" % (name, quoteit(value)))

    if r.get("zonepath"):
        out.append("set zonepath=%s" % r.get("zonepath"))
    if r.get("brand"):
        out.append("set brand=%s" % r.get("brand"))
    out.append("set autoboot=%s" % ("true" if r.get("autoboot") == "true" else "false"))
    for prop in ("bootargs", "pool", "limitpriv", "scheduling-class"):
        if r.get(prop):
            out.append("set %s=%s" % (prop, r.get(prop)))
    if r.get("ip-type"):
        out.append("set ip-type=%s" % r.get("ip-type"))
    if r.get("hostid") is not None:
        out.append("set hostid=%s" % r.get("hostid"))
    if r.get("fs-allowed") is not None:
        out.append("set fs-allowed=%s" % r.get("fs-allowed"))
    uuid = new_uuid or (entry or {}).get("uuid")
    if uuid:
        out.append("set uuid=%s" % uuid)
    for e in cfg.children("filesystem"):
        out.append("add fs")
        setp("dir", e.get("directory"))
        setp("special", e.get("special"))
        setp("raw", e.get("raw"))
        setp("type", e.get("type"))
        for o in e:
            if o.tag == "fsoption":
                opt = o.get("name")
                out.append('add options "%s"' % opt if "=" in opt else "add options %s" % opt)
        out.append("end")
    for e in cfg.children("network"):
        out.append("add net")
        for k in RES_PROPS["net"]:
            setp(k, e.get(k))
        for k, v in zones.res_props(e):
            out.append('add property (name=%s,value="%s")' % (k, v))
        out.append("end")
    for e in cfg.children("device"):
        out.append("add device")
        setp("match", e.get("match"))
        for k, v in zones.res_props(e):
            out.append('add property (name=%s,value="%s")' % (k, v))
        out.append("end")
    for e in cfg.children("rctl"):
        out.append("add rctl")
        setp("name", e.get("name"))
        for v in e:
            if v.tag == "rctl-value":
                out.append("add value (priv=%s,limit=%s,action=%s)"
                           % (v.get("priv"), v.get("limit"), v.get("action")))
        out.append("end")
    for e in cfg.children("attr"):
        out.append("add attr")
        setp("name", e.get("name"))
        setp("type", e.get("type"))
        setp("value", e.get("value"))
        out.append("end")
    for e in cfg.children("dataset"):
        out.append("add dataset")
        setp("name", e.get("name"))
        if e.get("alias"):
            setp("alias", e.get("alias"))
        out.append("end")
    return "".join(l + "\n" for l in out)


def info_text(cfg, entry, words, assigns):
    r = cfg.root
    out = []
    glob = [("zonename", r.get("name")), ("zonepath", r.get("zonepath")),
            ("brand", r.get("brand")), ("autoboot", r.get("autoboot")),
            ("bootargs", r.get("bootargs")), ("pool", r.get("pool")),
            ("limitpriv", r.get("limitpriv")), ("scheduling-class", r.get("scheduling-class")),
            ("ip-type", r.get("ip-type")), ("hostid", r.get("hostid")),
            ("fs-allowed", r.get("fs-allowed"))]
    what = words[0] if words else None
    if what is None or what in dict(glob):
        for k, v in glob:
            if what is None or what == k:
                out.append("%s: %s" % (k, v or ""))
        if what is None:
            for alias, (rctl, _) in RCTL_ALIASES.items():
                v = cfg.rctl(rctl)
                if v is not None:
                    out.append("[%s: %s]" % (alias, v))
        if what is not None:
            return "".join(l + "\n" for l in out)
    if what == "uuid":
        return "uuid: %s\n" % ((entry or {}).get("uuid") or "")
    if what in RCTL_ALIASES:
        v = cfg.rctl(RCTL_ALIASES[what][0])
        return "%s: %s\n" % (what, "" if v is None else v) if v is not None else ""

    def matches(rtype, e):
        for k, v in assigns:
            if Session._elem_prop(rtype, e, k) != str(v):
                return False
        return True

    def section(rtype):
        tag = RESOURCES[rtype]
        for e in cfg.children(tag):
            if not matches(rtype, e):
                continue
            out.append("%s:" % rtype)
            for k in RES_PROPS[rtype]:
                v = Session._elem_prop(rtype, e, k)
                if v is not None:
                    out.append("\t%s: %s" % (k, v))
                elif rtype == "net":
                    out.append("\t%s not specified" % k)
            for c in e:
                if c.tag == "net-attr":
                    out.append('\tproperty: (name=%s,value="%s")' % (c.get("name"), c.get("value")))
                elif c.tag == "rctl-value":
                    out.append("\tvalue: (priv=%s,limit=%s,action=%s)"
                               % (c.get("priv"), c.get("limit"), c.get("action")))
                elif c.tag == "fsoption":
                    out.append("\toptions: [%s]" % c.get("name"))

    order = ("fs", "net", "device", "rctl", "attr", "dataset")
    if what is None:
        for rtype in order:
            section(rtype)
    elif what in order:
        section(what)
    elif what == "capped-memory":
        have = [(k, cfg.rctl(r)) for k, r in MEMORY_RCTLS.items()]
        if any(v is not None for _, v in have):
            out.append("capped-memory:")
            for k, v in have:
                if v is not None:
                    out.append("\t[%s: %s]" % (k, v))
    return "".join(l + "\n" for l in out)


def main(argv):
    zone = None
    cmd_file = None
    args = list(argv)
    rest = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-z", "-u", "-f", "-R") and i + 1 < len(args) and not rest:
            if a in ("-z", "-u"):
                zone = args[i + 1]
            elif a == "-f":
                cmd_file = args[i + 1]
            i += 2
            continue
        rest = args[i:]
        break
    if rest and rest[0] == "help":
        sys.stdout.write(USAGE)
        return 0
    if zone is None:
        sys.stderr.write(USAGE)
        return 253
    if rest:
        # one_command_at_a_time(): the words joined by spaces, and a newline
        text = " ".join(rest) + "\n"
        session = Session(zone)
    elif cmd_file == "-":
        # cmd_file(): "-f -" is essentially the same as interactive mode
        text = sys.stdin.read()
        session = Session(zone, "-", cmd_file)
    elif cmd_file is not None:
        try:
            if not os.path.isfile(cmd_file):
                if os.path.exists(cmd_file):
                    sys.stderr.write("%s is not a regular file.\n" % cmd_file)
                    return 1
            with open(cmd_file) as f:
                text = f.read()
        except OSError as e:
            sys.stderr.write("could not open file %s: %s\n" % (cmd_file, e.strerror))
            return 1
        session = Session(zone, "file", cmd_file)
    else:
        if sys.stdin.isatty():
            sys.stderr.write("zonecfg: interactive mode is not simulated; give commands "
                             "as arguments or with -f\n")
            return 1
        text = sys.stdin.read()
        session = Session(zone, "stdin")
    try:
        return session.run(text)
    except zones.ZoneError as e:
        sys.stderr.write("%s\n" % e)
        return 1
