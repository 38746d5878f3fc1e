"""A temporary ssh key from one compute node to another, for a CN-to-CN stream.

The key is made on the source and authorized on the destination only from
the source's admin IP, with no pty, forwarding or ~/.ssh/rc, and with a
forced command (RECEIVE_ONLY) that runs the one thing the migration sends
over it: `zfs recv -s -u -F [-x encryption] [-o P=V]... DATASET` into one instance's own
datasets; anything else is refused. The source accepts only the destination
host key that the head node read over its own trusted connection. remove()
takes it all away again.
"""
import re

from . import paths
from .node import forced_command

HOST_KEY = "/var/ssh/ssh_host_ed25519_key.pub"
# DEST_SSH: the host key the source will accept, then one line naming the
# platform's ssh (`ssh -V`: SmartOS builds ssh and sshd from one OpenSSH,
# illumos-extra openssh/Makefile), which says which key options its sshd has.
DEST_SSH = 'cat %s && echo "$(ssh -V 2>&1 | head -n 1)"' % HOST_KEY

# The forced command of the key, run by the destination's sshd (with root's
# shell -c) for every session of the key, whatever the client asked for;
# what the client asked for is in $SSH_ORIGINAL_COMMAND.
# sh -c RECEIVE_ONLY sh NAME [PIDFILE]: NAME is the instance's UUID (or the
# estimate's scratch dataset's name under zones/); PIDFILE, if given, holds
# this shell's pid while zfs recv runs (transfer.wait_for_receive waits on
# it), and is removed when it ends.
# It runs the client's command only if, split on spaces, it is exactly
#   zfs recv -s -u -F [-x encryption] [-o PROPERTY=VALUE]... DATASET
# (zfs.recv_command) with DATASET zones/NAME, a child of it (a delegated
# dataset, a bhyve disk) or zones/NAME-diskN (a kvm disk), and every word made
# only of letters, digits and / _ . : - = , (no quote, $, `, ;, &, |, <, >,
# glob or newline can reach a shell: the words are never parsed as shell
# text, and zfs is run with them as its arguments). The -o properties are
# those a stream from an encrypted pool cannot carry (transfer.stream): never
# origin, and a mountpoint only inside /zones/NAME. Anything else: one line on
# stderr, exit status 126, nothing run. LC_ALL=C: the shell's patterns match
# bytes, as dash, bash and ksh93 (SmartOS's /bin/sh) all do then.
SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
REFUSED = 126
RECEIVE_ONLY = (
    'LC_ALL=C; export LC_ALL; name=$1; pidfile=$2; '
    'no() { echo "sdc-migrate: refused: $1 (this key only receives the datasets of '
    'zones/$name)" >&2; exit %d; }; ' % REFUSED +
    'case $name in ""|[!' + SAFE + ']*|*[!' + SAFE + '-]*) no "bad instance name";; esac; '
    '[ -n "${SSH_ORIGINAL_COMMAND:-}" ] || no "no command"; '
    'set -f; IFS=" "; set -- $SSH_ORIGINAL_COMMAND; '
    'for w in "$@"; do case $w in *[!' + SAFE + '/_.:=,-]*) '
    'no "a character other than a letter, a digit, a space or / _ . : - = ,";; esac; done; '
    'shape="not zfs recv -s -u -F [-x encryption] [-o PROPERTY=VALUE]... DATASET"; '
    '[ $# -ge 6 ] && [ "$1 $2 $3 $4 $5" = "zfs recv -s -u -F" ] || no "$shape"; '
    'shift 5; x=; o=; '
    'if [ $# -ge 3 ] && [ "$1 $2" = "-x encryption" ]; then x="-x encryption"; shift 2; fi; '
    'while [ $# -ge 3 ] && [ "$1" = -o ]; do '
    'case $2 in origin=*) no "-o $2";; '
    'mountpoint=*) case ${2#mountpoint=}/ in "/zones/$name"/*) '
    'case ${2#mountpoint=}/ in *//*|*/./*|*/../*) no "-o $2";; esac;; *) no "-o $2";; esac;; '
    '[abcdefghijklmnopqrstuvwxyz]*=*) ;; *) no "-o $2";; esac; '
    'o="$o -o $2"; shift 2; done; '
    '[ $# -eq 1 ] || no "$shape"; '
    'ds=$1; mine="not a dataset of zones/$name: $ds"; '
    'case $ds in '
    '"zones/$name") ;; '
    '"zones/$name"/*) case /${ds#"zones/$name/"}/ in *//*|*/./*|*/../*) no "$mine";; esac;; '
    '"zones/$name"-disk*) case ${ds#"zones/$name-disk"} in ""|*[!0123456789]*) no "$mine";; '
    'esac;; '
    '*) no "$mine";; '
    'esac; '
    'set -- zfs recv -s -u -F $x $o "$ds"; '
    '[ -n "$pidfile" ] || exec "$@"; '
    'echo $$ > "$pidfile" || exit 1; "$@"; s=$?; rm -f "$pidfile"; exit $s')
