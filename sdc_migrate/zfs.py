"""The datasets of an instance, their snapshots, and the CN-to-CN stream."""
from . import node
from .errors import MigrateError

LIST_COLUMNS = ("name", "type", "origin", "used", "refer", "quota", "usedbydataset",
                "usedbysnapshots", "userrefs")
# The migration's snapshots. Not vmsnap-*: that is vmadm's namespace, and
# vmload reports every @vmsnap-* to VMAPI as an instance snapshot a customer
# could see and roll back to (smartos-live src/vm/node_modules/VM.js).
SNAP_PREFIX = "sdc-migrate_ops_migration_"
# VM.js indestructible_zoneroot/_delegated: this snapshot, held with this tag.
INDESTRUCTIBLE = "indestructible"
HOLD_TAG = "do_not_destroy"


def migration_snapshot(epoch):
    return "%s%d" % (SNAP_PREFIX, epoch)


def _num(v):
    return 0 if v in ("-", "none", "") else int(v)


class Dataset:
    def __init__(self, name, type, origin, used, refer, quota, usedbydataset="-",
                 usedbysnapshots="-", userrefs="-"):
        self.name, self.type = name, type
        self.origin = None if origin in ("-", "") else origin
        self.used, self.refer = int(used), int(refer)
        self.quota = _num(quota)
        # What a send of the dataset's whole history moves: its own blocks
        # and its snapshots', not its image's (a clone is sent from
        # IMAGE@final), nor a volume's refreservation, nor its children's.
        self.sent = _num(usedbydataset) + _num(usedbysnapshots)

    def __repr__(self):
        return "Dataset(%s)" % self.name


def list_command(snapshots=False):
    types = "filesystem,volume" + (",snapshot" if snapshots else "")
    return ["zfs", "list", "-H", "-p", "-t", types, "-o", ",".join(LIST_COLUMNS)]


def sent_size(datasets):
    """The bytes a migration sends of these datasets (not REFER: see Dataset.sent)."""
    return sum(d.sent for d in datasets)


def indestructible_snapshots(listing, datasets):
    """DS@indestructible of datasets, held, in a `list_command(snapshots=True)`
    listing: VM.js's indestructible_zoneroot/_delegated protection."""
    held = set()
    for line in listing.splitlines():
        fields = line.split("\t")
        if len(fields) == len(LIST_COLUMNS) and _num(fields[-1]) > 0:
            held.add(fields[0])
    return [s for s in ("%s@%s" % (d.name, INDESTRUCTIBLE) for d in datasets) if s in held]


def instance_datasets(listing, uuid):
    """The datasets that make up instance UUID, parents first, from `zfs list -H -p`.

    zones/UUID and what is below it (bhyve disks, a delegated dataset), and
    kvm's zones/UUID-diskN. The cores dataset is not sent: it is recreated.
    """
    top = "zones/" + uuid
    found = []
    for line in listing.splitlines():
        fields = line.split("\t")
        if len(fields) != len(LIST_COLUMNS):
            continue
        name = fields[0]
        if "@" in name:
            continue
        if name == top or name.startswith(top + "/") or name.startswith(top + "-disk"):
            found.append(Dataset(*fields))
    found.sort(key=lambda d: (d.name.count("/"), d.name))
    return found


# sh -c SCRIPT sh KEEP DATASET...: destroy the datasets' migration snapshots
# (@SNAP_PREFIX*, and an older sdc-migrate's @vmsnap-*_ops_migration_*), all
# but those named KEEP. A dataset that does not exist has none (libzfs
# zfs_open: "cannot open 'NAME': dataset does not exist"); any other failure,
# of the listing or of a destroy (a held or cloned snapshot), fails it.
DESTROY_MIGRATION_SNAPSHOTS = (
    'keep=$1; shift; for d in "$@"; do '
    'snaps=$(zfs list -H -o name -t snapshot -d 1 "$d" 2>&1) || { '
    "case $snaps in *\"cannot open '$d': dataset does not exist\"*) continue;; esac; "
    'printf "%s\\n" "$snaps" >&2; exit 1; }; '
    "for s in $(printf '%s\\n' \"$snaps\" | grep -e '@" + SNAP_PREFIX +
    "' -e '@vmsnap-.*_ops_migration_'); do "
    '[ "${s#*@}" = "$keep" ] && continue; zfs destroy "$s" || exit 1; done; done')

