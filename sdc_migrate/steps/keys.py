"""Steps: the temporary ssh key the stream runs with, on the CN that runs it
(the source, or a destination that pulls: cnlink.Link), and its entry in the
other CN's authorized_keys (cnlink says how both are kept narrow). Each change
is journaled with the CN it is on."""
from .. import cnlink, paths


def make_key(m):
    r, link = m.r, m.link
    client, server = m.node(m.runs_on()), m.node(m.other_end())
    m.key, m.known_hosts = paths.temp_key(m.tag), paths.temp_known_hosts(m.tag)
    r.step("    + Creating an SSH key on %s to copy to authorized_keys on\n"
           "      %s for the migration; Key will be removed once migration completes."
           % (client.hostname, server.hostname))
    # journaled before it is made: its undo is harmless if it was not
    i = m.proc.will("key", "temporary key on %s" % client.hostname, key=m.key,
                    known_hosts=m.known_hosts, node=m.runs_on())
    m.pub = cnlink.make_key(client, m.key, m.known_hosts, "sdc-migrate-" + m.opts.uuid,
                            server.ip, link.host_key, link.key_type)
    m.proc.confirm(i)
    r.done()


def remove_key(m, key, known_hosts, node="src"):
    cnlink.remove_key(m.node(node), key, known_hosts)


def authorize(m):
    r, client, server = m.r, m.node(m.runs_on()), m.node(m.other_end())
    r.step("    + Copying SSH key to %s..." % server.hostname)
    backup = paths.authorized_keys_backup(m.tag)
    i = m.proc.will("authorized", "authorized key on %s" % server.hostname, backup=backup,
                    blob=m.pub.split()[1] if m.pub else None,    # --dry-run made no key
                    node=m.other_end())
    # the instance's own datasets, nothing else: received into (cnlink.RECEIVE_ONLY)
    # or, a pulled stream's source, sent from (cnlink.SEND_ONLY)
    cnlink.authorize(server, client.ip, m.pub, backup, m.opts.uuid,
                     paths.recv_pidfile(m.opts.uuid), m.link)
    m.proc.confirm(i)
    r.done()


def unauthorize(m, backup, blob=None, node="dst"):
    cnlink.unauthorize(m.node(node), backup, blob)


def clear(m):
    """The authorized entry and the key, both CNs at once."""
    m.r.line("* Clearing migration SSH keys")
    m.proc.undo_now(m, "authorized", "key", parallel=True)
