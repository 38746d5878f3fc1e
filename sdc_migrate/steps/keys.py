"""Steps: the temporary ssh key the source CN sends with, and its entry in
the destination's authorized_keys (cnlink says how both are kept narrow)."""
from .. import cnlink, paths


def make_key(m):
    r, src, dst = m.r, m.src, m.dst
    m.key, m.known_hosts = paths.temp_key(m.tag), paths.temp_known_hosts(m.tag)
    r.step("    + Creating an SSH key on %s to copy to authorized_keys on\n"
           "      %s for the migration; Key will be removed once migration completes."
           % (src.hostname, dst.hostname))
    # journaled before it is made: its undo is harmless if it was not
    i = m.proc.will("key", "temporary key on %s" % src.hostname, key=m.key,
                    known_hosts=m.known_hosts)
    m.pub = cnlink.make_key(src, m.key, m.known_hosts, "sdc-migrate-" + m.opts.uuid, dst.ip,
                            m.dst_hostkey)
    m.proc.confirm(i)
    r.done()


def remove_key(m, key, known_hosts):
    cnlink.remove_key(m.src, key, known_hosts)


def authorize(m):
    r, dst = m.r, m.dst
    r.step("    + Copying SSH key to %s..." % dst.hostname)
    backup = paths.authorized_keys_backup(m.tag)
    i = m.proc.will("authorized", "authorized key on %s" % dst.hostname, backup=backup,
                    blob=m.pub.split()[1] if m.pub else None)    # --dry-run made no key
    # receives into the instance's own datasets, nothing else (cnlink.RECEIVE_ONLY)
    cnlink.authorize(dst, m.src.ip, m.pub, backup, m.opts.uuid,
                     paths.recv_pidfile(m.opts.uuid), m.dst_ssh)
    m.proc.confirm(i)
    r.done()


def unauthorize(m, backup, blob=None):
    cnlink.unauthorize(m.dst, backup, blob)


def clear(m):
    """The destination's entry and the source's key, both CNs at once."""
    m.r.line("* Clearing migration SSH keys")
    m.proc.undo_now(m, "authorized", "key", parallel=True)
