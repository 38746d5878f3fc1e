"""SunSSH 1.5, the ssh of SmartOS platforms before OpenSSH (smartos-live
OS-4688, 2015-08-14), on a simulated host whose platform predates it
(common.sunssh).

Read from illumos usr/src/cmd/ssh (illumos-joyent carried illumos-gate's
SunSSH unchanged):
- include/myproposal.h: what it offers, as a server and as a client:
  key exchange diffie-hellman-group-exchange-sha1, diffie-hellman-group1-sha1;
  host keys ssh-rsa, ssh-dss; ciphers aes128-ctr, arcfour, aes192-ctr,
  aes256-ctr; MACs hmac-md5, hmac-sha1, hmac-sha1-96, hmac-md5-96. No
  ed25519, no ecdsa, no aes-gcm, no chacha20, no SHA-2. (arcfour is left out
  here: the OpenSSH under the simulation has none.)
- SmartOS's own sshd_config before OS-4788 (smartos-live
  overlay/generic/etc/ssh/sshd_config) sets none of them, and HostKey
  /var/ssh/ssh_host_rsa_key and ssh_host_dsa_key only (here rsa alone: this
  OpenSSH no longer offers DSA host keys).
- sshd/auth-options.c auth_parse_options: an authorized_keys option it does
  not know (no-user-rc, restrict, ...) denies that key ("Bad options in ...").
- ssh/ssh.c: `-V` prints "Sun_SSH_1.5, SSH protocols 1.5/2.0, OpenSSL 0x..."
  on stderr; `-c` with a cipher it lacks: "Unknown cipher type '...'", exit 1;
  readconf.c: an option it does not know: "command-line line 0: Bad
  configuration option: ...", exit 1.
- ssh-keygen/ssh-keygen.c: `-t` of a type it lacks: "unknown key type ...",
  exit 1 (it knows rsa1, rsa and dsa).

The server side is the host's OpenSSH sshd held to SunSSH's offer
(control.py writes its sshd_config from SERVER_CONFIG, with
authorized_keys read through `authorized_keys()`); the client side is
tools/sim/sunssh/ssh and ssh-keygen on the host's /usr/bin, which run the
real ones held to the same offer.
"""
import os
import sys

from . import common

VERSION = "Sun_SSH_1.5, SSH protocols 1.5/2.0, OpenSSL 0x1000204f"
KEX = "diffie-hellman-group-exchange-sha1,diffie-hellman-group1-sha1"
HOST_KEY_ALGORITHMS = "ssh-rsa"
CIPHERS = "aes128-ctr,aes192-ctr,aes256-ctr"
MACS = "hmac-md5,hmac-sha1,hmac-sha1-96,hmac-md5-96"
USER_KEY_ALGORITHMS = "ssh-rsa,ssh-dss"
# The server takes RSA keys' SHA-2 signatures too: this OpenSSH sshd announces
# server-sig-algs, which SunSSH never did, and a client then signs with SHA-2
# what it would sign ssh-rsa for SunSSH. Only RSA and DSA keys, as SunSSH.
SERVER_USER_KEY_ALGORITHMS = USER_KEY_ALGORITHMS + ",rsa-sha2-256,rsa-sha2-512"
# cipher.c's names (SSH2), which `-c` takes
KNOWN_CIPHERS = {"aes128-ctr", "aes192-ctr", "aes256-ctr", "aes128-cbc", "aes192-cbc",
                 "aes256-cbc", "3des-cbc", "blowfish-cbc", "arcfour", "3des", "blowfish"}
# options of OpenSSH's ssh after 3.5p1 (SunSSH's base), that SunSSH's readconf.c lacks
UNKNOWN_OPTIONS = {"kexalgorithms", "pubkeyacceptedalgorithms", "pubkeyacceptedkeytypes",
                   "ignoreunknown", "controlmaster", "controlpath", "controlpersist",
                   "hostkeyalias", "identitiesonly", "requesttty", "updatehostkeys",
                   "casignaturealgorithms", "hostbasedacceptedalgorithms"}
KEY_TYPES = {"rsa1", "rsa", "dsa", "ssh-rsa", "ssh-dss"}
# auth-options.c: the options it parses (environment= only with PermitUserEnvironment)
KEY_OPTIONS = ("no-port-forwarding", "no-agent-forwarding", "no-X11-forwarding", "no-pty",
               'command="', 'from="', 'permitopen="')

SERVER_CONFIG = """\
# SunSSH 1.5's offer (illumos usr/src/cmd/ssh/include/myproposal.h; simdc/sunssh.py)
HostKey /var/ssh/ssh_host_rsa_key
KexAlgorithms %s
HostKeyAlgorithms %s
Ciphers %s
MACs %s
PubkeyAcceptedAlgorithms %s
""" % (KEX, HOST_KEY_ALGORITHMS, CIPHERS, MACS, SERVER_USER_KEY_ALGORITHMS)

