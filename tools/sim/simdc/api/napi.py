"""NAPI: networks, their IPs, NIC tags and NICs."""
import ipaddress
import random
import re
import time

from .base import (ADMIN_UUID, ApiError, Response, missing_param, napi_invalid, new_uuid,
                   not_found, now_iso, route, to_bool, valid_uuid)
from .store import STORE


def _ip(s, field="ip"):
    try:
        return ipaddress.IPv4Address(str(s).strip())
    except (ipaddress.AddressValueError, ValueError):
        raise napi_invalid([{"field": field, "code": "InvalidParameter",
                             "message": "invalid IP address"}])


def _subnet(net):
    return ipaddress.IPv4Network(net["subnet"], strict=False)


def network_out(net):
    sub = _subnet(net)
    out = {
        "family": "ipv4",
        "mtu": net.get("mtu", 1500),
        "nic_tag": net["nic_tag"],
        "name": net["name"],
        "provision_end_ip": net["provision_end_ip"],
        "provision_start_ip": net["provision_start_ip"],
        "subnet": str(sub),
        "uuid": net["uuid"],
        "vlan_id": net["vlan_id"],
    }
    if net.get("fabric"):
        out["fabric"] = True
        if net.get("vnet_id") is not None:
            out["vnet_id"] = net["vnet_id"]
        if "internet_nat" in net:
            out["internet_nat"] = net["internet_nat"]
        if net.get("gateway"):
            out["gateway_provisioned"] = bool(net.get("gateway_provisioned"))
    out["resolvers"] = list(net.get("resolvers") or [])
    if net.get("gateway"):
        out["gateway"] = net["gateway"]
    if net.get("routes"):
        out["routes"] = net["routes"]
    if net.get("description"):
        out["description"] = net["description"]
    if net.get("owner_uuids"):
        out["owner_uuids"] = net["owner_uuids"]
    out["netmask"] = str(sub.netmask)
    return out


def _ip_key(net_uuid, ip):
    return "%s|%s" % (net_uuid, ip)


def ip_out(rec, net_uuid=None):
    out = {"ip": rec["ip"], "reserved": bool(rec.get("reserved")),
           "free": not rec.get("reserved")}
    for k in ("belongs_to_type", "belongs_to_uuid", "owner_uuid"):
        if rec.get(k):
            out[k] = rec[k]
            out["free"] = False
    out["network_uuid"] = rec.get("network_uuid", net_uuid)
    return out


def _ip_in_use(rec):
    return bool(rec and (rec.get("reserved") or rec.get("belongs_to_uuid")
                         or rec.get("owner_uuid") or rec.get("belongs_to_type")))


def _load_network(uuid):
    net = STORE.get("network", uuid)
    if net is None:
        raise not_found("network not found")
    return net


def _list_arg(v):
    if v is None:
        return None
    if isinstance(v, list):
        return [str(x) for x in v]
    return [x for x in str(v).split(",") if x != ""]


def napi_list_networks(req):
    p = req.params
    out = []
    names = _list_arg(p.get("name"))
    tags = _list_arg(p.get("nic_tag"))
    for net in STORE.list("network"):
        if names and net["name"] not in names:
            continue
        if tags and net["nic_tag"] not in tags:
            continue
        if "fabric" in p and bool(net.get("fabric")) != bool(to_bool(p["fabric"])):
            continue
        if p.get("vlan_id") not in (None, "") and str(net["vlan_id"]) != str(p["vlan_id"]):
            continue
        if p.get("owner_uuid") and p["owner_uuid"] not in (net.get("owner_uuids") or []):
            continue
        if p.get("provisionable_by") and net.get("owner_uuids") and \
                p["provisionable_by"] not in net["owner_uuids"] + [ADMIN_UUID]:
            continue
        out.append(network_out(net))
    offset = int(p.get("offset") or 0)
    limit = int(p.get("limit") or 1000)
    return Response(200, out[offset:offset + limit])


def _reserve_admin_ip(net, ip):
    rec = {"ip": str(ip), "network_uuid": net["uuid"], "reserved": True,
           "belongs_to_type": "other", "belongs_to_uuid": ADMIN_UUID,
           "owner_uuid": ADMIN_UUID}
    STORE.put("ip", _ip_key(net["uuid"], ip), rec)


