"""The CN-to-CN stream: what each compute node's platform allows it (Facts,
Link) and the temporary ssh key it runs with.

The key is made on the CN that runs the stream's ssh (the source, or a
destination that pulls) and authorized on the other only from the first one's
admin IP, with no pty, forwarding or ~/.ssh/rc (where that sshd knows the
option), and with a forced command that runs the one thing the migration asks
over it: on a destination, RECEIVE_ONLY, `zfs recv [-s] -u -F [-x encryption]
[-o P=V]... DATASET` into one instance's own datasets; on a source that is
pulled from, SEND_ONLY, `zfs send` of one instance's own snapshots; anything
else is refused. The first CN accepts only the other's host key that the head
node read over its own trusted connection. remove() takes it all away again.

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
import re

from . import paths
from .errors import Refused
from .node import Node, forced_command

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

# ---- the forced commands -----------------------------------------------------
# The key's command=, run by the sshd of the CN it is authorized on (with
# root's shell -c) for every session of the key, whatever the client asked
# for; what the client asked for is in $SSH_ORIGINAL_COMMAND (openssh-portable
# session.c do_exec; SunSSH's sshd, an OpenSSH 2.x/3.x descendant, the same:
# illumos usr/src/cmd/ssh/sshd/session.c). Both scripts take the client's
# words split on spaces, each made only of letters, digits and a few
# punctuation characters (no quote, $, `, ;, &, |, <, >, glob or newline can
# reach a shell: the words are never parsed as shell text, and zfs is run with
# them as its arguments), check that they are exactly a command the migration
# runs on a dataset of zones/NAME, and run zfs with them; anything else: one
# line on stderr, exit status 126, nothing run. A dataset of zones/NAME is
# zones/NAME, a child of it (a delegated dataset, a bhyve disk) or
# zones/NAME-diskN (a kvm disk). NAME is the instance's UUID (or the estimate's
# scratch dataset's name under zones/). LC_ALL=C: the shell's patterns match
# bytes, as dash, bash and ksh93 (SmartOS's /bin/sh) all do then.
SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
REFUSED = 126
# What both begin with, once $name, $does and $chars (the punctuation a word
# may hold) are set: no MESSAGE refuses, the name is checked, the client's
# words become "$@", and mine DATASET refuses what is not zones/NAME's.
KEY_START = (
    'LC_ALL=C; export LC_ALL; '
    'no() { echo "sdc-migrate: refused: $1 (this key only $does the datasets of '
    'zones/$name)" >&2; exit %d; }; ' % REFUSED +
    'case $name in ""|[!' + SAFE + ']*|*[!' + SAFE + '-]*) no "bad instance name";; esac; '
    '[ -n "${SSH_ORIGINAL_COMMAND:-}" ] || no "no command"; '
    'set -f; IFS=" "; set -- $SSH_ORIGINAL_COMMAND; '
    'mine() { case $1 in '
    '"zones/$name") ;; '
    '"zones/$name"/*) case /${1#"zones/$name/"}/ in *//*|*/./*|*/../*) '
    'no "not a dataset of zones/$name: $1";; esac;; '
    '"zones/$name"-disk*) case ${1#"zones/$name-disk"} in ""|*[!0123456789]*) '
    'no "not a dataset of zones/$name: $1";; esac;; '
    '*) no "not a dataset of zones/$name: $1";; '
    'esac; }; ')

# sh -c RECEIVE_ONLY sh NAME [PIDFILE [not-resumable]], on the destination a
# stream is pushed to: PIDFILE, if given, holds this shell's pid while zfs
# recv runs (transfer.wait_for_receive waits on it), and is removed when it
# ends. It runs the client's command only if it is exactly
#   zfs recv -s -u -F [-x encryption] [-o PROPERTY=VALUE]... DATASET
# (zfs.recv_command), without -s where the receive is not resumable (a
# platform's zfs before illumos 2605: the third argument), every word made of
# letters, digits and / _ . : - = , only. The -o properties are those a
# stream from an encrypted pool cannot carry (transfer.stream): never origin,
# and a mountpoint only inside /zones/NAME.
RECEIVE_ONLY = (
    'name=$1; pidfile=$2; s=-s; [ "$3" = not-resumable ] && s=; does=receives; ' + KEY_START +
    'for w in "$@"; do case $w in *[!' + SAFE + '/_.:=,-]*) '
    'no "a character other than a letter, a digit, a space or / _ . : - = ,";; esac; done; '
    'shape="not zfs recv $s -u -F [-x encryption] [-o PROPERTY=VALUE]... DATASET"; '
    '[ $# -ge 2 ] && [ "$1 $2" = "zfs recv" ] || no "$shape"; shift 2; '
    'if [ -n "$s" ]; then [ $# -ge 1 ] && [ "$1" = -s ] || no "$shape"; shift; fi; '
    '[ $# -ge 3 ] && [ "$1 $2" = "-u -F" ] || no "$shape"; shift 2; x=; o=; '
    'if [ $# -ge 3 ] && [ "$1 $2" = "-x encryption" ]; then x="-x encryption"; shift 2; fi; '
    'while [ $# -ge 3 ] && [ "$1" = -o ]; do '
    'case $2 in origin=*) no "-o $2";; '
    'mountpoint=*) case ${2#mountpoint=}/ in "/zones/$name"/*) '
    'case ${2#mountpoint=}/ in *//*|*/./*|*/../*) no "-o $2";; esac;; *) no "-o $2";; esac;; '
    '[abcdefghijklmnopqrstuvwxyz]*=*) ;; *) no "-o $2";; esac; '
    'o="$o -o $2"; shift 2; done; '
    '[ $# -eq 1 ] || no "$shape"; '
    'ds=$1; mine "$ds"; '
    'set -- zfs recv $s -u -F $x $o "$ds"; '
    '[ -n "$pidfile" ] || exec "$@"; '
    'echo $$ > "$pidfile" || exit 1; "$@"; s=$?; rm -f "$pidfile"; exit $s')

# sh -c SEND_ONLY sh NAME [not-resumable], on a source a destination pulls
# from (Link.pull). It runs the client's command only if it is exactly
#   zfs send [-vP] [-p] [-i FROM] DATASET@SNAPSHOT
# (the send of zfs.send_pipeline), FROM a snapshot of DATASET (@S or
# DATASET@S) or DATASET's origin (a clone's image, zfs get origin), or, unless
# not resumable,
#   zfs send -t TOKEN
# whose token's snapshot (toname, as `zfs send -nv -t` prints the token's
# contents: illumos libzfs_sendrecv.c zfs_send_resume) is of a dataset of
# zones/NAME; every word made of letters, digits and / _ . : - @ only. No
# -R, -D, -w, -c or anything else zfs send takes.
SEND_ONLY = (
    'name=$1; mode=$2; does=sends; ' + KEY_START +
    'for w in "$@"; do case $w in *[!' + SAFE + '/_.:@-]*) '
    'no "a character other than a letter, a digit, a space or / _ . : - @";; esac; done; '
    'shape="not zfs send [-vP] [-p] [-i FROM] DATASET@SNAPSHOT, nor zfs send -t TOKEN"; '
    '[ $# -ge 3 ] && [ "$1 $2" = "zfs send" ] || no "$shape"; shift 2; '
    'if [ "$1" = -t ]; then '
    '[ "$mode" = not-resumable ] && no "zfs send -t: no resumable receive here"; '
    '[ $# -eq 2 ] || no "$shape"; t=$2; '
    'to=$(zfs send -nv -t "$t" 2>&1 | awk \'$1 == "toname" && $2 == "=" { print $3; exit }\'); '
    'case $to in [!@]*@*) ;; *) no "a resume token that names no snapshot";; esac; '
    'mine "${to%%@*}"; exec zfs send -t "$t"; fi; '
    'v=; p=; i=; from=; '
    'if [ "$1" = -vP ]; then v=-vP; shift; fi; '
    'if [ "$1" = -p ]; then p=-p; shift; fi; '
    'if [ "$1" = -i ]; then [ $# -ge 3 ] || no "$shape"; from=$2; i="-i $2"; shift 2; fi; '
    '[ $# -eq 1 ] || no "$shape"; snap=$1; ds=${snap%@*}; '
    'case $snap in *@*@*|*@|@*|*@*/*) no "not a snapshot: $snap";; *@*) ;; '
    '*) no "not a snapshot: $snap";; esac; '
    'mine "$ds"; '
    'if [ -n "$i" ]; then case $from in '
    '*@*@*|*@|*@*/*) no "-i $from";; '
    '@*|"$ds"@*) ;; '
    '*@*) [ "$from" = "$(zfs get -H -o value origin "$ds" 2>/dev/null)" ] || '
    'no "-i $from: not a snapshot of $ds nor its origin";; '
    '*) no "-i $from";; esac; fi; '
    'set -- zfs send $v $p $i "$snap"; exec "$@"')


# `restrict` (every restriction sshd has, now and later) came with OpenSSH 7.2
# (openssh-portable 383f10fb8, 2015-11-16; SmartOS 7.2p2 from 2016-03,
# illumos-extra 5c2d4f0): before it, an unknown option refuses the key, so
# older platforms (OpenSSH 6.9 and 7.1, 2015-08 to 2016-03) get the list.
RESTRICT_SINCE = (7, 2)
OLD_RESTRICTIONS = KEY_OPTIONS + ",no-user-rc"


def has_restrict(ssh_version):
    """Whether an sshd of this `ssh -V` line knows the `restrict` key option."""
    found = re.search(r"OpenSSH_(\d+)\.(\d+)", ssh_version or "")
    return bool(found) and (int(found.group(1)), int(found.group(2))) >= RESTRICT_SINCE


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
        """The authorized_keys restrictions the server's sshd knows: an option
        it does not know denies the key. SunSSH's (auth-options.c) has no
        no-user-rc; OpenSSH's has `restrict` (every restriction, now and
        later) since 7.2, and the list before."""
        if self.server.sunssh:
            return KEY_OPTIONS
        return "restrict" if has_restrict(self.server.ssh) else OLD_RESTRICTIONS

    def forced_command(self, name, pidfile=None):
        """The key's command=: a pushed stream's server receives (RECEIVE_ONLY
        with pidfile), a pulled one's sends (SEND_ONLY), zones/NAME's
        datasets only, resumable or not as the link is."""
        mode = "resumable" if self.resumable else "not-resumable"
        if self.pull:
            return forced_command(["/bin/sh", "-c", SEND_ONLY, "sh", name, mode])
        return forced_command(["/bin/sh", "-c", RECEIVE_ONLY, "sh", name, pidfile or "", mode])

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


def entry(client_ip, pub, name, pidfile, link):
    """The authorized_keys line of the key pub: from client_ip only, the
    restrictions the server's sshd knows, and the forced command of the link's
    server (Link.forced_command): zones/NAME's datasets only."""
    return '%s,%s,from="%s" %s' % (link.authorized_options(), link.forced_command(name, pidfile),
                                   client_ip, " ".join(pub.split()[:3]))


def authorize(server, client_ip, pub, backup, name, pidfile, link):
    """Authorize pub on the server CN (see entry), after backing up
    authorized_keys to backup."""
    server.run(["sh", "-c", AUTHORIZE, "sh", backup],
               input=entry(client_ip, pub, name, pidfile, link) + "\n")


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
    """A temporary key for one stream of zones/NAME from src to dst (estimate's
    measure), made on the CN that runs it, as a migration makes its own (keys
    steps)."""

    def __init__(self, src, dst, tag, comment, name, link):
        self.link, self.name = link, name
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
        authorize(self.server, self.client.ip, pub, self.backup, self.name, None, self.link)
        self.authorized = True

    def remove(self):
        """Take away what create() made; safe to call after a partial create()."""
        if self.authorized:
            unauthorize(self.server, self.backup, self.blob)
            self.authorized = False
        if self.made:
            remove_key(self.client, self.key, self.known_hosts)
            self.made = False
