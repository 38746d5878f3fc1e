"""sdc-migrate: a stand-in for Triton's own /opt/smartdc/bin/sdc-migrate.

On a real head node this is sdc-sdc's bin/sdc-migrate, the RFD 34 client of
VMAPI's migrations (`sdc-vmapi /vms/UUID?action=migrate&migration_action=...`,
`/migrations`, `/migrations/UUID/watch`), first on root's PATH. Here it says
what it is, lists and shows VMAPI's migration records as that client reads
them (GET /migrations?format=raw, GET /migrations/UUID?format=raw), and runs
no migration: VMAPI's migrate actions are not emulated.
"""
import sys
import urllib.parse

from . import common


USAGE = """
Triton's sdc-migrate (the RFD 34 client of VMAPI migrations; simulated:
only get and list run here)

Usage:
        %s [--no-ansi] <sub-command> [options]

Sub-commands:

    get VM_UUID                  - the instance's migration record
    list [-s STATE] [-n CN] [-l] - the migrations of this datacenter
    estimate [-n CN] VM_UUID     - how long migrating the instance would take
    begin [-n CN] VM_UUID        - begin migrating the instance
    sync VM_UUID                 - sync the migration's filesystems
    switch VM_UUID               - switch over to the migrated instance
    pause VM_UUID                - pause the migration
    watch VM_UUID                - watch the migration

"""


def main(argv):
    args = [a for a in argv if a != "--no-ansi"]
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stderr.write(USAGE % "/opt/smartdc/bin/sdc-migrate")
        return 1
    sub, rest = args[0], args[1:]
    if sub == "get" and rest:
        status, rec = common.api("vmapi", "GET", "/migrations/%s?format=raw" % rest[0])
        if status != 200:
            sys.stderr.write("Error: %s\n" % (rec or {}).get("message", status))
            return 1
        for label, key in (("State", "state"), ("Source server", "source_server_uuid"),
                           ("Target server", "target_server_uuid"),
                           ("Created", "created_timestamp"), ("Automatic", "automatic")):
            print("%-13s: %s" % (label, rec.get(key) if rec.get(key) is not None else "(none)"))
        print("Phase        : %s" % rec.get("phase"))
        return 0
    if sub == "list":
        query = {"format": "raw"}
        if "-s" in rest[:-1]:
            query["state"] = rest[rest.index("-s") + 1]
        if "-n" in rest[:-1]:
            query["source_server_uuid"] = rest[rest.index("-n") + 1]
        status, recs = common.api("vmapi", "GET", "/migrations?" + urllib.parse.urlencode(query))
        print("%-36s %8s %10s" % ("UUID", "PHASE", "STATE"))
        for r in recs or []:
            print("%-36s %8s %10s" % (r.get("vm_uuid"), r.get("phase"), r.get("state")))
        return 0
    if sub in ("estimate", "begin", "sync", "switch", "pause", "watch", "abort", "finalize"):
        sys.stderr.write("sdc-migrate: Triton's migrations (%s) are not emulated in this"
                         " simulated datacenter; sdc-migrate of this project is"
                         " /opt/custom/bin/sdc-migrate\n" % sub)
        return 1
    sys.stderr.write(USAGE % "/opt/smartdc/bin/sdc-migrate")
    return 1

