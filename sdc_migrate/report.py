"""Every line a user sees: migrator.sh's format, mirrored into the log file;
with -j (JsonReport) one JSON event a line instead, the log staying human."""
import datetime
import json
import os
import re
import sys
import time

from dateutil import tz
from tabulate import tabulate

from .errors import Usage

DONE_COLUMN = 72
LABEL_WIDTH = 20


def human_time(when):
    """migrator.sh's timestamps: 'April 28, 2014 03:43:40 PM UTC'."""
    when = when.astimezone(tz.tzutc())
    return when.strftime("%B %d, %Y %I:%M:%S %p UTC")


def human_duration(seconds):
    if seconds < 60:
        return "%d seconds" % round(seconds)
    if seconds < 3600:
        return "%.2f minutes" % (seconds / 60.0)
    return "%.2f hours" % (seconds / 3600.0)


def human_size(nbytes):
    mb = nbytes / 1048576.0
    if mb >= 1024:
        return "%.2f GBytes" % (mb / 1024.0)
    return "%.2f MBytes" % mb


def estimate_seconds(nbytes, rate_mb=20, overhead=120):
    """The seed's estimate: the data at RATE MB/s plus two minutes."""
    return nbytes / 1048576.0 / rate_mb + overhead


def capped_rate(bwlimit, rate_mb=20):
    """The estimate's MB/s under a --bwlimit of bwlimit bytes a second (or None)."""
    return min(rate_mb, bwlimit / 1048576.0) if bwlimit else rate_mb


def estimate_text(nbytes, rate_mb=20):
    return "%s (@ ~%g MB / second (~%.2f GB / minute); +2 minutes extra)" % (
        human_duration(estimate_seconds(nbytes, rate_mb)), rate_mb, rate_mb * 60 / 1024.0)


def column_name(header):
    """A table column's name for -o and -s: its header in lower case, words
    joined by _ ("LAST DELTA" -> last_delta), as node-triton's tables name
    their fields."""
    return re.sub(r"[^a-z0-9]+", "_", header.lower()).strip("_")


class TableOptions:
    """-H, -o COL,... and -s COL,... as node-triton's tables take them
    (node-triton lib/common.js getCliTableOptions, drawn by tabula): no
    header row; these columns, in this order; sorted on these columns
    (numbers as numbers, sizes by bytes, a leading - reverses). One set for a
    command's every table: a column a table lacks is left out of it."""

    def __init__(self, header=True, columns=None, sort=()):
        self.header, self.columns, self.sort = header, columns, list(sort)

    @classmethod
    def from_args(cls, args, *tables):
        """From docopt's -H, -o and -s, checked against the columns of the
        command's tables (lists of headers): a name none has is a Usage error."""
        known = [column_name(h) for t in tables for h in t]
        columns = cls._names(args.get("-o"), "-o", known)
        sort = [(n.lstrip("-"), n.startswith("-"))
                for n in cls._names(args.get("-s"), "-s", known, signed=True) or []]
        return cls(not args.get("-H"), columns, sort)

    @staticmethod
    def _names(text, option, known, signed=False):
        if isinstance(text, list):      # docopt reads `-o COL,...` as repeatable
            text = ",".join(text) if text else None
        if text is None:
            return None
        names = [n.strip().lower() for n in text.split(",")]
        for n in names:
            if (n[1:] if signed and n.startswith("-") else n) not in known:
                raise Usage("%s: no column %r; the columns are %s"
                            % (option, n, ",".join(dict.fromkeys(known))))
        return names

    def apply(self, headers, rows):
        """The headers and rows to draw: sorted, then the columns picked.
        A cell is its text or (text, sort key)."""
        names = [column_name(h) for h in headers]
        rows = list(rows)
        for name, reverse in reversed(self.sort):      # the first named sorts last
            if name in names:
                k = names.index(name)
                rows.sort(key=lambda row: sort_key(row[k]), reverse=reverse)
        keep = range(len(headers)) if self.columns is None else \
            [names.index(n) for n in self.columns if n in names]
        return [headers[k] for k in keep], [[cell_text(row[k]) for k in keep] for row in rows]


def cell_text(cell):
    return cell[0] if isinstance(cell, tuple) else cell