def napi_create_network(req):
    p = dict(req.params)
    if isinstance(req.body, dict):
        p.update(req.body)
    fabric = bool(to_bool(p.get("fabric")) if not isinstance(p.get("fabric"), bool)
                  else p.get("fabric"))
    if fabric and not p.get("nic_tag"):
        p["nic_tag"] = "sdc_overlay"
    errs = [missing_param(f) for f in ("name", "subnet", "provision_start_ip",
                                       "provision_end_ip", "nic_tag", "vlan_id")
            if p.get(f) in (None, "")]
    if errs:
        raise napi_invalid(errs)
    try:
        sub = ipaddress.IPv4Network(str(p["subnet"]), strict=False)
    except ValueError:
        raise napi_invalid([{"field": "subnet", "code": "InvalidParameter",
                             "message": "Subnet must be in CIDR form"}])
    start = _ip(p["provision_start_ip"], "provision_start_ip")
    end = _ip(p["provision_end_ip"], "provision_end_ip")
    errs = []
    for f, a in (("provision_start_ip", start), ("provision_end_ip", end)):
        if a not in sub:
            errs.append({"field": f, "code": "InvalidParameter",
                         "message": "provision_start_ip cannot be outside subnet"
                         .replace("provision_start_ip", f)})
    if not errs and int(start) > int(end):
        errs.append({"field": "provision_end_ip", "code": "InvalidParameter",
                     "message": "provision_end_ip must be greater than provision_start_ip"})
    gateway = p.get("gateway")
    if gateway:
        g = _ip(gateway, "gateway")
        if g not in sub:
            errs.append({"field": "gateway", "code": "InvalidParameter",
                         "message": "gateway cannot be outside subnet"})
        gateway = str(g)
    try:
        vlan_id = int(p["vlan_id"])
    except (TypeError, ValueError):
        errs.append({"field": "vlan_id", "code": "InvalidParameter",
                     "message": "VLAN ID must be a number"})
        vlan_id = 0
    if not fabric and STORE.get("nic_tag", p["nic_tag"]) is None:
        errs.append({"field": "nic_tag", "code": "InvalidParameter",
                     "message": "nic tag does not exist"})
    if any(n["name"] == p["name"] for n in STORE.list("network")):
        errs.append({"field": "name", "code": "Duplicate", "message": "Already exists"})
    resolvers = p.get("resolvers") or []
    if isinstance(resolvers, str):
        resolvers = [r for r in resolvers.split(",") if r]
    owner_uuids = p.get("owner_uuids")
    if isinstance(owner_uuids, str):
        owner_uuids = [o for o in owner_uuids.split(",") if o]
    if errs:
        raise napi_invalid(errs)
    net = {
        "uuid": p.get("uuid") if valid_uuid(p.get("uuid")) else new_uuid(),
        "name": p["name"],
        "subnet": str(sub),
        "provision_start_ip": str(start),
        "provision_end_ip": str(end),
        "nic_tag": p["nic_tag"],
        "vlan_id": vlan_id,
        "mtu": int(p.get("mtu") or (1400 if fabric else 1500)),
        "resolvers": [str(_ip(r, "resolvers")) for r in resolvers],
    }
    if gateway:
        net["gateway"] = gateway
    for k in ("routes", "description"):
        if p.get(k):
            net[k] = p[k]
    if owner_uuids:
        net["owner_uuids"] = owner_uuids
    if fabric:
        net["fabric"] = True
        net["vnet_id"] = int(p["vnet_id"]) if p.get("vnet_id") not in (None, "") else \
            random.randint(1, 16000000)
        if "internet_nat" in p:
            net["internet_nat"] = bool(to_bool(p["internet_nat"])
                                       if not isinstance(p["internet_nat"], bool)
                                       else p["internet_nat"])
        gp = p.get("gateway_provisioned", False)
        net["gateway_provisioned"] = gp if isinstance(gp, bool) else bool(to_bool(gp))
    STORE.put("network", net["uuid"], net)
    # Reserved records, as NAPI makes them: gateway, resolvers in the
    # subnet, and the broadcast address.
    if gateway:
        _reserve_admin_ip(net, gateway)
    for r in net["resolvers"]:
        if ipaddress.IPv4Address(r) in sub:
            _reserve_admin_ip(net, r)
    _reserve_admin_ip(net, sub.broadcast_address)
    return Response(200, network_out(net))


