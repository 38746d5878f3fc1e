"""Steps that move the instance's data, CN to CN: snapshots on the source,
`zfs send | ssh | zfs recv` streams (resumed where a cut one stopped), the
live rounds of an incremental migration, and the snapshots' cleanup."""
import os
import time

from .. import paths, progress, zfs
from ..errors import MigrateError, RemoteError
from ..report import human_size, now

RECV_WAIT = 3600        # the longest a run waits for an earlier run's receive
RESUMES = 2             # a cut stream is resumed this many times, then the run fails
# --max-delta's convergence rule (RFD 34): live rounds end when one sends less
# than the limit, when the delta has not shrunk for STALL_ROUNDS rounds, or
# after MAX_ROUNDS rounds.
MAX_ROUNDS = 10
STALL_ROUNDS = 3


def converged(deltas, max_delta):
    """Why live rounds with these deltas (bytes, oldest first; the first round
    is the full send) should end and the instance stop now; None to go on."""
    if len(deltas) >= MAX_ROUNDS:
        return "%d rounds have run" % MAX_ROUNDS
    live = deltas[1:]
    if not live:
        return None
    if live[-1] < max_delta:
        return "under the limit of %s" % human_size(max_delta)
    # not shrinking: no smaller delta in the last STALL_ROUNDS rounds than before them
    if len(live) > STALL_ROUNDS and min(live[-STALL_ROUNDS:]) >= min(live[:-STALL_ROUNDS]):
        return "the delta has not shrunk for %d rounds" % STALL_ROUNDS
    return None


# ---- snapshots ------------------------------------------------------------------

def snapshot_round(m, n=None, final=False):
    """Snapshot every dataset at once (one zfs call); returns the snapshot name.

    m.delta is what the snapshots hold that the previous ones do not (zfs's
    `written`): what this round sends.
    """
    name = m.snap_base if n is None else "%s-%d" % (m.snap_base, n)
    snaps = ["%s@%s" % (d.name, name) for d in m.datasets]
    # the final increment's size is not worth a command while the instance is down
    # and the snapshots there are now, oldest first: what the round sends
    out = m.src.script([["zfs", "snapshot"] + snaps] + ([] if final else [
        ["zfs", "get", "-Hp", "-o", "value", "written"] + snaps]) +
        [zfs.snapshot_chain_command(d.name for d in m.datasets)])
    m.chains = zfs.snapshot_chains(out)
    if n in (None, 0):
        m.proc.changed("snapshots", "migration snapshots on %s" % m.src.hostname, node="src")
    m.delta = None if final else sum(int(v) for v in out.split() if v.isdigit())
    m.journal.write({"t": "round", "n": 0 if n is None else n, "bytes": m.delta,
                     "snapshot": name, "at": now().isoformat()})
    for ds in m.datasets:
        m.r.step("    + Creating %s snapshot%s..." % (ds.name, "" if n is None else " %d" % n))
        m.r.done()
    return name


def destroy_snapshots(m, node, keep=None):
    """Destroy every migration snapshot of the instance's datasets on node but
    those named keep (the final one, which `sdc-migrate rollback` sends back
    from, stays until cleanup-source)."""
    m.node(node).run(["sh", "-c", zfs.DESTROY_MIGRATION_SNAPSHOTS, "sh", keep or ""]
                     + [d.name for d in m.datasets])


def final_snapshot(m):
    """The instance is down: the last snapshot, the one both CNs keep after."""
    r = m.r
    if m.opts.incremental:
        r.line("* Creating final incrmental dataset snapshot on %s" % m.src.hostname)
        m.final_snap = snapshot_round(m, m.round, final=True)
    else:
        r.line("* Creating dataset snapshots on %s" % m.src.hostname)
        m.final_snap = snapshot_round(m)