def sort_key(cell):
    """A cell's key: its own (bytes, seconds) if it has one, its text else;
    what has none (None) sorts first."""
    key = cell[1] if isinstance(cell, tuple) else cell
    return (key is not None, isinstance(key, str), key if key is not None else 0)


class Terminal:
    """The operator's terminal, which may go away (the ssh session drops): a
    write that fails makes the rest go nowhere, and the log keeps them all."""

    def __init__(self, out):
        self.out = out

    def write(self, text):
        try:
            self.out.write(text)
        except (OSError, ValueError):
            self.out = open(os.devnull, "w")

    def flush(self):
        try:
            self.out.flush()
        except (OSError, ValueError):
            self.out = open(os.devnull, "w")

    def isatty(self):
        return self.out.isatty()


class Report:
    """Prints to stdout and appends the same lines to the log file.

    on_event, if given, is called with (name, fields) for each event(): how
    evacuate learns what the migrations it runs in threads did.
    """

    def __init__(self, out=None, on_event=None):
        self.out = Terminal(out or sys.stdout)
        self.on_event = on_event
        self.table_options = TableOptions()     # -H, -o, -s of the command's tables
        self.log = None
        self.muted = False      # --dry-run: the steps' narrative is not shown, events are
        self._early = []        # lines printed before the log file exists
        self._pending = None
        self._progress = False  # a progress line is on the terminal
        self._broken = False    # the pending step's line was ended for it

    def open_log(self, path):
        """Start the log (root only: mode 0600) with every line printed so far."""
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.log = os.fdopen(fd, "a")
        self.log.write("".join(line + "\n" for line in self._early))
        self._early = []

    def close(self):
        if self.log:
            self.log.close()
            self.log = None

    def _write(self, text, end="\n"):
        self.out.write(text + end)
        self.out.flush()

    def _to_log(self, text):
        if self.log:
            self.log.write(text + "\n")
            self.log.flush()
        else:
            self._early.append(text)

    def isatty(self):
        try:
            return self.out.isatty()
        except (AttributeError, ValueError):
            return False

    def wants_progress(self):
        """Whether a transfer should be metered for meter()."""
        return self.isatty()

    def meter(self, m):
        """A progress.Meter's state, after each of its samples."""
        self.progress(m.text())

    def progress(self, text):
        """A transfer's progress line, redrawn in place; on a terminal only, never logged.

        During a step it goes on the line below the step's, and done() puts
        the step's mark there once the transfer is over.
        """
        if not self.isatty() or self.muted:
            return
        if not self._progress and self._pending is not None and not self._broken:
            self.out.write("\n")
            self._broken = True
        self.out.write("\r" + text + "\x1b[K")
        self.out.flush()
        self._progress = True

    def _clear_progress(self):
        if self._progress:
            self.out.write("\r\x1b[K")
            self._progress = False

    def line(self, text=""):
        if self.muted:
            return
        self._finish_pending()
        for part in text.split("\n"):
            self._say(part)
            self._to_log(part)

    def _say(self, line):
        self._write(line)

    def lines(self, texts):
        for t in texts:
            self.line(t)

    def event(self, name, text=None, **fields):
        """Something a script may act on (-j prints {"event": name, **fields}):
        here the line text, if any, even when muted."""
        self.heard(name, fields)
        if text is not None:
            muted, self.muted = self.muted, False
            self.line(text)
            self.muted = muted

    def heard(self, name, fields):
        if self.on_event is not None:
            self.on_event(name, dict(fields))

    def dot(self):
        """A sign of life while waiting, on the step's line."""
        if not self.muted:
            self.out.write(".")
            self.out.flush()

    def step(self, text):
        """Start a step line; done() or failed() ends it."""
        if self.muted:
            return
        self._finish_pending()
        self._pending = text
        self._write(self._pad(text), end="")

    def done(self, mark="[ DONE ]"):
        self._clear_progress()
        if self._pending is None:
            return
        if self._broken:
            self._write(" " * DONE_COLUMN, end="")
            self._broken = False
        self._write(mark)
        self._to_log(self._pad(self._pending) + mark)
        self._pending = None

    @staticmethod
    def _pad(text):
        last = text.rsplit("\n", 1)[-1]
        return text + " " * max(1, DONE_COLUMN - len(last))

    def failed(self):
        self.done("[ FAILED ]")

    def _finish_pending(self):
        self._clear_progress()
        if self._pending is not None:
            if not self._broken:
                self._write("")
            self._broken = False
            self._to_log(self._pending)
            self._pending = None

    def block(self, title, pairs, indent="     "):
        """A label: value block, labels right-aligned as migrator.sh does."""
        if title:
            self.line(indent + title)
        for label, value in pairs:
            self.line("%s:  %s" % (label.rjust(LABEL_WIDTH), value))

    def json_event(self, name, /, **fields):
        """One -j event on one line, for scripts: every subcommand's are of
        the one shape event_line makes ({"event": NAME, "time": ISO, ...})."""
        self.line(event_line(name, **fields).rstrip("\n"))

    def table(self, headers, rows):
        """A table as node-triton draws one, with the command's -H, -o and -s
        (table_options); a cell is its text or (text, sort key)."""
        headers, rows = self.table_options.apply(headers, rows)
        if not headers:
            return
        if self.table_options.header:
            self.line(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))
        elif rows:
            self.line(tabulate(rows, tablefmt="plain", disable_numparse=True))

    def ask(self, question):
        """Ask a y/n question; only 'y' is yes, a closed stdin is no."""
        self._finish_pending()
        self._write(question + " ", end="")
        try:
            answer = sys.stdin.readline()
        except (OSError, ValueError):
            answer = ""
        if not answer:
            self._write("")
        self._to_log(question + " " + answer.strip())
        return answer.strip() == "y"

    def prompt(self, question):
        self._finish_pending()
        self._write(question + " ", end="")
        answer = sys.stdin.readline()
        self._to_log(question + " " + answer.strip())
        return answer.strip()


