"""What an instance's datasets take of a zones pool, as ZFS counts it: the one
place that the migration's space check, evacuate's plan and `sdc-migrate
list` count it.

Three facts of ZFS decide it (illumos dsl_dataset.c, dsl_dir.c):
- `used` of a dataset holds its children's: zones/UUID's counts a bhyve
  instance's disks and the delegated dataset below it, so a sum of every
  dataset's `used` counts them twice.
- a dataset with a refreservation (a kvm or bhyve disk: refreservation=auto,
  VM.js createVolume; a bhyve root: VM.js setQuotaBhyve) is charged the
  part of it that its own new blocks do not fill (usedbyrefreservation). A
  snapshot makes every block old (dsl_dataset_snapshot_sync_impl), so the
  whole refreservation is charged again on top of the data the snapshot
  holds: a received volume, whose head is its last snapshot, takes its data
  plus its refreservation, and a snapshot on the source costs the volume's
  data again there.
- a reservation charges the parent at least its size, whatever is used
  below it (a bhyve root: its quota).
Pure functions of `zfs list` figures (zfs.Dataset): no datacenter here.
"""


def _children(datasets):
    """({name: [its nearest datasets below, among these]}, [the topmost ones])."""
    names = {d.name for d in datasets}
    below = {d.name: [] for d in datasets}
    tops = []
    for d in datasets:
        parent = d.name
        while "/" in parent:
            parent = parent.rsplit("/", 1)[0]
            if parent in names:
                below[parent].append(d)
                break
        else:
            tops.append(d)
    return below, tops


def needed_on_destination(datasets):
    """Bytes a destination's pool gives up to receive these datasets and keep
    the last snapshot sent: each dataset's own blocks and its snapshots'
    (what is sent), its whole refreservation (its head is that snapshot),
    its children's, and at least its reservation; each dataset once."""
    below, tops = _children(datasets)

    def charge(d):
        own = d.sent + d.refreservation
        return max(d.reservation, own + sum(charge(c) for c in below[d.name]))
    return sum(charge(d) for d in tops)


def snapshot_charge(datasets):
    """Bytes a snapshot of every one of these datasets takes of the pool they
    are on, now: of each dataset with a refreservation, what its new blocks
    fill of it (the refreservation less usedbyrefreservation, charged again),
    up through its parents, less what their reservations held already."""
    below, tops = _children(datasets)

    def grown(d):
        """(d's charge to its parent now, after the snapshot)."""
        after = d.used + (d.refreservation - d.usedbyrefreservation if d.refreservation else 0)
        for c in below[d.name]:
            now, then = grown(c)
            after += then - now
        return max(d.reservation, d.used), max(d.reservation, after)
    return sum(then - now for now, then in map(grown, tops))


def switch_snapshot_cost(datasets):
    """What keeping the last snapshot costs each pool right after the switch,
    before the instance writes anything: the data of every dataset with a
    refreservation (its own blocks; a disk's image blocks are its origin's),
    charged again. A zone's costs nothing until it rewrites or deletes."""
    return sum(min(d.sent, d.refreservation) for d in datasets if d.refreservation)


def kept_snapshot_cost(snap_used, refer, refreservation, usedbyrefreservation):
    """What one dataset's snapshot costs its pool now (all in bytes, of the
    snapshot and of the dataset's head): the blocks only it holds (what was
    rewritten or deleted since), and the part of the dataset's
    refreservation charged again because of it (its head's blocks that the
    snapshot shares: charged as new if it went)."""
    without = max(0, refreservation - refer)
    return snap_used + max(0, usedbyrefreservation - without)
