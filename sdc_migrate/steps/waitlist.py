"""Steps: the instance held the Triton way while it moves: its CNAPI waitlist
ticket (scope vm, id the instance) on the source and on the destination,
taken before the stop and released once it booted on the destination.

VMAPI runs a customer's start, stop or reboot (and its other actions) as a
job that first takes the VM's ticket on the server VMAPI shows when the job
is made, and waits for it (sdc-vmapi lib/apis/wfapi.js, lib/workflows/
job-common.js acquireVMTicket, waitOnVMTicket; a queue is one server's,
scope's and id's: sdc-cnapi lib/models/waitlist.js getServerQueue), as
sdc-vmapi's own lib/workflows/migrate-switch.js holds it around its switch.
With ours held such a job waits until the migration is done, then finds the
instance as the migration left it (ensureVmState). One made before the
switch names the source, where the old copy is detached by then
(zone.hide_source) and cannot boot.

No call of these is inside the downtime: the tickets are taken before the
stop and released after the boot.
"""
import concurrent.futures
import datetime
import time

from ..errors import MigrateError
from ..report import capped_rate, estimate_seconds

SCOPE = "vm"
ACTION = "sdc-migrate"
HOLD_BASE = 600     # seconds: what VMAPI gives its own jobs' tickets (acquireVMTicket)
SWITCH_TIME = 120   # VMAPI's switch at most (zone.VMAPI_WAIT)
WAIT = 660          # the longest we wait for a job that holds the instance (600 s and a margin)
MARGIN = 10         # a hold this close to its expiry is looked at again before the boot
DRY_TICKET = "TICKET"   # --dry-run takes none: the listing names the one it would release


def seconds_to_hold(m):
    """How long our tickets last by themselves, so that a run killed and never
    run again frees the instance some day: what VMAPI gives its own jobs,
    VMAPI's switch, and twice the estimate (the seed's 20 MB/s and two
    minutes) of what is left to send: all of it, or -i's last delta."""
    left = (m.delta or 0) if m.opts.incremental else m.total
    return HOLD_BASE + SWITCH_TIME + 2 * estimate_seconds(left, capped_rate(m.opts.bwlimit))


def iso(t):
    d = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (d.microsecond // 1000)


def hold(m):
    r = m.r
    r.step("* Holding the instance in CNAPI's waitlist (VMAPI's jobs wait)...")
    m.hold_until = time.time() + seconds_to_hold(m)
    nodes = (m.src, m.dst)
    # journaled first: a run killed while CNAPI makes them finds them by their tag
    marks = [m.proc.will("hold", "waitlist ticket on %s" % n.hostname, server=n.uuid,
                         host=n.hostname, tag=m.tag) for n in nodes]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(take, m, n) for n in nodes]
    # each one made is confirmed, even when the other failed: its undo must
    # not be taken for one of a change that never happened
    made, failed = [], None
    for i, f in zip(marks, futures):
        try:
            made.append(f.result())
        except Exception as e:  # noqa: BLE001 - raised below, once the other is journaled
            failed = failed or e
            continue
        m.proc.confirm(i)
    if failed is not None:
        raise failed
    for node, ticket in zip(nodes, made):
        wait(m, node, ticket)
    r.done()


def take(m, node):
    """A ticket of ours on node: its record in CNAPI's answer (None with --dry-run)."""
    body = m.api.create_ticket(node.uuid, SCOPE, m.opts.uuid, iso(m.hold_until), ACTION,
                               {"sdc_migrate": m.tag, "kind": m.KIND})
    if body is None:
        m.tickets[node.uuid] = DRY_TICKET
        return None
    m.tickets[node.uuid] = body["uuid"]
    mine = [t for t in body.get("queue") or [] if t.get("uuid") == body["uuid"]]
    return mine[0] if mine else {"uuid": body["uuid"], "status": "queued"}


def wait(m, node, ticket):
    """Until our ticket is active: the jobs queued before it (a customer's start,
    a reboot) run first, as they would before any job."""
    if ticket is None or ticket.get("status") == "active":
        return
    ahead = [t for t in m.api.tickets(node.uuid) if t.get("scope") == SCOPE
             and t.get("id") == m.opts.uuid and t.get("status") == "active"]
    m.r.line()
    for t in ahead:
        m.r.line("    + waiting for ticket %s on %s (action %s, since %s, expires %s)"
                 % (t["uuid"], node.hostname, t.get("action"), t.get("created_at"),
                    t.get("expires_at")))
    why = m.api.wait_ticket(ticket["uuid"], WAIT)
    if why is not None:
        raise MigrateError("%s is held in CNAPI's waitlist on %s by %s; our ticket %s did not"
                           " become active: %s" % (m.opts.uuid, node.hostname,
                                                   ", ".join(t["uuid"] for t in ahead)
                                                   or "another ticket", ticket["uuid"], why))


def ours(m, server, tag, statuses=("active", "queued")):
    """Our tickets on server (by the tag a run gave them), oldest first."""
    return [t for t in m.api.tickets(server) if t.get("scope") == SCOPE
            and t.get("id") == m.opts.uuid and (t.get("extra") or {}).get("sdc_migrate") == tag
            and t.get("status") in statuses]


def release(m, server, host, tag):
    """The undo: our ticket on server released (the one this run took, or a
    killed run's, found by its tag); one expired or gone needs nothing."""
    ticket = m.tickets.pop(server, None)
    for t in [ticket] if ticket else [t["uuid"] for t in ours(m, server, tag)]:
        m.api.release_ticket(t)


def hold_again(m):
    """Past the switch, before the boot: still held on the destination? Only a
    rerun (the killed run's ticket is in the journal, not in memory) or a hold
    near its expiry asks CNAPI: ours active is kept, one queued waited for, one
    expired or released taken anew. A customer's job that ran meanwhile ran on
    the destination's copy, which has every write."""
    if m.opts.dry_run or (m.dst.uuid in m.tickets and time.time() < m.hold_until - MARGIN):
        return
    held = ours(m, m.dst.uuid, m.tag)
    if any(t["status"] == "active" for t in held):
        m.tickets[m.dst.uuid] = [t for t in held if t["status"] == "active"][0]["uuid"]
        return
    if held:
        m.tickets[m.dst.uuid] = held[0]["uuid"]
        wait(m, m.dst, held[0])
        return
    m.r.step("* Holding the instance in CNAPI's waitlist on %s again..." % m.dst.hostname)
    m.hold_until = time.time() + HOLD_BASE
    i = m.proc.will("hold", "waitlist ticket on %s" % m.dst.hostname, server=m.dst.uuid,
                    host=m.dst.hostname, tag=m.tag)
    ticket = take(m, m.dst)
    m.proc.confirm(i)
    wait(m, m.dst, ticket)
    m.r.done()


def let_go(m):
    """After the boot: VMAPI's jobs for the instance run again (on the
    destination: VMAPI shows it there)."""
    if not m.proc.pending("hold"):
        return
    m.r.step("* Releasing it in CNAPI's waitlist (VMAPI's jobs run again)...")
    m.proc.undo_now(m, "hold", parallel=True)
    m.r.done()
