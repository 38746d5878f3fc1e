"""Steps on the instance's zone: its configuration on both CNs, the stop,
the cores dataset, the attach, the switch (Triton's order: hide the source,
move server_uuid, unhide the destination), the boot and the health check."""
import collections
import json
import re
import time
from xml.etree import ElementTree

from .. import zfs
from ..errors import MigrateError, RemoteError

VMAPI_WAIT = 120
HEALTH_POLL = 1.0
SMF_BRANDS = ("joyent", "joyent-minimal")     # zones with SMF inside: a milestone to ask
EXPORT_MARK = "@@ zonecfg export @@"
HIDE = "do_not_inventory=true"
# STOP_AND_EXPORT UUID MARK: stop, its state, and the configuration as it is now
STOP_AND_EXPORT = ('vmadm stop "$1" && zoneadm -z "$1" list -p && echo "$2" && '
                   'zonecfg -z "$1" export')
START_AND_REPORT = 'vmadm start "$1" && svcadm restart vm-agent'      # UUID
# IMPORT_CONFIG UUID, the zonecfg commands on stdin: the configuration, as saved
IMPORT_CONFIG = 'zonecfg -z "$1" -f - && cat "/etc/zones/$1.xml"'
DEST_COPY = ('zoneadm -z "$1" list -p 2>/dev/null; echo @@; '
             'cat "/etc/zones/$1.xml" 2>/dev/null; true')              # UUID
HEALTH = ('zoneadm -z "$1" list -p && { [ "$2" = no ] || '
          'svcs -z "$1" -H -o state svc:/milestone/multi-user:default; }')   # UUID yes|no
# HIDE_SOURCE UUID: right before the switch, the check Triton's switch makes
# (sdc-vmapi lib/workflows/vm-migration/switch.js ensureSourceVmStopped), on
# the CN: the source copy installed and not running; then hidden (autoboot
# off, do-not-inventory: Triton's disableSourceVmAutoboot,
# setSourceDoNotInventory). Detached already: a run past the switch did it.
HIDE_SOURCE = ('s=$(zoneadm -z "$1" list -p | cut -d: -f3); case "$s" in '
               'installed) vmadm update "$1" autoboot=false do_not_inventory=true;; '
               'configured) ;; '
               '*) echo "the copy of $1 is ${s:-not configured}, not installed and'
               ' stopped" >&2; exit 3;; esac')
# DETACH_SOURCE UUID: after the boot, the hidden copy detached: a configured
# zone boots neither by svc:/system/zones at a CN reboot (illumos-joyent
# usr/src/cmd/zoneadm/svc-zones: installed ones only) nor by vmadm start
# (smartos-live VM.js start: "must be stopped"), whoever asks, until a
# rollback attaches it again.
DETACH_SOURCE = ('s=$(zoneadm -z "$1" list -p | cut -d: -f3); case "$s" in '
                 'installed) zoneadm -z "$1" detach;; '
                 'configured) ;; '
                 '*) echo "the old copy of $1 is ${s:-not configured}: stop it there" >&2;'
                 ' exit 3;; esac')
# SHOW_SOURCE UUID AUTOBOOT: the hidden copy (attached again) shown, its autoboot back
SHOW_SOURCE = ('if [ "$(zoneadm -z "$1" list -p | cut -d: -f3)" = configured ]; then '
               'zoneadm -z "$1" attach || exit; fi; '
               'vmadm update "$1" do_not_inventory=false && svcadm restart vm-agent && '
               'vmadm update "$1" "autoboot=$2"')
DNI_RE = re.compile(r'<attr\b[^>]*\bname="do-not-inventory"[^>]*>')


def zone_state(listing, uuid):
    """The state field of UUID's line in `zoneadm list -p` output."""
    for line in listing.splitlines():
        f = line.split(":")
        if len(f) > 2 and f[1] == uuid:
            return f[2]
    return "unknown"


def hidden_xml(xml):
    """Whether a zone's XML has do-not-inventory set."""
    attr = DNI_RE.search(xml)
    return bool(attr and 'value="true"' in attr.group(0))


