"""The CN-to-CN stream: what each compute node's platform allows it (Facts,
Link) and the temporary ssh key it runs with.

The key is made on the CN that runs the stream's ssh, authorized on the other
only from the first one's admin IP and without a pty or forwarding, and the
first one accepts only the other's host key that the head node read over its
own trusted connection. remove() takes it all away again.

What a CN has is read at the gather, in the round trip the gather makes to it
anyway (FACTS): its ssh, its sshd's host keys, whether its zfs has resumable
receives, and its net-agent's version. SmartOS had SunSSH until OpenSSH
replaced it in August 2015 (smartos-live OS-4688), and SunSSH 1.5 offers
only SHA-1 key exchanges, ssh-rsa/ssh-dss keys, aes-ctr and hmac-sha1/md5
(illumos usr/src/cmd/ssh/include/myproposal.h); an OpenSSH since 8.8 offers
none of those SHA-1 exchanges as a server, so a SunSSH CN cannot send to
one: the receiving CN pulls the stream instead. zfs receive -s and send -t
came with illumos 2605 (late 2015).
"""
import json

from . import paths
from .errors import Refused
from .node import Node

NET_AGENT_PACKAGE = "/opt/smartdc/agents/lib/node_modules/net-agent/package.json"
FACTS_END = "--- sdc-migrate: end of facts ---"
# sh -c FACTS (no arguments): what a CN has, each gather script's first part;
# parse_facts reads it
FACTS = ('ssh -V 2>&1 | head -n 1; echo "--- sdc-migrate: host keys ---"; '
         'cat /var/ssh/ssh_host_*_key.pub 2>/dev/null; echo "--- sdc-migrate: zfs ---"; '
         'if zfs get -H -o value receive_resume_token zones >/dev/null 2>&1; '
         'then echo resumable; else echo not-resumable; fi; '
         'echo "--- sdc-migrate: net-agent ---"; cat ' + NET_AGENT_PACKAGE + ' 2>/dev/null; '
         'echo; echo "' + FACTS_END + '"; ')
# net-agent from 2.0.0 (its FSM rewrite) forgot that a zone turning
# do_not_inventory is not gone, and deleted its NICs in NAPI: fixed in 2.3.1
# (TRITON-1814: lib/net-agent.js stops tracking such a VM) and, for the
# vmadm-events watcher, 2.3.2 (sdc-net-agent#3, "Instance loses NIC after
# sdc-migrate - again"). 1.x released NICs only of zones zoneadm no longer
# lists (lib/vm.js checkDestroyed).
NET_AGENT_DELETES_HIDDEN = ((2, 0, 0), (2, 3, 2))
NET_AGENT_FIXED = "2.3.2"
# the key types a client can check a host key of, best first
OPENSSH_HOST_KEYS = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                     "ecdsa-sha2-nistp521", "ssh-rsa")
SUNSSH_HOST_KEYS = ("ssh-rsa", "ssh-dss")
KEY_OPTIONS = "no-pty,no-agent-forwarding,no-port-forwarding,no-X11-forwarding"
FAST_CIPHER = "aes128-gcm@openssh.com"
SUNSSH_CIPHER = "aes128-ctr"        # the best both SunSSH and OpenSSH have


def version_tuple(v):
    out = []
    for part in str(v).split("-")[0].split(".")[:3]:
        digits = ""
        for c in part:
            if not c.isdigit():
                break
            digits += c
        out.append(int(digits or 0))
    return tuple((out + [0, 0, 0])[:3])


