"""What a CN has (cnlink.FACTS, read at the gather) and the way a stream takes
between two CNs from it (cnlink.Link), against the real sources:
SunSSH 1.5's offer (illumos usr/src/cmd/ssh/include/myproposal.h), its
authorized_keys options (sshd/auth-options.c), OpenSSH 9's server key
exchanges (no SHA-1), zfs recv -s / send -t from illumos 2605, and the
net-agent releases that delete a hidden zone's NICs (sdc-net-agent before
9077600 TRITON-1814 and 06154f0 sdc-net-agent#3)."""
import shlex

import pytest

from sdc_migrate import cnlink, zfs
from sdc_migrate.errors import Refused


def facts_output(ssh, keys, zfs_state, package):
    return ("%s\n--- sdc-migrate: host keys ---\n%s--- sdc-migrate: zfs ---\n%s\n"
            "--- sdc-migrate: net-agent ---\n%s\n%s\nREST\n"
            % (ssh, "".join(k + "\n" for k in keys), zfs_state, package, cnlink.FACTS_END))


OPENSSH = facts_output("OpenSSH_9.1p1, LibreSSL 3.7.3",
                       ["ssh-rsa AAAArsa root@new", "ssh-ed25519 AAAAed root@new"], "resumable",
                       '{\n    "name": "net-agent",\n    "version": "2.3.6"\n}\n')
SUNSSH = facts_output("Sun_SSH_1.5, SSH protocols 1.5/2.0, OpenSSL 0x1000204f",
                      ["ssh-dss AAAAdss root@old", "ssh-rsa AAAArsa root@old"], "not-resumable",
                      '{"name": "net-agent", "version": "2.3.0"}')


def parsed(name, out):
    f, rest = cnlink.parse_facts(name, out)
    assert rest == "REST\n"
    return f


def test_facts_say_what_each_platform_has():
    new, old = parsed("new", OPENSSH), parsed("old", SUNSSH)
    assert not new.sunssh and new.resumable and new.net_agent == "2.3.6"
    assert old.sunssh and not old.resumable and old.net_agent == "2.3.0"
    assert new.ssh_name == "OpenSSH_9.1p1" and old.ssh_name == "Sun_SSH_1.5"
    assert old.describe() == ("Sun_SSH_1.5 (host keys: dss, rsa); zfs without resumable"
                              " receive; net-agent 2.3.0")
    # no net-agent installed: nothing to delete NICs
    none = parsed("x", facts_output("OpenSSH_9.1p1", [], "resumable", ""))
    assert none.net_agent is None and not none.net_agent_deletes_hidden()
    # a script whose output has no facts (an older journal's): none, the output kept
    assert cnlink.parse_facts("x", "a\nb\n") == (None, "a\nb\n")


@pytest.mark.parametrize("version,deletes", [
    ("1.4.0", False), ("2.0.0", True), ("2.2.3", True), ("2.3.0", True), ("2.3.1", True),
    ("2.3.2", False), ("2.3.6", False), ("2.3.6-20240424T010101Z-g4cd1613", False)])
def test_the_net_agents_that_delete_a_hidden_copys_nics_are_refused(version, deletes):
    f = cnlink.Facts("old-server", "OpenSSH_9", net_agent=version)
    assert f.net_agent_deletes_hidden() == deletes
    if not deletes:
        cnlink.check_net_agents(f, None)
        return
    with pytest.raises(Refused) as e:
        cnlink.check_net_agents(cnlink.Facts("dest-server", "OpenSSH_9", net_agent="2.3.6"), f)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("old-server's net-agent %s would delete" % version)
    assert "TRITON-1814" in msg and "2.3.2" in msg and "sdcadm experimental update-agents" in msg
    assert "when a rollback hides its copy there" in msg
    with pytest.raises(Refused, match="when the migration hides the copy it leaves there"):
        cnlink.check_net_agents(f, None)


