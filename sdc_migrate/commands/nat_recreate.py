"""sdc-migrate nat-recreate: move a fabric network's NAT zone by destroying and recreating it.

Usage:
  sdc-migrate nat-recreate [-y] (--list [CN_NAME] | NAT_UUID [DEST_CN_NAME])
  sdc-migrate nat-recreate -h | --help

The successor of nat-recreate.sh. A fabric network's NAT zone (tag
smartdc_role=nat, alias nat-NETWORK_UUID) holds no data of its own and is
not migrated: it is destroyed and created again, as Triton creates it,
through SAPI's nat service, for the same fabric network and the same
gateway IP. That empties a compute node of NAT zones before it is evacuated.

Given NAT_UUID it destroys the NAT zone (SAPI has VMAPI destroy it, and NAPI
frees its IPs), then creates its successor on DEST_CN_NAME or, without it,
where Triton places it (reserve a compute node in CNAPI to keep new zones
off it), and ends only when NAPI shows the gateway provisioned again and the
new NAT zone runs. Instances on the fabric network keep their NICs and IPs;
their traffic to the outside waits while there is no NAT zone. A run
stopped between the destroy and the create finishes when run again with the
same NAT_UUID.

Options:
  --list        Show the fabric NAT zones (of CN_NAME only, if given): fabric
                network, gateway IP, compute node and state.
  -y            Do not ask "Are you ready to proceed?".
  -h --help     Show this help.

Exit status: 0 done; 1 failed before anything changed or while listing;
2 bad usage or refused (nothing changed); 3 NAT zone, network or compute
node not found; 5 the NAT zone was destroyed but its successor did not come
up (the message says what to do).
"""
import time

from .. import placement
from ..errors import MigrateError, NeedsOperator, NotFound, Refused
from ..node import Runner
from ..procedure import Journal, Procedure, Step
from ..report import Report
from ..triton import UUID_RE, Triton

USAGE = __doc__
WAIT = 300


# the fabric network a NAT zone serves (placement's one rule)
network_of = placement.nat_network


def nat_rows(vms, networks, hostnames):
    """--list's table: one row per NAT zone."""
    rows = []
    for vm in sorted(vms, key=lambda v: (hostnames.get(v.get("server_uuid"), ""), v["uuid"])):
        net = network_of(vm)
        gateway = (networks.get(net) or {}).get("gateway")
        held = [n.get("ip") for n in vm.get("nics") or [] if n.get("network_uuid") == net]
        if gateway and held and held[0] != gateway:
            gateway = "%s (holds %s)" % (gateway, held[0])
        rows.append([vm["uuid"], net or "- (alias %s)" % vm.get("alias"), gateway or "-",
                     hostnames.get(vm.get("server_uuid"), vm.get("server_uuid") or "-"),
                     vm.get("state") or "-"])
    return rows


def new_instance(service, vm, network, external_network, dest_uuid):
    """The SAPI CreateInstance body for the NAT zone's successor (as VMAPI's
    provisionFabricNats asks for one), placed on dest_uuid if given."""
    owner = (vm.get("internal_metadata") or {}).get("com.joyent:ipnat_owner")
    params = {"alias": "nat-" + network["uuid"],
              "networks": [{"uuid": external_network, "primary": True, "allow_ip_spoofing": True},
                           {"uuid": network["uuid"], "ip": network["gateway"],
                            "allow_ip_spoofing": True}]}
    if owner:
        params["internal_metadata"] = {"com.joyent:ipnat_owner": owner}
    if dest_uuid:
        params["server_uuid"] = dest_uuid
    return {"service_uuid": service["uuid"], "params": params,
            "metadata": {"com.joyent:ipnat_subnet": network["subnet"]}}