# sh -c DESTROY_TREES sh DATASET...: `zfs destroy -r` each dataset, going on
# past one that fails. One that does not exist is gone already (libzfs
# zfs_open: "cannot open 'NAME': dataset does not exist"); any other failure
# (a held snapshot, a dependent clone, a busy mount: illumos zfs_main.c
# zfs_do_destroy) is said on stderr, then a line "left: NAME..." of what is
# still there, and it exits 1.
DESTROY_TREES = (
    'rc=0; for d in "$@"; do err=$(zfs destroy -r "$d" 2>&1) && continue; '
    "case $err in *\"cannot open '$d': dataset does not exist\"*) continue;; esac; "
    'printf "%s\\n" "$err" >&2; rc=1; done; [ $rc = 0 ] && exit 0; '
    'echo "left:" $(zfs list -H -o name -t filesystem,volume -r "$@" 2>/dev/null) >&2; exit 1')


def destroy_trees(host, datasets):
    """zfs destroy -r of datasets on host (a Node), children before parents as
    given; a dataset that is not there is gone already. Anything else that
    fails raises, naming what is still there and what zfs said: the undo that
    called it stays pending in the journal for an operator and a rerun."""
    datasets = list(datasets)
    status, _, err = host.call(["sh", "-c", DESTROY_TREES, "sh"] + datasets)
    if status == 0:
        return
    lines = [l.strip() for l in err.splitlines() if l.strip()]
    left = [l.split()[1:] for l in lines if l.startswith("left:")]
    said = " / ".join(l for l in lines if not l.startswith("left:")) or \
        "exit status %d" % status
    if left and left[-1]:
        raise MigrateError("%s %s still on %s: %s" % (
            ", ".join(left[-1]), "is" if len(left[-1]) == 1 else "are", host.hostname, said))
    raise MigrateError("could not destroy %s on %s: %s" % (", ".join(datasets), host.hostname,
                                                           said))


def image_origin(ds):
    """The image UUID if ds is a clone of zones/IMAGE@final, else None."""
    if ds.origin and ds.origin.startswith("zones/") and ds.origin.endswith("@final"):
        return ds.origin[len("zones/"):-len("@final")]
    return None


# --bwlimit: a SmartOS global zone has no pv or mbuffer, but every platform has
# the node that vmadm runs on (/usr/node/bin/node). This stage passes stdin to
# stdout at no more than argv[1] bytes a second on average: after each chunk
# it pauses reading until the bytes so far are due (written for the old
# platform nodes too: no ES6).
NODE = "/usr/node/bin/node"
THROTTLE_JS = """\
var rate = Number(process.argv[1]), start = Date.now(), sent = 0;
process.stdin.on('data', function (chunk) {
    sent += chunk.length;
    var flushed = process.stdout.write(chunk);
    var wait = start + sent * 1000 / rate - Date.now();
    if (wait <= 0 && flushed)
        return;
    process.stdin.pause();
    var go = function () {
        setTimeout(function () { process.stdin.resume(); }, Math.max(0, wait));
    };
    if (flushed)
        go();
    else
        process.stdout.once('drain', go);
});
process.stdin.on('end', function () { process.stdout.end(); });
process.stdout.on('error', function () { process.exit(1); });
"""


def throttle_command(rate):
    """The pipeline stage that holds a stream to rate bytes a second."""
    return [NODE, "-e", THROTTLE_JS, str(int(rate))]


def snapshot_chain_command(names):
    """The snapshots of the datasets names, oldest first (see snapshot_chains)."""
    return ["zfs", "list", "-H", "-o", "name", "-t", "snapshot", "-s", "createtxg",
            "-d", "1"] + list(names)


def snapshot_chains(listing):
    """{dataset: [short snapshot names, oldest first]} from lines naming
    snapshots (DS@SNAP, first on a line), as `zfs list` gives them in
    createtxg order; other lines are ignored."""
    chains = {}
    for line in listing.splitlines():
        name = line.split("\t")[0]
        if "@" in name:
            fs, _, short = name.partition("@")
            chains.setdefault(fs, []).append(short)
    return chains


