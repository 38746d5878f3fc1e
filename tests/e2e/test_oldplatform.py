"""Migrations from and to old-server, a SmartOS platform of 2015: SunSSH
instead of OpenSSH, no resumable zfs receive, and a net-agent from before
TRITON-1814 until its agents are updated. The tool reads what each CN has at
the gather and takes the slower way the older platform allows, or refuses
with what to update.

Real sources: SunSSH's offer, illumos usr/src/cmd/ssh/include/myproposal.h
(SHA-1 key exchanges, ssh-rsa, aes-ctr; no ed25519, no aes-gcm) and
sshd/auth-options.c (an unknown key option denies the key); zfs without
-s/-t before illumos 2605 (openzfs 9c3fd1216f^ usr/src/cmd/zfs/zfs_main.c);
sdc-net-agent before 9077600 (TRITON-1814) deleting the NICs of a zone
turning do_not_inventory (lib/net-agent.js updateVMs, lib/inst-fsm.js
state_remove, lib/nic-fsm.js release.delete).
"""
from checks import assert_migrated, assert_sequence_continues, dc_state, leftovers, net_agent

OLD = "old-server"


def state(dc, uuid):
    """dc_state, but for the head node's ssh ControlMaster folder (no state)."""
    s = dc_state(dc, uuid)
    s["headnode"] = s["headnode"].replace("sdc-migrate-ssh\n", "")
    return s


def nics(dc, uuid):
    return sorted((n["mac"], n["ip"]) for n in
                  dc.api("napi", "/nics?belongs_to_uuid=%s" % uuid)[2])


def streams(dc, uuid, since):
    """(host, argv) of every zfs send and receive of uuid's datasets since."""
    return [(r["host"], r["argv"]) for r in dc.log() if r["start"] >= since
            and r["argv"][:2] in (["zfs", "send"], ["zfs", "recv"])
            and any(uuid in a for a in r["argv"])]


def sshd_connections(dc, host, since_line):
    """'Connection from IP' lines of host's sshd log after line since_line."""
    log = dc.exec("headnode", "cat", "%s/hosts/%s/run/sshd.log"
                  % (dc.env["SIMDC_DIR"], host)).stdout.splitlines()
    return [l.split()[2] for l in log[since_line:] if l.startswith("Connection from ")], len(log)


def test_an_old_net_agent_is_refused_then_updated_and_a_sunssh_source_is_pulled_from(dc):
    """net-agent 2.3.0 on old-server would delete the instance's NICs when the
    migration hides the copy it leaves there: refused, nothing changed, the
    message names the agent and the fix. With its agents updated, the
    migration off old-server runs: dest-server pulls the stream (old-server's
    SunSSH cannot reach an OpenSSH 9 sshd), with aes128-ctr and an rsa key
    (SunSSH has neither aes128-gcm nor ed25519), receiving without -s; the
    instance ends on dest-server with every write and its NICs."""
    uuid = dc.provision("--server", OLD, "--size", "1")     # old-server: net-agent 2.3.0
    before_state = state(dc, uuid)
    p = dc.migrate("-y", uuid, "dest-server")
    assert p.returncode == 2, p.stdout + p.stderr
    error = p.stderr.strip().splitlines()[-1]
    assert "old-server's net-agent 2.3.0" in error and "sdcadm experimental update-agents" in error
    assert "TRITON-1814" in error and "nothing was changed" in error
    assert state(dc, uuid) == before_state
    # evacuating old-server would hide every copy there: refused as a whole
    p = dc.migrate("evacuate", "--dry-run", OLD)
    assert p.returncode == 2 and "old-server's net-agent 2.3.0 would delete" in p.stderr
    assert state(dc, uuid) == before_state

    before = dc.vm(uuid)
    before_nics = nics(dc, uuid)
    assert before_nics
    since = dc.log()[-1]["end"]
    _, line = sshd_connections(dc, OLD, 0)
    with net_agent(dc, OLD, "2.3.6"):
        p = dc.migrate("-y", uuid, "dest-server")
    assert p.returncode == 0, p.stdout + p.stderr
    assert_migrated(dc, uuid, before, p.stdout, src=OLD)
    assert_sequence_continues(dc, uuid, src=OLD)
    assert nics(dc, uuid) == before_nics
    # what each CN has and the way the data took, said before it went
    assert "%s: Sun_SSH_1.5 (host keys: rsa); zfs without resumable receive" % OLD in p.stdout
    assert "dest-server pulls from %s: ssh -c aes128-ctr, a temporary rsa key" % OLD in p.stdout
    # the stream: sent on old-server for dest-server's ssh, received there without -s
    moved = streams(dc, uuid, since)
    assert [h for h, _ in moved] == [OLD, "dest-server"], moved
    assert "-s" not in moved[1][1]
    # dest-server's ssh came to old-server's sshd from its own admin IP
    came, _ = sshd_connections(dc, OLD, line)
    assert dc.hosts()["dest-server"]["admin_ip"] in came, came


def test_a_cut_stream_to_old_server_starts_again_and_ends_right(dc):
    """old-server's zfs has no resumable receive: a cut stream is sent again
    from the snapshot both CNs have (here the image's), and the migration ends
    with every write; the key's authorized_keys entry is one SunSSH grants
    (no no-user-rc)."""
    uuid = dc.provision("--size", "1")
    before = dc.vm(uuid)
    since = dc.log()[-1]["end"]
    with net_agent(dc, OLD, "2.3.6"):
        p = dc.migrate_with_fault([OLD, "--after-bytes", "300000", "--", "zfs", "recv"],
                                  "-y", "-D", uuid, OLD)
    assert p.returncode == 0, p.stdout + p.stderr
    assert_migrated(dc, uuid, before, p.stdout, dst=OLD)
    assert_sequence_continues(dc, uuid, dst=OLD)
    assert "source-server sends to %s: ssh -c aes128-ctr, a temporary rsa key" % OLD in p.stdout
    assert "no resumable receive on %s" % OLD in p.stdout
    moved = streams(dc, uuid, since)
    recvs = [a for h, a in moved if h == OLD]
    sends = [a for h, a in moved if h == "source-server"]
    assert len(recvs) == 2 and all("-s" not in a for a in recvs), moved
    # sent again whole from the same snapshot: no zfs send -t
    assert len(sends) == 2 and sends[0] == sends[1] and "-t" not in sends[1], sends
    assert leftovers(dc, uuid, ("source-server", OLD)) == []