def napi_get_network(req):
    return Response(200, network_out(_load_network(req.match["uuid"])))


def napi_update_network(req):
    net = _load_network(req.match["uuid"])
    p = dict(req.params)
    if isinstance(req.body, dict):
        p.update(req.body)
    for k in ("name", "description", "routes"):
        if k in p:
            net[k] = p[k]
    if "owner_uuids" in p:
        o = p["owner_uuids"]
        net["owner_uuids"] = [x for x in o.split(",") if x] if isinstance(o, str) else o
    if "resolvers" in p:
        r = p["resolvers"]
        net["resolvers"] = [x for x in r.split(",") if x] if isinstance(r, str) else r
    if "mtu" in p:
        net["mtu"] = int(p["mtu"])
    for k in ("provision_start_ip", "provision_end_ip"):
        if k in p:
            a = _ip(p[k], k)
            if a not in _subnet(net):
                raise napi_invalid([{"field": k, "code": "InvalidParameter",
                                     "message": "%s cannot be outside subnet" % k}])
            net[k] = str(a)
    if "gateway" in p:
        if p["gateway"]:
            net["gateway"] = str(_ip(p["gateway"], "gateway"))
            _reserve_admin_ip(net, net["gateway"])
        else:
            net.pop("gateway", None)
    for k in ("gateway_provisioned", "internet_nat"):
        if k in p:
            v = p[k]
            net[k] = v if isinstance(v, bool) else bool(to_bool(v))
    STORE.put("network", net["uuid"], net)
    return Response(200, network_out(net))


def napi_delete_network(req):
    net = _load_network(req.match["uuid"])
    if any(n.get("network_uuid") == net["uuid"] for n in STORE.list("nic")):
        raise ApiError(422, "InUse", "Network is in use",
                       [{"type": "nic", "code": "UsedBy", "message": "in use"}])
    for rec in STORE.list("ip", net["uuid"] + "|"):
        STORE.delete("ip", _ip_key(net["uuid"], rec["ip"]))
    STORE.delete("network", net["uuid"])
    return Response(204, None)


def napi_list_ips(req):
    net = _load_network(req.match["uuid"])
    p = req.params
    out = []
    recs = sorted(STORE.list("ip", net["uuid"] + "|"),
                  key=lambda r: int(ipaddress.IPv4Address(r["ip"])))
    for rec in recs:
        if not _ip_in_use(rec):
            continue
        if p.get("belongs_to_type") and rec.get("belongs_to_type") != p["belongs_to_type"]:
            continue
        if p.get("belongs_to_uuid") and rec.get("belongs_to_uuid") != p["belongs_to_uuid"]:
            continue
        out.append(ip_out(rec))
    offset = int(p.get("offset") or 0)
    limit = int(p.get("limit") or 1000)
    return Response(200, out[offset:offset + limit])


def _ip_record(net, ip_s):
    a = _ip(ip_s)
    if a not in _subnet(net):
        raise not_found("IP is not in subnet")
    rec = STORE.get("ip", _ip_key(net["uuid"], str(a)))
    return a, rec


def napi_get_ip(req):
    net = _load_network(req.match["uuid"])
    a, rec = _ip_record(net, req.match["ip"])
    if rec is None:
        rec = {"ip": str(a), "network_uuid": net["uuid"], "reserved": False}
    return Response(200, ip_out(rec))


def napi_update_ip(req):
    net = _load_network(req.match["uuid"])
    a, rec = _ip_record(net, req.match["ip"])
    p = dict(req.params)
    if isinstance(req.body, dict):
        p.update(req.body)
    rec = dict(rec or {"ip": str(a), "network_uuid": net["uuid"], "reserved": False})
    key = _ip_key(net["uuid"], str(a))
    if to_bool(p.get("free")) or p.get("free") is True:
        rec = {"ip": str(a), "network_uuid": net["uuid"], "reserved": False,
               "freed": time.time()}
        STORE.put("ip", key, rec)
        return Response(200, ip_out(rec))
    if to_bool(p.get("unassign")) or p.get("unassign") is True:
        rec.pop("belongs_to_uuid", None)
        rec.pop("belongs_to_type", None)
        STORE.put("ip", key, rec)
        return Response(200, ip_out(rec))
    if "reserved" in p:
        b = p["reserved"] if isinstance(p["reserved"], bool) else to_bool(p["reserved"])
        if b is None:
            raise napi_invalid([{"field": "reserved", "code": "InvalidParameter",
                                 "message": "must be a boolean value"}])
        rec["reserved"] = b
    for k in ("owner_uuid", "belongs_to_uuid", "belongs_to_type"):
        if p.get(k):
            rec[k] = p[k]
    if bool(rec.get("belongs_to_uuid")) != bool(rec.get("belongs_to_type")):
        missing = "belongs_to_type" if rec.get("belongs_to_uuid") else "belongs_to_uuid"
        raise napi_invalid([missing_param(missing)])
    rec.pop("freed", None)
    STORE.put("ip", key, rec)
    return Response(200, ip_out(rec))


