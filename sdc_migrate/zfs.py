"""The datasets of an instance, their snapshots, and the CN-to-CN stream."""
from . import node

LIST_COLUMNS = ("name", "type", "origin", "used", "refer", "quota", "usedbydataset",
                "usedbysnapshots", "userrefs", "reservation", "refreservation",
                "usedbyrefreservation")
USERREFS = LIST_COLUMNS.index("userrefs")
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
                 usedbysnapshots="-", userrefs="-", reservation="-", refreservation="-",
                 usedbyrefreservation="-"):
        self.name, self.type = name, type
        self.origin = None if origin in ("-", "") else origin
        # used counts its children too (space.py counts each dataset once)
        self.used, self.refer = int(used), int(refer)
        self.quota = _num(quota)
        # What a send of the dataset's whole history moves: its own blocks
        # and its snapshots', not its image's (a clone is sent from
        # IMAGE@final), nor a volume's refreservation, nor its children's.
        self.sent = _num(usedbydataset) + _num(usedbysnapshots)
        self.reservation, self.refreservation = _num(reservation), _num(refreservation)
        self.usedbyrefreservation = _num(usedbyrefreservation)

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
        if len(fields) == len(LIST_COLUMNS) and _num(fields[USERREFS]) > 0:
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
# but those named KEEP.
DESTROY_MIGRATION_SNAPSHOTS = (
    'keep=$1; shift; for s in $(zfs list -H -o name -t snapshot -d 1 "$@" 2>/dev/null | '
    "grep -e '@%s' -e '@vmsnap-.*_ops_migration_'); do " % SNAP_PREFIX +
    '[ "${s#*@}" = "$keep" ] && continue; zfs destroy "$s" || exit 1; done')


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


def send_pipeline(ds_name, snap, from_snap, src_ip, dest_ip, key, known_hosts, props=False,
                  progress=False, pidfile=None, exclude=(), bwlimit=None, token=None):
    """The shell pipeline the source CN runs: zfs send | ssh DEST zfs recv.

    The data never passes through the head node. The source checks the
    destination's host key against the one the head node read (known_hosts),
    never accepting a new one blindly, and connects from its admin IP, the
    only address the temporary key is authorized from. With progress, zfs
    send prints its estimate and a line a second on stderr (-vP), for
    progress.Meter. With pidfile, the receiving shell keeps its pid there on
    the destination while zfs recv runs: it runs on if its client dies, and a
    later run waits for it (receive_waiter). With bwlimit (bytes a second)
    the stream passes throttle_command on the source, before ssh. With
    token (a cut receive's receive_resume_token), `zfs send -t` sends the
    rest of that stream only, and snap and from_snap are not used.
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
    ssh = ["ssh", "-i", key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
           "-o", "UserKnownHostsFile=" + known_hosts, "-o", "LogLevel=ERROR",
           "-o", "BindAddress=" + src_ip,
           "-c", "aes128-gcm@openssh.com", "root@" + dest_ip,
           node.command_line(recv_command(ds_name, pidfile, exclude))]
    stages = [send] + ([throttle_command(bwlimit)] if bwlimit else []) + [ssh]
    return node.pipeline(*stages)


def recv_command(ds_name, pidfile=None, exclude=()):
    """zfs recv, as Triton's cn-agent receives a migration (sdc-cn-agent
    lib/backends/smartos/bin/machine-migrate-receive.js): -s, a cut stream
    keeps what came and a receive_resume_token to go on from; -u, nothing
    is mounted (the migration mounts the datasets before it uses them);
    -F. With pidfile, its shell's pid there while it runs. exclude:
    properties of the stream not to receive (-x): `encryption` into an
    encrypted pool, which refuses a stream's encryption=off otherwise."""
    recv = ["zfs", "recv", "-s", "-u", "-F"] + [w for p in exclude for w in ("-x", p)] + [ds_name]
    if pidfile is None:
        return recv
    return ["sh", "-c", RECV_WITH_PIDFILE, "sh", pidfile] + recv


# sh -c RECV_WITH_PIDFILE sh PIDFILE ARGV...: run ARGV with this shell's pid in
# PIDFILE (receive_waiter waits on it), removed when ARGV ends.
RECV_WITH_PIDFILE = 'p=$1; shift; echo $$ > "$p" && "$@"; s=$?; rm -f "$p"; exit $s'


# sh -c MOUNT_DATASETS sh DATASET...: mount the filesystems named that are
# not (a receive with -u leaves a new one unmounted), parents first.
MOUNT_DATASETS = ('for d in "$@"; do [ "$(zfs get -H -o value mounted "$d")" = yes ] || '
                  'zfs mount "$d" || exit 1; done')


def receive_waiter(pidfile, timeout):
    """The command that waits (up to timeout seconds) while the receive that
    wrote pidfile runs, then removes pidfile."""
    return ["sh", "-c", RECEIVE_WAITER, "sh", pidfile, str(timeout * 2)]


# sh -c RECEIVE_WAITER sh PIDFILE HALF_SECONDS
RECEIVE_WAITER = ('i=0; while [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null && '
                  '[ $i -lt "$2" ]; do sleep 0.5; i=$((i+1)); done; rm -f "$1"')