def test_two_current_platforms_push_with_aes_gcm_and_resume():
    link = cnlink.Link(parsed("src", OPENSSH), parsed("dst", OPENSSH))
    assert not link.pull and link.client.hostname == "src"
    assert (link.key_type, link.cipher, link.host_key) == \
        ("ed25519", "aes128-gcm@openssh.com", "ssh-ed25519 AAAAed")
    assert link.resumable and link.ssh_options() == [] and link.slower() == []
    assert link.authorized_options() == "restrict"


def test_a_sunssh_source_is_pulled_by_an_openssh_destination():
    """OpenSSH 9's sshd offers no SHA-1 key exchange, SunSSH's client nothing
    else: the destination's ssh reaches the source's SunSSH sshd instead."""
    link = cnlink.Link(parsed("old", SUNSSH), parsed("new", OPENSSH))
    assert link.pull and link.client.hostname == "new" and link.server.hostname == "old"
    assert (link.key_type, link.cipher, link.host_key) == ("rsa", "aes128-ctr", "ssh-rsa AAAArsa")
    assert not link.resumable
    assert "KexAlgorithms=+diffie-hellman-group-exchange-sha1,diffie-hellman-group1-sha1" \
        in link.ssh_options()
    assert "no-user-rc" not in link.authorized_options()
    argv = zfs.send_pipeline("zones/U", "s1", "zones/U@s0", "127.0.10.14", "127.0.10.12",
                             "/root/.ssh/k", "/root/.ssh/kh", props=True,
                             pidfile="/var/tmp/p", bwlimit=1000000, link=link)
    ssh, throttle, recv = argv[-1].split(" | ")
    words = shlex.split(ssh)
    assert words[:3] == ["ssh", "-i", "/root/.ssh/k"] and "BindAddress=127.0.10.12" in words
    assert words[words.index("-c") + 1] == "aes128-ctr" and words[-2] == "root@127.0.10.14"
    assert shlex.split(words[-1]) == ["zfs", "send", "-p", "-i", "zones/U@s0", "zones/U@s1"]
    assert shlex.split(throttle)[0] == zfs.NODE
    assert shlex.split(recv)[-4:] == ["zfs", "recv", "-u", "-F", "zones/U"][-4:]
    assert "-s" not in shlex.split(recv)


def test_an_openssh_source_pushes_to_a_sunssh_destination_with_what_sunssh_has():
    link = cnlink.Link(parsed("new", OPENSSH), parsed("old", SUNSSH))
    assert not link.pull and link.client.hostname == "new"
    assert (link.key_type, link.cipher, link.host_key) == ("rsa", "aes128-ctr", "ssh-rsa AAAArsa")
    assert link.ssh_options() and "no-user-rc" not in link.authorized_options()
    argv = zfs.send_pipeline("zones/U", "s1", None, "127.0.10.11", "127.0.10.14", "k", "kh",
                             link=link)
    send, ssh = argv[-1].split(" | ")
    assert shlex.split(shlex.split(ssh)[-1]) == ["zfs", "recv", "-u", "-F", "zones/U"]
    assert link.slower() == ["SunSSH on old has no aes128-gcm nor ed25519",
                             "old's zfs has no resumable receive"]


def test_two_sunssh_cns_push_without_openssh_options():
    """SunSSH's ssh knows no KexAlgorithms (readconf.c): nothing added."""
    link = cnlink.Link(parsed("a", SUNSSH), parsed("b", SUNSSH))
    assert not link.pull and link.ssh_options() == [] and link.cipher == "aes128-ctr"


def test_no_host_key_the_client_can_check_is_refused():
    """SunSSH's ssh checks ssh-rsa and ssh-dss host keys only (myproposal.h)."""
    only_ed = cnlink.Facts("b", "Sun_SSH_1.5", ["ssh-ed25519 AAAA x"])
    with pytest.raises(Refused, match="b's sshd has no host key a's Sun_SSH_1.5 can check"):
        cnlink.Link(cnlink.Facts("a", "Sun_SSH_1.5", []), only_ed).check()
    assert cnlink.Link(cnlink.Facts("c", "OpenSSH_9", []), only_ed).host_key == "ssh-ed25519 AAAA"
