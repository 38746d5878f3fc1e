"""The datasets of an instance, their snapshots, and the CN-to-CN stream."""
import shlex

# What a received stream may not carry over from the source on every platform.
LIST_COLUMNS = ("name", "type", "origin", "used", "refer", "quota")


class Dataset:
    def __init__(self, name, type, origin, used, refer, quota):
        self.name, self.type = name, type
        self.origin = None if origin in ("-", "") else origin
        self.used, self.refer = int(used), int(refer)
        self.quota = 0 if quota in ("-", "none", "") else int(quota)

    def __repr__(self):
        return "Dataset(%s)" % self.name


def list_command():
    return ["zfs", "list", "-H", "-p", "-t", "filesystem,volume", "-o", ",".join(LIST_COLUMNS)]


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
        if name == top or name.startswith(top + "/") or name.startswith(top + "-disk"):
            found.append(Dataset(*fields))
    found.sort(key=lambda d: (d.name.count("/"), d.name))
    return found


# sh -c SCRIPT sh KEEP DATASET...: destroy the datasets' migration snapshots
# (named by sdc-migrate: *_ops_migration_*), all but those named KEEP.
DESTROY_MIGRATION_SNAPSHOTS = (
    'keep=$1; shift; for s in $(zfs list -H -o name -t snapshot -d 1 "$@" 2>/dev/null | '
    "grep '@vmsnap-.*_ops_migration_'); do "
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


def send_pipeline(ds_name, snap, from_snap, src_ip, dest_ip, key, known_hosts, props=False,
                  progress=False, pidfile=None, bwlimit=None):
    """The shell pipeline the source CN runs: zfs send | ssh DEST zfs recv.

    The data never passes through the head node. The source checks the
    destination's host key against the one the head node read (known_hosts),
    never accepting a new one blindly, and connects from its admin IP, the
    only address the temporary key is authorized from. With progress, zfs
    send prints its estimate and a line a second on stderr (-vP), for
    progress.Meter. With pidfile, the receiving shell keeps its pid there on
    the destination while zfs recv runs: it runs on if its client dies, and a
    later run waits for it (receive_waiter). With bwlimit (bytes a second)
    the stream passes throttle_command on the source, before ssh.
    """
    send = ["zfs", "send"]
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
           recv_command(ds_name, pidfile)]
    stages = [send] + ([throttle_command(bwlimit)] if bwlimit else []) + [ssh]
    return ["bash", "-o", "pipefail", "-c", " | ".join(shlex.join(s) for s in stages)]


def recv_command(ds_name, pidfile=None):
    """zfs recv; with pidfile, its shell's pid there while it runs."""
    recv = shlex.join(["zfs", "recv", "-F", ds_name])
    if pidfile is None:
        return recv
    f = shlex.quote(pidfile)
    return "echo $$ > %s && %s; s=$?; rm -f %s; exit $s" % (f, recv, f)


def receive_waiter(pidfile, timeout):
    """sh: wait (up to timeout seconds) while the receive that wrote pidfile
    runs; then remove pidfile."""
    f = shlex.quote(pidfile)
    return ("i=0; while [ -s %s ] && kill -0 $(cat %s) 2>/dev/null && [ $i -lt %d ]; do "
            "sleep 0.5; i=$((i+1)); done; rm -f %s" % (f, f, timeout * 2, f))