def napi_search_ips(req):
    ip_s = req.params.get("ip")
    if not ip_s:
        raise napi_invalid([missing_param("ip")])
    a = _ip(ip_s)
    out = []
    for net in STORE.list("network"):
        if a in _subnet(net):
            rec = STORE.get("ip", _ip_key(net["uuid"], str(a))) or \
                {"ip": str(a), "network_uuid": net["uuid"], "reserved": False}
            out.append(ip_out(rec))
    if not out:
        raise not_found("No networks found containing that IP address")
    return Response(200, out)


def napi_list_nic_tags(req):
    return Response(200, [{"mtu": t.get("mtu", 1500), "name": t["name"], "uuid": t["uuid"]}
                          for t in STORE.list("nic_tag")])


def napi_create_nic_tag(req):
    p = dict(req.params)
    if isinstance(req.body, dict):
        p.update(req.body)
    name = p.get("name")
    if not name:
        raise napi_invalid([missing_param("name")])
    if not re.match(r"^[a-zA-Z0-9_]{1,31}$", str(name)):
        raise napi_invalid([{"field": "name", "code": "InvalidParameter",
                             "message": "must only contain numbers, letters and "
                                        "underscores"}])
    if STORE.get("nic_tag", name):
        raise napi_invalid([{"field": "name", "code": "Duplicate",
                             "message": "Already exists"}])
    tag = {"mtu": int(p.get("mtu") or 1500), "name": name, "uuid": new_uuid()}
    STORE.put("nic_tag", name, tag)
    return Response(200, tag)


def napi_get_nic_tag(req):
    t = STORE.get("nic_tag", req.match["name"])
    if t is None:
        raise not_found("nic tag not found")
    return Response(200, {"mtu": t.get("mtu", 1500), "name": t["name"], "uuid": t["uuid"]})


MAC_RE = re.compile(r"^[0-9a-f]{12}$")


def norm_mac(s):
    h = re.sub(r"[:\-\.]", "", str(s).strip().lower())
    if not MAC_RE.match(h):
        if re.match(r"^[0-9a-f]{1,2}(:[0-9a-f]{1,2}){5}$", str(s).strip().lower()):
            h = "".join("%02x" % int(x, 16) for x in str(s).strip().lower().split(":"))
        else:
            return None
    return ":".join(h[i:i + 2] for i in range(0, 12, 2))


NIC_BOOL_PARAMS = ["allow_dhcp_spoofing", "allow_ip_spoofing", "allow_mac_spoofing",
                   "allow_restricted_traffic", "allow_unfiltered_promisc", "underlay"]


def nic_out(nic):
    out = {
        "belongs_to_type": nic["belongs_to_type"],
        "belongs_to_uuid": nic["belongs_to_uuid"],
        "mac": nic["mac"],
        "owner_uuid": nic["owner_uuid"],
        "primary": bool(nic.get("primary")),
        "state": nic.get("state", "running"),
        "created_timestamp": nic.get("created_timestamp", "1970-01-01T00:00:00.000Z"),
        "modified_timestamp": nic.get("modified_timestamp", "1970-01-01T00:00:00.000Z"),
    }
    net = STORE.get("network", nic["network_uuid"]) if nic.get("network_uuid") else None
    if nic.get("ip") and net:
        out["ip"] = nic["ip"]
        ns = network_out(net)
        for k in ("fabric", "gateway", "gateway_provisioned", "internet_nat", "mtu",
                  "netmask", "nic_tag", "resolvers", "vlan_id"):
            if k in ns:
                out[k] = ns[k]
        if ns.get("routes"):
            out["routes"] = ns["routes"]
        out["network_uuid"] = net["uuid"]
    for k in ("cn_uuid", "model", "nic_tag"):
        if nic.get(k):
            out[k] = nic[k]
    if net and net.get("fabric"):
        out["nic_tag"] = "%s/%s" % (net["nic_tag"], net.get("vnet_id"))
    if nic.get("nic_tags_provided"):
        out["nic_tags_provided"] = nic["nic_tags_provided"]
    for k in NIC_BOOL_PARAMS:
        if nic.get(k):
            out[k] = True
    return out


