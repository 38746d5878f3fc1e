"""A remote fault, for tools/sim/sshd-command: the command line sshd is about
to run ($SSH_ORIGINAL_COMMAND) may be failed or delayed by `simdc fault add
HOST --remote -- WORDS`, which matches WORDS anywhere in the line's words (a
step of a `sh -c` script too, which no emulated command sees). Exits 0 to let
the command run, else with the fault's exit status; logs only a faulted line.
"""
import os
import shlex
import sys
import time

from . import common


def main():
    line = os.environ.get("SSH_ORIGINAL_COMMAND", "")
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    host = common.this_host()
    start = time.time()
    fault = common.take_fault(host, words, remote=True)
    if fault is None:
        return 0
    rc = 0
    if fault.get("delay"):
        time.sleep(fault["delay"])
    if not (fault.get("delay") and fault.get("exit") == 0):
        sys.stderr.write("%s: simulated failure (simdc fault)\n" % (words[:1] or ["sh"])[0])
        rc = fault.get("exit", 1)
    session = common.ssh_session(host)
    common.log_call(host, ["ssh:"] + words, rc, start, time.time(),
                    **({"ssh_session": session} if session else {}))
    return rc


if __name__ == "__main__":
    sys.exit(main())
