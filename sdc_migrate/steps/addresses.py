"""Steps: the instance's IPs, reserved in NAPI while the instance may show
as destroyed (so no provision takes them), and unreserved after."""


def reserve(m):
    r = m.r
    if not m.ips:
        return
    r.line("* Temporarily reserving instance IP addrs so they don't get reprovisioned"
           " elsewhere")
    r.line('  in the short amount of time that the instance may show up as "destroyed"...')
    for ip, net in m.ips:
        r.step("    + reserving %s on network_uuid %s..." % (ip, net))
        if not m.api.ip(net, ip).get("reserved", False):
            # journaled first: unreserving an IP this run never reserved is harmless
            m.proc.changed("reservation", "reservation of %s" % ip, ip=ip, network=net)
            m.api.set_ip_reserved(net, ip, True)
        r.done("Done")


def unreserve_one(m, ip, network):
    m.api.set_ip_reserved(network, ip, False)


def unreserve(m):
    """After the switch: no longer at risk of showing as destroyed."""
    r = m.r
    reserved = m.proc.pending("reservation")
    if not reserved:
        return
    r.line("* Unreserving instance IP addrs since we're no longer at risk of")
    r.line('  the instance showing up as "destroyed".')
    for i, rec in reserved:
        ip, net = rec["args"]["ip"], rec["args"]["network"]
        r.step("    - unreserving %s on network_uuid %s..." % (ip, net))
        unreserve_one(m, ip, net)
        m.journal.mark_undone(i)
        r.done("Done")