class NatRecreate:
    def __init__(self, yes=False, report=None, runner=None):
        self.yes = yes
        self.r = report or Report()
        self.hn = runner or Runner()
        self.api = Triton(self.hn)
        self.new = None         # the successor: {"uuid", "hostname"} once it runs

    # ---- --list ---------------------------------------------------------------

    def list(self, cn_name=None):
        api = self.api
        servers = api.servers()
        hostnames = {s["uuid"]: s.get("hostname") for s in servers}
        vms = api.vms(state="active", **{"tag.smartdc_role": "nat"})
        if cn_name:
            server = api.server_by_hostname(cn_name)
            vms = [v for v in vms if v.get("server_uuid") == server["uuid"]]
        networks = {n["uuid"]: n for n in api.networks(fabric="true")}
        self.r.table(["UUID", "NETWORK", "GATEWAY", "CN", "STATE"],
                     nat_rows(vms, networks, hostnames))
        return 0

    # ---- recreate -------------------------------------------------------------

    def gather(self, uuid, dest_name):
        api = self.api
        if not UUID_RE.match(uuid or ""):
            raise Refused("'%s' is not an instance UUID" % uuid)
        vm = api.vm(uuid)
        net_uuid = network_of(vm)
        if net_uuid is None:
            raise Refused("instance %s (%s) is not a fabric NAT zone (tag smartdc_role=nat,"
                          " alias nat-NETWORK_UUID)" % (uuid, vm.get("alias")))
        network = api.network(net_uuid)
        if not network.get("fabric") or not network.get("gateway"):
            raise Refused("network %s is not a fabric network with a gateway" % net_uuid)
        self.vm, self.network = vm, network
        self.destroyed = vm.get("state") in ("destroyed", "failed")
        if self.destroyed and network.get("gateway_provisioned"):
            raise Refused("NAT zone %s is %s and network %s has its gateway %s provisioned"
                          " already: another NAT zone serves it; nothing changed"
                          % (uuid, vm.get("state"), net_uuid, network["gateway"]))
        nics = vm.get("nics") or []
        fabric = [n for n in nics if n.get("network_uuid") == net_uuid]
        if not self.destroyed and (not fabric or fabric[0].get("ip") != network["gateway"]):
            raise Refused("NAT zone %s does not hold the gateway %s of network %s; nothing"
                          " changed" % (uuid, network["gateway"], net_uuid))
        external = [n for n in nics if n.get("network_uuid") not in (None, net_uuid)]
        if not external:
            raise Refused("NAT zone %s has no external NIC to recreate" % uuid)
        self.external = external[0]
        self.service = api.sapi_service("nat")
        try:
            api.sapi_instance(uuid)
            self.in_sapi = True
        except NotFound:
            self.in_sapi = False
        self.source = api.server(vm["server_uuid"]) if vm.get("server_uuid") else None
        self.dest = None
        if dest_name:
            self.dest = api.server_by_hostname(dest_name)
            # the check a migration makes (NIC tags: external and the underlay)
            placement.Destination(self.dest).check(placement.need_of(vm))
        self.neighbours = [v for v in api.vms(state="active")
                           if v["uuid"] != uuid and any(n.get("network_uuid") == net_uuid
                                                        for n in v.get("nics") or [])]

    def show(self):
        vm, net, r = self.vm, self.network, self.r
        where = (self.source or {}).get("hostname") or "-"
        pairs = [("uuid", vm["uuid"]), ("alias", vm.get("alias")),
                 ("state", vm.get("state")), ("on CN", where),
                 ("fabric network", "%s (%s, %s)" % (net["uuid"], net.get("name"),
                                                     net.get("subnet"))),
                 ("gateway IP", net["gateway"]),
                 ("external network", "%s (now %s)" % (self.external["network_uuid"],
                                                       self.external.get("ip"))),
                 ("SAPI service", "nat (%s)" % self.service["uuid"]),
                 ("recreate on", self.dest["hostname"] if self.dest
                  else "where Triton places it"),
                 ("instances on network", "%d (their NICs and IPs stay; outside access"
                                          " waits)" % len(self.neighbours))]
        r.line()
        r.line("We will %s:" % ("create again" if self.destroyed else "destroy and recreate"))
        r.block("NAT ZONE:", pairs)
        r.line()

    def recreate(self, uuid, dest_name=None):
        self.gather(uuid, dest_name)
        self.show()
        if not self.yes and not self.r.ask("Are you ready to proceed? [y|n]"):
            raise Refused("not confirmed: nothing was changed")
        proc = Procedure(RECREATE, Journal(None))
        if not self.destroyed:
            proc.run(self, proc.before_switch())
        try:
            proc.run(self, proc.after_switch())
        except MigrateError as e:
            again = "sdc-migrate nat-recreate %s%s" % (
                uuid, " " + self.dest["hostname"] if self.dest else "")
            raise NeedsOperator(
                "%s\n  NAT zone %s is destroyed and network %s has no NAT zone now: run `%s`"
                " again to create it." % (e, uuid, self.network["uuid"], again)) from e
        new = self.new
        self.r.line()
        self.r.line("NAT zone for %s is now %s on %s (gateway %s)." % (
            self.network["uuid"], new["uuid"], new["hostname"], self.network["gateway"]))
        return 0

    def destroy(self):
        r, api, vm = self.r, self.api, self.vm
        uuid = vm["uuid"]
        if self.in_sapi:
            r.step("* Destroying NAT zone %s through SAPI..." % uuid)
            status, body = api.call("sapi", "/instances/" + uuid, "DELETE")
        else:
            r.step("* Destroying NAT zone %s through VMAPI (no SAPI instance)..." % uuid)
            status, body = api.call("vmapi", "/vms/" + uuid, "DELETE")
            if status < 300:
                self.wait_job(body["job_uuid"])
        if status >= 300:
            r.failed()
            raise MigrateError("destroying %s: %s %s" % (uuid, status, (body or {}).get("message")))
        r.done()
        r.step("* Waiting for NAPI to free gateway %s ..." % self.network["gateway"])
        self.wait(lambda: not api.network(self.network["uuid"]).get("gateway_provisioned"),
                  "NAPI still shows gateway %s provisioned" % self.network["gateway"])
        r.done()

    def checkpoint(self):
        """(the procedure's: nothing interrupts a NAT zone's recreation)"""

    def create(self):
        r, api = self.r, self.api
        body = new_instance(self.service, self.vm, self.network,
                            self.external["network_uuid"], self.dest and self.dest["uuid"])
        r.step("* Creating NAT zone nat-%s through SAPI..." % self.network["uuid"])
        status, inst = api.call("sapi", "/instances?async=true", "POST", body)
        if status >= 300:
            r.failed()
            raise MigrateError("SAPI CreateInstance: %s %s" % (status, (inst or {}).get("message")))
        r.done()
        r.line("    + new NAT zone %s (job %s)" % (inst["uuid"], inst.get("job_uuid")))
        r.step("* Waiting for it to run and for NAPI to show gateway %s provisioned ..."
               % self.network["gateway"])
        state = {}

        def up():
            if inst.get("job_uuid"):
                job = api.job(inst["job_uuid"])
                if job.get("execution") == "failed":
                    errors = [c.get("error") for c in job.get("chain_results") or []
                              if c.get("error")]
                    raise MigrateError("provision job %s failed: %s"
                                       % (job["uuid"], "; ".join(map(str, errors)) or "?"))
            vm = api.vm(inst["uuid"])
            state["vm"] = vm
            return vm.get("state") == "running" and \
                api.network(self.network["uuid"]).get("gateway_provisioned")
        try:
            self.wait(up, "the new NAT zone %s is not running with gateway %s after %d s"
                      % (inst["uuid"], self.network["gateway"], WAIT))
        except MigrateError:
            r.failed()
            raise
        r.done("Success!")
        vm = state["vm"]
        self.new = {"uuid": vm["uuid"],
                    "hostname": self.api.server(vm["server_uuid"]).get("hostname")}

    def wait_job(self, job_uuid):
        self.wait(lambda: self.api.job(job_uuid).get("execution") in ("succeeded", "failed"),
                  "job %s did not finish" % job_uuid)
        job = self.api.job(job_uuid)
        if job.get("execution") != "succeeded":
            raise MigrateError("job %s %s" % (job_uuid, job.get("execution")))

    def wait(self, predicate, message, timeout=WAIT):
        deadline = time.time() + timeout
        while not predicate():
            if time.time() > deadline:
                raise MigrateError(message)
            self.r.out.write(".")
            self.r.out.flush()
            time.sleep(1)


# A NAT zone holds no data of its own: nothing to move, nothing to undo. Its
# destroy is the point of no return; a rerun after it creates the successor.
RECREATE = [
    Step("destroy", NatRecreate.destroy, None,
         "the NAT zone destroyed (SAPI, or VMAPI without a SAPI instance), its gateway"
         " freed in NAPI", switch=True),
    Step("create", NatRecreate.create, None,
         "its successor created through SAPI, running, the gateway provisioned"),
]


def main(args):
    n = NatRecreate(yes=args["-y"])
    if args["--list"]:
        return n.list(args["CN_NAME"])
    return n.recreate(args["NAT_UUID"], args["DEST_CN_NAME"])
