"""Where this sdc-migrate is installed, and Triton's own beside it.

Every Triton head node has Triton's `sdc-migrate` (the RFD 34 client of
VMAPI's migrations, sdc-sdc bin/sdc-migrate) at /opt/smartdc/bin, which
root's PATH holds (smartos-live overlay/generic/root/.profile:
/usr/bin:/usr/sbin:/smartdc/bin:/opt/smartdc/bin:...). This one installs in
/opt/custom/bin (the ramdisk root does not survive a reboot; /opt does) and
is called by that path; when the name resolves to the other one, the operator
hears it once a run, on stderr.
"""
import os
import shutil

OURS = "/opt/custom/bin/sdc-migrate"
TRITONS = "/opt/smartdc/bin/sdc-migrate"


def _same(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def path_note(argv0, path=None):
    """One line for the operator when `sdc-migrate` on PATH is not this one
    (shadowed) or when this one hides Triton's (shadowing); else None.

    argv0 is how this one was called (a path, or the bare name found on PATH).
    """
    path = os.environ.get("PATH", "") if path is None else path
    me = argv0 if os.sep in argv0 else shutil.which(argv0, path=path)
    if not me:
        return None
    first = shutil.which("sdc-migrate", path=path)
    if first and not _same(first, me):
        return ("sdc-migrate: note: `sdc-migrate` on PATH is %s (%s), not this one;"
                " call this one as %s" % (first, "Triton's RFD 34 migrations client"
                                          if _same(first, TRITONS) or first == TRITONS
                                          else "another sdc-migrate", me))
    if first and os.path.exists(TRITONS) and not _same(TRITONS, me):
        return ("sdc-migrate: note: this sdc-migrate (%s) comes before Triton's %s (the"
                " RFD 34 migrations client) on PATH; call that one by its full path"
                % (me, TRITONS))
    return None
