"""A temporary ssh key from one compute node to another, for a CN-to-CN stream.

The key is made on the source, authorized on the destination only from the
source's admin IP and without a pty or forwarding, and the source accepts
only the destination host key that the head node read over its own trusted
connection. remove() takes it all away again.
"""
import shlex

HOST_KEY = "/var/ssh/ssh_host_ed25519_key.pub"


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
        key, kh = self.key, self.known_hosts
        pub = self.src.run(["sh", "-c", "umask 077 && rm -f %s %s.pub && "
                            "ssh-keygen -q -t ed25519 -N '' -C %s -f %s && cat %s.pub && "
                            "printf '%%s %%s\\n' %s %s > %s" % (
                                key, key, shlex.quote(self.comment), key, key,
                                shlex.quote(self.dst.ip), shlex.quote(hostkey), kh)])
        self.made = True
        entry = 'from="%s",no-pty,no-agent-forwarding,no-port-forwarding,no-X11-forwarding,' \
                'no-user-rc %s' % (self.src.ip, " ".join(pub.split()[:3]))
        self.dst.run(["sh", "-c", "umask 077 && touch /root/.ssh/authorized_keys && "
                      "cp -p /root/.ssh/authorized_keys %s && cat >> /root/.ssh/authorized_keys"
                      % self.backup], input=entry + "\n")
        self.authorized = True

    def remove(self):
        """Take away what create() made; safe to call after a partial create()."""
        if self.authorized:
            self.dst.run(["mv", "-f", self.backup, "/root/.ssh/authorized_keys"])
            self.authorized = False
        if self.made:
            self.src.run(["rm", "-f", self.key, self.key + ".pub", self.known_hosts])
            self.made = False
