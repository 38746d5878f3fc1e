"""sdc-migrate: move an instance to another compute node of this Triton datacenter.

Usage:
  sdc-migrate [-i | -a] [-D] [-y] [-j] [--dry-run] [--interval=SECS] [--max-delta=SIZE]
              [--bwlimit=RATE] [--health-timeout=SECS] [--no-rollback]
              [--no-rollback-snapshot] [INST_UUID [DEST_CN_NAME]]
  sdc-migrate -h | --help
  sdc-migrate -v | --version

Subcommands, each with its own --help:
  sdc-migrate estimate [--rate=MBPS] [-j] [--measure=DEST_CN_NAME]
                       [-H] [-o COL,...] [-s COL,...] [CN_NAME...]
  sdc-migrate cleanup-source [-y] [--comment-out] INST_UUID
  sdc-migrate nat-recreate [-y] (--list [CN_NAME] | NAT_UUID [DEST_CN_NAME])
  sdc-migrate evacuate [-y] [-D] [-j] [--dry-run] [--to=CN_NAME,...] [--concurrency=N]
                       [--per-cn=N] [--max-delta=SIZE] [--bwlimit=RATE] [--keep-reserved]
                       [--no-rollback-snapshot] [-H] [-o COL,...] [-s COL,...]
                       SOURCE_CN_NAME...
  sdc-migrate list [-j] [-H] [-o COL,...] [-s COL,...] [--instance=INST_UUID]
                   [--cn=CN_NAME] [--outcome=OUTCOME]
  sdc-migrate show [-j] INST_UUID
  sdc-migrate finish INST_UUID
  sdc-migrate rollback [-y] [-j] [--dry-run] [--bwlimit=RATE] INST_UUID
  sdc-migrate restore [-j] CN_NAME
  sdc-migrate completion

Runs on the head node, installed as /opt/custom/bin/sdc-migrate: call it by
that path. Triton's own sdc-migrate (the RFD 34 client of VMAPI migrations)
is /opt/smartdc/bin/sdc-migrate, which root's PATH finds first.
Without INST_UUID or DEST_CN_NAME it asks for them.
A full migration stops the instance, sends its datasets from the source
compute node to DEST_CN_NAME, attaches it there, moves it in VMAPI and boots
it if it was running; from the stop to the boot it holds the instance in
CNAPI's waitlist (a customer's start, stop or reboot waits). The source copy
stays, hidden and detached, until `sdc-migrate cleanup-source INST_UUID`. A failure undoes what was done; if
sdc-migrate is interrupted, run the same command again: it finishes or undoes
the migration from its journal on the head node. A hangup (SIGHUP) or SIGTERM
rolls back as ^C does before the switch, and is ridden out after it.
What each CN has is read first: with SunSSH (platforms before August 2015)
the stream takes aes128-ctr and an rsa key, pulled by an OpenSSH destination;
without resumable receives a cut stream is sent again; a net-agent older
than 2.3.2 (TRITON-1814) is refused: update the CN's agents first.

Options:
  -i                Incremental: send snapshots while the instance runs, one
                    round every --interval seconds, until the state file
                    /var/tmp/migrator-INST_UUID-DEST_CN_NAME-EPOCH.st is
                    removed; then stop, send the last increment and switch.
  -a                Automatic incremental: one full and one incremental round
                    while it runs, then finish (implies -i).
  --max-delta=SIZE  With -a: live rounds go on until one sends less than SIZE
                    (e.g. 10M, 1G), the delta has not shrunk for three rounds,
                    or ten rounds have run; then stop and finish.
  --bwlimit=RATE    Send no more than RATE a second (e.g. 20M, 512K; bytes
                    without a suffix), on the source CN's side of every
                    stream (the destination's, when it pulls from a SunSSH
                    source); shown in the plan and its time estimate.
  --health-timeout=SECS
                    After the boot on the destination, how long the instance
                    has to be up: its zone running and, in a joyent zone, its
                    milestone/multi-user online [default: 120]. If it is not,
                    it is rolled back to the source with what it wrote there
                    (as `sdc-migrate rollback`) and the exit status is 4.
  --no-rollback     Leave an instance that did not come up on the destination
                    there (exit status 5).
  --no-rollback-snapshot
                    Delete the migration's last snapshot on both CNs at the
                    end too. By default it stays until cleanup-source, so that
                    `sdc-migrate rollback` sends back only what changed; it
                    costs what the instance rewrites meanwhile, and at once
                    the data of every disk of a kvm instance, on both CNs
                    (`sdc-migrate list` shows what it costs now). A bhyve
                    instance never keeps it: its quota has no room for it.
                    Without it, `sdc-migrate rollback` refuses.
  -D                Allow a destination whose platform is older than the source's.
  -y                Do not ask "Are you ready to proceed?".
  -j                One JSON event a line on stdout instead (step_start,
                    step_done, step_failed, platforms, transfer_path, progress,
                    info, failure, undone, summary; error on failure); the log
                    stays as it was.
                    Asks nothing: give INST_UUID, DEST_CN_NAME and -y.
  --dry-run         Gather and show for real, then list the migration's steps
                    in order, each with every command it would run, host by
                    host; change nothing (one incremental round is shown).
  --interval=SECS   Pause between incremental rounds [default: 60].
  -h --help         Show this help.
  -v --version      Show the version.

Exit status: 0 done; 1 failed; 2 bad usage or refused (nothing changed);
3 instance or server not found; 4 failed and rolled back (the instance is
where and as it was, or, if it did not come up on the destination, back on
its source copy with what it wrote there); 5 failed and needs an operator
(the message says what to do).
"""
import importlib
import os
import sys