def now():
    return datetime.datetime.now(tz.tzutc())


def event_line(name, /, **fields):
    """One -j event: a JSON object on one line, its name and time first."""
    obj = {"event": name, "time": now().isoformat(timespec="milliseconds")}
    obj.update(fields)
    return json.dumps(obj) + "\n"


def one_line(text):
    """A step's text as one line: migrator.sh wraps long steps."""
    return " ".join(text.split())


class JsonReport(Report):
    """-j: one JSON event a line on stdout; the log file keeps the human lines.

    Events: info (a plain line), step_start, step_done, step_failed, progress
    (at most one a PROGRESS_EVERY seconds, terminal or not), and whatever
    the command names through event() (failure, undone, command, summary...).
    It asks nothing: -j goes with -y.
    """

    PROGRESS_EVERY = 0.5

    def __init__(self, out=None, clock=time.monotonic, on_event=None):
        super().__init__(out, on_event)
        self.clock = clock
        self._last_progress = None

    def emit(self, name, **fields):
        self.out.write(event_line(name, **fields))
        self.out.flush()

    def _say(self, line):
        if line.strip():
            self.emit("info", text=line)

    def event(self, name, text=None, **fields):
        self.heard(name, fields)
        self._finish_pending()
        if text is not None:
            for part in text.split("\n"):
                self._to_log(part)
            fields.setdefault("text", text.strip())
        self.emit(name, **fields)

    def step(self, text):
        if self.muted:
            return
        self._finish_pending()
        self._pending = text
        self.emit("step_start", step=one_line(text))

    def done(self, mark="[ DONE ]"):
        if self._pending is None or self.muted:
            return
        failed = mark == "[ FAILED ]"
        self.emit("step_failed" if failed else "step_done", step=one_line(self._pending),
                  **({} if failed else {"mark": mark}))
        self._to_log(self._pad(self._pending) + mark)
        self._pending = None

    def _finish_pending(self):
        if self._pending is not None:
            self._to_log(self._pending)
            self._pending = None

    def wants_progress(self):
        return True

    def meter(self, m):
        t = self.clock()
        if self._last_progress is not None and t - self._last_progress < self.PROGRESS_EVERY:
            return
        self._last_progress = t
        ev = m.event()
        del ev["event"]
        if self._pending is not None:
            ev["step"] = one_line(self._pending)
        self.emit("progress", **ev)

    def progress(self, text):
        pass

    def dot(self):
        pass

    def ask(self, question):
        raise Usage("-j asks no question (%s): add -y" % question)

    def prompt(self, question):
        raise Usage("-j asks no question (%s): give INST_UUID and DEST_CN_NAME" % question)
