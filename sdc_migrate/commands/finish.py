"""sdc-migrate finish: end the live rounds of an incremental migration.

Usage:
  sdc-migrate finish INST_UUID
  sdc-migrate finish -h | --help

An incremental migration (`sdc-migrate -i`) sends a round of changes every
--interval seconds while the instance runs, for as long as its state file
/var/tmp/migrator-INST_UUID-DEST_CN_NAME-EPOCH.st exists. This removes the
state file for you: the migration ends the round in progress, stops the
instance, sends the last increment and switches it to the destination.

Options:
  -h --help   Show this help.

Exit status: 0 done; 2 bad usage; 3 no migration of INST_UUID is doing rounds.
"""
import os

from .. import paths
from ..errors import NotFound, Refused
from ..procedure import STATE_DIR
from ..report import Report
from ..triton import UUID_RE

USAGE = __doc__


def state_files(uuid, state_dir=STATE_DIR):
    return paths.runs(uuid, "*", ".st", state_dir)


def main(args, report=None, state_dir=STATE_DIR):
    r = report or Report()
    uuid = args["INST_UUID"]
    if not UUID_RE.match(uuid or ""):
        raise Refused("'%s' is not an instance UUID" % uuid)
    files = state_files(uuid, state_dir)
    if not files:
        raise NotFound("no incremental migration of %s is doing rounds (no state file %s)"
                       % (uuid, os.path.join(state_dir, "migrator-%s-*.st" % uuid)))
    for f in files:
        try:
            os.unlink(f)
        except FileNotFoundError:
            continue        # the migration ended its rounds meanwhile
        r.line("Removed %s: the migration of %s stops the instance after this round and"
               " finishes." % (f, uuid))
    return 0
