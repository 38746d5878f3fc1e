"""Whether an instance may go to a compute node: the one destination check
that a migration, an evacuation's planner and nat-recreate share.

Room is judged as DAPI judges it (sdc-designation hard-filter-min-ram and
hard-filter-min-disk against CNAPI's unreserved_ram and unreserved_disk,
in MiB), not by free memory: a stopped instance keeps its RAM reserved while
it uses none, so a CN can have free memory and no room. NIC tags as
hard-filter-nic-tags: every tag the instance's NICs need must be one the CN's
sysinfo provides, or the instance boots there without its networks.

A reserved CN is shown (the SRC/DEST table's "reserved:" line), not refused:
operators reserve a new CN so that DAPI places nothing else there while they
fill it, and name it themselves.
"""
from .errors import Refused
from .report import human_size
from .triton import UUID_RE


def nic_tags(server):
    """The NIC tags a compute node provides, from its sysinfo."""
    si = server.get("sysinfo") or {}
    tags = set()
    for key in ("Network Interfaces", "Virtual Network Interfaces", "Link Aggregations"):
        for nic in (si.get(key) or {}).values():
            tags.update(nic.get("NIC Names") or [])
    return tags


def needed_tags(vm):
    """The NIC tags an instance's NICs need; a fabric NIC (sdc_overlay/VNET)
    rides the underlay."""
    need = set()
    for nic in vm.get("nics") or []:
        tag = nic.get("nic_tag") or ""
        if tag.startswith("sdc_overlay"):
            need.add("sdc_underlay")
        elif tag:
            need.add(tag)
    return need


def nat_network(vm):
    """The fabric network a NAT zone serves, from its alias nat-NETWORK_UUID; else None."""
    alias = vm.get("alias") or ""
    tagged = (vm.get("tags") or {}).get("smartdc_role") == "nat"
    # A destroyed NAT zone's record may have lost its tags: its CN's vm-agent
    # can report it once more after `vmadm delete` removed its datasets (and
    # tags.json with them) but not yet its configuration (the alias). Its
    # alias names it then.
    if not alias.startswith("nat-") or not (tagged or vm.get("state") in ("destroyed", "failed")):
        return None
    net = alias[len("nat-"):]
    return net if UUID_RE.match(net) else None


def kind_of(vm):
    """What sdc-migrate makes of an instance (a VMAPI record, or as much of
    one as a CN's listing gives: alias, state, tags): ("nat", NETWORK_UUID or
    None) a fabric NAT zone, which nat-recreate recreates; ("core", ROLE) a
    Triton core zone, which it leaves alone; ("instance", None) one it moves.
    The one rule that migrate, evacuate, estimate and nat-recreate share."""
    net = nat_network(vm)
    if net or (vm.get("tags") or {}).get("smartdc_role") == "nat":
        return "nat", net
    role = core_role(vm)
    if role:
        return "core", role
    return "instance", None


def core_role(vm):
    """The Triton role of a core zone sdc-migrate leaves alone, else None.

    Triton core zones carry tags smartdc_role and smartdc_type=core (sdcadm
    and VMAPI's own migrations refuse them: sdc-vmapi
    lib/vm-migration/migrate.js, "Cannot migrate a core instance"). Manta
    (Object Storage) zones carry tags.manta_role: they are the operator's to
    move, as any instance.
    """
    tags = vm.get("tags") or {}
    if tags.get("manta_role"):
        return None
    if tags.get("smartdc_type") == "core" or tags.get("smartdc_role"):
        return tags.get("smartdc_role") or "core"
    return None


def need_of(vm, pool_bytes=0):
    """What an instance needs of a destination: RAM (MiB, as VMAPI's ram), the
    space its datasets take (bytes) and its NIC tags."""
    return {"ram": int(vm.get("ram") or vm.get("max_physical_memory") or 0),
            "pool": int(pool_bytes), "tags": needed_tags(vm)}


class Destination:
    """A compute node as a destination, and what is left on it as instances are
    placed there (evacuate's plan takes from it one by one)."""

    def __init__(self, server, pool_free=None):
        self.server = server
        self.name = server.get("hostname")
        self.platform = server.get("current_platform") or ""
        self.tags = nic_tags(server)
        self.ram = server.get("unreserved_ram")      # MiB; None if CNAPI gave none
        self.disk = server.get("unreserved_disk")    # MiB
        self.pool = pool_free                        # bytes free in zones, if read

    def unusable(self):
        """Why no instance can go here at all; None if one can."""
        s = self.server
        if s.get("headnode"):
            return "%s is the head node" % self.name
        if s.get("status", "running") != "running" or s.get("setup") is False:
            return "%s is not running and set up (status %s)" % (self.name, s.get("status"))
        return None

    def why_not(self, need, source_platform="", allow_older=False):
        """None if an instance with this need fits here now, else why not."""
        why = self.unusable()
        if why:
            return why
        if self.platform < source_platform and not allow_older:
            return ("%s runs an older platform (%s) than the source (%s); -D allows it"
                    % (self.name, self.platform, source_platform))
        missing = need["tags"] - self.tags
        if missing:
            return ("%s lacks NIC tag %s that the instance's NICs need"
                    % (self.name, ", ".join(sorted(missing))))
        if self.ram is not None and need["ram"] > self.ram:
            return ("%s has %d MB of unreserved RAM; the instance needs %d MB"
                    % (self.name, self.ram, need["ram"]))
        if self.pool is not None and need["pool"] > self.pool:
            return ("%s has %s free in zones; the instance needs %s"
                    % (self.name, human_size(self.pool), human_size(need["pool"])))
        if self.disk is not None and need["pool"] > self.disk * 1048576:
            return ("%s has %s of unreserved disk; the instance takes %s"
                    % (self.name, human_size(max(0, self.disk) * 1048576),
                       human_size(need["pool"])))
        return None

    def take(self, need):
        """Count an instance placed here."""
        if self.ram is not None:
            self.ram -= need["ram"]
        if self.disk is not None:
            self.disk -= -(-need["pool"] // 1048576)
        if self.pool is not None:
            self.pool -= need["pool"]

    def check(self, need, source_platform="", allow_older=False):
        """Refused (nothing changed) unless the instance fits here."""
        why = self.why_not(need, source_platform, allow_older)
        if why:
            raise Refused("destination " + why)
