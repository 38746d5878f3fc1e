"""What an instance takes of a pool (sdc_migrate/space.py), from `zfs list`
figures read in the simulated datacenter (2026-12, after `simdc provision`),
each checked there against what the destination's pool gave up."""
from sdc_migrate import space, zfs

B, Z, K = "995bfb43", "673db77e", "159d07ea"
IMG = "zones/7c3e9f4a@final"
COLS = zfs.LIST_COLUMNS


def listing(*rows):
    return "\n".join("\t".join(r) for r in rows)


def row(name, type, origin, used, refer, quota, usedds, resv, refresv, usedrefresv):
    """A `zfs list -Hp -o COLS` line (no snapshots: usedbysnapshots 0)."""
    fields = dict(name=name, type=type, origin=origin, used=used, refer=refer, quota=quota,
                  usedbydataset=usedds, usedbysnapshots=0, userrefs="-", reservation=resv,
                  refreservation=refresv, usedbyrefreservation=usedrefresv)
    return tuple(str(fields[c]) for c in COLS)


# A running bhyve instance, two disks (10 GiB from its image, 1 GiB), 4 MB of
# data: VM.js setQuotaBhyve's root (quota = reservation = 10 GiB + the disks'
# refreservation=auto, refreservation = 10 GiB - 1 MiB). zones/B's used holds
# its disks' (22.9 GB), so summing every used counted 35.1 GB.
BHYVE = listing(
    row("zones/" + B, "filesystem", "-", 22921347072, 163840, 22922395648, 163840,
        22922395648, 10736369664, 10736205824),
    row("zones/%s/disk0" % B, "volume", IMG, 11075584000, 4612096, "-", 4296704,
        0, 11075584000, 11071287296),
    row("zones/%s/disk1" % B, "volume", "-", 1109393408, 1171456, "-", 1171456,
        0, 1109393408, 1108221952))
# A joyent zone with a delegated dataset (8 MB and 2 MB of data).
ZONE = listing(
    row("zones/" + Z, "filesystem", "zones/4e3b8c1a@final", 10752000, 8839168, 10737418240,
        8531968, 0, 0, 0),
    row("zones/%s/data" % Z, "filesystem", "-", 2220032, 2220032, 0, 2220032, 0, 0, 0))
# A kvm instance: its disks are zones/K-diskN, beside zones/K, each with its
# refreservation=auto.
KVM = listing(
    row("zones/" + K, "filesystem", "-", 147456, 147456, 10737418240, 147456, 0, 0, 0),
    row("zones/%s-disk0" % K, "volume", IMG, 11075584000, 4612096, "-", 4296704,
        0, 11075584000, 11071287296),
    row("zones/%s-disk1" % K, "volume", "-", 1109393408, 1171456, "-", 1171456,
        0, 1109393408, 1108221952))


def datasets(text, uuid):
    return zfs.instance_datasets(text, uuid)


def test_each_dataset_is_counted_once():
    zone = datasets(ZONE, Z)
    assert sum(d.used for d in zone) == 12972032           # the data dataset twice
    # its own blocks and the delegated dataset's, once: the destination's pool
    # gave up 11661312 bytes (and the cores dataset, 114688, the writes since)
    assert space.needed_on_destination(zone) == 8531968 + 2220032


def test_a_bhyve_root_needs_its_reservation_or_more_not_its_disks_twice():
    bhyve = datasets(BHYVE, B)
    assert sum(d.used for d in bhyve) == 35106324480
    need = space.needed_on_destination(bhyve)
    # received, each disk holds its data under its whole refreservation (its
    # head is the last snapshot), above the root's reservation of 22922395648
    assert need == (10736369664 + 163840) + (11075584000 + 4296704) + (1109393408 + 1171456)
    assert 22922395648 < need < 22922395648 + (8 << 20)


def test_a_received_volume_needs_its_data_on_top_of_its_refreservation():
    kvm = datasets(KVM, K)
    # summing used counted each disk's refreservation, not the data on top
    # of it: 12185124864, 5.5 MB short of the 12191088640 the pool gave up
    assert sum(d.used for d in kvm) == 12185124864
    assert space.needed_on_destination(kvm) == 147456 + (11075584000 + 4296704) + \
        (1109393408 + 1171456)


def test_a_snapshot_on_the_source_costs_a_reserved_disks_data_again():
    # the kvm's disks: their new blocks (refreservation - usedbyrefreservation)
    assert space.snapshot_charge(datasets(KVM, K)) == 4296704 + 1171456
    # the bhyve's too, its root's blocks as well, less the 1 MiB its
    # reservation held above what it used
    assert space.snapshot_charge(datasets(BHYVE, B)) == \
        (163840 + 4296704 + 1171456) - (22922395648 - 22921347072)
    # a zone without refreservation: nothing until it writes
    assert space.snapshot_charge(datasets(ZONE, Z)) == 0


def test_what_keeping_the_last_snapshot_costs():
    # right after the switch: a reserved disk's own data (not its image's)
    assert space.switch_snapshot_cost(datasets(KVM, K)) == 4296704 + 1171456
    assert space.switch_snapshot_cost(datasets(ZONE, Z)) == 0
    # later, per dataset (zfs-fuse, a 50 MB refreservation holding 20201472
    # bytes, snapshotted: its used grew by exactly that)
    assert space.kept_snapshot_cost(0, 20201472, 52428800, 52428800) == 20201472
    # a zone that rewrote 16 MB: the snapshot's own blocks, nothing more
    assert space.kept_snapshot_cost(16887808, 67108864, 0, 0) == 16887808
    # a disk that rewrote 1 MB since: the old MB, and the rest of its data
    # charged again (what destroying the snapshot frees: all it refers to)
    assert space.kept_snapshot_cost(1 << 20, 20201472, 52428800, 52428800 - (1 << 20)) == \
        20201472
