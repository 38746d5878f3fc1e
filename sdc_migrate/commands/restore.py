"""sdc-migrate restore: lift the drain an evacuation left on a compute node.

Usage:
  sdc-migrate restore [-j] CN_NAME
  sdc-migrate restore -h | --help

Puts CN_NAME's reserved flag in CNAPI back as it was before the evacuation
that set it (`sdc-migrate evacuate --keep-reserved`, or one that was
interrupted and not run again), as that evacuation journaled it in
/var/tmp/sdc-migrate-evacuate-CN_NAME.journal: DAPI places new instances
there again. It does not move the evacuated instances back.

Options:
  -j          One JSON object (restored) instead of the line.
  -h --help   Show this help.

Exit status: 0 the flag is as it was (or no evacuation left it drained);
2 bad usage, or an evacuation of CN_NAME is running; 3 compute node not found.
"""
from .. import drain
from ..node import Runner
from ..procedure import STATE_DIR, InstanceLock
from ..report import Report
from ..triton import Triton

USAGE = __doc__


def main(args, report=None, state_dir=STATE_DIR, runner=None):
    r = report or Report()
    name = args["CN_NAME"]
    api = Triton(runner or Runner())
    api.server_by_hostname(name)        # NotFound: exit 3
    lock = InstanceLock("evacuate-" + name, state_dir,
                        busy="compute node %s is being evacuated: restore it after" % name)
    try:
        rec = drain.lift(api, name, "restore", state_dir)
    finally:
        lock.release()
    if rec is None:
        text = "%s is not drained by an evacuation: nothing to restore" % name
    else:
        text = "%s is %s in CNAPI, as it was before its evacuation" % (
            name, "reserved" if rec["was"] else "no longer reserved")
    if args["-j"]:
        r.json_event("restored", cn=name, lifted=rec is not None,
                     reserved=None if rec is None else rec["was"])
    else:
        r.line(text)
    return 0