def cleanup_snapshots(m):
    """After the switch: the source's (journaled) and the destination's
    migration snapshots, side by side; the final one stays on both for
    `sdc-migrate rollback`, until cleanup-source."""
    r = m.r
    r.step("* Deleting migration snapshots on %s..." % m.dst.hostname)
    keep = m.journal.final_snapshot
    undo = m.proc.step("snapshots").undo
    m.both(lambda n: undo(m, "src" if n is m.src else "dst", keep))
    m.proc.forget("snapshots", "received")
    r.done()


# ---- streams --------------------------------------------------------------------

def final_send(m):
    r = m.r
    if not m.opts.incremental:
        r.line("* Transferring dataset snapshots to %s" % m.dst.hostname)
    send_round(m, m.final_snap)
    # both sides keep it after the migration: a rollback's common snapshot
    m.journal.write({"t": "final", "snapshot": m.final_snap})


def resumable(m):
    return m.link is None or m.link.resumable


def send_round(m, snap):
    """Send every dataset's snapshot to the destination, CN to CN."""
    r, first = m.r, m.sent is None
    if first and m.on_dest and resumable(m):
        resume_cut_receives(m)
    common = common_snapshots(m) if first and m.on_dest else {}
    if first:
        # journaled before the stream starts: a receive cut or killed half
        # way leaves datasets there too (destroying absent ones is harmless)
        m.proc.changed("received", "received datasets on %s" % m.dst.hostname,
                       datasets=[d.name for d in m.datasets])
    # On a terminal, zfs send -vP's lines drive one progress line (never logged).
    meter = progress.Meter(show=r.meter) if r.wants_progress() else None
    t0 = time.monotonic()
    for ds in m.datasets:
        r.step("    + Tranferring %s@%s ..." % (ds.name, snap))
        if first:
            base = common.get(ds.name) or m.incremental_from.get(ds.name)
        else:
            base = "%s@%s" % (ds.name, m.sent)
        for from_snap, to in zfs.legs(ds.name, m.chains.get(ds.name, ()), base, snap):
            send(m, ds, to, from_snap, first, meter)
        r.done("done")
    # what the streams sent and how long they took: `estimate` and the
    # evacuation's plan learn the pair's rate from it
    m.journal.write({"t": "sent", "snapshot": snap, "bytes": m.delta,
                     "seconds": round(time.monotonic() - t0, 3)})
    verify_received(m, snap)
    m.sent = snap
    m.increments += 1


def send(m, ds, snap, from_snap, props, meter):
    """One stream; a cut one goes on from where it was cut (zfs recv -s kept
    it: send -t its token), up to RESUMES times. Where a platform's zfs has no
    resumable receive, a cut receive kept nothing of the stream: it is sent
    again from the snapshot both CNs still have (from_snap), unless it was
    all there when the cut came."""
    token = None
    for attempt in range(RESUMES + 1):
        try:
            return stream(m, ds, snap, from_snap, props, meter, token)
        except RemoteError as e:
            cut = e
        if attempt == RESUMES:
            raise cut
        said = [l for l in cut.stderr.splitlines() if l.strip()]
        if not resumable(m):
            if received(m, ds, snap):
                return None
            m.r.line("    + The stream of %s@%s was cut (exit status %s%s)"
                     % (ds.name, snap, cut.status, ": " + said[-1] if said else ""))
            m.r.step("    + Sending it again from %s (no resumable receive on %s) ..."
                     % (from_snap or "the start", ", ".join(
                         f.hostname for f in (m.link.src, m.link.dst) if not f.resumable)))
            meter = None
            continue
        status, out, _ = m.dst.call(zfs.resume_tokens_command([ds.name]), readonly=True)
        token = zfs.resume_tokens(out).get(ds.name) if status == 0 else None
        if token is None:
            raise cut
        m.r.line("    + The stream of %s@%s was cut (exit status %s%s)"
                 % (ds.name, snap, cut.status, ": " + said[-1] if said else ""))
        m.r.step("    + Resuming it where it was cut (zfs send -t) ...")
        meter = None


