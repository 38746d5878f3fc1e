"""Errors, each with the exit status a script can act on.

0 done; 1 failed; 2 usage or refused input (nothing changed); 3 not found;
4 failed and rolled back cleanly (instance where and as it was);
5 failed and needs an operator (the message says what to do).
"""


class MigrateError(Exception):
    """Something failed."""
    exit_status = 1

    def __init__(self, message=None):
        super().__init__(message or self.__doc__)


class Usage(MigrateError):
    """Bad usage."""
    exit_status = 2


class Refused(MigrateError):
    """Refused before changing anything."""
    exit_status = 2


class NotFound(MigrateError):
    """Not found."""
    exit_status = 3


class RemoteError(MigrateError):
    """A command failed on a host."""

    def __init__(self, host, argv, status, stderr):
        self.host, self.argv, self.status, self.stderr = host, argv, status, stderr
        lines = [l.strip() for l in stderr.strip().splitlines() if l.strip()]
        said = " / ".join(lines[-3:]) if lines else "no message"
        super().__init__("%s: `%s` exited %s: %s" % (host, " ".join(argv)[:120], status, said))


class RolledBack(MigrateError):
    """Migration failed; everything it changed was undone."""
    exit_status = 4


class NeedsOperator(MigrateError):
    """Migration failed and could not be undone or finished alone."""
    exit_status = 5
