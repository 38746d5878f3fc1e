"""The head node's APIs, through Triton's own wrappers (sdc-vmapi, sdc-cnapi,
sdc-napi, sdc-imgapi, sdc-papi, sdc-sapi), which print an HTTP header block and a JSON
body and exit 0 whatever the status."""
import json
import re
import urllib.parse

from .errors import MigrateError, NotFound, RemoteError

# Triton's tools, by absolute path: cron and `ssh headnode CMD` have no
# /opt/smartdc/bin on PATH (root's .profile adds it: smartos-live
# overlay/generic/root/.profile).
SMARTDC_BIN = "/opt/smartdc/bin"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def parse_response(text):
    """(status, body) from a wrapper's output: status line, headers, blank line, JSON."""
    head, sep, body = text.replace("\r\n", "\n").partition("\n\n")
    if not sep or not head.startswith("HTTP/"):
        raise MigrateError("unexpected API output: %r" % text[:200])
    status = int(head.split("\n", 1)[0].split()[1])
    body = body.strip()
    return status, (json.loads(body) if body else None)


class Triton:
    def __init__(self, runner):
        self.hn = runner

    def call(self, api, path, method="GET", body=None, readonly=None, curl=()):
        """curl: more of curl's options, which the wrappers pass on (-m SECONDS)."""
        argv = [SMARTDC_BIN + "/sdc-" + api, path]
        if method != "GET":
            argv += ["-X", method]
        if body is not None:
            argv += ["-d", json.dumps(body)]
        argv += list(curl)
        if readonly is None:
            readonly = method == "GET"
        out = self.hn.run(argv, readonly=readonly)
        if self.hn.dry_run and not readonly:
            return 200, body
        return parse_response(out)

    def get(self, api, path, what):
        status, body = self.call(api, path)
        if status == 404:
            raise NotFound("%s not found" % what)
        if status >= 300:
            raise MigrateError("%s: %s %s" % (what, status, (body or {}).get("message", "")))
        return body

    # VMAPI
    def vm(self, uuid):
        return self.get("vmapi", "/vms/" + uuid, "instance %s" % uuid)

    def vms(self, **query):
        """ListVms with these filters, e.g. vms(state="active", **{"tag.smartdc_role": "nat"})."""
        return self.get("vmapi", "/vms?" + urllib.parse.urlencode(sorted(query.items())), "instances")

    def migration(self, uuid):
        """The instance's Triton (RFD 34) migration record, None if it has none
        (sdc-vmapi GetMigration: the record of the instance's current server)."""
        status, body = self.call("vmapi", "/migrations/" + uuid)
        if status == 404:
            return None
        if status >= 300:
            raise MigrateError("VMAPI /migrations/%s: %s %s"
                               % (uuid, status, (body or {}).get("message", "")))
        return body

    def job(self, uuid):
        return self.get("vmapi", "/jobs/" + uuid, "job %s" % uuid)

    # CNAPI
    def server(self, uuid):
        return self.get("cnapi", "/servers/" + uuid, "server %s" % uuid)

    def server_by_hostname(self, hostname):
        servers = self.get("cnapi", "/servers?hostname=" + hostname, "server " + hostname)
        servers = [s for s in servers if s.get("hostname") == hostname]
        if not servers:
            raise NotFound("compute node %s not found in CNAPI" % hostname)
        return self.server(servers[0]["uuid"])

    def servers(self):
        return self.get("cnapi", "/servers?extras=sysinfo", "servers")

    # CNAPI's waitlist (sdc-cnapi docs/README.md "Waitlist", lib/endpoints/waitlist.js)
    def create_ticket(self, server, scope, ident, expires_at, action, extra):
        """A ticket on server for scope and id: {"uuid", "queue"} (None with --dry-run)."""
        status, body = self.call("cnapi", "/servers/%s/tickets" % server, "POST",
                                 {"scope": scope, "id": ident, "expires_at": expires_at,
                                  "action": action, "extra": extra})
        if self.hn.dry_run:
            return None
        if status != 202:
            raise MigrateError("CNAPI: a waitlist ticket on server %s: %s %s"
                               % (server, status, (body or {}).get("message", "")))
        return body

    def tickets(self, server):
        return self.get("cnapi", "/servers/%s/tickets" % server, "waitlist of server %s" % server)

    def wait_ticket(self, uuid, seconds):
        """Until the ticket is active (None) or why not (expired, no answer in time)."""
        try:
            status, body = self.call("cnapi", "/tickets/%s/wait" % uuid,
                                     curl=("-m", str(int(seconds))))
        except RemoteError as e:        # curl's own timeout (28), or no answer
            return "no answer in %d seconds (%s)" % (seconds, e.stderr.strip() or e.status)
        if status == 204:
            return None
        return "%s %s" % (status, (body or {}).get("message", ""))

    def release_ticket(self, uuid):
        """False if CNAPI has no such ticket (gone: nothing to release)."""
        status, body = self.call("cnapi", "/tickets/%s/release" % uuid, "PUT")
        if status == 404:
            return False
        if status >= 300 and not self.hn.dry_run:
            raise MigrateError("CNAPI: releasing ticket %s: %s %s"
                               % (uuid, status, (body or {}).get("message", "")))
        return True

    # NAPI
    def network(self, uuid):
        return self.get("napi", "/networks/" + uuid, "network %s" % uuid)

    def networks(self, **query):
        return self.get("napi", "/networks?" + urllib.parse.urlencode(sorted(query.items())),
                        "networks")

    def ip(self, network_uuid, ip):
        return self.get("napi", "/networks/%s/ips/%s" % (network_uuid, ip), "IP %s" % ip)

    def set_ip_reserved(self, network_uuid, ip, reserved):
        status, body = self.call("napi", "/networks/%s/ips/%s" % (network_uuid, ip), "PUT",
                                 {"reserved": reserved})
        if status >= 300:
            raise MigrateError("NAPI: reserving %s: %s" % (ip, body))
        return body

    # IMGAPI
    def image(self, uuid):
        return self.get("imgapi", "/images/" + uuid, "image %s" % uuid)

    def images(self):
        """Every image IMGAPI has, whatever its state (an instance's may be disabled)."""
        return self.get("imgapi", "/images?state=all", "images")

    def found(self, api, path):
        """The object at path, None if the API has none (404)."""
        status, body = self.call(api, path)
        if status == 404:
            return None
        if status >= 300:
            raise MigrateError("%s %s: %s %s" % (api.upper(), path, status,
                                                 (body or {}).get("message", "")))
        return body

    # PAPI
    def packages(self):
        return self.get("papi", "/packages", "packages")

    # SAPI
    def sapi_instance(self, uuid):
        return self.get("sapi", "/instances/" + uuid, "SAPI instance %s" % uuid)

    def sapi_service(self, name):
        """The one SAPI service of that name (e.g. "nat")."""
        services = self.get("sapi", "/services?name=" + urllib.parse.quote(name),
                            "SAPI service " + name)
        if len(services) != 1:
            raise MigrateError("SAPI has %d services named %r, not one" % (len(services), name))
        return services[0]


def admin_ip(server):
    """A server's admin IP from its sysinfo, as sdc-server admin-ip finds it."""
    sysinfo = server.get("sysinfo") or {}
    if sysinfo.get("Admin IP"):
        return sysinfo["Admin IP"]
    for nic in (sysinfo.get("Network Interfaces") or {}).values():
        if "admin" in (nic.get("NIC Names") or []) and nic.get("ip4addr"):
            return nic["ip4addr"]
    raise MigrateError("server %s has no admin IP in its sysinfo" % server.get("hostname"))