def received(m, ds, snap):
    """Whether the destination has DS@SNAP, the source's very snapshot (GUID):
    a stream can end on the destination and still fail on its way back."""
    name = "%s@%s" % (ds.name, snap)
    cmd = ["zfs", "get", "-Hp", "-o", "value", "guid", name]
    (s1, g1, _), (s2, g2, _) = m.both(lambda n: n.call(cmd, readonly=True))
    return s1 == 0 and s2 == 0 and g1.strip() == g2.strip()


def stream(m, ds, snap, from_snap, props, meter, token=None):
    """One zfs send | ssh | zfs recv; props: the dataset's properties go with it
    (-p), or, from an encrypted pool, are set by the receive (-o)."""
    set_props = None
    if props and m.src_encrypted:
        set_props = received_properties(m, ds.name)
    argv = zfs.send_pipeline(ds.name, snap, from_snap, m.src.ip, m.dst.ip,
                             m.key, m.known_hosts, props=props and not m.src_encrypted,
                             progress=meter is not None,
                             pidfile=paths.recv_pidfile(m.opts.uuid),    # a pulled one's
                             exclude=m.recv_exclude, bwlimit=m.opts.bwlimit, token=token,
                             set_props=set_props, link=m.link)
    runner = m.node(m.runs_on())        # the source, or a destination that pulls
    m.sending = True
    if meter is None:
        runner.run(argv)
    else:
        status, _, err = runner.stream(argv, meter.feed)
        if status != 0:
            raise RemoteError(runner.name, argv, status, err)
        meter.complete()
    m.sending = False


def received_properties(m, name):
    """What the receive sets on a dataset from an encrypted pool: its properties
    as the gather read them, but a bhyve quota the quota step lifted for the
    snapshots, which a -p stream would carry lifted (restore-quota sets it on
    both CNs after the switch)."""
    props = dict(m.src_props.get(name, {}))
    if any(rec["args"]["dataset"] == name for _, rec in m.proc.pending("quota")):
        props["quota"] = "none"
    return props


def resume_cut_receives(m):
    """An interrupted run's receive that was cut kept its state (zfs recv -s):
    finish each such stream from its token, not from the start."""
    names = [d.name for d in m.datasets if d.name in m.on_dest]
    tokens = zfs.resume_tokens(m.dst.run(zfs.resume_tokens_command(names), readonly=True))
    for ds in m.datasets:
        if ds.name not in tokens:
            continue
        # its snapshot may be gone (the interrupted run's undo destroyed
        # it): then zfs send -t cannot resume, and the partial state is
        # thrown away (zfs recv -A) for a send from the last common one
        status, _, err = m.src.call(["zfs", "send", "-nP", "-t", tokens[ds.name]], readonly=True)
        if status != 0:
            said = [l for l in err.splitlines() if l.strip()]
            m.r.line("    + The cut transfer of %s cannot be resumed (%s); discarding it"
                     " (zfs recv -A)" % (ds.name, said[-1] if said else status))
            m.dst.run(["zfs", "recv", "-A", ds.name])
            st, _, _ = m.dst.call(["zfs", "list", "-H", "-o", "name", ds.name], readonly=True)
            if st != 0:
                m.on_dest.discard(ds.name)
            continue
        m.r.step("    + Resuming the cut transfer of %s (zfs send -t) ..." % ds.name)
        # (from an encrypted pool its properties are set when it ends, -o)
        stream(m, ds, None, None, m.src_encrypted, None, tokens[ds.name])
        m.r.done("done")


def wait_for_receive(m):
    """A receive whose client died (a dropped connection, a killed or
    interrupted run) runs on: wait for it to end before undoing or
    resending, or it lands after and behind our back."""
    m.r.line("* Making sure no transfer to %s is still running..." % m.dst.hostname)
    m.dst.call(zfs.receive_waiter(paths.recv_pidfile(m.opts.uuid), RECV_WAIT))