SET_LINE = re.compile(r'^set ([a-z-]+)=(.*)$')
# zonecfg's resources and the XML elements libzonecfg saves them as
RESOURCE_ELEMENTS = {"attr": "attr", "net": "network", "device": "device", "rctl": "rctl",
                     "dataset": "dataset", "fs": "filesystem"}


def setting(line):
    """(name, value) of a `set NAME=VALUE` line of an export, quotes off; else (None, None)."""
    match = SET_LINE.match(line)
    if not match:
        return None, None
    name, value = match.groups()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return name, value


def set_line(name, value):
    # Quoted, whatever the export did: before illumos-joyent c8236ea (December
    # 2019) `zonecfg export` quotes only a value with a space, and zonecfg's
    # lexer ends a bare word at '=' (zonecfg_lex.l): a base64 alias or qemu
    # option `d2luZG93cw==` is a syntax error there (smartos-live#912). Any
    # platform reads a quoted value as the same word.
    return 'set %s="%s"' % (name, value)


def attr_lines(attr):
    return ["add attr"] + [set_line(k, v) for k, v in attr.items()] + ["end"]


def hidden_config(exported, uuid):
    """`zonecfg export` output made into the destination's copy: every value
    quoted (set_line), hidden from inventory (attr do-not-inventory, the first
    resource, so that what a zonecfg saves of it is hidden too), autoboot and
    vm-autoboot off (it boots when the migration says so), and its uuid set
    (JPC-1421: an index line without it)."""
    hide = attr_lines({"name": "do-not-inventory", "type": "string", "value": "true"})
    out, attr = [], None
    for line in exported.splitlines():
        line = line.strip()
        name, value = setting(line)
        if hide and attr is None and line.startswith("add "):
            out, hide = out + hide, None
        if attr is not None:                    # add attr ... end
            if name is not None:
                attr[name] = value
            elif line == "end":
                if attr.get("name") == "vm-autoboot":
                    attr["value"] = "false"
                if attr.get("name") != "do-not-inventory":
                    out += attr_lines(attr)
                attr = None
            continue
        if line == "add attr":
            attr = {}
        elif name == "uuid":
            continue
        elif name is not None:
            out.append(set_line(name, "false" if name == "autoboot" else value))
        else:
            out.append(line)
        if line.startswith("create"):
            out.append(set_line("uuid", uuid))
    return "".join(l + "\n" for l in out + (hide or []))


def lacking(config, xml):
    """What of config (zonecfg commands) the zone XML a zonecfg saved from them
    lacks: each attr with its value, as many of each resource; [] if nothing."""
    want_attrs, want = {}, collections.Counter()
    attr, rtype = None, None
    for line in config.splitlines():
        name, value = setting(line)
        if rtype is None and line.startswith("add ") and line[4:] in RESOURCE_ELEMENTS:
            rtype = line[4:]
            want[RESOURCE_ELEMENTS[rtype]] += 1
            attr = {} if rtype == "attr" else None
        elif line == "end":
            if attr is not None:
                want_attrs[attr.get("name")] = attr.get("value")
            rtype = attr = None
        elif attr is not None and name in ("name", "value"):
            attr[name] = value
    root = ElementTree.fromstring(xml)
    have = collections.Counter(e.tag for e in root)
    have_attrs = {e.get("name"): e.get("value") for e in root if e.tag == "attr"}
    missing = ["attr %s" % k for k, v in want_attrs.items() if have_attrs.get(k) != v]
    missing += ["%d of %d %s" % (have[tag], n, tag) for tag, n in want.items()
                if tag != "attr" and have[tag] != n]
    return missing


def autoboot_word(vm):
    return "true" if vm.get("autoboot", True) else "false"


# ---- before the stop: what needs none ---------------------------------------------

