"""simdc-datadir [--all] UUID: where a simulated instance keeps its data (sim-only).

Prints /zones/UUID/root for joyent, joyent-minimal and lx zones, and the
mountpoint of disk0 (zones/UUID-disk0 for kvm, zones/UUID/disk0 for bhyve)
for hardware VMs; the brand comes from /etc/zones/UUID.xml. The workload
writes its simdc-seq file there. With --all, that first, then a line for
each other disk's mountpoint and the delegated dataset's (zfslib.data_dirs).
"""
import sys

from .. import zfslib


def main(argv):
    every = argv[:1] == ["--all"]
    argv = argv[1:] if every else argv
    if len(argv) != 1:
        sys.stderr.write("usage: simdc-datadir [--all] UUID\n")
        return 2
    uuid = argv[0]
    if zfslib.brand_of(uuid) is None:
        sys.stderr.write("simdc-datadir: no zone %s (/etc/zones/%s.xml)\n" % (uuid, uuid))
        return 1
    zfslib.mount_volumes(uuid)
    print("\n".join(zfslib.data_dirs(uuid)) if every else zfslib.data_dir(uuid))
    return 0