def legs(ds_name, chain, base, snap):
    """The streams that bring ds_name to @snap: [(from, to)], from a full
    snapshot name or None (a full stream), to a short name.

    One stream a snapshot, in order: every snapshot between base and snap
    travels, the instance's own (vmadm create-snapshot) with the migration's,
    as Triton's cn-agent's --replicate then -I sends them (sdc-cn-agent
    lib/backends/smartos/tasks/machine_migrate.js), but each a stream that a
    cut `zfs recv -s` resumes alone (send -t). base is DS@SNAP on the
    destination already, a clone's origin (IMAGE@final), or None.
    """
    chain = list(chain)
    if snap not in chain:           # --dry-run: the round's snapshot was not taken
        chain.append(snap)
    chain = chain[:chain.index(snap) + 1]
    if base and base.startswith(ds_name + "@"):
        short = base.split("@", 1)[1]
        chain = chain[chain.index(short) + 1:] if short in chain else [snap]
        prev = base
    else:
        prev = base                 # an origin, or nothing: the first is whole
    out = []
    for short in chain:
        out.append((prev, short))
        prev = "%s@%s" % (ds_name, short)
    return out


def resume_tokens_command(names):
    return ["zfs", "get", "-H", "-o", "name,value", "receive_resume_token"] + list(names)


def resume_tokens(output):
    """{dataset: token} from resume_tokens_command's output: the datasets whose
    receive was cut and kept its state (zfs recv -s); `-` is none."""
    tokens = {}
    for line in output.splitlines():
        fields = line.split("\t")
        if len(fields) == 2 and fields[1] not in ("-", ""):
            tokens[fields[0]] = fields[1]
    return tokens


# sh -c SOURCE_ENCRYPTION sh SEPARATOR UUID: the pool's encryption (a cipher,
# or off; off too where the platform's zfs has no such property) and, where it
# is encrypted, the instance's datasets' properties that a -p stream would
# carry (those set here or received: libzfs send_iterate_prop), one
# NAME<TAB>PROPERTY<TAB>VALUE a line.
SOURCE_ENCRYPTION = (
    'e=$(zfs get -Hp -o value encryption zones 2>/dev/null) || e=off; echo "$e"; '
    'case "$e" in off|-|"") ;; *) zfs get -Hp -r -t filesystem,volume -s local,received '
    '-o name,property,value all "zones/$2" '
    '$(zfs list -H -o name -t volume | grep "^zones/$2-disk") ;; esac')
# What a receive cannot be given (-o): a volume's size travels in its stream;
# the encryption properties are the destination pool's.
NOT_SET_ON_RECEIVE = {"volsize", "encryption", "keyformat", "keylocation", "pbkdf2iters",
                      "encryptionroot"}


def encrypted(value):
    """Whether a pool's `encryption` value (zfs get) says it is encrypted."""
    return value.strip() not in ("off", "-", "")


def dataset_properties(output):
    """{dataset: {property: value}} from SOURCE_ENCRYPTION's property lines,
    less what a receive cannot be given."""
    props = {}
    for line in output.splitlines():
        fields = line.split("\t")
        if len(fields) == 3 and fields[1] not in NOT_SET_ON_RECEIVE:
            props.setdefault(fields[0], {})[fields[1]] = fields[2]
    return props