def fix_source_xml(m):
    r, vm, src = m.r, m.vm, m.src
    uuid = vm["uuid"]
    r.line("* Source XML file modifications...")
    xml = src.run(["cat", "/etc/zones/%s.xml" % uuid], readonly=True)
    fixes = [("create-timestamp", vm.get("create_timestamp"), "JPC-1212"),
             ("dataset-uuid", vm.get("image_uuid") or m.image_of_disks(),
              "image_uuid; AGENT-629")]
    for name, value, why in fixes:
        r.line("    + Checking instance XML file for %s (%s)..." % (name, why))
        if 'name="%s"' % name in xml:
            r.line("    = %s already exists" % name)
        elif value:
            src.run(["zonecfg", "-z", uuid, "add attr; set name=%s; set type=string; "
                     "set value=%s; end" % (name, value)])
            r.line("    + added %s" % name)
    r.line("  - Source XML file modifications complete!")


def check_index(m):
    r, uuid = m.r, m.vm["uuid"]
    r.step("* Getting Zone index configuration...")
    index = m.src.run(["cat", "/etc/zones/index"], readonly=True)
    r.done()
    r.line("    + checking if we need to correct it (JPC-1421)")
    line = [l for l in index.splitlines() if l.split(":")[0].strip() == uuid]
    if not line:
        raise MigrateError("%s has no line in /etc/zones/index on %s" % (uuid, m.src.hostname))
    fields = line[0].split(":")
    # JPC-1421: an index line without the trailing uuid field breaks attach.
    if len(fields) < 4 or fields[3] != uuid:
        r.line("    + index line is missing its uuid field; the destination gets a"
               " corrected one")
    r.line("  - Zone index configuration check complete!")


# ---- the stop -------------------------------------------------------------------------

def current_state(m):
    """The run state and autoboot the instance has now, on the source: a
    customer may have started or stopped it since the gather (-i rounds)."""
    vm = m.vm
    cur = json.loads(m.src.run(["vmadm", "get", vm["uuid"]], readonly=True))
    running = cur.get("state") == "running"
    if running != m.was_running or cur.get("autoboot") != vm.get("autoboot"):
        m.was_running = running
        vm["autoboot"] = cur.get("autoboot")
        vm["state"] = "running" if running else "stopped"
        m.journal.write({"t": "run-state", "was_running": running, "autoboot": vm["autoboot"]})


def impact_banner(m, what="pre-migration changes"):
    r, vm = m.r, m.vm
    r.line()
    r.line("**** Runtime impact and %s to %s instance" % (what, m.vm_type()))
    r.line("****    %s (%s)" % (vm["uuid"], vm.get("alias") or "-"))
    r.line("**** start here!")
    r.line()


def stop(m, banner=True):
    r, vm = m.r, m.vm
    if banner:
        impact_banner(m)
    alias = vm.get("alias") or vm["uuid"]
    current_state(m)
    if not m.was_running:
        r.line("* Instance %s is already shutdown.  Proceeding." % alias)
        return
    r.step("* Instance %s is running; shutting it down, please wait .." % alias)
    m.stopped_at = time.time()
    i = m.proc.will("stop", "stop of the instance on %s" % m.src.hostname, uuid=vm["uuid"],
                    at=m.stopped_at)
    # the configuration copy_config sends, read in the same round trip: the
    # instance is down from here on
    out = m.src.run(["sh", "-c", STOP_AND_EXPORT, "sh", vm["uuid"], EXPORT_MARK])
    m.proc.confirm(i)
    out, _, m.exported = out.partition(EXPORT_MARK + "\n")
    state = zone_state(out, vm["uuid"])
    r.done()
    r.line("  - New state is:  %s" % ("stopped" if state == "installed" else state))


def start_again(m, uuid, at=None):
    m.src.run(["sh", "-c", START_AND_REPORT, "sh", uuid])


# ---- the destination's copy -----------------------------------------------------------