class Facts:
    """What one compute node has that a migration relies on."""

    def __init__(self, hostname, ssh="", host_keys=(), resumable=True, net_agent=None):
        self.hostname = hostname
        self.ssh = ssh.strip()
        self.host_keys = {}             # key type -> "TYPE BLOB", as sshd has them
        for line in host_keys:
            words = line.split()
            if len(words) >= 2:
                self.host_keys.setdefault(words[0], " ".join(words[:2]))
        self.resumable = resumable
        self.net_agent = net_agent      # its version, or None: no net-agent

    @property
    def sunssh(self):
        return self.ssh.startswith("Sun_SSH")

    @property
    def ssh_name(self):
        return self.ssh.split(",")[0].split()[0] if self.ssh else "an unknown ssh"

    def host_key_for(self, client):
        """The host key of ours that client's ssh can check ("TYPE BLOB"), or None."""
        for kind in (SUNSSH_HOST_KEYS if client.sunssh else OPENSSH_HOST_KEYS):
            if kind in self.host_keys:
                return self.host_keys[kind]
        return None

    def net_agent_deletes_hidden(self):
        low, fixed = NET_AGENT_DELETES_HIDDEN
        return self.net_agent is not None and low <= version_tuple(self.net_agent) < fixed

    def describe(self):
        keys = ", ".join(k.replace("ssh-", "").split("-")[0] for k in self.host_keys) or "none"
        return "%s (host keys: %s); zfs %s resumable receive; net-agent %s" % (
            self.ssh_name, keys, "with" if self.resumable else "without",
            self.net_agent or "none")

    def as_dict(self):
        return {"hostname": self.hostname, "ssh": self.ssh_name, "sunssh": self.sunssh,
                "host_keys": sorted(self.host_keys), "resumable_receive": self.resumable,
                "net_agent": self.net_agent}


def parse_facts(hostname, out):
    """(Facts, the rest of the output) from a script that began with FACTS."""
    head, sep, rest = out.partition(FACTS_END + "\n")
    if not sep:
        return None, out
    sections = {"ssh": []}
    current = sections["ssh"]
    for line in head.splitlines():
        if line.startswith("--- sdc-migrate: ") and line.endswith(" ---"):
            current = sections.setdefault(line[len("--- sdc-migrate: "):-4], [])
        else:
            current.append(line)
    version = None
    package = "\n".join(sections.get("net-agent", [])).strip()
    if package:
        try:
            version = str(json.loads(package).get("version") or "") or None
        except (ValueError, AttributeError):
            version = "unreadable"
    return Facts(hostname, (sections["ssh"] or [""])[0],
                 sections.get("host keys", []),
                 "resumable" in sections.get("zfs", []), version), rest


def check_net_agents(src=None, dst=None):
    """Refuse, naming the agent and the fix, if a CN's net-agent would delete
    the NICs of the instance's copy hidden there: the source's at the switch,
    the destination's if the migration is rolled back."""
    for f, when in ((src, "the migration hides the copy it leaves there"),
                    (dst, "a rollback hides its copy there")):
        if f is not None and f.net_agent_deletes_hidden():
            raise Refused(
                "%s's net-agent %s would delete the instance's NICs in NAPI when %s"
                " (TRITON-1814, fixed in net-agent %s): update the agents of %s first"
                " (sdcadm experimental update-agents, no reboot); nothing was changed"
                % (f.hostname, f.net_agent, when, NET_AGENT_FIXED, f.hostname))


class Link:
    """How a stream goes from src to dst with what each has (Facts): which CN
    runs it (the source pushes; a SunSSH source to an OpenSSH destination is
    pulled by the destination), the key type, the cipher, the host key to pin,
    and whether a cut stream can be resumed."""

    def __init__(self, src, dst):
        self.src, self.dst = src, dst
        self.pull = src.sunssh and not dst.sunssh
        self.client, self.server = (dst, src) if self.pull else (src, dst)
        modern = not src.sunssh and not dst.sunssh
        self.key_type = "ed25519" if modern else "rsa"
        self.cipher = FAST_CIPHER if modern else SUNSSH_CIPHER
        self.host_key = self.server.host_key_for(self.client)
        self.resumable = src.resumable and dst.resumable

    def check(self):
        if self.host_key is None:
            raise Refused("%s's sshd has no host key %s's %s can check (it has: %s)"
                          % (self.server.hostname, self.client.hostname, self.client.ssh_name,
                             ", ".join(sorted(self.server.host_keys)) or "none"))

    def ssh_options(self):
        """What the running CN's ssh adds: an OpenSSH reaching SunSSH must allow
        its SHA-1 key exchange and ssh-rsa signatures; SunSSH's knows no such
        option."""
        return list(Node.LEGACY) if (self.server.sunssh and not self.client.sunssh) else []

    def authorized_options(self):
        """The authorized_keys options: SunSSH's sshd denies a key with an
        option it does not know (auth-options.c), no-user-rc among them."""
        return KEY_OPTIONS if self.server.sunssh else KEY_OPTIONS + ",no-user-rc"

    def slower(self):
        """Why this link is not the one two current platforms take, in words."""
        out = []
        if self.pull:
            out.append("%s's %s cannot reach %s's sshd" % (
                self.src.hostname, self.src.ssh_name, self.dst.hostname))
        sunssh = [f.hostname for f in (self.src, self.dst) if f.sunssh]
        if sunssh:
            out.append("SunSSH on %s has no %s nor ed25519" % (" and ".join(sunssh),
                                                                FAST_CIPHER.split("@")[0]))
        if not self.resumable:
            out.append("%s's zfs has no resumable receive" % " and ".join(
                f.hostname for f in (self.src, self.dst) if not f.resumable))
        return out

    def describe(self):
        return "%s %s: ssh -c %s, a temporary %s key, %s's %s host key; a cut stream %s" % (
            self.client.hostname, "pulls from %s" % self.src.hostname if self.pull else
            "sends to %s" % self.dst.hostname, self.cipher, self.key_type,
            self.server.hostname, (self.host_key or "no").split()[0],
            "goes on from its resume token (zfs send -t)" if self.resumable else
            "starts again from the last snapshot both have")

    def as_dict(self):
        return {"runs_on": self.client.hostname, "pull": self.pull, "cipher": self.cipher,
                "key_type": self.key_type,
                "host_key_type": (self.host_key or " ").split()[0] or None,
                "resumable": self.resumable}


