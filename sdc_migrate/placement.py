"""Whether an instance may go to a compute node: the one destination check
that a migration, an evacuation's planner and nat-recreate share.

Room is judged as DAPI judges it (sdc-designation hard-filter-min-ram and
hard-filter-min-disk against CNAPI's unreserved_ram and unreserved_disk,
in MiB), not by free memory: a stopped instance keeps its RAM reserved while
it uses none, so a CN can have free memory and no room. NIC tags as
hard-filter-nic-tags: every tag the instance's NICs need must be one the CN's
sysinfo provides, or the instance boots there without its networks.

DAPI's hard filters that a boot would otherwise meet only after the whole
downtime (`hard_filters`): an instance with internal_metadata.encrypted goes
only to a CN whose sysinfo says "Zpool Encrypted", and an unencrypted one
never there (hard-filter-zpool-encryption.js); a bhyve instance needs "Bhyve
Capable" and vcpus within "Bhyve Max Vcpus" and the CN's online CPUs; without
"HVM API", kvm and bhyve instances do not share a CN (hard-filter-hvm.js);
the traits the instance asks for (its package's, its image's over them) must
be the CN's, and a CN with traits takes only instances that ask for them
(hard-filter-traits.js).

A reserved CN is shown (the SRC/DEST table's "reserved:" line), not refused:
operators reserve a new CN so that DAPI places nothing else there while they
fill it, and name it themselves.
"""
import collections
import json

from . import zfs
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


HVM_BRANDS = ("bhyve", "kvm")


def merged_traits(vm, package=None, image=None):
    """The traits an instance asks of a CN, as sdc-designation
    hard-filter-traits.js merges them: the VM's (else its package's), with
    its image's over them; None if it asks none."""
    mine = vm.get("traits") or (package or {}).get("traits")
    theirs = (image or {}).get("traits")
    if not (mine or theirs):
        return None
    return dict(mine or {}, **(theirs or {}))


def need_of(vm, pool_bytes=0, package=None, image=None):
    """What an instance needs of a destination: RAM (MiB, as VMAPI's ram), the
    space its datasets take (bytes), its NIC tags, and what DAPI's hard filters
    read: encryption, brand, vcpus and traits (with package and image; traits
    are not checked when neither is given)."""
    return {"ram": int(vm.get("ram") or vm.get("max_physical_memory") or 0),
            "pool": int(pool_bytes), "tags": needed_tags(vm), "uuid": vm.get("uuid"),
            "encrypted": bool((vm.get("internal_metadata") or {}).get("encrypted")),
            "brand": vm.get("brand"), "vcpus": vm.get("vcpus"),
            "traits": merged_traits(vm, package, image),
            "traits_known": package is not None or image is not None}


