"""The simulated hosts themselves (tools/sim/simdc/control.py start_hosts):
what each host has of its own, what every host sees whatever the checkout's
path, and the `json` every host has.

A checkout is copied under /tmp or /var/tmp (where a newcomer clones), with
the datacenter's files ($SIMDC_DIR) under the other or the same, and the
hosts' namespaces are started from that copy, without zfs, sshd or the APIs.

Real sources:
- a SmartOS global zone's /tmp is a tmpfs of its own, emptied at each boot:
  smartos-live src/vm/man/vmadmd.8.md ("Since the /tmp filesystem is tmpfs").
- every host's /usr/bin/json is the platform's, smartos-live src/json.js
  (trentm's json 5.1.1, `#!/usr/node/bin/node`): -e and -c CODE run with
  vm.createScript(...).runInNewContext(datum), so the input's fields are
  globals as well as `this`.
- the head node's /opt/smartdc/bin/json is sdc-headnode tools/bin/json
  (json 9.0.2, `#!/usr/node/bin/node`): CODE is the body of a function called
  on the datum (json CHANGES.md 7.0.0), `this` required, node's globals there.
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NET = "62"
HOSTS = ("headnode", "source-server", "dest-server", "spare-server", "old-server")
CNS = HOSTS[1:]


def _have_ns():
    return os.geteuid() == 0 and all(shutil.which(t) for t in ("unshare", "nsenter"))


pytestmark = pytest.mark.skipif(not _have_ns(), reason="needs root, unshare and nsenter")


class Hosts:
    def __init__(self, checkout, simdir, machine_only):
        self.checkout = checkout
        self.simdir = simdir
        self.machine_only = machine_only    # files beside them on the machine
        self.env = dict(os.environ, SIMDC_DIR=str(simdir), SIMDC_NET=NET)
        self.env.pop("PYTHONPATH", None)

    def simdc(self, *args, input=None):
        return subprocess.run([str(self.checkout / "tools" / "simdc")] + list(args),
                              env=self.env, input=input, capture_output=True, text=True,
                              timeout=60)

    def sh(self, host, script, *args, input=None):
        return self.simdc("exec", host, "--", "sh", "-c", script, "sh", *args, input=input)


def _copy_checkout(dest):
    """What the hosts run from a checkout: tools/, bin/ and the json tools/setup
    installed (.node)."""
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "tools", dest / "tools", symlinks=True, ignore=skip)
    shutil.copytree(ROOT / ".node", dest / ".node", symlinks=True)
    shutil.copytree(ROOT / "bin", dest / "bin", symlinks=True)


# (where the checkout is, where $SIMDC_DIR is)
PLACES = [("/tmp", "/var/tmp"), ("/var/tmp", "/var/tmp"), ("/var/tmp", "/tmp")]


@pytest.fixture(scope="module", params=PLACES, ids=["checkout-in-tmp", "both-in-var-tmp",
                                                    "checkout-in-var-tmp-simdc-in-tmp"])
def hosts(request):
    checkout_base, simdc_base = request.param
    tag = "simdc-hosts-test-%d" % os.getpid()
    made = []
    for base in {checkout_base, simdc_base}:
        d = Path(base) / tag
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        made.append(d)
        # the machine's own file beside them, which no host's own /tmp or
        # /var/tmp has
        (d / "machine-only").write_text("the machine's\n")
    checkout = Path(checkout_base) / tag / "checkout"
    _copy_checkout(checkout)
    simdir = Path(simdc_base) / tag / "simdc"
    h = Hosts(checkout, simdir, [d / "machine-only" for d in made])
    try:
        p = subprocess.run(["/usr/bin/python3", "-c",
                            "from simdc import control; control.start_hosts()"],
                           env=dict(h.env, PYTHONPATH=str(checkout / "tools" / "sim")),
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        yield h
    finally:
        subprocess.run(["/usr/bin/python3", "-c",
                        "from simdc import control; control.cmd_down(None, quiet=True)"],
                       env=dict(h.env, PYTHONPATH=str(checkout / "tools" / "sim")),
                       capture_output=True, timeout=60)
        for d in made:
            shutil.rmtree(d, ignore_errors=True)


def test_every_host_sees_the_checkout_and_the_datacenter_files(hosts):
    pidfile = hosts.simdir / "pids" / "ns-headnode.pid"
    for host in HOSTS:
        # what the head node's API service and every command start with: the
        # package from the checkout, as `simdc up` starts them (cwd /)
        r = hosts.sh(host, 'cd / && PYTHONPATH="$1" /usr/bin/python3 -c '
                     '"import simdc.common as c; print(c.SIM_ROOT, c.path())" && cat "$2"',
                     str(hosts.checkout / "tools" / "sim"), str(pidfile))
        assert r.returncode == 0, "%s: %s" % (host, r.stderr)
        assert r.stdout.split("\n", 1) == [
            "%s %s" % (hosts.checkout / "tools" / "sim", hosts.simdir), pidfile.read_text()]


# what a host says it has: its own /var/tmp and /tmp files, and which of the
# machine's files beside the checkout and $SIMDC_DIR it sees
LOOK = """own=$1; shift; cat /var/tmp/$own; cat /tmp/$own 2>/dev/null || echo no-tmp-own
for f in "$@"; do [ -e "$f" ] && echo "$f" || echo none; done"""


def test_each_cn_has_a_tmp_and_every_host_a_var_tmp_of_its_own(hosts):
    own = hosts.simdir.parent.name + "-own"     # a name of this run's
    for host in HOSTS:
        r = hosts.sh(host, 'echo "$1" > /var/tmp/$2 && { [ "$1" = headnode ] || '
                     'echo "$1" > /tmp/$2; }', host, own)
        assert r.returncode == 0, "%s: %s" % (host, r.stderr)
    leaked = [d + own for d in ("/var/tmp/", "/tmp/") if os.path.exists(d + own)]
    for f in leaked:
        os.unlink(f)
    assert leaked == []
    for host in HOSTS:
        seen = hosts.sh(host, LOOK, own, *map(str, hosts.machine_only)).stdout.splitlines()
        # a CN sees none of the machine's /tmp and /var/tmp; the head node,
        # whose /tmp is the machine's, only what is in the machine's /tmp
        want = [str(f) if host == "headnode" and str(f).startswith("/tmp/") else "none"
                for f in hosts.machine_only]
        assert seen == [host, host if host != "headnode" else "no-tmp-own"] + want, host


VM = {"uuid": "b3a5b6a8-4a2e-4f36-9c52-70c0a7a0a001", "alias": "web-1", "state": "running",
      "ram": 1024, "nics": [{"ip": "10.0.0.7", "primary": True}, {"ip": "10.1.0.7"}],
      "tags": {"role": "web"}}


def test_json_runs_javascript_on_the_cns_as_the_platform_does(hosts):
    two = json.dumps(VM) + "\n" + json.dumps(dict(VM, alias="small", ram=256))
    for host in CNS + ("headnode",):
        # the input's fields are globals as well as `this` (5.1.1's
        # runInNewContext); real JS: a function expression, Array methods
        r = hosts.sh(host, 'command -v json; printf %s "$1" | json -e "$2" -c "$3"; '
                     'printf %s "$4" | json -ga -c "ram > 512" alias', json.dumps(VM),
                     "ram *= 2; this.ips = nics.map(function (n) { return n.ip; }).join()",
                     "state === 'running' && /^web/.test(tags.role) && nics.some("
                     "function (n) { return n.primary; })", two)
        assert r.returncode == 0, "%s: %s" % (host, r.stderr)
        where, out = r.stdout.split("\n", 1)
        assert where == "/usr/bin/json", host
        assert out.endswith("}\nweb-1\n"), (host, out)
        assert json.loads(out[:-len("web-1\n")]) == dict(VM, ram=2048,
                                                         ips="10.0.0.7,10.1.0.7"), host


def test_the_head_nodes_json_is_json_9_on_usr_node(hosts):
    vm = json.dumps(VM)
    j = "/opt/smartdc/bin/json"
    r = hosts.sh("headnode", '"$1" -e "$2" -c "$3" -j', j,
                 "this.node = process.argv0; this.ips = this.nics.map(function (n) "
                 "{ return n.ip; })", "this.nics.length === 2", input=vm)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == dict(VM, node="/usr/node/bin/node",
                                        ips=["10.0.0.7", "10.1.0.7"])
    r = hosts.sh("headnode", '"$1" --version', j)
    assert r.stdout.splitlines()[0] == "json 9.0.2"
    # without `this`, a field is not a variable there (json 7.0.0's -e)
    r = hosts.sh("headnode", '"$1" -e "ram++"', j, input=vm)
    assert r.returncode != 0 and "ram is not defined" in r.stderr