# sh -c SCRIPT sh ARG...: the values are arguments, never script text.
# MAKE_KEY KEY COMMENT SERVER_IP SERVER_HOSTKEY KNOWN_HOSTS TYPE
MAKE_KEY = ('umask 077 && rm -f "$1" "$1.pub" && '
            'ssh-keygen -q -t "$6" -b 2048 -N "" -C "$2" -f "$1" && cat "$1.pub" && '
            'printf "%s %s\\n" "$3" "$4" > "$5"')


def make_key(client, key, known_hosts, comment, server_ip, server_hostkey, key_type="ed25519"):
    """Make the key on the CN that runs the stream (root's alone) and the
    known_hosts that holds only the other CN's host key; returns the public key."""
    return client.run(["sh", "-c", MAKE_KEY, "sh", key, comment, server_ip, server_hostkey,
                       known_hosts, key_type])


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


def authorize(server, client_ip, pub, backup, options=KEY_OPTIONS + ",no-user-rc"):
    """Authorize pub on the server CN from client_ip only, no pty, no
    forwarding, after backing up authorized_keys to backup."""
    entry = 'from="%s",%s %s' % (client_ip, options, " ".join(pub.split()[:3]))
    server.run(["sh", "-c", AUTHORIZE, "sh", backup], input=entry + "\n")


def unauthorize(server, backup, blob=None):
    """Take our entry (the line holding the key blob) out of authorized_keys,
    leaving what others added since, and drop the backup. Without blob (a
    journal of an older run), put the backup back."""
    if blob is None:
        server.run(["mv", "-f", backup, AK])
        return
    server.run(["sh", "-c", UNAUTHORIZE, "sh", blob, backup])


def remove_key(client, key, known_hosts):
    client.run(["rm", "-f", key, key + ".pub", known_hosts])


def read_facts(*nodes):
    """Facts of each node, one call each (for those that have no gather)."""
    return [parse_facts(n.hostname, n.run(["sh", "-c", FACTS], readonly=True))[0]
            for n in nodes]


class TempKey:
    """A temporary key for one stream from src to dst (estimate's measure),
    made on the CN that runs it, as a migration makes its own (keys steps)."""

    def __init__(self, src, dst, tag, comment, link):
        self.link = link
        self.client, self.server = (dst, src) if self.link.pull else (src, dst)
        self.key = paths.temp_key(tag)
        self.known_hosts = paths.temp_known_hosts(tag)
        self.backup = paths.authorized_keys_backup(tag)
        self.comment = comment
        self.made = self.authorized = False

    def create(self):
        self.link.check()
        pub = make_key(self.client, self.key, self.known_hosts, self.comment, self.server.ip,
                       self.link.host_key, self.link.key_type)
        self.made = True
        self.blob = pub.split()[1]
        authorize(self.server, self.client.ip, pub, self.backup, self.link.authorized_options())
        self.authorized = True

    def remove(self):
        """Take away what create() made; safe to call after a partial create()."""
        if self.authorized:
            unauthorize(self.server, self.backup, self.blob)
            self.authorized = False
        if self.made:
            remove_key(self.client, self.key, self.known_hosts)
            self.made = False