# `restrict` (every restriction sshd has, now and later) came with OpenSSH 7.2
# (openssh-portable 383f10fb8, 2015-11-16; SmartOS 7.2p2 from 2016-03,
# illumos-extra 5c2d4f0): before it, an unknown option refuses the key, so
# older platforms (OpenSSH 6.9 and 7.1, 2015-08 to 2016-03) get the list.
RESTRICT_SINCE = (7, 2)
OLD_RESTRICTIONS = "no-pty,no-agent-forwarding,no-port-forwarding,no-X11-forwarding,no-user-rc"


def has_restrict(ssh_version):
    """Whether an sshd of this `ssh -V` line knows the `restrict` key option."""
    found = re.search(r"OpenSSH_(\d+)\.(\d+)", ssh_version or "")
    return bool(found) and (int(found.group(1)), int(found.group(2))) >= RESTRICT_SINCE


def entry(src_ip, pub, name, pidfile, ssh_version):
    """The authorized_keys line of the key pub: from src_ip only, receives
    into zones/NAME's datasets only (RECEIVE_ONLY), no pty, forwarding or rc."""
    command = forced_command(["/bin/sh", "-c", RECEIVE_ONLY, "sh", name, pidfile or ""])
    limits = "restrict" if has_restrict(ssh_version) else OLD_RESTRICTIONS
    return '%s,%s,from="%s" %s' % (limits, command, src_ip, " ".join(pub.split()[:3]))


# sh -c SCRIPT sh ARG...: the values are arguments, never script text.
# MAKE_KEY KEY COMMENT DEST_IP DEST_HOSTKEY KNOWN_HOSTS
MAKE_KEY = ('umask 077 && rm -f "$1" "$1.pub" && '
            'ssh-keygen -q -t ed25519 -N "" -C "$2" -f "$1" && cat "$1.pub" && '
            'printf "%s %s\\n" "$3" "$4" > "$5"')


def make_key(src, key, known_hosts, comment, dst_ip, dst_hostkey):
    """Make the key on the source (root's alone) and the known_hosts that holds
    only the destination's host key; returns the public key."""
    return src.run(["sh", "-c", MAKE_KEY, "sh", key, comment, dst_ip, dst_hostkey, known_hosts])


AK = paths.AUTHORIZED_KEYS
# Several migrations may change one destination's authorized_keys at once
# (evacuate): each change holds this lock (mkdir is atomic everywhere), taken
# over after 10 s from a run killed while holding it.
AK_LOCK = ("i=0; until mkdir /root/.ssh/.sdc-migrate-ak.lock 2>/dev/null; do "
           "i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.1; done; "
           "trap 'rmdir /root/.ssh/.sdc-migrate-ak.lock' EXIT; ")


# AUTHORIZE BACKUP (the entry on stdin); UNAUTHORIZE KEY_BLOB BACKUP
AUTHORIZE = AK_LOCK + 'umask 077 && touch %s && cp -p %s "$1" && cat >> %s' % (AK, AK, AK)
UNAUTHORIZE = AK_LOCK + ('umask 077 && { grep -v -F -e "$1" %s > %s.new || true; } && '
                         'mv -f %s.new %s && rm -f "$2"' % (AK, AK, AK, AK))


def authorize(dst, src_ip, pub, backup, name, pidfile, ssh_version):
    """Authorize pub on the destination (see entry), after backing up
    authorized_keys to backup."""
    dst.run(["sh", "-c", AUTHORIZE, "sh", backup],
            input=entry(src_ip, pub, name, pidfile, ssh_version) + "\n")


def unauthorize(dst, backup, blob=None):
    """Take our entry (the line holding the key blob) out of authorized_keys,
    leaving what others added since, and drop the backup. Without blob (a
    journal of an older run), put the backup back."""
    if blob is None:
        dst.run(["mv", "-f", backup, AK])
        return
    dst.run(["sh", "-c", UNAUTHORIZE, "sh", blob, backup])


def remove_key(src, key, known_hosts):
    src.run(["rm", "-f", key, key + ".pub", known_hosts])


class TempKey:
    """A key from src to dst for streams into zones/NAME (and its children)."""

    def __init__(self, src, dst, tag, comment, name):
        self.src, self.dst, self.name = src, dst, name
        self.key = paths.temp_key(tag)
        self.known_hosts = paths.temp_known_hosts(tag)
        self.backup = paths.authorized_keys_backup(tag)
        self.comment = comment
        self.made = self.authorized = False

    def create(self):
        hostkey, _, ssh_version = self.dst.run(["sh", "-c", DEST_SSH], readonly=True).partition("\n")
        hostkey = " ".join(hostkey.split()[:2])
        pub = make_key(self.src, self.key, self.known_hosts, self.comment, self.dst.ip, hostkey)
        self.made = True
        self.blob = pub.split()[1]
        authorize(self.dst, self.src.ip, pub, self.backup, self.name, None, ssh_version)
        self.authorized = True

    def remove(self):
        """Take away what create() made; safe to call after a partial create()."""
        if self.authorized:
            unauthorize(self.dst, self.backup, self.blob)
            self.authorized = False
        if self.made:
            remove_key(self.src, self.key, self.known_hosts)
            self.made = False
