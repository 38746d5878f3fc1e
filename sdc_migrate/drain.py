"""The drain of a compute node an evacuation empties: CNAPI's reserved flag,
set for the evacuation's duration so that DAPI places nothing new there
(sdc-designation lib/algorithms/hard-filter-reserved.js), through CNAPI's
ServerUpdate (sdc-cnapi lib/endpoints/servers.js: POST /servers/:server_uuid
with reserved).

The flag as it was is journaled (paths.evacuation(CN): one JSON object a
line, procedure.Journal) before it is set, so a rerun after a kill keeps the
flag as it was before the first run, and the end of the evacuation or
`sdc-migrate restore CN` puts that back:

  {"t": "drain", "cn": NAME, "server_uuid": UUID, "was": BOOL, "at": EPOCH}
  {"t": "kept", "at": EPOCH}                  --keep-reserved: left for restore
  {"t": "lifted", "reserved": BOOL, "by": "evacuate" | "restore", "at": EPOCH}
"""
import time

from . import paths
from .errors import MigrateError
from .procedure import STATE_DIR, Journal


def journal(cn, state_dir=STATE_DIR):
    return Journal(paths.evacuation(cn, state_dir))


def open_drain(records):
    """The drain record no lift followed (the CN is drained by an evacuation), or None."""
    found = None
    for rec in records:
        if rec["t"] == "drain" and found is None:
            found = rec
        elif rec["t"] == "lifted":
            found = None
    return found


def set_reserved(api, server_uuid, reserved):
    status, body = api.call("cnapi", "/servers/" + server_uuid, "POST", {"reserved": reserved})
    if status >= 300:
        raise MigrateError("CNAPI: setting reserved=%s on server %s: %s %s" % (
            str(reserved).lower(), server_uuid, status, (body or {}).get("message", "")))


def drain(api, server, state_dir=STATE_DIR):
    """Reserve server (CNAPI's record) for an evacuation; its flag as it was
    journaled first, or, after an interrupted one, as that one journaled it.
    Returns the drain record."""
    j = journal(server["hostname"], state_dir)
    rec = open_drain(j.records)
    if rec is None:
        rec = {"t": "drain", "cn": server["hostname"], "server_uuid": server["uuid"],
               "was": bool(server.get("reserved")), "at": int(time.time())}
        j.write(rec)
    if not server.get("reserved"):
        set_reserved(api, server["uuid"], True)
    return rec


def keep(cn, state_dir=STATE_DIR):
    """--keep-reserved: the drain stays, journaled for `sdc-migrate restore`."""
    j = journal(cn, state_dir)
    if open_drain(j.records):
        j.write({"t": "kept", "at": int(time.time())})


def lift(api, cn, by, state_dir=STATE_DIR):
    """Put CN's reserved flag back as the open drain journaled it; the drain
    record, or None if CN has none open."""
    j = journal(cn, state_dir)
    rec = open_drain(j.records)
    if rec is None:
        return None
    set_reserved(api, rec["server_uuid"], rec["was"])
    j.write({"t": "lifted", "reserved": rec["was"], "by": by, "at": int(time.time())})
    return rec