def create_cores(m):
    r, uuid = m.r, m.vm["uuid"]
    r.line("* Creating cores dataset on %s" % m.dst.hostname)
    ds = "zones/cores/" + uuid
    argv = ["zfs", "create", "-o", "mountpoint=/zones/%s/cores" % uuid]
    if m.cores_quota and m.cores_quota not in ("0", "none"):
        argv += ["-o", "quota=" + m.cores_quota]
    if not m.dst_has_cores:      # as the gather found it: one round trip
        i = m.proc.will("cores", "cores dataset on %s" % m.dst.hostname, dataset=ds)
        m.dst.run(argv + [ds])
        m.proc.confirm(i)
    r.line("  - Created cores dataset:  %s" % ds)


def destroy_cores(m, dataset):
    zfs.destroy_trees(m.dst, [dataset])


def copy_config(m):
    """The source's configuration as it is after the stop, through zonecfg on
    both sides (libzonecfg's index lock, not echo >> index): hidden from
    inventory and never booting by itself from its first file on; and all
    of it, or the migration stops here and is undone."""
    r, uuid, dst = m.r, m.vm["uuid"], m.dst
    r.step("* Transferring Zone XML to the destination...")
    exported = m.exported or m.src.run(["zonecfg", "-z", uuid, "export"], readonly=True)
    config = hidden_config(exported, uuid)
    i = m.proc.will("config", "zone configuration on %s" % dst.hostname, uuid=uuid)
    # zonecfg -f - reads the commands from stdin and, as interactive input,
    # goes on past an error and saves what it could (illumos zonecfg.c
    # cmd_file, read_input, cleanup): its exit status says so (run() raises),
    # and so does what it saved
    xml = dst.run(["sh", "-c", IMPORT_CONFIG, "sh", uuid], input=config)
    m.proc.confirm(i)
    missing = [] if m.opts.dry_run else lacking(config, xml)
    if missing:
        raise MigrateError("the zone configuration zonecfg saved on %s lacks %s of the "
                           "source's" % (dst.hostname, ", ".join(missing)))
    r.done()


def dest_copy(m, uuid):
    """(zone state, hidden) of the destination's copy; (None, None) if it has none."""
    out = m.dst.run(["sh", "-c", DEST_COPY, "sh", uuid], readonly=True)
    listing, _, xml = out.partition("@@\n")
    if not xml.strip():
        return None, None
    return zone_state(listing, uuid), hidden_xml(xml)


def hidden_dest_copy(m, uuid):
    """The destination copy's state, refusing to touch a copy inventory sees:
    its vm-agent and net-agent would report it gone (destroyed, NICs deleted)."""
    state, hidden = dest_copy(m, uuid)
    if state is not None and not hidden:
        raise MigrateError("the copy of %s on %s is not hidden (do-not-inventory):"
                           " not removing it" % (uuid, m.dst.hostname))
    return state


def delete_config(m, uuid):
    if hidden_dest_copy(m, uuid) is not None:
        m.dst.run(["zonecfg", "-z", uuid, "delete", "-F"])


def attach(m):
    zone_attach(m, "* Importing & Attaching Zone on %s...", lambda: m.proc.will(
        "attach", "attach on %s" % m.dst.hostname, uuid=m.vm["uuid"]))


def zone_attach(m, line, journal):
    """zoneadm attach on the destination, journaled (journal()) before it."""
    m.r.step(line % m.dst.hostname)
    i = journal()
    # no vmadmd restart to have it detected: it is hidden until the switch
    m.dst.run(["zoneadm", "-z", m.vm["uuid"], "attach"])
    m.proc.confirm(i)
    m.r.done()


def detach(m, uuid):
    if hidden_dest_copy(m, uuid) == "installed":
        m.dst.run(["zoneadm", "-z", uuid, "detach"])


# ---- the switch -------------------------------------------------------------------------

