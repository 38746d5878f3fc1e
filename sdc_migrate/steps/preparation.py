"""Steps that ready both CNs before anything of the instance moves: TCP
buffers, the image the instance is a clone of, a bhyve instance's quota."""
from .. import zfs

TCP_TUNABLES = (("tcp_max_buf", 2097152), ("tcp_xmit_hiwat", 1048576),
                ("tcp_recv_hiwat", 1048576))
NDD_GET = 'for n in "$@"; do ndd -get /dev/tcp "$n" || exit; done'     # NAME...
NDD_SET = ('while [ $# -gt 1 ]; do ndd -set /dev/tcp "$1" "$2" || exit; shift 2; '
           'done')                                                   # NAME VALUE...


def ndd_set(pairs):
    return ["sh", "-c", NDD_SET, "sh"] + [str(w) for pair in pairs for w in pair]


def tune_tcp(m):
    r, src, dst = m.r, m.src, m.dst
    r.line("* Checking if tcp_max_buf, tcp_xmit_hiwat, and tcp_recv_hiwat have")
    r.line("  been tuned on both %s and %s ..." % (src.hostname, dst.hostname))
    get = ["sh", "-c", NDD_GET, "sh"] + [name for name, _ in TCP_TUNABLES]
    for node, out in zip((src, dst), m.both(lambda n: n.run(get, readonly=True))):
        values = [int(v) for v in out.split()]
        # tcp_max_buf first: the hiwat values may not exceed it.
        low = [(name, want, have) for (name, want), have in zip(TCP_TUNABLES, values)
               if have < want]
        if not low:
            r.line("  - nothing to do for %s" % node.hostname)
            continue
        # journaled first: one ndd -set may succeed and the next fail (or
        # the run die), and setting the old values back is harmless
        m.proc.changed("tunables", "TCP tunables on %s" % node.hostname,
                       node="src" if node is src else "dst",
                       values=[(n, have) for n, _, have in reversed(low)])
        node.run(ndd_set((name, want) for name, want, _ in low))
        r.line("  - tuned %s on %s" % (", ".join(n for n, _, _ in low), node.hostname))


def restore_tcp(m, node, values):
    m.node(node).run(ndd_set(values))


def check_origin(m):
    """Keep the instance a clone of its image on the destination when possible
    (an image import there is not undone: it is the image's, not the instance's)."""
    r, dst = m.r, m.dst
    r.line("* Checking for origin dataset for the instance...")
    m.incremental_from = {}
    for ds in m.datasets:
        image = zfs.image_origin(ds)
        if not image:
            if ds is m.datasets[0] or ds.origin:
                r.line("    + origin dataset null or non-standard (%s)" % (ds.origin or "-"))
                r.line("      > instance DS origin does not reference IMG_UUID@final,"
                       " relation to")
                r.line("        origin DS will be lost in the course of migrating the"
                       " instance.")
            continue
        r.line("    + origin dataset is %s" % ds.origin)
        guid = ["zfs", "get", "-Hp", "-o", "value", "guid", ds.origin]
        (_, guid_src, _), (st, out, _) = m.both(lambda n: n.call(guid, readonly=True))
        guid_src = guid_src.strip()
        if st != 0:
            r.line("      > origin DS doesn't exist on %s, will need to try import"
                   % dst.hostname)
            r.line("        of origin DS (%s)" % ds.origin[len("zones/"):])
            r.line("* Attempting import of image (%s) to %s" % (image, dst.hostname))
            st, out, err = dst.call(["imgadm", "import", "-q", image])
            if st != 0:
                r.line("  - Image import failed: %s" % (err.strip().splitlines() or ["?"])[-1])
                r.line("      > relation to origin DS will be lost in the course of"
                       " migrating the instance.")
                continue
            r.line("  - Image imported successfully!")
            st, out, _ = dst.call(guid, readonly=True)
        if st == 0 and out.strip() == guid_src:
            m.incremental_from[ds.name] = ds.origin
        else:
            r.line("      > %s on %s is not the same snapshot; relation to origin DS"
                   " will be lost" % (ds.origin, dst.hostname))


def raise_bhyve_quota(m):
    """bhyve's quota is exactly its disks: snapshots need room above it.

    VM.js setQuotaBhyve sets the root's quota to its refquota plus its disks'
    refreservations, 1 MiB to spare; a snapshot of a disk charges its data
    again (dsl_dataset_snapshot_sync_impl), so it fails under that quota, and
    while a migration snapshot is there the quota cannot be set back
    (dsl_dir_set_quota_check: ENOSPC). Hence restore_quota below."""
    if m.vm.get("brand") != "bhyve":
        return
    top = m.datasets[0]
    # a migration that did not come up there left the quota raised for its
    # rollback (restore_bhyve_quota): the rollback takes it over, on both CNs
    owed = m.quota_owed()
    quota = owed[0][2]["quota"] if owed else str(top.quota) if top.quota else "none"
    m.r.step("* Raising the quota of %s for the migration snapshots..." % top.name)
    # journaled first: a run killed while zfs set is in flight must not
    # leave the next run to read quota=none as the instance's own
    m.proc.changed("quota", "quota of %s on %s" % (top.name, m.src.hostname),
                   dataset=top.name, quota=quota, nodes=["src", "dst"] if owed else ["src"])
    for journal, i, _ in owed:
        journal.mark_undone(i)
    m.src.run(["zfs", "set", "quota=none", top.name])
    m.r.done()


def restore_commands(m, dataset, quota):
    """The quota back, in one round trip: first the migration's snapshots of
    the instance's datasets there (the quota leaves no room for them, see
    raise_bhyve_quota), as Triton's switch removes its sync snapshots before
    it restores quotas (sdc-vmapi lib/workflows/migrate-switch.js)."""
    return [["sh", "-c", zfs.DESTROY_MIGRATION_SNAPSHOTS, "sh", ""]
            + [d.name for d in m.datasets],
            ["zfs", "set", "quota=" + quota, dataset]]


def restore_quota(m, dataset, quota, nodes=("src",)):
    """Undone: the quota as it was where it was raised. It wins over the
    snapshots: an undo that keeps data keeps none of a bhyve's."""
    for node in nodes:
        m.node(node).script(restore_commands(m, dataset, quota))


def restore_bhyve_quota(m):
    """After the switch: the quota as it was, on both CNs. An instance that
    did not come up and is rolled back keeps it raised (and the last
    snapshot, which the rollback sends from): the rollback restores it."""
    pending = m.proc.pending("quota")
    if pending and m.rolls_back_now():
        m.r.line("* The quota of %s stays raised for the rollback, which restores it."
                 % pending[0][1]["args"]["dataset"])
        return
    for i, rec in pending:
        a = rec["args"]
        m.r.step("* Restoring the quota of %s on both CNs..." % a["dataset"])
        m.both(lambda n: n.script(restore_commands(m, a["dataset"], a["quota"])))
        m.journal.mark_undone(i)
        m.r.done()
