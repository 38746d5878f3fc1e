"""The CN scripts that destroy and mount (sdc_migrate/zfs.py), run by sh
against a fake zfs that answers as illumos' does: only "dataset does not
exist" is success for a destroy (libzfs zfs_open: "cannot open 'NAME':
dataset does not exist"); any other failure fails the script and says what
is left; a zoned dataset is never mounted from the global zone
(usr/src/cmd/zfs/zfs_main.c share_mount_one)."""
import os
import subprocess

import pytest

from sdc_migrate import zfs

# A zfs that keeps datasets as files in $ZFSDIR: NAME holds "zoned mounted",
# NAME.held makes its destroy fail as a held snapshot does, $ZFSDIR/broken
# makes every command fail as an unanswering zfs does. It logs its argv.
FAKE_ZFS = r'''#!/bin/sh
echo "$*" >> "$ZFSDIR/log"
[ -e "$ZFSDIR/broken" ] && { echo "internal error: Bad file number" >&2; exit 1; }
f() { printf '%s' "$1" | tr / %; }
case "$1" in
destroy)
    d=$3; [ -e "$ZFSDIR/$(f "$d")" ] || { echo "cannot open '$d': dataset does not exist" >&2; exit 1; }
    [ -e "$ZFSDIR/$(f "$d").held" ] && { echo "cannot destroy snapshot $d@s: dataset is busy" >&2; exit 1; }
    rm "$ZFSDIR/$(f "$d")";;
list)
    shift $(($# - 1))
    for d in "$ZFSDIR"/*; do n=$(basename "$d" | tr % /)
        case $n in "$1"|"$1"/*) case $n in *.held|log|broken) ;; *) echo "$n";; esac;; esac; done
    [ -e "$ZFSDIR/$(f "$1")" ] || { echo "cannot open '$1': dataset does not exist" >&2; exit 1; };;
get)
    d=$6; [ -e "$ZFSDIR/$(f "$d")" ] || { echo "cannot open '$d': dataset does not exist" >&2; exit 1; }
    tr ' ' '\n' < "$ZFSDIR/$(f "$d")";;
mount)
    set -- $(cat "$ZFSDIR/$(f "$2")")
    [ "$1" = on ] && { echo "cannot mount: dataset is exported to a local zone" >&2; exit 1; }
    exit 0;;
esac
'''


@pytest.fixture
def cn(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "zfs").write_text(FAKE_ZFS)
    (bin_dir / "zfs").chmod(0o755)
    state = tmp_path / "zfs"
    state.mkdir()
    env = dict(os.environ, ZFSDIR=str(state), PATH="%s:%s" % (bin_dir, os.environ["PATH"]))

    def has(name, props="off no", held=False):
        (state / name.replace("/", "%")).write_text(props)
        if held:
            (state / (name.replace("/", "%") + ".held")).write_text("")

    def run(script, *args):
        return subprocess.run(["sh", "-c", script, "sh", *args], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def log():
        p = state / "log"
        return p.read_text().splitlines() if p.exists() else []
    cn = type("CN", (), {})()
    cn.has, cn.run, cn.log, cn.state = has, run, log, state
    return cn


def test_destroy_trees_is_done_when_the_datasets_are_gone_or_never_were(cn):
    cn.has("zones/u")
    p = cn.run(zfs.DESTROY_TREES, "zones/u-disk0", "zones/u")
    assert (p.returncode, p.stderr) == (0, "")
    assert not (cn.state / "zones%u").exists()


def test_destroy_trees_fails_saying_what_zfs_said_and_what_is_left(cn):
    cn.has("zones/u/data", held=True)
    cn.has("zones/u", held=True)
    cn.has("zones/u-disk1")
    p = cn.run(zfs.DESTROY_TREES, "zones/u-disk1", "zones/u/data", "zones/u")
    assert p.returncode == 1
    # it went on past the failure: the independent one is gone
    assert not (cn.state / "zones%u-disk1").exists()
    lines = p.stderr.splitlines()
    assert lines[:2] == ["cannot destroy snapshot zones/u/data@s: dataset is busy",
                         "cannot destroy snapshot zones/u@s: dataset is busy"]
    assert lines[-1].split()[0] == "left:"
    assert sorted(lines[-1].split()[1:]) == ["zones/u", "zones/u/data"]


def test_destroy_trees_fails_when_zfs_itself_fails(cn):
    cn.has("zones/u")
    (cn.state / "broken").write_text("")
    p = cn.run(zfs.DESTROY_TREES, "zones/u")
    assert p.returncode == 1 and "internal error" in p.stderr


def test_migration_snapshots_of_a_missing_dataset_are_none_but_a_failing_zfs_fails(cn):
    p = cn.run(zfs.DESTROY_MIGRATION_SNAPSHOTS, "", "zones/gone")
    assert (p.returncode, p.stderr) == (0, "")
    cn.has("zones/u")
    (cn.state / "broken").write_text("")
    p = cn.run(zfs.DESTROY_MIGRATION_SNAPSHOTS, "", "zones/u")
    assert p.returncode == 1 and "internal error" in p.stderr


def test_mount_leaves_a_zoned_dataset_to_its_zone(cn):
    cn.has("zones/u", "off no")
    cn.has("zones/u/data", "on no")
    cn.has("zones/v", "off yes")
    p = cn.run(zfs.MOUNT_DATASETS, "zones/u", "zones/u/data", "zones/v")
    assert (p.returncode, p.stderr) == (0, "")
    assert [l for l in cn.log() if l.startswith("mount")] == ["mount zones/u"]
    p = cn.run(zfs.MOUNT_DATASETS, "zones/nothere")
    assert p.returncode == 1