def _random_mac():
    while True:
        mac = "90:b8:d0:%02x:%02x:%02x" % (random.randint(0, 255), random.randint(0, 255),
                                           random.randint(0, 255))
        if STORE.get("nic", mac) is None:
            return mac


def _allocate_ip(net):
    start = int(ipaddress.IPv4Address(net["provision_start_ip"]))
    end = int(ipaddress.IPv4Address(net["provision_end_ip"]))
    recs = {int(ipaddress.IPv4Address(r["ip"])): r
            for r in STORE.list("ip", net["uuid"] + "|")}
    for n in range(start, end + 1):
        if n not in recs:
            return str(ipaddress.IPv4Address(n))
    free = [(r.get("freed", 0), n) for n, r in recs.items()
            if start <= n <= end and not _ip_in_use(r)]
    if free:
        return str(ipaddress.IPv4Address(min(free)[1]))
    raise ApiError(507, "SubnetFull", "No more free IPs available on network %s"
                   % net["uuid"])


def _find_network_for_ip(ip, nic_tag=None, vlan_id=None):
    a = ipaddress.IPv4Address(ip)
    best = None
    for net in STORE.list("network"):
        if a in _subnet(net):
            if (nic_tag is None or net["nic_tag"] == nic_tag) and \
                    (vlan_id is None or str(net["vlan_id"]) == str(vlan_id)):
                return net
            best = best or net
    return best


def _take_ip(net, ip, nic, reserved=None, explicit=True):
    """Give ip on net to nic; error if it belongs to something else."""
    key = _ip_key(net["uuid"], ip)
    rec = STORE.get("ip", key)
    if rec and rec.get("belongs_to_uuid") and rec.get("belongs_to_uuid") != nic["belongs_to_uuid"] \
            and not (rec.get("belongs_to_type") == "other"
                     and rec.get("belongs_to_uuid") == ADMIN_UUID):
        raise napi_invalid([{"field": "ip", "code": "UsedBy",
                             "message": "IP in use",
                             "type": rec.get("belongs_to_type"),
                             "id": rec.get("belongs_to_uuid")}])
    rec = dict(rec or {"ip": ip, "network_uuid": net["uuid"], "reserved": False})
    rec.pop("freed", None)
    rec["belongs_to_type"] = nic["belongs_to_type"]
    rec["belongs_to_uuid"] = nic["belongs_to_uuid"]
    rec["owner_uuid"] = nic["owner_uuid"]
    if reserved is not None:
        rec["reserved"] = reserved
    STORE.put("ip", key, rec)
    if net.get("fabric") and net.get("gateway") == ip:
        net["gateway_provisioned"] = True
        STORE.put("network", net["uuid"], net)


def _release_ip(net_uuid, ip):
    """A NIC let go of ip: free it, unless reserved (then keep owner)."""
    key = _ip_key(net_uuid, ip)
    rec = STORE.get("ip", key)
    if rec is None:
        return
    if rec.get("reserved"):
        rec.pop("belongs_to_uuid", None)
        rec.pop("belongs_to_type", None)
        STORE.put("ip", key, rec)
    else:
        STORE.put("ip", key, {"ip": ip, "network_uuid": net_uuid, "reserved": False,
                              "freed": time.time()})
    net = STORE.get("network", net_uuid)
    if net and net.get("fabric") and net.get("gateway") == ip:
        net["gateway_provisioned"] = False
        STORE.put("network", net_uuid, net)


def _bool_param(p, k):
    v = p.get(k)
    return v if isinstance(v, bool) else to_bool(v)


