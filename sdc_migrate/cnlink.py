"""A temporary ssh key from one compute node to another, for a CN-to-CN stream.

The key is made on the source, authorized on the destination only from the
source's admin IP and without a pty or forwarding, and the source accepts
only the destination host key that the head node read over its own trusted
connection. remove() takes it all away again.
"""
import shlex

HOST_KEY = "/var/ssh/ssh_host_ed25519_key.pub"


def make_key(src, key, known_hosts, comment, dst_ip, dst_hostkey):
    """Make the key on the source (root's alone) and the known_hosts that holds
    only the destination's host key; returns the public key."""
    return src.run(["sh", "-c", "umask 077 && rm -f %s %s.pub && "
                    "ssh-keygen -q -t ed25519 -N '' -C %s -f %s && cat %s.pub && "
                    "printf '%%s %%s\\n' %s %s > %s" % (
                        key, key, shlex.quote(comment), key, key,
                        shlex.quote(dst_ip), shlex.quote(dst_hostkey), known_hosts)])


def authorize(dst, src_ip, pub, backup):
    """Authorize pub on the destination from src_ip only, no pty, no forwarding,
    after backing up authorized_keys to backup."""
    entry = 'from="%s",no-pty,no-agent-forwarding,no-port-forwarding,no-X11-forwarding,' \
            'no-user-rc %s' % (src_ip, " ".join(pub.split()[:3]))
    dst.run(["sh", "-c", "umask 077 && touch /root/.ssh/authorized_keys && "
             "cp -p /root/.ssh/authorized_keys %s && cat >> /root/.ssh/authorized_keys"
             % backup], input=entry + "\n")


def unauthorize(dst, backup):
    dst.run(["mv", "-f", backup, "/root/.ssh/authorized_keys"])


def remove_key(src, key, known_hosts):
    src.run(["rm", "-f", key, key + ".pub", known_hosts])


class TempKey:
    def __init__(self, src, dst, tag, comment):
        self.src, self.dst = src, dst
        self.key = "/root/.ssh/migr-key-%s" % tag
        self.known_hosts = "/root/.ssh/migr-known-%s" % tag
        self.backup = "/root/.ssh/authorized_keys.%s" % tag
        self.comment = comment
        self.made = self.authorized = False

    def create(self):
        hostkey = " ".join(self.dst.run(["cat", HOST_KEY], readonly=True).split()[:2])
        pub = make_key(self.src, self.key, self.known_hosts, self.comment, self.dst.ip, hostkey)
        self.made = True
        authorize(self.dst, self.src.ip, pub, self.backup)
        self.authorized = True

    def remove(self):
        """Take away what create() made; safe to call after a partial create()."""
        if self.authorized:
            unauthorize(self.dst, self.backup)
            self.authorized = False
        if self.made:
            remove_key(self.src, self.key, self.known_hosts)
            self.made = False
