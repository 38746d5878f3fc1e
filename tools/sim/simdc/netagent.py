"""net-agent of a simulated compute node (sdc-net-agent), for the instances' NICs.

Read from sdc-net-agent lib/net-agent.js, lib/inst-fsm.js and lib/nic-fsm.js:
- it knows the CN's instances as `vmadm lookup` gives them, which leaves the
  do-not-inventory zones out: a hidden zone is not there for it, and a zone
  turning hidden is dropped without touching NAPI;
- a NIC it sees on an instance that NAPI has never had is created in NAPI
  (nic-fsm "create"); one NAPI has, it keeps NAPI's cn_uuid and state in
  line with the zone (nic-fsm "update.napi", LOCAL_FIELDS);
- an instance that vanishes (vmadm delete, zonecfg delete, the XML gone) or
  a NIC removed from it is released: its NIC is deleted in NAPI, freeing the
  IP unless reserved, if NAPI still has it for that instance in state running
  or stopped (nic-fsm "release.delete");
- a NIC NAPI no longer has, after it had it, is removed from the zone and the
  zone rebooted (nic-fsm "remove.nic", "remove.reboot").

Which zones it sees depends on its version (its package.json on the CN,
agents.py). From 2.3.1 (TRITON-1814, sdc-net-agent 9077600: lib/net-agent.js
updateVMs stops and forgets the InstanceFSM of a VM turning do_not_inventory,
lib/watcher-fsm.js looks up with include_dni) a hidden zone is dropped
without touching NAPI. Before it (2.0.0 to 2.3.0: watcher-fsm.js
`include_dni: false`, vmadm-watcher-fsm.js filtering do_not_inventory out), a
zone turning hidden is as gone as a deleted one: updateVMs removes its
InstanceFSM, whose state_remove releases every NIC, and NAPI's NICs are
deleted (release.delete) -- the instance's NICs, lost when a migration hides
the copy it leaves behind. (1.x looked zones up differently and released
NICs only of zones zoneadm no longer listed: lib/vm.js checkDestroyed.)

`python3 -m simdc.netagent HOST` runs it inside the CN's namespaces (started by
`simdc up`, pid recorded). It looks at /etc/zones and the zones' run state
every vmagent.WATCH_INTERVAL seconds (net-agent's zoneevent and /etc/zones watch) and
asks NAPI about every NIC every SIMDC_NETAGENT_REFRESH seconds (5 by default;
net-agent refreshes on NAPI's changefeed).
"""
import os
import sys
import time

from . import common, vmagent, zones

AGENT = "net-agent"
# the versions whose lookup leaves hidden zones out, as if they were gone
RELEASES_HIDDEN = ((2, 0, 0), (2, 3, 1))


def version_tuple(v):
    out = []
    for part in str(v).split("-")[0].split("."):
        digits = "".join(c for c in part if c.isdigit())
        out.append(int(digits or 0))
    return tuple((out + [0, 0, 0])[:3])


def releases_hidden(version):
    """Whether net-agent VERSION deletes a hidden zone's NICs (before TRITON-1814)."""
    return RELEASES_HIDDEN[0] <= version_tuple(version) < RELEASES_HIDDEN[1]


class NapiError(Exception):
    pass


def _napi(method, urlpath, body=None):
    try:
        status, answer = common.api("napi", method, urlpath, body, agent=AGENT)
    except OSError as e:
        raise NapiError("cannot reach NAPI: %s" % getattr(e, "reason", e))
    if status >= 500:
        raise NapiError("NAPI %s %s: %s %s" % (method, urlpath, status, answer))
    return status, answer


def mac_key(mac):
    return (mac or "").replace(":", "").lower()


def instances():
    """(visible, hidden): the `vmadm lookup` objects by uuid, and the uuids of
    the zones vmadm lookup leaves out (do-not-inventory)."""
    visible, hidden = {}, set()
    # without the zfs listing: the NICs are in the XML, and this runs often
    h = zones.host()
    cache = {"zfs": {}, "host": h, "server_uuid": common.load_hosts().get(h, {}).get("uuid")}
    for obj in zones.vm_objects(cache):
        if obj.get("do_not_inventory") is True:
            hidden.add(obj["uuid"])
        else:
            visible[obj["uuid"]] = obj
    return visible, hidden


def remove_nic(uuid, mac):
    """vmadm update remove_nics=[mac], then a reboot if it runs (inst-fsm
    removeNIC, reboot)."""
    with zones.lock():
        entry = zones.index_entry(uuid)
        if entry is None:
            return False
        cfg = zones.ZoneConfig.load(entry["name"])
        gone = [e for e in cfg.children("network")
                if mac_key(e.get("mac-addr")) == mac_key(mac)]
        for e in gone:
            cfg.root.remove(e)
        if not gone:
            return False
        cfg.save(entry["name"])
        if zones.is_running(entry["name"]):
            zones.halt(entry["name"])
            zones.boot(entry["name"])
        return True


