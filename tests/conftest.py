"""Fixtures: the simulated datacenter (tools/simdc) the end-to-end tests run in.

The suite boots one datacenter of its own (SIMDC_DIR /var/tmp/simdc-test,
addresses 127.0.30.x unless SIMDC_DIR/SIMDC_NET say otherwise) and takes it
down at the end, whatever happened.
"""
import contextlib
import json
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIMDC = os.path.join(ROOT, "tools", "simdc")
# where an operator calls it: installed in /opt/custom/bin, which root's PATH
# lacks; `sdc-migrate` there is Triton's own (/opt/smartdc/bin)
SDC_MIGRATE = "/opt/custom/bin/sdc-migrate"


def parse_http(text):
    """(status, headers, body) from an sdc-* wrapper's output."""
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(l.split(": ", 1) for l in lines[1:] if ": " in l)
    return status, headers, (json.loads(body) if body.strip() else None)


class Datacenter:
    def __init__(self, env):
        self.env = env
        self.provisioned = {}       # uuid -> the simdc provision arguments
        self.reusable = []          # running instances a test left as good as new
        self.reused = set()         # of those, the ones the running test took

    def simdc(self, *args, input=None, check=True):
        # bytes, decoded here: text mode would turn the APIs' CRLF into LF
        p = subprocess.run([SIMDC] + [str(a) for a in args], env=self.env,
                           input=None if input is None else input.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p.stdout, p.stderr = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        if check and p.returncode != 0:
            raise AssertionError("simdc %s failed (%d): %s%s" % (
                " ".join(map(str, args)), p.returncode, p.stdout, p.stderr))
        return p

    def exec(self, host, *argv, input=None, check=True):
        return self.simdc("exec", host, "--", *argv, input=input, check=check)

    def api(self, api, path, *args):
        out = self.exec("headnode", "sdc-" + api, path, *args).stdout
        return parse_http(out)

    def vm(self, uuid):
        return self.api("vmapi", "/vms/" + uuid)[2]

    def hosts(self):
        with open(os.path.join(self.env["SIMDC_DIR"], "hosts.json")) as f:
            return json.load(f)

    def provision(self, *args):
        out = self.simdc("provision", *args).stdout
        uuid = out.strip().splitlines()[-1]
        self.provisioned[uuid] = [str(a) for a in args]
        return uuid

    def seq(self, host, uuid):
        return int(self.simdc("seq", host, uuid).stdout.strip())

    def seq_lines(self, host, uuid):
        out = self.simdc("seq", "--dump", host, uuid).stdout
        return [l.split() for l in out.splitlines() if l.strip()]

    def log(self, host=None):
        args = ["log", "-j"] + (["--host", host] if host else [])
        return [json.loads(l) for l in self.simdc(*args).stdout.splitlines()]

    def migrate_with_fault(self, fault, *args):
        """sdc-migrate ARGS with `simdc fault add FAULT...` in place, cleared after."""
        self.simdc("fault", "add", *fault)
        try:
            return self.migrate(*args)
        finally:
            self.simdc("fault", "clear")

    def migrate(self, *args, input=None):
        return self.exec("headnode", SDC_MIGRATE, *args, input=input, check=False)

    def stop_instances(self, uuids):
        """Stop every running zone of uuids on every CN (a visible copy or a
        hidden one): a test's instances must not go on writing, and costing
        CPU, through the rest of the suite (40 running ones cost a third of
        a CPU here)."""
        # the fabric's NAT zone and core zones are the datacenter's, shared
        uuids = {u for u in uuids if not {"--nat", "--core"} & set(self.provisioned.get(u, []))}
        for host, h in self.hosts().items():
            if host == "headnode" or not uuids:
                continue
            running = self.exec(host, "zoneadm", "list").stdout.split()
            for uuid in uuids & set(running):
                self.exec(host, "vmadm", "stop", "-F", uuid, check=False)

    def zfs_names(self, host):
        out = self.exec(host, "zfs", "list", "-H", "-t", "all", "-o", "name").stdout
        return out.split()


def dc_env(dirname="/var/tmp/simdc-test", net="30"):
    """The suite's datacenter; under pytest-xdist one a worker (gw0, gw1...),
    side by side: SIMDC_DIR-gwN on addresses 127.0.(NET+10*(N+1)).x."""
    env = dict(os.environ)
    env.setdefault("SIMDC_DIR", dirname)
    env.setdefault("SIMDC_NET", net)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        env["SIMDC_DIR"] += "-" + worker
        env["SIMDC_NET"] = str(int(env["SIMDC_NET"]) + 10 * (int(worker[2:]) + 1))
    return env


@contextlib.contextmanager
def booted(env):
    """A datacenter up for the with block, down after it whatever happened."""
    d = Datacenter(env)
    d.simdc("up")
    try:
        yield d
    finally:
        d.simdc("down", check=False)


@pytest.fixture(scope="session")
def dc():
    with booted(dc_env()) as d:
        yield d


@pytest.fixture(autouse=True)
def _stop_what_the_test_provisioned(request):
    """After each test of the shared datacenter, its instances stop (but those
    it left for reuse); a module's fixtures' instances live on with the module."""
    if "dc" not in request.fixturenames:
        yield
        return
    d = request.getfixturevalue("dc")
    if not isinstance(d, Datacenter):        # tests/sim's API-only services
        yield
        return
    before = set(d.provisioned)
    yield
    d.stop_instances((set(d.provisioned) - before | d.reused) - set(d.reusable))
    d.reused.clear()


# What one pytest-xdist worker runs whole (--dist loadgroup), in order: a
# module's own datacenter or instance (evacuate, data, estimate's CNs), the migrations that
# want a datacenter no other test has touched, and tests/sim, whose fixtures
# take fixed addresses (127.0.61-63.x).
GROUPS = {"tests/e2e/test_migrate.py": "migrate", "tests/e2e/test_evacuate.py": "evacuate",
          "tests/e2e/test_data.py": "data", "tests/e2e/test_estimate.py": "estimate",
          "tests/sim/": "sim"}


@pytest.hookimpl(tryfirst=True)       # before xdist reads the groups
def pytest_collection_modifyitems(items):
    """The migrations of issue 3 first, on a datacenter no other test has
    touched yet: one of them needs dest-server without the zone image."""
    items.sort(key=lambda item: 0 if item.nodeid.startswith("tests/e2e/test_migrate.py") else 1)
    for item in items:
        for prefix, group in GROUPS.items():
            if item.nodeid.startswith(prefix):
                item.add_marker(pytest.mark.xdist_group(group))