def hide_source(m):
    """Right before the switch, one round trip: the source copy is installed and
    not running (or the migration fails here, rolled back), then hidden:
    autoboot off, do-not-inventory (HIDE_SOURCE). The first half of Triton's
    switch (kvm/bhyve keep zone autoboot=false, their own is vm-autoboot)."""
    r, uuid = m.r, m.vm["uuid"]
    r.step("* Disabling instance on %s, setting attr 'do-not-inventory'..." % m.src.hostname)
    i = m.proc.will("hidden", "autoboot off and do-not-inventory on %s" % m.src.hostname,
                    uuid=uuid, autoboot=autoboot_word(m.vm))
    try:
        hide_source_again(m)
    except RemoteError as e:
        if e.status != 3:
            raise
        # nothing changed: it runs, or is not as the stop left it
        raise MigrateError("%s: %s (started since the stop?): not switching"
                           % (m.src.hostname, e.stderr.strip())) from None
    m.proc.confirm(i)
    r.done()


def hide_source_again(m):
    """(idempotent: a resumed run makes sure of it)"""
    m.src.run(["sh", "-c", HIDE_SOURCE, "sh", m.vm["uuid"]])


def show_source(m, uuid, autoboot):
    m.src.run(["sh", "-c", SHOW_SOURCE, "sh", uuid, autoboot])


def detach_source(m):
    """After the boot, before the waitlist lets VMAPI's jobs go (a job made
    before the switch names the source): the old copy detached, so that
    nothing boots it until `sdc-migrate rollback` attaches it again or
    cleanup-source removes it. Outside the downtime, one round trip."""
    r = m.r
    r.step("* Detaching the old copy on %s (nothing boots it)..." % m.src.hostname)
    try:
        m.src.run(["sh", "-c", DETACH_SOURCE, "sh", m.vm["uuid"]])
    except RemoteError as e:
        r.failed()
        if e.status != 3:
            raise
        raise MigrateError("%s: %s, then run the same command again" % (
            m.src.hostname, e.stderr.strip())) from None
    r.done()


def switch(m):
    """The rest of Triton's order (sdc-vmapi lib/workflows/vm-migration,
    cn-agent machine-migrate switch): move server_uuid, unhide the
    destination. Here VMAPI moves server_uuid on the destination's report."""
    r, uuid, dst = m.r, m.vm["uuid"], m.dst
    # the source is hidden (hide_source): only now the destination's copy
    # shows, VMAPI must never see two live copies
    r.line("    + Clearing attr 'do-not-inventory' for %s on %s." % (uuid, dst.hostname))
    r.line("    + Restarting vm-agent on destination, to hasten update of VM's presence.")
    i = m.proc.will("shown", "do-not-inventory cleared on %s" % dst.hostname, uuid=uuid)
    dst.script([["vmadm", "update", uuid, "do_not_inventory=false"],
                ["svcadm", "restart", "vm-agent"]])
    m.proc.confirm(i)
    r.step("* Checking VMAPI for 'do-not-inventory' update (VMAPI will show %s's\n"
           "  server_uuid if updated); may take up to a minute or so ..." % dst.hostname)
    deadline = time.time() + VMAPI_WAIT
    polls = 0
    while True:
        vm = m.api.vm(uuid)
        if vm.get("server_uuid") == dst.uuid and vm.get("state") != "destroyed" or \
                m.opts.dry_run:
            break
        if time.time() > deadline:
            raise MigrateError("VMAPI still shows %s on server %s after %d s"
                               % (uuid, vm.get("server_uuid"), VMAPI_WAIT))
        polls += 1
        if polls % 5 == 0:          # a dot a second, as migrator.sh
            r.dot()
        # the instance is down while we wait: ask often
        time.sleep(0.2)
    r.done("Success!")


def attach_old(m):
    """The rollback's destination: the copy the migration left there, detached
    at its switch (hide_source), attached again before it is shown. One left
    installed (by an sdc-migrate of before) needs nothing."""
    if m.old_state == "configured":
        zone_attach(m, "* Attaching the old copy on %s again...", lambda: m.proc.will(
            "reattached", "the old copy attached on %s" % m.dst.hostname, uuid=m.vm["uuid"]))


def hide_destination(m, uuid):
    # hidden again before the source shows again: never two visible copies
    if dest_copy(m, uuid)[0] is not None:
        m.dst.run(["vmadm", "update", uuid, HIDE])


# ---- after the switch ------------------------------------------------------------------