# what the client sends, whatever it is asked (prepended: ssh takes the first
# value of an option)
CLIENT_OPTIONS = ["-o", "KexAlgorithms=" + KEX, "-o", "HostKeyAlgorithms=ssh-rsa,ssh-dss",
                  "-o", "Ciphers=" + CIPHERS, "-o", "MACs=" + MACS,
                  "-o", "PubkeyAcceptedAlgorithms=" + USER_KEY_ALGORITHMS]
# OpenSSH's ssh options that take an argument
WITH_ARGUMENT = set("BbcDEeFIiJLlmOoPpQRSWw")


def real(name):
    return common.path("realbin", name)


def ssh(argv):
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("-") or a == "-":
            break
        if a == "--":
            break
        j = 1
        while j < len(a):
            c = a[j]
            if c == "V":
                sys.stderr.write(VERSION + "\n")
                return 0
            if c in WITH_ARGUMENT:
                value = a[j + 1:]
                if not value:
                    i += 1
                    value = argv[i] if i < len(argv) else ""
                if c == "c":
                    for cipher in value.split(","):
                        if cipher not in KNOWN_CIPHERS:
                            sys.stderr.write("Unknown cipher type '%s'\n" % value)
                            return 1
                elif c == "o":
                    key = value.replace("=", " ").split(None, 1)[0] if value.strip() else ""
                    if key.lower() in UNKNOWN_OPTIONS:
                        sys.stderr.write("command-line line 0: Bad configuration option: "
                                         "%s\n" % key)
                        return 1
                    if key.lower() == "stricthostkeychecking" and \
                            value.split("=", 1)[-1].strip().lower() not in ("yes", "no", "ask"):
                        sys.stderr.write("command-line line 0: Bad yes/no/ask argument.\n")
                        return 1
                break
            j += 1
        i += 1
    os.execv(real("ssh"), ["ssh"] + CLIENT_OPTIONS + list(argv))


def ssh_keygen(argv):
    for i, a in enumerate(argv):
        if a.startswith("-t"):
            kind = a[2:] or (argv[i + 1] if i + 1 < len(argv) else "")
            if kind not in KEY_TYPES:
                sys.stderr.write("unknown key type %s\n" % kind)
                return 1
    os.execv(real("ssh-keygen"), ["ssh-keygen"] + list(argv))


# ---- the server's authorized_keys -------------------------------------------------

def options_ok(opts):
    """auth_parse_options: True if SunSSH grants a key with these options."""
    while opts and opts[0] not in " \t":
        for known in KEY_OPTIONS:
            if opts[:len(known)].lower() == known.lower():
                opts = opts[len(known):]
                if known.endswith('"'):
                    end = opts.find('"')
                    while end > 0 and opts[end - 1] == "\\":
                        end = opts.find('"', end + 1)
                    if end < 0:
                        return False        # missing end quote
                    opts = opts[end + 1:]
                break
        else:
            return False                    # Bad options in ... file
        if not opts or opts[0] in " \t":
            break
        if opts[0] != ",":
            return False
        opts = opts[1:]
    return True


def split_options(line):
    """(options, rest) of an authorized_keys line: options end at the first
    blank outside quotes, a \\" inside them is a quote that ends nothing
    (sshd/auth2-pubkey.c user_key_allowed2: "Skip both", as every OpenSSH
    since 2.x); a line that starts with a key type has none."""
    first = line.split(None, 1)[0] if line.split() else ""
    if first in ("ssh-rsa", "ssh-dss") or first.isdigit() or \
            first.startswith(("ssh-", "ecdsa-", "sk-")):
        return "", line
    quoted = False
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and line[i + 1:i + 2] == '"':
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch in " \t" and not quoted:
            return line[:i], line[i:].strip()
        i += 1
    return line, ""


def authorized_keys(path):
    """The lines of an authorized_keys file SunSSH's sshd would grant:
    ssh-rsa and ssh-dss keys whose options it knows."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        opts, rest = split_options(line.strip())
        if rest.split(None, 1)[:1] not in (["ssh-rsa"], ["ssh-dss"]):
            continue
        if opts and not options_ok(opts):
            continue
        out.append(line)
    return out


def authorized_keys_main(argv):
    """sshd's AuthorizedKeysCommand on a SunSSH host: USER -> the lines it grants."""
    import pwd
    try:
        home = pwd.getpwnam(argv[0]).pw_dir if argv else "/root"
    except KeyError:
        return 0
    for line in authorized_keys(os.path.join(home, ".ssh", "authorized_keys")):
        sys.stdout.write(line + "\n")
    return 0