def _number(v):
    """JavaScript's Number() of a sysinfo value, None where it is NaN."""
    if isinstance(v, bool):
        return int(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def bhyve_max_vcpus(sysinfo):
    """hard-filter-hvm.js: "Bhyve Max Vcpus" (16 where a platform predates
    it), no more than the CPUs online ("CPU Online Count", else "CPU Total
    Cores")."""
    most = _number(sysinfo.get("Bhyve Max Vcpus"))
    if most is None:
        most = 16
    cpus = _number(sysinfo.get("CPU Online Count", sysinfo.get("CPU Total Cores")))
    if cpus is not None and cpus < most:
        most = cpus
    return int(most)


def trait_mismatch(have, want):
    """Why a CN's trait value does not give what the instance asks, or None
    (hard-filter-traits.js traitMatch)."""
    if have is None or want is None:
        return "undefined property"
    if isinstance(want, bool):
        return None if have is want else "boolean did not match"
    if isinstance(want, str):
        if isinstance(have, str):
            return None if have == want else "strings did not match"
        if isinstance(have, list):
            return None if want in have else "server trait array did not contain trait"
        return "unsupported combination of property types"
    if isinstance(want, list):
        if isinstance(have, str):
            return None if have in want else "server trait was not in requested trait array"
        if isinstance(have, list):
            return None if set(have) & set(want) else \
                "server and requested trait arrays do not intersect"
    return "unsupported combination of property types"


def _json(v):
    return json.dumps(v, sort_keys=True)


def hard_filters(need, server, placed_brands=()):
    """Why DAPI's hard filters keep an instance (need_of) off a server (CNAPI's,
    with sysinfo and vms), or None; placed_brands: brands of instances a plan
    put there already (DAPI counts in-flight provisions the same way)."""
    name = server.get("hostname")
    si = server.get("sysinfo") or {}
    # hard-filter-zpool-encryption.js
    pool_encrypted = bool(si.get("Zpool Encrypted"))
    if need.get("encrypted") and not pool_encrypted:
        return ("%s's pool is not encrypted (sysinfo Zpool Encrypted) and the instance is"
                " (internal_metadata.encrypted)" % name)
    if pool_encrypted and not need.get("encrypted"):
        return ("%s's pool is encrypted and the instance is not (no internal_metadata."
                "encrypted): DAPI places only encrypted instances there" % name)
    # hard-filter-hvm.js
    brand = need.get("brand")
    if brand in HVM_BRANDS:
        if brand == "bhyve":
            if si.get("Bhyve Capable") is not True:
                return "%s is not Bhyve Capable (sysinfo)" % name
            vcpus = _number(need.get("vcpus")) or -1
            most = bhyve_max_vcpus(si)
            if vcpus < 1 or vcpus > most:
                return ("%s runs bhyve instances of 1 to %d vcpus; the instance has %s"
                        % (name, most, need.get("vcpus")))
        if not si.get("HVM API"):
            others = sorted((vm.get("brand"), uuid) for uuid, vm in
                            (server.get("vms") or {}).items()
                            if vm.get("brand") in HVM_BRANDS and vm.get("brand") != brand
                            and uuid != need.get("uuid"))
            others += [(b, "placed by this plan") for b in placed_brands
                       if b in HVM_BRANDS and b != brand]
            if others:
                return ("%s has no HVM API (sysinfo) and runs %s instance %s: %s and %s"
                        " instances do not share a CN without it"
                        % (name, others[0][0], others[0][1], brand, others[0][0]))
    # hard-filter-traits.js
    if need.get("traits_known"):
        want = need.get("traits") or {}
        have = server.get("traits") or {}
        if not want and have:
            return ("%s has traits %s; the instance asks for none (its package and image):"
                    " DAPI places only instances that ask for them there" % (name, _json(have)))
        if want and len(have) != len(want):
            return ("%s has traits %s; the instance asks for %s (its package and image)"
                    % (name, _json(have), _json(want)))
        for k in sorted(want):
            why = trait_mismatch(have.get(k), want[k])
            if why:
                return ("%s has traits %s; the instance asks for %s (its package and image):"
                        " %s comparison failed: %s" % (name, _json(have), _json(want), k, why))
    return None


class Destination:
    """A compute node as a destination, and what is left on it as instances are
    placed there (evacuate's plan takes from it one by one)."""

    def __init__(self, server, pool_free=None, trouble=None, copies=()):
        self.server = server
        self.trouble = trouble          # why it cannot be read (ssh), or None
        self.copies = set(copies)       # instances with datasets there already
        self.name = server.get("hostname")
        self.platform = server.get("current_platform") or ""
        self.tags = nic_tags(server)
        self.ram = server.get("unreserved_ram")      # MiB; None if CNAPI gave none
        self.disk = server.get("unreserved_disk")    # MiB
        self.pool = pool_free                        # bytes free in zones, if read
        self.placed_brands = []                      # of what a plan put here
        # owner -> how many of its instances are here (CNAPI's vms), and
        # (owner, source CN) of each instance a plan put here
        self.owners = collections.Counter(
            vm.get("owner_uuid") for vm in (server.get("vms") or {}).values())
        self.placed = []

    def near(self, owner, source=None):
        """How many of owner's instances would share this CN with one from
        source: those here already and those a plan put here from another CN."""
        if not owner:
            return 0
        return self.owners[owner] + sum(1 for o, s in self.placed if o == owner and s != source)

    def unusable(self):
        """Why no instance can go here at all; None if one can."""
        s = self.server
        if self.trouble:
            return self.trouble
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
        if need.get("uuid") in self.copies:
            return ("%s already has datasets of the instance (zones/%s...): remove them or"
                    " choose another destination" % (self.name, need["uuid"]))
        missing = need["tags"] - self.tags
        if missing:
            return ("%s lacks NIC tag %s that the instance's NICs need"
                    % (self.name, ", ".join(sorted(missing))))
        why = hard_filters(need, self.server, self.placed_brands)
        if why:
            return why
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
        if need.get("brand"):
            self.placed_brands.append(need["brand"])
        self.placed.append((need.get("owner"), need.get("source")))
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


def item_for(vm, listing, packages=None, images=None, source=None):
    """What a plan needs of an instance (a VMAPI record; listing: its source
    CN's `zfs list`): kind, size, its source CN and owner, and what it needs
    of a destination (need_of; packages and images by UUID, for its traits).
    kind: migrate, nat (nat-recreate moves it), core or skip, with a reason."""
    datasets = zfs.instance_datasets(listing, vm["uuid"])
    kind, reason = "migrate", None
    what, role = kind_of(vm)
    if what == "nat" and role:
        kind = "nat"
    elif what == "nat":
        kind, reason = "skip", "NAT zone of no fabric network its alias names"
    elif what == "core":
        kind, reason = "core", "core zone %s: not moved by sdc-migrate (sdcadm moves it)" % role
    elif vm.get("state") not in ("running", "stopped"):
        kind, reason = "skip", "state %s: neither running nor stopped" % vm.get("state")
    elif not datasets:
        kind, reason = "skip", "no datasets on %s (zones/%s)" % (source, vm["uuid"])
    image_uuid = vm.get("image_uuid") or next(
        (d["image_uuid"] for d in vm.get("disks") or [] if d.get("image_uuid")), None)
    need = need_of(vm, sum(d.used for d in datasets),
                   None if packages is None else packages.get(vm.get("billing_id"), {}),
                   None if images is None else images.get(image_uuid, {}))
    return dict(need, uuid=vm["uuid"], alias=vm.get("alias"), state=vm.get("state"),
                kind=kind, reason=reason, blockers=[reason] if reason else [], dest=None,
                why=None, bytes=zfs.sent_size(datasets), source=source,
                owner=vm.get("owner_uuid"))


def place(items, candidates, source_platform="", allow_older=False):
    """The plan: each movable item without a blocker, biggest first, gets a
    candidate (Destination) it fits on (why_not), and the reason it goes
    there (item["why"]); one that fits nowhere gets dest None and every
    candidate's reason as a blocker. source_platform: the platform of every
    source, or a dict source CN -> its platform (items name theirs).

    Among those it fits on, as DAPI's soft locality filter does without
    hints (sdc-designation lib/algorithms/calculate-locality.js: "far" from
    every server hosting the owner's instances), the fewest of its owner's
    instances: those already there and those the plan put there from
    another CN (instances that shared a CN may share one again); then the
    most unreserved RAM (DAPI's sort-min-ram spreads the same way), the most
    pool space, the name. The same inventory gives the same plan."""
    for item in sorted(items, key=lambda i: (-i["bytes"], i["uuid"])):
        if item["kind"] not in ("migrate", "nat") or item.get("dest") or item.get("blockers"):
            continue
        platform = source_platform.get(item.get("source"), "") \
            if isinstance(source_platform, dict) else source_platform
        reasons, fits = [], []
        for c in candidates:
            why = c.why_not(item, platform, allow_older)
            (reasons.append(why) if why else fits.append(c))
        if not fits:
            item["reason"] = "fits on no destination: " + "; ".join(reasons) \
                if reasons else "no destination"
            item.setdefault("blockers", []).append(item["reason"])
            continue
        near = {c.name: c.near(item.get("owner"), item.get("source")) for c in fits}
        fewest = min(near.values())
        best = max((c for c in fits if near[c.name] == fewest),
                   key=lambda c: (c.ram or 0, c.pool or 0, c.name))
        item["why"] = why_there(best, fits, near, reasons)
        best.take(item)
        item["dest"] = best.name
    return sorted(items, key=lambda i: (i["dest"] is None, -i["bytes"], i["uuid"]))


def why_there(best, fits, near, reasons):
    """The reason a plan gives for a destination, e.g. "most unreserved RAM
    (3072 MB) of 2 that fit; apart from the owner's instances on b; not
    old: runs an older platform ..."."""
    why = "the only one that fits" if len(fits) == 1 else \
        "most unreserved RAM (%s MB) of %d that fit" % (best.ram, len(fits))
    crowded = sorted(n for n, k in near.items() if k > near[best.name])
    if crowded:
        why += "; apart from the owner's instances on %s" % ", ".join(crowded)
    if reasons:
        why += "; not " + "; not ".join(reasons)
    return why
