"""How far a CN-to-CN stream has got, read from `zfs send -vP` on the source.

illumos zfs prints on stderr, before the stream, one line per snapshot it
will send and the sum of their estimates:

    full<TAB>DS@SNAP<TAB>SIZE
    incremental<TAB>FROM<TAB>DS@SNAP<TAB>SIZE
    size<TAB>TOTAL

then, once a second while it sends, the bytes sent so far of the snapshot
being sent:

    HH:MM:SS<TAB>BYTES<TAB>DS@SNAP

The global zone has no pv or mbuffer, so these lines are the only measure of
a transfer there is. A Meter follows one stream or several one after another
(every dataset of a round) and says bytes sent of the estimate, rate and time
left; nothing here prints. Use, for one send pipeline:

    meter = Meter(show=lambda m: report.progress(m.text()))
    node.run(zfs.send_pipeline(..., progress=True), on_line=meter.feed)
    meter.complete()
    report.done("done")
"""
import collections
import re
import time

Estimate = collections.namedtuple("Estimate", "snapshot from_snap size")
Total = collections.namedtuple("Total", "size")
Sent = collections.namedtuple("Sent", "stamp bytes snapshot")

_STAMP = re.compile(r"^\d{2}:\d{2}:\d{2}$")


def parse_line(line):
    """The Estimate, Total or Sent a `zfs send -vP` stderr line says, else None."""
    f = line.rstrip("\r\n").split("\t")
    try:
        if f[0] == "full" and len(f) in (2, 3):
            return Estimate(f[1], None, int(f[2]) if len(f) == 3 else 0)
        if f[0] == "incremental" and len(f) in (3, 4):
            return Estimate(f[2], f[1], int(f[3]) if len(f) == 4 else 0)
        if f[0] == "size" and len(f) == 2:
            return Total(int(f[1]))
        if len(f) == 3 and _STAMP.match(f[0]) and "@" in f[2]:
            return Sent(f[0], int(f[1]), f[2])
    except ValueError:
        pass
    return None


def _size(nbytes):
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if nbytes >= scale:
            return "%.1f %s" % (nbytes / scale, unit)
    return "%d B" % nbytes


def _clock(seconds):
    seconds = int(round(seconds))
    return "%d:%02d:%02d" % (seconds // 3600, seconds // 60 % 60, seconds % 60)


class Meter:
    """Bytes sent of the estimate, rate and time left, over one or more streams.

    feed() takes every stderr line of the send pipeline and says whether it
    was a progress line (so the caller can keep it out of error messages);
    after each per-second line it calls show(meter). A later stream's
    estimate lines mark the snapshots of the streams before it as sent whole
    (illumos' last per-second line falls short of the end). total, if given,
    is the round's estimate for all its streams (the datasets' sizes), known
    before the later streams print theirs.
    """

    WINDOW = 5.0        # seconds of samples the rate is taken over

    def __init__(self, show=None, total=None, clock=time.monotonic):
        self.show, self.given_total, self.clock = show, total, clock
        self.estimates = {}     # DS@SNAP -> estimated bytes
        self.sent = {}          # DS@SNAP -> bytes sent
        self.samples = collections.deque()     # (time, bytes sent)
        self.streaming = False  # a per-second line came since the last estimate

    @property
    def total(self):
        known = sum(self.estimates.values())
        return max(self.given_total or 0, known)

    @property
    def done(self):
        return sum(self.sent.values())

    def feed(self, line):
        ev = parse_line(line)
        if ev is None:
            return False
        if isinstance(ev, Estimate):
            if self.streaming:
                self.complete()
            self.estimates[ev.snapshot] = ev.size
            self._sample()      # the stream starts: the first second has a rate
        elif isinstance(ev, Sent):
            self.streaming = True
            self.sent[ev.snapshot] = max(ev.bytes, self.sent.get(ev.snapshot, 0))
            self._sample()
            if self.show is not None:
                self.show(self)
        return True

    def complete(self):
        """The streams so far have ended: count their snapshots as sent whole."""
        for snap, size in self.estimates.items():
            self.sent[snap] = max(size, self.sent.get(snap, 0))
        self.streaming = False
        self._sample()

    def _sample(self):
        now = self.clock()
        self.samples.append((now, self.done))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.WINDOW:
            self.samples.popleft()

    @property
    def rate(self):
        """Bytes a second over the last few seconds; None before two samples."""
        if len(self.samples) < 2:
            return None
        (t0, b0), (t1, b1) = self.samples[0], self.samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else None

    @property
    def eta(self):
        """Seconds left at the current rate; None if unknown."""
        rate, total = self.rate, self.total
        if not rate or not total:
            return None
        return max(0.0, (total - self.done) / rate)

    def text(self):
        """One line for a terminal, e.g. ' 43%  26.1 MB of 60.6 MB  22.3 MB/s  0:00:02 left'."""
        done, total, rate, eta = self.done, self.total, self.rate, self.eta
        parts = []
        if total:
            parts.append("%3d%%  %s of %s" % (min(100, done * 100 // total), _size(done),
                                               _size(total)))
        else:
            parts.append(_size(done))
        parts.append("%s/s" % _size(rate) if rate is not None else "-- MB/s")
        if eta is not None:
            parts.append("%s left" % _clock(eta))
        return "      > " + "  ".join(parts)

    def event(self):
        """The same for -j: one JSON-ready object."""
        rate, eta = self.rate, self.eta
        return {"event": "progress", "sent_bytes": self.done, "total_bytes": self.total,
                "rate_bytes_per_s": None if rate is None else int(rate),
                "eta_s": None if eta is None else round(eta, 1)}
