"""The Triton agents installed on a simulated host, where SmartOS keeps them.

Each agent is a folder /opt/smartdc/agents/lib/node_modules/NAME with its
package.json (name, version) and image_uuid (the agent image it came from):
- sysinfo's "SDC Agents" is the name and version of every package.json there
  (smartos-live src/sysinfo: find ... -name package.json | json -a name version);
- cn-agent reports them to CNAPI with their image_uuid, `POST /servers/UUID
  {"agents": [...]}` (sdc-cn-agent lib/backends/smartos/index.js getAgents,
  lib/app.js updateAgents), which is CNAPI's server `agents`;
- updating an agent (`sdcadm experimental update-agents`, no platform change
  and no reboot) installs the new package, restarts the agent's service, and
  cn-agent's refresh_agents task reports the new list to CNAPI.
Only net-agent's version changes what the simulator does (netagent.py).
"""
import json
import os
import uuid as uuidlib

from . import common

# names the images of an agent version (any fixed namespace would do)
IMAGE_NS = uuidlib.UUID("6f1c2b9e-3d4a-4c5e-8f70-1a2b3c4d5e6f")
DESCRIPTIONS = {"net-agent": "Triton Network Agent", "vm-agent": "Triton VM Agent",
                "cn-agent": "Triton Compute Node Agent", "config-agent": "Triton Config Agent"}


def image_uuid(name, version):
    return str(uuidlib.uuid5(IMAGE_NS, "%s@%s" % (name, version)))


def install(host, name, version):
    """NAME VERSION's package.json and image_uuid on host, as its install leaves them."""
    d = os.path.join(common.agents_dir(host), name)
    os.makedirs(d, exist_ok=True)
    pkg = {"name": name, "description": DESCRIPTIONS.get(name, name), "version": version,
           "author": "Joyent (joyent.com)", "private": True}
    tmp = os.path.join(d, "package.json.new")
    with open(tmp, "w") as f:
        json.dump(pkg, f, indent=4)
        f.write("\n")
    os.replace(tmp, os.path.join(d, "package.json"))
    with open(os.path.join(d, "image_uuid"), "w") as f:
        f.write(image_uuid(name, version) + "\n")


def install_all(host):
    """The agents `simdc up` gives a host: today's, but the net-agent of a host
    on the old platform, which predates TRITON-1814."""
    for name, version in common.AGENTS.items():
        if name == "net-agent" and common.platform_of(host) == common.OLD_PLATFORM:
            version = common.OLD_NET_AGENT
        install(host, name, version)


def listed(host):
    """[(name, version, image_uuid)] of the agents installed on host, by name."""
    root = common.agents_dir(host)
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    out = []
    for name in names:
        version = common.agent_version(host, name)
        if version is None:
            continue
        try:
            with open(os.path.join(root, name, "image_uuid")) as f:
                image = f.read().strip()
        except OSError:
            image = None
        out.append((name, version, image))
    return out


def sdc_agents(host):
    """sysinfo's "SDC Agents"; None where the host has no agents folder (the
    key is left out, as sysinfo does)."""
    if not os.path.isdir(common.agents_dir(host)):
        return None
    return [{"name": n, "version": v} for n, v, _ in listed(host)]


def cnapi_agents(host):
    """What cn-agent posts to CNAPI: each agent with its image_uuid."""
    return [dict({"name": n, "version": v}, **({"image_uuid": i} if i else {}))
            for n, v, i in listed(host)]


def report(host):
    """cn-agent's refresh: the host's sysinfo, then its agents, to CNAPI."""
    from . import datacenter
    hosts = common.load_hosts()
    datacenter.register_server(host, hosts[host])
    status, body = common.api("cnapi", "POST", "/servers/%s" % hosts[host]["uuid"],
                              {"agents": cnapi_agents(host)}, agent="cn-agent")
    if status >= 300:
        raise RuntimeError("CNAPI refused %s's agents: %s %s" % (host, status, body))