def napi_create_nic(req, network_uuid=None):
    p = dict(req.params)
    if isinstance(req.body, dict):
        p.update(req.body)
    if network_uuid:
        p["network_uuid"] = network_uuid
    errs = [missing_param(f) for f in ("owner_uuid", "belongs_to_uuid", "belongs_to_type")
            if not p.get(f)]
    if errs:
        raise napi_invalid(errs)
    if p.get("mac"):
        mac = norm_mac(p["mac"])
        if mac is None:
            raise napi_invalid([{"field": "mac", "code": "InvalidParameter",
                                 "message": "invalid MAC address"}])
        if STORE.get("nic", mac):
            raise napi_invalid([{"field": "mac", "code": "Duplicate",
                                 "message": "Already exists"}])
    else:
        mac = _random_mac()
    ts = now_iso()
    nic = {"mac": mac, "owner_uuid": p["owner_uuid"], "belongs_to_uuid": p["belongs_to_uuid"],
           "belongs_to_type": p["belongs_to_type"],
           "primary": bool(_bool_param(p, "primary")),
           "state": p.get("state") or "running",
           "created_timestamp": ts, "modified_timestamp": ts}
    for k in ("cn_uuid", "model", "nic_tag"):
        if p.get(k):
            nic[k] = p[k]
    if p.get("nic_tags_provided"):
        ntp = p["nic_tags_provided"]
        nic["nic_tags_provided"] = ntp if isinstance(ntp, list) else \
            [x for x in str(ntp).split(",") if x]
    for k in NIC_BOOL_PARAMS:
        if _bool_param(p, k):
            nic[k] = True
    net = None
    if p.get("network_uuid"):
        net = STORE.get("network", p["network_uuid"])
        if net is None:
            raise napi_invalid([{"field": "network_uuid", "code": "InvalidParameter",
                                 "message": "network does not exist"}])
    elif p.get("ip"):
        net = _find_network_for_ip(str(_ip(p["ip"])), p.get("nic_tag"), p.get("vlan_id"))
        if net is None:
            raise napi_invalid([{"field": "ip", "code": "InvalidParameter",
                                 "message": "No networks found matching parameters"}])
    if net is not None:
        if p.get("ip"):
            a = _ip(p["ip"])
            if a not in _subnet(net):
                raise napi_invalid([{"field": "ip", "code": "InvalidParameter",
                                     "message": "ip cannot be outside subnet"}])
            ip = str(a)
        else:
            ip = _allocate_ip(net)
        reserved = _bool_param(p, "reserved")
        _take_ip(net, ip, nic, reserved=reserved, explicit=bool(p.get("ip")))
        nic["ip"] = ip
        nic["network_uuid"] = net["uuid"]
    if nic["primary"]:
        for other in STORE.list("nic"):
            if other["belongs_to_uuid"] == nic["belongs_to_uuid"] and other.get("primary"):
                other["primary"] = False
                STORE.put("nic", other["mac"], other)
    STORE.put("nic", mac, nic)
    return Response(200, nic_out(nic))


def napi_provision_nic(req):
    _load_network(req.match["uuid"])
    return napi_create_nic(req, network_uuid=req.match["uuid"])


def _load_nic(req):
    mac = norm_mac(req.match["mac"])
    nic = STORE.get("nic", mac) if mac else None
    if nic is None:
        raise not_found("nic not found")
    return nic


def napi_get_nic(req):
    return Response(200, nic_out(_load_nic(req)))