from docopt import DocoptExit, docopt

from . import __version__
from .errors import MigrateError, Usage
from .install import path_note as path_note_for
from .report import event_line

# sdc-migrate SUBCOMMAND ...: each a module in commands/ with its own docopt
# USAGE (`sdc-migrate SUBCOMMAND ...` lines) and main(args) -> exit status.
SUBCOMMANDS = {
    "estimate": "estimate",
    "cleanup-source": "cleanup_source",
    "nat-recreate": "nat_recreate",
    "evacuate": "evacuate",
    "list": "inflight",
    "show": "show",
    "finish": "finish",
    "rollback": "rollback",
    "restore": "restore",
    "completion": "completion",
}
SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text, option="--max-delta"):
    """'10M', '512K', '1G' or bytes, as zfs writes sizes; a Usage error otherwise."""
    t = (text or "").strip().upper()
    if t.endswith("B") and len(t) > 1 and t[-2] in SIZE_UNITS:
        t = t[:-1]
    unit = t[-1:] if t[-1:] in SIZE_UNITS and not t[-1:].isdigit() else ""
    try:
        value = float(t[:len(t) - len(unit)])
    except ValueError:
        value = -1
    if value < 0:
        raise Usage("%s takes a size such as 10M or 1G, not %r" % (option, text))
    return int(value * SIZE_UNITS[unit])


def parse_rate(text, option="--bwlimit"):
    """--bwlimit's bytes a second (a size such as 20M), None when not given."""
    if text is None:
        return None
    rate = parse_size(text, option)
    if rate < 1:
        raise Usage("%s takes a rate above zero such as 20M, not %r" % (option, text))
    return rate


def parse(usage, argv):
    """docopt, with --help printed here and bad usage as a Usage error."""
    try:
        args = docopt(usage, argv=argv, default_help=False)
    except DocoptExit:
        name = usage.strip().split(":", 1)[0]
        raise Usage("bad usage; see `%s --help`" % name) from None
    if args.get("--help"):
        print(usage.strip())
        raise SystemExit(0)
    return args


def json_requested(argv):
    """Whether the migration's argv asks for -j (also when it does not parse)."""
    return any(a == "-j" or a[:1] == "-" and a[1:2] != "-" and "j" in a for a in argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    sub = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    as_json = sub is None and json_requested(argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            module = importlib.import_module(".commands." + SUBCOMMANDS[argv[0]], __package__)
            # the whole argv: a subcommand's usage reads `sdc-migrate NAME ...`
            return module.main(parse(module.USAGE, argv)) or 0
        args = parse(__doc__, argv)
        if args["--version"] or not (args["-y"] or args["-j"]):
            path_note()      # an operator reads this run: tell which sdc-migrate it is
        if args["--version"]:
            print("sdc-migrate %s" % __version__)
            return 0
        if args["--interval"] and not args["--interval"].isdigit():
            raise Usage("--interval takes whole seconds, not %r" % args["--interval"])
        if args["--max-delta"] is not None:
            if not args["-a"]:
                raise Usage("--max-delta goes with -a (automatic incremental)")
            args["--max-delta"] = parse_size(args["--max-delta"])
        args["--bwlimit"] = parse_rate(args["--bwlimit"])
        if not (args["--health-timeout"] or "").isdigit():
            raise Usage("--health-timeout takes whole seconds, not %r" % args["--health-timeout"])
        args["--health-timeout"] = int(args["--health-timeout"])
        if args["-j"] and not (args["INST_UUID"] and args["DEST_CN_NAME"]):
            raise Usage("-j asks no question: give INST_UUID and DEST_CN_NAME")
        if args["-j"] and not (args["-y"] or args["--dry-run"]):
            raise Usage("-j asks no question: add -y (or --dry-run)")
        from .commands import migrate
        return migrate.main(args)
    except MigrateError as e:
        return error(as_json, e.exit_status, type(e).__name__, str(e), sub=sub)
    except KeyboardInterrupt as e:
        # ^C, or SIGHUP/SIGTERM (commands.migrate.HungUp) before anything changed
        said = "interrupted by %s" % e if e.args else "interrupted"
        return error(as_json, 130, "Interrupted", said, "sdc-migrate: %s\n" % said)


def path_note():
    """The launcher's (or console script's) name for this sdc-migrate, checked
    against PATH once: run with -m (python -m sdc_migrate), it has no name."""
    argv0 = os.environ.pop("SDC_MIGRATE_ARGV0", None) or sys.argv[0]
    if argv0.endswith(".py"):
        return
    note = path_note_for(argv0)
    if note:
        sys.stderr.write(note + "\n")


def error(as_json, status, code, message, line=None, sub=None):
    """One line on stderr, as node-triton writes its errors: `sdc-migrate
    [SUB]: error (Code): message`; with -j also an error event on stdout,
    the last one."""
    try:
        if as_json:
            sys.stdout.write(event_line("error", code=code, message=message, exit_status=status))
        sys.stdout.flush()
        sys.stderr.write(line or "%s: error (%s): %s\n" % (
            "sdc-migrate " + sub if sub else "sdc-migrate", code, message))
    except OSError:
        pass        # the terminal went away (SIGHUP): the log has it, the status tells
    return status