class Agent:
    def __init__(self, host, refresh, version=None):
        self.host, self.refresh = host, refresh
        self.version = version or common.agent_version(host, AGENT) or common.NET_AGENT
        self.releases_hidden = releases_hidden(self.version)
        self.server_uuid = common.load_hosts().get(host, {}).get("uuid")
        self.tracked = {}       # uuid -> {mac: nic} of the visible instances
        self.states = {}        # uuid -> its state when we last synced its NICs
        self.had = set()        # macs NAPI has had while we watched them
        self.seen = None
        self.next_refresh = 0.0

    def step(self, now):
        files = vmagent.watched(self.host)
        refresh = now >= self.next_refresh
        if files == self.seen and not refresh:
            return
        visible, hidden = instances()
        for uuid in list(self.tracked):
            if uuid in visible:
                continue
            # vanished; or hidden, to a net-agent from before TRITON-1814
            if uuid not in hidden or self.releases_hidden:
                for mac in self.tracked[uuid]:
                    self.release(uuid, mac)
            del self.tracked[uuid]
            self.states.pop(uuid, None)
        for uuid, obj in visible.items():
            nics = {mac_key(n.get("mac")): n for n in obj.get("nics") or [] if n.get("mac")}
            before = self.tracked.get(uuid)
            for mac in set(before or {}) - set(nics):
                self.release(uuid, mac)
            self.tracked[uuid] = nics
            # NAPI is asked on a refresh, and about what changed: a new zone or NIC,
            # a new state (not about every NIC of the CN at every event)
            if refresh or before is None or self.states.get(uuid) != obj.get("state"):
                todo = nics
            else:
                todo = {m: n for m, n in nics.items() if m not in before}
            for mac, nic in todo.items():
                self.sync(uuid, obj, mac, nic)
            self.states[uuid] = obj.get("state")
        self.seen = files
        if refresh:
            self.next_refresh = now + self.refresh

    def local(self, uuid, obj):
        return {"cn_uuid": self.server_uuid, "belongs_to_uuid": uuid,
                "belongs_to_type": "zone", "owner_uuid": obj.get("owner_uuid"),
                "state": "running" if obj.get("state") == "running" else "stopped"}

    def sync(self, uuid, obj, mac, nic):
        if obj.get("state") not in ("running", "stopped"):
            return      # inst-fsm UPDATE_STATES: never a provisioning instance
        status, remote = _napi("GET", "/nics/" + mac)
        local = self.local(uuid, obj)
        if status == 404:
            if mac in self.had:
                self.had.discard(mac)
                _log("NIC %s of %s is gone from NAPI: removing it, rebooting" % (mac, uuid))
                remove_nic(uuid, mac)
                return
            body = dict(local, mac=mac, check_owner=False)
            for k in ("ip", "network_uuid", "primary", "nic_tag", "vlan_id", "model"):
                if nic.get(k) not in (None, ""):
                    body[k] = nic[k]
            if body.get("ip") == "dhcp":
                body.pop("ip")
            status, _ = _napi("POST", "/nics", body)
            if status < 300:
                self.had.add(mac)
            return
        if status >= 300 or not isinstance(remote, dict):
            return
        self.had.add(mac)
        if remote.get("belongs_to_uuid") != uuid:
            return      # two instances with one MAC: not ours to settle
        update = {k: v for k, v in local.items() if v and remote.get(k) != v}
        if update:
            _napi("PUT", "/nics/" + mac, dict(update, check_owner=False))

    def release(self, uuid, mac):
        """nic-fsm release.delete: only NAPI's NIC of this instance, running or stopped."""
        self.had.discard(mac)
        status, remote = _napi("GET", "/nics/" + mac)
        if status >= 300 or not isinstance(remote, dict):
            return
        if remote.get("belongs_to_uuid") != uuid:
            return
        if remote.get("state") not in ("running", "stopped"):
            return
        _log("%s is gone: deleting its NIC %s in NAPI" % (uuid, mac))
        _napi("DELETE", "/nics/" + mac)


def _log(msg):
    sys.stderr.write("%s net-agent: %s\n" % (zones.iso(time.time()), msg))
    sys.stderr.flush()


def main(argv=None):
    refresh = float(os.environ.get("SIMDC_NETAGENT_REFRESH", "5"))
    def make(host):
        agent = Agent(host, refresh)
        _log("net-agent %s started%s" % (agent.version, " (deletes the NICs of hidden zones:"
                                         " before TRITON-1814)" if agent.releases_hidden else ""))
        return agent
    vmagent.serve(argv, make, _log)


if __name__ == "__main__":
    sys.exit(main())