def common_snapshots(m):
    """For each dataset already on the destination (an interrupted run sent it),
    the newest snapshot both sides have, matched by GUID: only what is newer
    is sent again."""
    names = [d.name for d in m.datasets if d.name in m.on_dest]
    cmd = ["zfs", "list", "-H", "-p", "-o", "name,guid", "-t", "snapshot", "-d", "1"] + names
    have = {}
    for node in (m.src, m.dst):
        _, out, _ = node.call(cmd, readonly=True)
        have[node] = [tuple(l.split("\t")) for l in out.splitlines() if "\t" in l]
    dst_guids = {guid for _, guid in have[m.dst]}
    common = {}
    for name, guid in have[m.src]:       # oldest first: the last match wins
        if guid in dst_guids:
            common[name.split("@")[0]] = name
    for name in names:
        if name not in common:
            raise MigrateError("%s on %s shares no snapshot with %s: remove it there to"
                               " send it whole" % (name, m.dst.hostname, m.src.hostname))
    return common


def verify_received(m, snap):
    """zfs exit codes have lied before: compare the snapshots' GUIDs."""
    names = ["%s@%s" % (d.name, snap) for d in m.datasets]
    cmd = ["zfs", "get", "-Hp", "-o", "name,value", "guid"] + names
    # --dry-run: the snapshots do not exist; list the check, do not run it
    ro = not m.opts.dry_run
    a, b = m.both(lambda n: n.run(cmd, readonly=ro))
    if sorted(a.split("\n")) != sorted(b.split("\n")):
        raise MigrateError("snapshot %s on %s differs from the source's" % (snap, m.dst.hostname))


def destroy_received(m, datasets):
    """The undo of the receive: destroyed, or it raises saying what is left
    (a hold or a clone someone made there keeps it): never reported undone
    while it is there, or the rerun finds "destination already has ..."."""
    zfs.destroy_trees(m.dst, reversed(datasets))


def mount(m):
    """zfs recv -u mounts no new filesystem: mount them, parents first,
    before the cores dataset mounts below zones/UUID and the zone uses them;
    but not a delegated dataset (zoned=on): the zone's boot mounts it inside,
    and the global zone cannot (zfs.MOUNT_DATASETS)."""
    names = [d.name for d in m.datasets if d.type == "filesystem"]
    m.dst.run(["sh", "-c", zfs.MOUNT_DATASETS, "sh"] + names)


def live_rounds(m):
    """-i: snapshot and send while the instance runs, until the state file is
    removed (or, with -a, until the rounds converge)."""
    o, r = m.opts, m.r
    st = m.paths()[1]
    n = 0
    deltas = []
    while True:
        r.line("* Creating dataset snapshots on %s" % m.src.hostname)
        snap = snapshot_round(m, n)
        r.line("* Transferring incremental dataset snapshot %d to %s" % (n, m.dst.hostname))
        send_round(m, snap)
        deltas.append(m.delta)
        m.checkpoint()      # an interrupt during the round: before the stop, not after it
        if o.auto and os.path.exists(st):
            if o.max_delta is not None:
                done = converged(deltas, o.max_delta)
                if done:
                    r.line("    + Round %d sent %s, %s: stopping the instance now."
                           % (n, human_size(m.delta), done))
            else:
                done = n >= 1
            if done:
                os.unlink(st)
        if not os.path.exists(st):
            break
        r.line("    + Sleeping for %d seconds before next snapshot." % o.interval)
        deadline = time.time() + o.interval
        while time.time() < deadline and os.path.exists(st):
            m.checkpoint()
            time.sleep(min(1.0, max(0.0, deadline - time.time())))
        n += 1
        if not os.path.exists(st):
            # the operator removed it while we slept: one last live round
            # is not needed, the final increment follows the stop.
            break
    m.round = n + 1