def send_pipeline(ds_name, snap, from_snap, src_ip, dest_ip, key, known_hosts, props=False,
                  progress=False, pidfile=None, exclude=(), bwlimit=None, token=None,
                  set_props=None, link=None):
    """The shell pipeline of one stream: zfs send | ssh | zfs recv, CN to CN.


    The data never passes through the head node. It runs on the source
    (zfs send | ssh DEST zfs recv), or with link.pull on the destination,
    which pulls (ssh SRC zfs send | zfs recv): a SunSSH source cannot reach
    an OpenSSH destination's sshd (cnlink.Link). The CN that runs it checks
    the other's host key against the one the head node read (known_hosts),
    never accepting a new one blindly, and connects from its admin IP, the
    only address the temporary key is authorized from, and asks for
    recv_command, the one command the key's forced command runs (cnlink
    RECEIVE_ONLY, which also keeps the receiving shell's pid in a file on the
    destination: it runs on if its client dies, and a later run waits for it,
    receive_waiter). With progress, zfs
    send prints its estimate and a line a second on stderr (-vP), for
    progress.Meter. With bwlimit (bytes a second) the stream passes
    throttle_command where it enters or leaves ssh on the CN that runs it.
    With token (a cut receive's receive_resume_token), `zfs send -t` sends
    the rest of that stream only, and snap and from_snap are not used. With
    set_props ({property: value}), the receive sets them (zfs recv -o), as a
    -p stream would: a stream with properties from an encrypted pool is
    refused without -w (illumos libzfs_sendrecv.c send_iterate_fs). link
    (cnlink.Link) says the cipher, the ssh options and whether the receive is
    resumable; without it, two current platforms'. A pulled stream's send is
    what the source's forced command runs (cnlink SEND_ONLY), and its
    receive, local to the destination, keeps its shell's pid in pidfile
    (what RECEIVE_ONLY does for a pushed one).
    """
    send = ["zfs", "send"]
    if token:
        send += ["-t", token]
    else:
        if progress:
            send.append("-vP")
        if props:
            send.append("-p")
        if from_snap:
            send += ["-i", from_snap]
        send.append("%s@%s" % (ds_name, snap))
    pull = bool(link and link.pull)
    resumable = link.resumable if link else True
    recv = recv_command(ds_name, exclude, set_props, resumable)
    ssh = ["ssh", "-i", key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
           "-o", "UserKnownHostsFile=" + known_hosts, "-o", "LogLevel=ERROR",
           "-o", "BindAddress=" + (dest_ip if pull else src_ip),
           "-c", link.cipher if link else "aes128-gcm@openssh.com"] + \
        (link.ssh_options() if link else []) + \
        ["root@" + (src_ip if pull else dest_ip), node.command_line(send if pull else recv)]
    throttle = [throttle_command(bwlimit)] if bwlimit else []
    if pull:
        if pidfile is not None:
            recv = ["sh", "-c", RECV_WITH_PIDFILE, "sh", pidfile] + recv
        return node.pipeline(ssh, *throttle, recv)
    return node.pipeline(send, *throttle, ssh)


# sh -c RECV_WITH_PIDFILE sh PIDFILE ARGV...: run ARGV with this shell's pid in
# PIDFILE (receive_waiter waits on it), removed when ARGV ends: a pulled
# stream's receive, which no forced command runs.
RECV_WITH_PIDFILE = 'p=$1; shift; echo $$ > "$p" && "$@"; s=$?; rm -f "$p"; exit $s'


def recv_command(ds_name, exclude=(), set_props=None, resumable=True):
    """zfs recv, as Triton's cn-agent receives a migration (sdc-cn-agent
    lib/backends/smartos/bin/machine-migrate-receive.js): -s, a cut stream
    keeps what came and a receive_resume_token to go on from (not on a
    platform whose zfs has no resumable receive); -u, nothing
    is mounted (the migration mounts the datasets before it uses them);
    -F. exclude: properties of the stream not to receive (-x): `encryption`
    into an encrypted pool, which refuses a stream's encryption=off otherwise.
    set_props: {property: value} to set on the received dataset (-o), for a
    stream from an encrypted pool, which carries none.
    A pushed stream's key runs nothing else (cnlink.RECEIVE_ONLY: change both)."""
    return (["zfs", "recv"] + (["-s"] if resumable else []) + ["-u", "-F"] +
            [w for p in exclude for w in ("-x", p)] +
            [w for k, v in sorted((set_props or {}).items()) for w in ("-o", "%s=%s" % (k, v))] +
            [ds_name])


# sh -c MOUNT_DATASETS sh DATASET...: mount the filesystems named that are
# not mounted (a receive with -u leaves a new one so), parents first: the
# zone's root dataset and a docker instance's volumes, what Triton's cn-agent
# mounts (sdc-cn-agent lib/backends/smartos/tasks/machine_migrate.js
# setupFilesystem). One with zoned=on is the zone's own, a delegated dataset:
# zoneadmd set it at the zone's boot (illumos vplat.c validate_datasets), the
# zone mounts it inside, and from the global zone `zfs mount` refuses it
# ("dataset is exported to a local zone", zfs_main.c share_mount_one).
MOUNT_DATASETS = ('for d in "$@"; do s=$(zfs get -H -o value zoned,mounted "$d") || exit 1; '
                  'case $s in on*|*yes) continue;; esac; zfs mount "$d" || exit 1; done')


def receive_waiter(pidfile, timeout):
    """The command that waits (up to timeout seconds) while the receive that
    wrote pidfile runs, then removes pidfile."""
    return ["sh", "-c", RECEIVE_WAITER, "sh", pidfile, str(timeout * 2)]


# sh -c RECEIVE_WAITER sh PIDFILE HALF_SECONDS
RECEIVE_WAITER = ('i=0; while [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null && '
                  '[ $i -lt "$2" ]; do sleep 0.5; i=$((i+1)); done; rm -f "$1"')