def napi_update_nic(req):
    nic = _load_nic(req)
    p = dict(req.params)
    if isinstance(req.body, dict):
        p.update(req.body)
    for k in ("owner_uuid", "belongs_to_uuid", "belongs_to_type", "cn_uuid", "model",
              "state", "nic_tag"):
        if p.get(k):
            nic[k] = p[k]
    if "nic_tags_provided" in p:
        ntp = p["nic_tags_provided"]
        nic["nic_tags_provided"] = ntp if isinstance(ntp, list) else \
            [x for x in str(ntp).split(",") if x]
    for k in NIC_BOOL_PARAMS:
        if k in p:
            if _bool_param(p, k):
                nic[k] = True
            else:
                nic.pop(k, None)
    if "primary" in p:
        nic["primary"] = bool(_bool_param(p, "primary"))
        if nic["primary"]:
            for other in STORE.list("nic"):
                if other["mac"] != nic["mac"] and other["belongs_to_uuid"] == \
                        nic["belongs_to_uuid"] and other.get("primary"):
                    other["primary"] = False
                    STORE.put("nic", other["mac"], other)
    new_net_uuid = p.get("network_uuid") or nic.get("network_uuid")
    if p.get("ip") or (p.get("network_uuid") and p["network_uuid"] != nic.get("network_uuid")):
        net = STORE.get("network", new_net_uuid) if new_net_uuid else None
        if net is None and p.get("ip"):
            net = _find_network_for_ip(str(_ip(p["ip"])), nic.get("nic_tag"))
        if net is None:
            raise napi_invalid([{"field": "network_uuid", "code": "InvalidParameter",
                                 "message": "network does not exist"}])
        ip = str(_ip(p["ip"])) if p.get("ip") else _allocate_ip(net)
        if (net["uuid"], ip) != (nic.get("network_uuid"), nic.get("ip")):
            _take_ip(net, ip, nic)
            if nic.get("ip") and nic.get("network_uuid"):
                _release_ip(nic["network_uuid"], nic["ip"])
            nic["ip"] = ip
            nic["network_uuid"] = net["uuid"]
    elif nic.get("ip") and nic.get("network_uuid"):
        # belongs_to/owner changes follow onto the IP record
        key = _ip_key(nic["network_uuid"], nic["ip"])
        rec = STORE.get("ip", key)
        if rec is not None:
            for k in ("belongs_to_uuid", "belongs_to_type", "owner_uuid"):
                rec[k] = nic[k]
            STORE.put("ip", key, rec)
    nic["modified_timestamp"] = now_iso()
    STORE.put("nic", nic["mac"], nic)
    return Response(200, nic_out(nic))


def _delete_nic(nic):
    STORE.delete("nic", nic["mac"])
    if nic.get("ip") and nic.get("network_uuid"):
        _release_ip(nic["network_uuid"], nic["ip"])


def napi_delete_nic(req):
    _delete_nic(_load_nic(req))
    return Response(204, None)


def napi_list_nics(req):
    p = req.params
    filters = {}
    for k in ("belongs_to_uuid", "belongs_to_type", "owner_uuid", "network_uuid",
              "nic_tag", "nic_tags_provided", "cn_uuid", "state"):
        if p.get(k) not in (None, ""):
            filters[k] = set(_list_arg(p[k]))
    out = []
    for nic in STORE.list("nic"):
        ser = nic_out(nic)
        ok = True
        for k, vals in filters.items():
            if k == "nic_tags_provided":
                if not vals & set(nic.get("nic_tags_provided") or []):
                    ok = False
            elif k == "nic_tag":
                if ser.get("nic_tag") not in vals:
                    ok = False
            elif nic.get(k) not in vals:
                ok = False
        if ok:
            out.append(ser)
    offset = int(p.get("offset") or 0)
    limit = int(p.get("limit") or 1000)
    return Response(200, out[offset:offset + limit])


def napi_delete_nics_of(vm_uuid):
    for nic in STORE.list("nic"):
        if nic["belongs_to_uuid"] == vm_uuid:
            _delete_nic(nic)


def napi_ping(req):
    return Response(200, {"config": {"fabrics_enabled": True}, "healthy": True,
                          "services": {"moray": "online"}, "status": "OK"})


ROUTES = [
    ("GET", route("/ping"), napi_ping),
    ("GET", route("/nic_tags"), napi_list_nic_tags),
    ("POST", route("/nic_tags"), napi_create_nic_tag),
    ("GET", route("/nic_tags/:name"), napi_get_nic_tag),
    ("GET", route("/networks"), napi_list_networks),
    ("POST", route("/networks"), napi_create_network),
    ("GET", route("/networks/:uuid"), napi_get_network),
    ("PUT", route("/networks/:uuid"), napi_update_network),
    ("DELETE", route("/networks/:uuid"), napi_delete_network),
    ("POST", route("/networks/:uuid/nics"), napi_provision_nic),
    ("GET", route("/networks/:uuid/ips"), napi_list_ips),
    ("GET", route("/networks/:uuid/ips/:ip"), napi_get_ip),
    ("PUT", route("/networks/:uuid/ips/:ip"), napi_update_ip),
    ("GET", route("/nics"), napi_list_nics),
    ("POST", route("/nics"), napi_create_nic),
    ("GET", route("/nics/:mac"), napi_get_nic),
    ("PUT", route("/nics/:mac"), napi_update_nic),
    ("DELETE", route("/nics/:mac"), napi_delete_nic),
    ("GET", route("/search/ips"), napi_search_ips),
]
