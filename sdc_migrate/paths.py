"""Every path sdc-migrate keeps something at, on the head node and on the
compute nodes: the one place they are named.

Head node, in STATE_DIR (/var/tmp, as migrator.sh kept its files), per run
migrator-INST_UUID-DEST_CN_NAME-EPOCH with .log (what it printed), .journal
(every change and its undo) and .st (an incremental run's state file: remove
it to finish), and per instance sdc-migrate-INST_UUID.lock; per compute node an evacuation
emptied, sdc-migrate-evacuate-CN_NAME.journal (its reserved flag as it was)
and, while one runs, sdc-migrate-evacuate-CN_NAME.lock. Compute nodes, in
root's .ssh, the run's temporary key, its known_hosts and the authorized_keys
backup, each named by the run's tag; sdc-migrate-complete-KIND.json, what
the completion script last heard from CNAPI or VMAPI; in /var/tmp on the destination, the pid
file of a receive over that key, named by the instance.
"""
import glob
import os

STATE_DIR = "/var/tmp"
HN_KEY = "/root/.ssh/sdc.id_rsa"               # the head node's key for the CNs
CONTROL_DIR = "/var/tmp/sdc-migrate-ssh"       # ssh ControlMaster sockets
SSH_DIR = "/root/.ssh"
AUTHORIZED_KEYS = SSH_DIR + "/authorized_keys"


def run_base(uuid, dest, epoch, state_dir=STATE_DIR):
    """migrator-INST_UUID-DEST-EPOCH, without its extension."""
    return os.path.join(state_dir, "migrator-%s-%s-%d" % (uuid, dest, epoch))


def runs(uuid="*", dest="*", ext=".journal", state_dir=STATE_DIR):
    """The head node's files of that kind of the runs of UUID to DEST."""
    return sorted(glob.glob(os.path.join(state_dir, "migrator-%s-%s-*%s" % (uuid, dest, ext))))


def lock(uuid, state_dir=STATE_DIR):
    return os.path.join(state_dir, "sdc-migrate-%s.lock" % uuid)


def evacuation(cn, state_dir=STATE_DIR):
    """The journal of the evacuations of compute node CN: what they changed
    outside single migrations (its reserved flag, as it was)."""
    return os.path.join(state_dir, "sdc-migrate-evacuate-%s.journal" % cn)


def completion_cache(kind, state_dir=STATE_DIR):
    """What CNAPI or VMAPI said for `sdc-migrate completion`'s script, kept a
    minute: kind is cns or active."""
    return os.path.join(state_dir, "sdc-migrate-complete-%s.json" % kind)


def temp_key(tag):
    return "%s/migr-key-%s" % (SSH_DIR, tag)


def temp_known_hosts(tag):
    return "%s/migr-known-%s" % (SSH_DIR, tag)


def authorized_keys_backup(tag):
    return "%s.%s" % (AUTHORIZED_KEYS, tag)


def recv_pidfile(uuid):
    """On the destination: the pid of the shell running a receive of uuid's
    datasets over the temporary key, while it runs (cnlink.RECEIVE_ONLY)."""
    return "%s/sdc-migrate-recv-%s.pid" % (STATE_DIR, uuid)
