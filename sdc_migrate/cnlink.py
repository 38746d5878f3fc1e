"""A temporary ssh key from one compute node to another, for a CN-to-CN stream.

The key is made on the source, authorized on the destination only from the
source's admin IP and without a pty or forwarding, and the source accepts
only the destination host key that the head node read over its own trusted
connection. remove() takes it all away again.
"""
from . import paths

HOST_KEY = "/var/ssh/ssh_host_ed25519_key.pub"


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


def authorize(dst, src_ip, pub, backup):
    """Authorize pub on the destination from src_ip only, no pty, no forwarding,
    after backing up authorized_keys to backup."""
    entry = 'from="%s",no-pty,no-agent-forwarding,no-port-forwarding,no-X11-forwarding,' \
            'no-user-rc %s' % (src_ip, " ".join(pub.split()[:3]))
    dst.run(["sh", "-c", AUTHORIZE, "sh", backup], input=entry + "\n")


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
    def __init__(self, src, dst, tag, comment):
        self.src, self.dst = src, dst
        self.key = paths.temp_key(tag)
        self.known_hosts = paths.temp_known_hosts(tag)
        self.backup = paths.authorized_keys_backup(tag)
        self.comment = comment
        self.made = self.authorized = False

    def create(self):
        hostkey = " ".join(self.dst.run(["cat", HOST_KEY], readonly=True).split()[:2])
        pub = make_key(self.src, self.key, self.known_hosts, self.comment, self.dst.ip, hostkey)
        self.made = True
        self.blob = pub.split()[1]
        authorize(self.dst, self.src.ip, pub, self.backup)
        self.authorized = True

    def remove(self):
        """Take away what create() made; safe to call after a partial create()."""
        if self.authorized:
            unauthorize(self.dst, self.backup, self.blob)
            self.authorized = False
        if self.made:
            remove_key(self.src, self.key, self.known_hosts)
            self.made = False