def boot(m):
    """Autoboot as it was and, if it ran before, boot: one round trip. A failed
    boot of a migration that may roll back is left to the health check."""
    try:
        finish_destination(m)
    except RemoteError as e:
        if not m.was_running or m.opts.no_rollback or m.KIND != "migration":
            raise
        m.r.failed()
        m.boot_error = e


def finish_destination(m):
    r, vm, dst = m.r, m.vm, m.dst
    uuid = vm["uuid"]
    autoboot = autoboot_word(vm)
    alias = vm.get("alias") or uuid
    r.step("* Enabling Autostart on the %s..." % dst.hostname)
    if m.was_running:
        # vmadm start turns autoboot on: the VM's own setting after it
        out = dst.script([["vmadm", "start", uuid],
                          ["vmadm", "update", uuid, "autoboot=" + autoboot],
                          ["zoneadm", "-z", uuid, "list", "-p"],
                          ["svcadm", "restart", "vm-agent"]])
        m.booted_at = time.time()
        m.journal.write({"t": "booted"})
        r.done()
        r.step("* VM %s is ready for startup, please wait for boot.." % alias)
        r.done("Done. (State is: %s)" % zone_state(out, uuid))
    else:
        dst.script([["vmadm", "update", uuid, "autoboot=" + autoboot],
                    ["svcadm", "restart", "vm-agent"]])
        r.done()
        r.line(' - VM %s was in state %s when we started' % (alias, vm.get("zone_state") or
                                                             vm.get("state")))
        r.line('   thus not running.  Leaving in "installed" state.')


def health(m):
    """m.trouble: None once the instance is up on the destination (its zone
    running and, in a zone with SMF inside, svc:/milestone/multi-user
    online, within --health-timeout; at once after a failed boot), else
    what is wrong. One round trip a look."""
    m.trouble = None
    if not m.was_running or m.opts.dry_run:
        return
    r, uuid, dst, boot_error = m.r, m.opts.uuid, m.dst, m.boot_error
    smf = m.vm.get("brand") in SMF_BRANDS
    r.step("* Checking that %s is up on %s (zone running%s)..."
           % (m.vm.get("alias") or uuid, dst.hostname,
              ", milestone/multi-user online" if smf else ""))
    look = ["sh", "-c", HEALTH, "sh", uuid, "yes" if smf else "no"]
    deadline = time.time() + (0 if boot_error else m.opts.health_timeout)
    while True:
        status, out, err = dst.call(look, readonly=True)
        state = zone_state(out, uuid)
        milestone = out.split()[-1] if smf and status == 0 and out.split() else None
        if state == "running" and (not smf or milestone == "online"):
            if boot_error:      # it runs all the same: vm-agent's report is due
                dst.run(["svcadm", "restart", "vm-agent"])
            r.done("Up.")
            return
        said = (err.strip().splitlines() or ["?"])[-1]
        trouble = ("its zone is %s" % state if state != "running" else
                   "its milestone/multi-user is %s" % (milestone or "not online: " + said))
        if time.time() >= deadline:
            r.failed()
            m.trouble = ("the boot failed (%s) and %s" % (boot_error, trouble) if boot_error
                         else "%s after %d seconds" % (trouble, m.opts.health_timeout))
            return
        time.sleep(HEALTH_POLL)


def protect(m):
    """indestructible_zoneroot/_delegated: @indestructible came with the data
    (send -I), its hold does not travel (holds are not in a stream): hold it
    there as VM.js did here. Not before the switch, or undoing the received
    datasets would have to lift it first. Not if it did not come up."""
    if not m.indestructible or m.trouble:
        return
    r = m.r
    r.step("* Protecting %s on %s (indestructible)..." % (
        ", ".join(m.indestructible), m.dst.hostname))
    for snap in m.indestructible:
        argv = ["zfs", "hold", zfs.HOLD_TAG, snap]
        st, _, err = m.dst.call(argv)
        # a resumed run may find it held already
        if st != 0 and "tag already exists" not in err:
            raise RemoteError(m.dst.name, argv, st, err)
    r.done()
