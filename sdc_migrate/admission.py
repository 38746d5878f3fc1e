"""Which of a plan's moves may start now, within the budgets: pure, no I/O.

A move (a plan's item: uuid, bytes, source and dest, compute node names)
touches two compute nodes, its source as sender and its destination as
receiver. At most `concurrency` moves run in all and at most `per_cn` touch
any one CN; the rest wait, biggest first (an interrupted one before any
other: it holds its instance's IPs and half-sent data), and each starts as
soon as both its CNs have a slot: a move whose destination is full does not
hold back a smaller one whose CNs are free (vCenter queues moves beyond its
per-host budgets the same way), so no CN idles while a move it could take
waits behind another CN's.
"""
import collections

# Two at a time per CN: one move's stream keeps a CN's link busy while the
# other is between rounds (snapshots, stop, attach, boot); a third only
# splits the same link and pool three ways.
PER_CN = 2
CONCURRENCY = 4


def order(items):
    """The queue's order: interrupted moves first, then biggest first."""
    return sorted(items, key=lambda i: (not i.get("resume"), -i.get("bytes", 0), i["uuid"]))


def load(running):
    """How many running moves touch each CN."""
    busy = collections.Counter()
    for i in running:
        for cn in cns(i):
            busy[cn] += 1
    return busy


def cns(item):
    """The CNs a move touches (one, if it names the same CN twice)."""
    return {cn for cn in (item.get("source"), item.get("dest")) if cn}


def admit(queue, running, concurrency=CONCURRENCY, per_cn=PER_CN):
    """The moves of queue that may start now, in the order to start them,
    given the moves running."""
    busy = load(running)
    room = concurrency - len(running)
    start = []
    for item in order(queue):
        if room <= 0:
            break
        if all(busy[cn] < per_cn for cn in cns(item)):
            start.append(item)
            room -= 1
            for cn in cns(item):
                busy[cn] += 1
    return start


def waiting_for(item, running, per_cn=PER_CN):
    """The CNs whose budget a queued move waits for (for the live view and -j)."""
    busy = load(running)
    return sorted(cn for cn in cns(item) if busy[cn] >= per_cn)


def most_at_once(items, concurrency=CONCURRENCY, per_cn=PER_CN):
    """The most moves of items that can run at once: --bwlimit's share each
    is the total over it. Each move has one source and one destination, so
    per_cn a source and per_cn a destination bound it too."""
    sources = {i.get("source") for i in items}
    dests = {i.get("dest") for i in items}
    return max(1, min(concurrency, len(items), per_cn * len(sources), per_cn * len(dests)))


def makespan(items, seconds, concurrency=CONCURRENCY, per_cn=PER_CN):
    """How long the moves take when admitted as admit() admits them, each
    taking seconds(item): the plan's estimate (and what the tests check the
    budgets and the idling against)."""
    return simulate(items, seconds, concurrency, per_cn)[0]


def simulate(items, seconds, concurrency=CONCURRENCY, per_cn=PER_CN):
    """(makespan, [(time, event, item, running moves)...]) of admit() run as
    the moves end, each taking seconds(item)."""
    queue, running, now, log = list(items), [], 0.0, []
    while queue or running:
        for item in admit(queue, [i for _, i in running], concurrency, per_cn):
            queue.remove(item)
            running.append((now + seconds(item), item))
            log.append((now, "start", item, [i for _, i in running]))
        if not running:
            break
        running.sort(key=lambda r: (r[0], r[1]["uuid"]))
        now, item = running.pop(0)
        log.append((now, "end", item, [i for _, i in running]))
    return now, log
