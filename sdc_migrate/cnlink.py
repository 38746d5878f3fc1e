"""A temporary ssh key from one compute node to another, for a CN-to-CN stream.

The key is made on the source, authorized on the destination only from the
source's admin IP and without a pty or forwarding, and the source accepts
only the destination host key that the head node read over its own trusted
connection. remove() takes it all away again.
"""
import shlex

from . import paths

HOST_KEY = "/var/ssh/ssh_host_ed25519_key.pub"


def make_key(src, key, known_hosts, comment, dst_ip, dst_hostkey):
    """Make the key on the source (root's alone) and the known_hosts that holds
    only the destination's host key; returns the public key."""
    return src.run(["sh", "-c", "umask 077 && rm -f %s %s.pub && "
                    "ssh-keygen -q -t ed25519 -N '' -C %s -f %s && cat %s.pub && "
                    "printf '%%s %%s\\n' %s %s > %s" % (
                        key, key, shlex.quote(comment), key, key,
                        shlex.quote(dst_ip), shlex.quote(dst_hostkey), known_hosts)])


AK = paths.AUTHORIZED_KEYS
# Several migrations may change one destination's authorized_keys at once
# (evacuate): each change holds this lock (mkdir is atomic everywhere), taken
# over after 10 s from a run killed while holding it.
AK_LOCK = ("i=0; until mkdir /root/.ssh/.sdc-migrate-ak.lock 2>/dev/null; do "
           "i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.1; done; "
           "trap 'rmdir /root/.ssh/.sdc-migrate-ak.lock' EXIT; ")


def authorize(dst, src_ip, pub, backup):
    """Authorize pub on the destination from src_ip only, no pty, no forwarding,
    after backing up authorized_keys to backup."""
    entry = 'from="%s",no-pty,no-agent-forwarding,no-port-forwarding,no-X11-forwarding,' \
            'no-user-rc %s' % (src_ip, " ".join(pub.split()[:3]))
    dst.run(["sh", "-c", AK_LOCK + "umask 077 && touch %s && cp -p %s %s && cat >> %s"
             % (AK, AK, backup, AK)], input=entry + "\n")


def unauthorize(dst, backup, blob=None):
    """Take our entry (the line holding the key blob) out of authorized_keys,
    leaving what others added since, and drop the backup. Without blob (a
    journal of an older run), put the backup back."""
    if blob is None:
        dst.run(["mv", "-f", backup, AK])
        return
    dst.run(["sh", "-c", AK_LOCK + "umask 077 && { grep -v -F -e %s %s > %s.new || true; } && "
             "mv -f %s.new %s && rm -f %s" % (shlex.quote(blob), AK, AK, AK, AK,
                                              shlex.quote(backup))])


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
