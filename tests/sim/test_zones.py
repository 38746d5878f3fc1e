"""The CN control plane of the simulator (tools/sim/simdc/zones.py, vmagent.py
and the CN commands zonecfg, zoneadm, vmadm, svcadm) against the Triton
samples in tests/fixtures/triton-samples.

Most tests run the commands in this process on a private CN root
(zones.ROOT), with a fake zfs and a fake workload; the last one runs them for
real inside a private mount namespace with its own zfs-fuse pool.
"""
import base64
import contextlib
import importlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SIM = ROOT / "tools" / "sim"
CN = SIM / "cn"
SAMPLES = ROOT / "tests" / "fixtures" / "triton-samples"
DERIVED = SAMPLES / "derived"

sys.path.insert(0, str(SIM))
from simdc import common, netagent, vmagent, zones  # noqa: E402



def load_command(name):
    """A CN command's module (tools/sim/cn/NAME runs simdc/cn/NAME.py)."""
    return importlib.import_module("simdc.cn." + name)


COMMANDS = {n: load_command(n) for n in ("zonecfg", "zoneadm", "vmadm", "svcadm")}


def sample_text(name):
    return (SAMPLES / name).read_text()


# ---- a fake zfs: datasets in a dict, mountpoints as folders under the CN root ----

class Done:
    def __init__(self, rc=0, out="", err=""):
        self.returncode, self.stdout, self.stderr = rc, out, err


def parse_size(v):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    v = str(v).upper()
    return int(float(v[:-1]) * units[v[-1]]) if v[-1] in units else int(v)


class FakeZfs:
    """Just enough of the shim for vmadm/zoneadm: list, get, create, clone, set, destroy."""

    def __init__(self, root):
        self.root = root
        self.ds = {}
        self.calls = []
        self.add("zones", used=1 << 20, available=4 << 30)
        self.add("zones/cores", mountpoint="none")

    def add(self, name, type_="filesystem", **props):
        rec = {"type": type_, "used": 0, "available": 0, "quota": 0, "refquota": 0,
               "recordsize": 131072, "volsize": None, "refreservation": 0,
               "reservation": 0, "compression": "off", "creation": int(time.time()),
               "mountpoint": "/" + name, "origin": None}
        rec.update(props)
        if "@" in name:
            rec.update(type="snapshot", mountpoint=None)
        elif type_ == "volume":
            rec["mountpoint"] = None
        self.ds[name] = rec
        if rec["mountpoint"] and rec["mountpoint"].startswith("/"):
            os.makedirs(self.root + rec["mountpoint"], exist_ok=True)
        return rec

    def add_image(self, uuid, volsize=None):
        self.add("zones/" + uuid, **({"type_": "volume", "volsize": volsize} if volsize else {}))
        os.makedirs("%s/zones/%s/root" % (self.root, uuid), exist_ok=True)
        self.add("zones/%s@final" % uuid)

    def __call__(self, *args, check=True, input=None):
        args = [str(a) for a in args]
        self.calls.append(args)
        r = self.run(args)
        if check and r.returncode:
            raise zones.ZfsError(["zfs"] + args, r.returncode, r.stderr)
        return r

    def missing(self, name):
        return Done(1, "", "cannot open '%s': dataset does not exist\n" % name)

    def run(self, a):
        cmd, rest = a[0], a[1:]
        opts = {}
        pos = []
        i = 0
        while i < len(rest):
            if rest[i] in ("-o", "-t", "-V") and i + 1 < len(rest):
                opts.setdefault(rest[i], []).append(rest[i + 1])
                i += 2
            elif rest[i].startswith("-"):
                opts[rest[i]] = True
                i += 1
            else:
                pos.append(rest[i])
                i += 1
        if cmd == "list":
            cols = opts.get("-o", ["name"])[0].split(",")
            if "-r" in opts:
                top = pos[0]
                names = [n for n in self.ds if n == top or n.startswith(top + "/")
                         or n.startswith(top + "@")]
                if "-t" not in opts:
                    names = [n for n in names if "@" not in n]
            else:
                names = pos
            out = []
            for n in sorted(names):
                if n not in self.ds:
                    return self.missing(n)
                rec = self.ds[n]
                row = []
                for c in cols:
                    v = n if c == "name" else rec.get(c)
                    row.append("-" if v is None else str(v))
                out.append("\t".join(row))
            return Done(0, "".join(l + "\n" for l in out))
        if cmd == "get":
            prop, name = pos
            if name not in self.ds:
                return self.missing(name)
            v = self.ds[name].get(prop)
            return Done(0, "%s\n" % ("-" if v is None else v))
        if cmd in ("create", "clone"):
            name = pos[-1]
            if name in self.ds:
                return Done(1, "", "cannot create '%s': dataset already exists\n" % name)
            props = dict(o.split("=", 1) for o in opts.get("-o", []))
            if cmd == "clone":
                snap = pos[0]
                if snap not in self.ds:
                    return self.missing(snap)
                origin = self.ds[snap.split("@")[0]]
                rec = self.add(name, origin["type"], origin=snap, volsize=origin["volsize"])
                if rec["type"] != "volume":
                    os.makedirs(self.root + "/%s/root" % name, exist_ok=True)
            elif "-V" in opts:
                rec = self.add(name, "volume", volsize=parse_size(opts["-V"][0]))
            else:
                rec = self.add(name, mountpoint=props.get("mountpoint", "/" + name))
            for k, v in props.items():
                if k == "volsize":
                    rec["volsize"] = parse_size(v)
                elif k in ("quota", "refquota", "reservation", "refreservation"):
                    rec[k] = 0 if v == "none" else parse_size(v)
                else:
                    rec[k] = v
            return Done()
        if cmd == "set":
            k, v = pos[0].split("=", 1)
            if pos[1] not in self.ds:
                return self.missing(pos[1])
            if k in ("quota", "refquota", "reservation", "refreservation"):
                v = 0 if v == "none" else parse_size(v)
                if k == "reservation" and v > self.ds["zones"]["available"]:
                    return Done(1, "", "cannot set property for '%s': out of space\n" % pos[1])
            self.ds[pos[1]][k] = v
            return Done()
        if cmd == "destroy":
            name = pos[0]
            if name not in self.ds:
                return self.missing(name)
            for n in list(self.ds):
                if n == name or n.startswith(name + "/") or n.startswith(name + "@"):
                    del self.ds[n]
            shutil.rmtree(self.root + "/" + name, ignore_errors=True)
            return Done()
        if cmd in ("umount", "mount", "snapshot"):
            if cmd == "snapshot":
                self.add(pos[0])
            return Done()
        return Done(2, "", "fake zfs: %s not supported\n" % cmd)


class Workload:
    def __init__(self):
        self.started, self.stopped = [], []

    def start(self, uuid, data_dir, host):
        self.started.append((uuid, data_dir, host))
        return 4242

    def stop(self, uuid, host):
        self.stopped.append((uuid, host))


class CNRoot:
    """One simulated CN for in-process commands: a private / and $SIMDC_DIR."""

    def __init__(self, tmp, monkeypatch, capsys):
        self.root = str(tmp / "cn")
        self.capsys = capsys
        self.monkeypatch = monkeypatch
        os.makedirs(self.root + "/etc/zones")
        with open(self.root + "/etc/zones/index", "w") as f:
            f.write("global:installed:/\n")
        simdir = tmp / "simdc"
        os.makedirs(simdir)
        self.server_uuid = "564dfd57-1dd4-6fc0-d973-4f137ee12afe"
        (simdir / "hosts.json").write_text(json.dumps({
            "testcn": {"uuid": self.server_uuid, "admin_ip": "127.0.62.11",
                       "platform": common.PLATFORM, "ram_mb": 32768, "headnode": False}}))
        monkeypatch.setenv("SIMDC_DIR", str(simdir))
        monkeypatch.setenv("SIMDC_HOST", "testcn")
        monkeypatch.setattr(zones, "ROOT", self.root)
        self.zfs = FakeZfs(self.root)
        monkeypatch.setattr(zones, "zfs", self.zfs)
        self.workload = Workload()
        wl = types.ModuleType("simdc.workload")
        wl.start, wl.stop = self.workload.start, self.workload.stop
        zl = types.ModuleType("simdc.zfslib")
        zl.data_dir = lambda uuid: "/zones/%s/root" % uuid
        zl.brand_of = lambda uuid: "joyent"
        zl.disk0_dataset = lambda uuid, brand: None
        zl.ensure_mounted = lambda ds: True
        monkeypatch.setitem(sys.modules, "simdc.workload", wl)
        monkeypatch.setitem(sys.modules, "simdc.zfslib", zl)

    def run(self, cmd, *argv, stdin=""):
        self.capsys.readouterr()
        self.monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        rc = COMMANDS[cmd].main([str(a) for a in argv])
        out, err = self.capsys.readouterr()
        return rc, out, err

    def index(self):
        with open(self.root + "/etc/zones/index") as f:
            return f.read()

    def xml(self, uuid):
        with open(self.root + "/etc/zones/%s.xml" % uuid) as f:
            return f.read()

    def put_xml(self, uuid, text, state="installed"):
        with open(self.root + "/etc/zones/%s.xml" % uuid, "w") as f:
            f.write(text)
        with open(self.root + "/etc/zones/index", "a") as f:
            f.write("%s:%s:/zones/%s:%s\n" % (uuid, state, uuid, uuid))


@pytest.fixture
def cn(tmp_path, monkeypatch, capsys):
    return CNRoot(tmp_path, monkeypatch, capsys)


# ---- formats -------------------------------------------------------------------------

def test_xml_round_trips_byte_for_byte():
    for f in sorted(SAMPLES.glob("zone*.xml")):
        text = f.read_text()
        assert zones.ZoneConfig.parse(text).text() == text, f.name


@pytest.mark.parametrize("xml,expected", [
    ("zone-kvm.xml", "vmadm-vmload-kvm-from-xml.json"),
    ("zone-bhyve.xml", "vmadm-vmload-bhyve-from-xml.json"),
    ("zone-maximal-joyent.xml", "vmadm-vmload-joyent-maximal-from-xml.json"),
])
def test_vmload_object_from_xml_matches_samples(xml, expected):
    want = json.loads(sample_text(expected))
    want.pop("device", None)      # an artifact of vmload's test harness
    got = zones.xml_vmobj(zones.ZoneConfig.parse(sample_text(xml)))
    assert got == want
    assert list(got) == list(want)           # same key order, as vmadm prints it


def test_index_lines():
    lines = (DERIVED / "zones-index.txt").read_text().splitlines()
    parsed = [zones.parse_index_line(l) for l in lines]
    assert parsed[0] == {"name": "global", "state": "installed", "path": "/", "uuid": ""}
    for line, e in zip(lines, parsed):
        assert zones.format_index_line(e["name"], e["state"], e["path"], e["uuid"]) == line
    assert zones.parse_index_line("#" + lines[1]) is None
    assert zones.parse_index_line('z:installed:"/a:b":u')["path"] == "/a:b"


def three_zones(cn):
    """The zones of zoneadm-list-pc.txt: one running joyent-minimal, one installed kvm."""
    running = "dc5cbce7-798a-4bc8-bdc5-61b4be00a22e"
    kvm = "7970c690-1738-4e58-a04f-8ce4ea8ebfca"
    for uuid, brand, debugid in ((running, "joyent-minimal", 21), (kvm, "kvm", 22)):
        cfg = zones.ZoneConfig.new(uuid, "/zones/" + uuid, brand, iptype="exclusive",
                                   debugid=debugid)
        cn.put_xml(uuid, cfg.text())
    zones.write_run_state(running, {"state": "running", "zoneid": 21,
                                    "boot_timestamp": "2015-11-28T07:56:44.000Z"})
    return running, kvm


def test_zoneadm_list_formats_match_samples(cn):
    three_zones(cn)
    rc, out, _ = cn.run("zoneadm", "list", "-pc")
    assert rc == 0 and out == sample_text("zoneadm-list-pc.txt")
    rc, out, _ = cn.run("zoneadm", "list", "-cp")
    assert out == sample_text("zoneadm-list-pc.txt")
    rc, out, _ = cn.run("zoneadm", "list", "-vic")
    assert rc == 0 and out == (DERIVED / "zoneadm-list-vic.txt").read_text()
    rc, out, _ = cn.run("zoneadm", "list")
    assert out == "global\ndc5cbce7-798a-4bc8-bdc5-61b4be00a22e\n"
    kvm = "7970c690-1738-4e58-a04f-8ce4ea8ebfca"
    assert cn.run("zoneadm", "-z", kvm, "list", "-p")[1] == \
        sample_text("zoneadm-list-pc.txt").splitlines()[2] + "\n"
    # a commented-out line is not a zone
    with open(cn.root + "/etc/zones/index") as f:
        text = f.read()
    with open(cn.root + "/etc/zones/index", "w") as f:
        f.write(text.replace("7970c690", "#7970c690"))
    rc, out, _ = cn.run("zoneadm", "list", "-pc")
    assert "7970c690" not in out


def minimal_payload():
    """A create payload that gives back vmadm-get-joyent-minimal.json."""
    get = json.loads(sample_text("vmadm-get-joyent-minimal.json"))
    p = {k: get[k] for k in ("uuid", "brand", "alias", "image_uuid", "create_timestamp",
                             "cpu_shares", "max_lwps", "max_physical_memory",
                             "max_locked_memory", "max_swap", "zfs_io_priority", "cpu_cap",
                             "billing_id", "owner_uuid", "package_name", "package_version",
                             "tmpfs", "dns_domain", "archive_on_delete", "maintain_resolvers",
                             "resolvers", "quota", "customer_metadata", "internal_metadata",
                             "tags")}
    p["limit_priv"] = get["limit_priv"]
    p["max_shm_memory"] = get["max_shm_memory"]
    n = get["nics"][0]
    p["nics"] = [{"interface": n["interface"], "mac": n["mac"], "nic_tag": n["nic_tag"],
                  "ip": n["ip"], "netmask": n["netmask"], "primary": True}]
    return get, p


def test_vmadm_create_gives_the_sample_vmadm_get(cn):
    get, payload = minimal_payload()
    cn.zfs.add_image(payload["image_uuid"])
    rc, out, err = cn.run("vmadm", "create", stdin=json.dumps(payload))
    assert (rc, out, err) == (0, "", "Successfully created VM %s\n" % get["uuid"])
    rc, out, err = cn.run("vmadm", "get", get["uuid"])
    assert rc == 0
    obj = json.loads(out)
    assert out == json.dumps(obj, indent=2) + "\n"
    volatile = ("last_modified", "boot_timestamp", "pid", "zoneid", "server_uuid",
                "datacenter_name", "platform_buildstamp", "routes")
    assert list(obj) == list(get)
    assert {k: v for k, v in obj.items() if k not in volatile} == \
        {k: v for k, v in get.items() if k not in volatile}
    assert obj["server_uuid"] == cn.server_uuid and obj["pid"] == 4242
    assert cn.workload.started == [(get["uuid"], "/zones/%s/root" % get["uuid"], "testcn")]
    assert cn.index().splitlines()[-1] == "%s:installed:/zones/%s:%s" % ((get["uuid"],) * 3)
    xml = cn.xml(get["uuid"])
    assert '<attr name="alias" type="string" value="%s"/>' % \
        base64.b64encode(b"testvm").decode() in xml
    assert '<attr name="dataset-uuid" type="string" value="%s"/>' % payload["image_uuid"] in xml
    assert ['clone', '-o', 'quota=25g', 'zones/%s@final' % payload["image_uuid"],
            'zones/' + get["uuid"]] in cn.zfs.calls
    assert cn.zfs.ds["zones/cores/" + get["uuid"]]["mountpoint"] == \
        "/zones/%s/cores" % get["uuid"]


def test_vmadm_list_formats_match_samples(cn):
    get, payload = minimal_payload()
    cn.zfs.add_image(payload["image_uuid"])
    assert cn.run("vmadm", "create", stdin=json.dumps(payload))[0] == 0
    rc, out, _ = cn.run("vmadm", "list")
    assert rc == 0 and out == (DERIVED / "vmadm-list-default.txt").read_text()
    parsable = (DERIVED / "vmadm-list-parsable.txt").read_text().splitlines()
    assert cn.run("vmadm", "list", "-p")[1] == parsable[0] + "\n"
    assert cn.run("vmadm", "list", "-p", "-o", "uuid,create_timestamp,nics.0.mac")[1] == \
        parsable[1] + "\n"
    assert cn.run("vmadm", "list", "-H")[1] == \
        (DERIVED / "vmadm-list-default.txt").read_text().splitlines()[1] + "\n"
    assert cn.run("vmadm", "list", "-H", "alias=nope")[1] == ""
    assert cn.run("vmadm", "list", "-H", "-o", "uuid", "state=running")[1] == get["uuid"] + "\n"
    rc, _, err = cn.run("vmadm", "list", "bogus=1")
    assert rc == 1 and err == 'Invalid filter key: "bogus"\n'
    assert cn.run("vmadm", "lookup", "alias=testvm")[1] == get["uuid"] + "\n"
    assert cn.run("vmadm", "lookup", "-1", "nics.*.mac=92:88:1a:79:75:71")[1] == \
        get["uuid"] + "\n"
    assert cn.run("vmadm", "lookup", "alias=~^TEST")[1] == get["uuid"] + "\n"
    rc, out, _ = cn.run("vmadm", "lookup", "-j", "-o", "uuid,alias", "type=OS")
    assert json.loads(out) == [{"alias": "testvm", "uuid": get["uuid"]}]
    rc, _, err = cn.run("vmadm", "lookup", "-1", "alias=nope")
    assert rc == 1 and err == "Requested unique lookup but found 0 results.\n"


def test_zonecfg_export_import_and_edits(cn):
    uuid = "c673ec7c-aca9-4a4c-a4be-52fa82b2f0cd"
    cn.put_xml(uuid, sample_text("zone.xml"))
    rc, out, _ = cn.run("zonecfg", "-z", uuid, "export")
    assert rc == 0
    lines = out.splitlines()
    assert lines[:8] == ["create -b", "set zonepath=/zones/" + uuid, "set brand=joyent",
                         "set autoboot=true", "set limitpriv=default,dtrace_proc,dtrace_user",
                         "set ip-type=exclusive", "set uuid=" + uuid, "add net"]
    assert 'add property (name=gateway,value="10.0.0.1")' in lines
    assert "add value (priv=privileged,limit=268435456,action=deny)" in lines
    # a platform with illumos-joyent c8236ea quotes every export_prop() value
    assert 'set value="YWJjLWRlZmdoMS1zbGF2ZS1pamtMLTA="' in lines
    # the export recreates the zone elsewhere: same zone, index line 'configured'
    other = "11111111-2222-3333-4444-555555555555"
    exp = cn.root + "/exp.txt"
    with open(exp, "w") as f:
        f.write(out.replace(uuid, other))
    assert cn.run("zonecfg", "-z", other, "-f", exp)[0] == 0
    assert "%s:configured:/zones/%s:%s" % (other, other, other) in cn.index()
    a = zones.xml_vmobj(zones.ZoneConfig.load(uuid))
    b = zones.xml_vmobj(zones.ZoneConfig.load(other))
    assert b.pop("zonename") == other and a.pop("zonename") == uuid and a == b
    assert cn.run("zonecfg", "-z", other, "export")[1] == out.replace(uuid, other)
    # attr edits, as the migration does them
    cmd = "add attr; set name=do-not-inventory; set type=string; set value=true; end"
    assert cn.run("zonecfg", "-z", uuid, cmd)[0] == 0
    assert cn.xml(uuid).endswith(
        '  <attr name="do-not-inventory" type="string" value="true"/>\n</zone>\n')
    assert cn.run("zonecfg", "-z", uuid, "select attr name=do-not-inventory; "
                  "set value=false; end")[0] == 0
    assert 'name="do-not-inventory" type="string" value="false"' in cn.xml(uuid)
    assert cn.run("zonecfg", "-z", uuid, "remove attr name=do-not-inventory")[0] == 0
    assert "do-not-inventory" not in cn.xml(uuid)
    assert cn.run("zonecfg", "-z", uuid, "set autoboot=false")[0] == 0
    assert zones.ZoneConfig.load(uuid).autoboot is False
    rc, out, _ = cn.run("zonecfg", "-z", uuid, "info", "attr", "name=alias")
    assert out == "attr:\n\tname: alias\n\ttype: string\n\tvalue: YWJjLWRlZmdoMS1zbGF2ZS1pamtMLTA=\n"
    # errors as illumos prints them
    assert cn.run("zonecfg", "-z", uuid, "remove attr name=nosuch") == \
        (1, "", "remove attr: No such resource with that id\n")
    assert cn.run("zonecfg", "-z", "nosuch", "export") == \
        (1, "", "nosuch: No such zone configured\n")
    assert cn.run("zonecfg", "-z", "nosuch", "info")[2] == "nosuch: No such zone configured\n"
    # stdin, as VM.js feeds it
    assert cn.run("zonecfg", "-z", uuid,
                  stdin='add attr; set name="vm-autoboot"; set type=string; '
                        'set value="true"; end\n')[0] == 0
    assert zones.ZoneConfig.load(uuid).attr("vm-autoboot") == "true"
    # delete -F drops XML and index line; a commented-out line stays as it is
    with open(cn.root + "/etc/zones/index", "a") as f:
        f.write("#%s:installed:/zones/%s:%s\n" % (other, other, other))
    assert cn.run("zonecfg", "-z", other, "delete")[0] == 1
    assert cn.run("zonecfg", "-z", other, "delete", "-F") == (0, "", "")
    assert not os.path.exists(cn.root + "/etc/zones/%s.xml" % other)
    assert cn.index().splitlines()[-1] == "#%s:installed:/zones/%s:%s" % (other, other, other)
    assert zones.index_entry(other) is None
    assert cn.run("zonecfg", "-z", other, "delete", "-F")[0] == 1
    # an XML copied over without its index line is edited, not indexed
    shutil.copy(cn.root + "/etc/zones/%s.xml" % uuid, cn.root + "/etc/zones/%s.xml" % other)
    assert cn.run("zonecfg", "-z", other, "set autoboot=true")[0] == 0
    assert zones.ZoneConfig.load(other).autoboot and zones.index_entry(other) is None


# ---- zonecfg's words, its command files and its export, as illumos has them ----------
# illumos-joyent usr/src/cmd/zonecfg/zonecfg_lex.l (the TOKEN rules),
# zonecfg_grammar.y (commands: command terminator | command error terminator),
# zonecfg.c (yyerror, read_input, cmd_file, cleanup, verify_func, export_prop);
# smartos-live src/vm/node_modules/VM.js (base64 attrs); smartos-live#912.

# zonecfg.c usage(B_FALSE, HELP_SUBCMDS), after every syntax error
COMMANDS_USAGE = """Commands:

add <resource-type>
	(global scope)
add <property-name> <property-value>
	(resource scope)
cancel
clear <property-name>
commit
create [-F] [ -a <path> | -b | -t <template> ]
delete [-F]
end
exit [-F]
export [-f output-file]
help [commands] [syntax] [usage] [<command-name>]
info [<resource-type> [property-name=property-value]*]
remove [-F] <resource-type> [ <property-name>=<property-value> ]*
	(global scope)
remove [-F] <property-name> <property-value>
	(resource scope)
revert [-F]
select <resource-type> { <property-name>=<property-value> }
set <property-name>=<property-value>
verify
"""
ADD_USAGE = """usage:
add <resource-type>
	(global scope)
add <property-name> <property-value>
	(resource scope)
	Add specified resource to configuration.
"""


def test_zonecfg_lexer_ends_an_unquoted_word_at_equals():
    zc = COMMANDS["zonecfg"]
    toks = zc.lex("set value=d2luZG93cw==\n")
    # <TSTATE>[^ \t\n\";=\[\]\(\)]+ is a TOKEN and '=' an EQUAL: the value is cut
    assert [(t.kind, t.text) for t in toks] == [
        ("word", "set"), ("word", "value"), ("=", "="), ("word", "d2luZG93cw"), ("=", "="),
        ("=", "="), ("end", "\n")]
    assert zc.syntax_error_at(toks[:-1]) == 4           # SET name EQUAL value, then '='
    toks = zc.lex('set value="d2luZG93cw=="\n')
    assert [t.text for t in toks[:-1]] == ["set", "value", "=", "d2luZG93cw=="]
    assert zc.syntax_error_at(toks[:-1]) is None
    # a comma is a word's in TSTATE, a separator in ( ) and [ ]
    toks = zc.lex('set limitpriv=default,dtrace_proc; add property (name=ips,value="a,b")\n')
    assert [t.text for t in toks] == ["set", "limitpriv", "=", "default,dtrace_proc", ";",
                                      "add", "property", "(", "name", "=", "ips", ",",
                                      "value", "=", "a,b", ")", "\n"]


def kvm_912(cn):
    """smartos-live#912's instance: a kvm VM with alias 'windows' and
    qemu_extra_opts '-smp threads=4', made by vmadm create."""
    image = "7c3e9f4a-5b6d-4c8e-8f1a-4d5e6f708104"
    cn.zfs.add_image(image, volsize=10240 << 20)
    uuid = "5a02245a-422c-4e0a-c5f8-fd6fac1ac04e"
    payload = dict(hvm_payload("kvm", uuid, image), alias="windows",
                   qemu_extra_opts="-smp threads=4", vnc_password="s3cret")
    assert cn.run("vmadm", "create", stdin=json.dumps(payload))[0] == 0
    return uuid


def test_vm_js_base64_attrs_and_export_quoting_per_platform(cn):
    uuid = kvm_912(cn)
    xml = cn.xml(uuid)
    # VM.js: alias, vnc_password and the qemu/spice options base64 in the XML
    for line in ('<attr name="alias" type="string" value="d2luZG93cw=="/>',
                 '<attr name="qemu-extra-opts" type="string" value="LXNtcCB0aHJlYWRzPTQ="/>',
                 '<attr name="vnc-password" type="string" value="czNjcmV0"/>'):
        assert line in xml
    obj = json.loads(cn.run("vmadm", "get", uuid)[1])
    assert (obj["alias"], obj["qemu_extra_opts"], obj["vnc_password"]) == \
        ("windows", "-smp threads=4", "s3cret")
    # a property VM.js's proptable.js does not allow the brand is dropped
    bhyve = "aaac8650-4b58-6633-9054-a2c22e7beb36"
    payload = dict(hvm_payload("bhyve", bhyve, "7c3e9f4a-5b6d-4c8e-8f1a-4d5e6f708104"),
                   qemu_extra_opts="-smp 2")
    assert cn.run("vmadm", "create", stdin=json.dumps(payload))[0] == 0
    assert "qemu-extra-opts" not in cn.xml(bhyve)
    assert cn.run("vmadm", "update", uuid, "qemu_extra_opts=-boot menu=on")[0] == 0
    assert '"LWJvb3QgbWVudT1vbg=="' in cn.xml(uuid)

    # export_prop(): every value quoted since illumos-joyent c8236ea...
    new = cn.run("zonecfg", "-z", uuid, "export")[1].splitlines()
    assert new[new.index('set name="alias"'):][:3] == \
        ['set name="alias"', 'set type="string"', 'set value="d2luZG93cw=="']
    assert 'set physical="net0"' in new and "set zonepath=/zones/" + uuid in new
    # ...before it (old-server's platform) only one with a space (quoteit)
    cn.monkeypatch.setenv("SIMDC_HOST", "old-server")
    old = cn.run("zonecfg", "-z", uuid, "export")[1].splitlines()
    assert old[old.index("set name=alias"):][:3] == \
        ["set name=alias", "set type=string", "set value=d2luZG93cw=="]
    assert "set value=LWJvb3QgbWVudT1vbg==" in old and "set physical=net0" in old
    # the same lines, but for export_prop()'s quotes
    assert [re.sub(r'^(set [a-z-]+=)"(.*)"$', r"\1\2", l) for l in new] == old


def test_zonecfg_f_file_stops_at_the_first_error(cn):
    uuid = kvm_912(cn)
    cn.monkeypatch.setenv("SIMDC_HOST", "old-server")
    exported = cn.run("zonecfg", "-z", uuid, "export")[1]
    cn.monkeypatch.setenv("SIMDC_HOST", "testcn")
    other = "11111111-2222-3333-4444-555555555555"
    path = cn.root + "/old.zcfg"
    with open(path, "w") as f:
        f.write(exported.replace(uuid, other))
    line = exported.splitlines().index("set value=d2luZG93cw==") + 1
    rc, out, err = cn.run("zonecfg", "-z", other, "-f", path)
    # read_input() bails out at the first error of a command file; cleanup()
    # commits, verify_func() finds the attr resource open: nothing is saved
    assert (rc, out) == (1, "")
    assert err == ("syntax error on line %d at '='\n" % line + COMMANDS_USAGE +
                   "On line %d of %s:\nresource specification incomplete\n"
                   "Zone %s failed to verify\n%s: Insufficient specification\n"
                   "Configuration not saved.\n" % (line, path, other, other))
    assert not os.path.exists(cn.root + "/etc/zones/%s.xml" % other)
    assert other not in cn.index()
    # quoted, as c8236ea exports it, it imports whole
    with open(path, "w") as f:
        f.write(cn.run("zonecfg", "-z", uuid, "export")[1].replace(uuid, other))
    assert cn.run("zonecfg", "-z", other, "-f", path) == (0, "", "")
    assert zones.ZoneConfig.load(other).attr("alias") == "d2luZG93cw=="


def test_zonecfg_f_saves_what_it_has_and_exits_1(cn):
    zone = "11111111-2222-3333-4444-555555555555"
    head = "create -b\nset zonepath=/zones/%s\nset brand=joyent\n" % zone
    attrs = ("add attr\nset name=alias\nset type=string\nset value=d2luZG93cw==\nend\n"
             "add attr\nset name=owner-uuid\nset type=string\nset value=930896af\nend\n")
    # an error in the global scope: -f FILE stops there and saves what came before
    path = cn.root + "/global.zcfg"
    with open(path, "w") as f:
        f.write(head + "set bootargs=-m=verbose\n" + attrs)
    rc, _, err = cn.run("zonecfg", "-z", zone, "-f", path)
    assert (rc, err) == (1, "syntax error on line 4 at '='\n" + COMMANDS_USAGE)
    cfg = zones.ZoneConfig.load(zone)
    assert cfg.zonepath == "/zones/" + zone and cfg.brand == "joyent"
    assert cfg.root.get("bootargs") is None and cfg.attr_elems() == []
    assert "%s:configured:/zones/%s:" % (zone, zone) in cn.index()
    assert cn.run("zonecfg", "-z", zone, "delete", "-F")[0] == 0
    # -f - (and stdin) go on past it: `end` finds no value and leaves the attr
    # open, the next `add attr` is an add in its scope, the next `set`s fill
    # it: what is saved lacks the alias, and the exit status says so
    rc, _, err = cn.run("zonecfg", "-z", zone, "-f", "-", stdin=head + attrs)
    assert rc == 1
    assert err == ("syntax error on line 7 at '='\n" + COMMANDS_USAGE +
                   "On line 8:\nvalue not specified\n" + ADD_USAGE)
    cfg = zones.ZoneConfig.load(zone)
    assert [(e.get("name"), e.get("value")) for e in cfg.attr_elems()] == \
        [("owner-uuid", "930896af")]
    # at the end of the input in an open resource: nothing saved
    assert cn.run("zonecfg", "-z", zone, "delete", "-F")[0] == 0
    rc, _, err = cn.run("zonecfg", "-z", zone, stdin=head + attrs.split("add attr\nset name=o")[0])
    assert (rc, err) == (1, "syntax error at '='\n" + COMMANDS_USAGE + "value not specified\n"
                         "Resource incomplete.\n")
    assert not os.path.exists(cn.root + "/etc/zones/%s.xml" % zone)


def test_zoneadm_detach_attach_boot_halt(cn):
    running, kvm = three_zones(cn)
    rc, _, err = cn.run("zoneadm", "-z", kvm, "attach")
    assert rc == 1 and "attach operation is invalid for zones in state 'installed'" in err
    assert cn.run("zoneadm", "-z", kvm, "detach")[0] == 0
    assert "%s:configured:" % kvm in cn.index()
    rc, _, err = cn.run("zoneadm", "-z", kvm, "attach")
    assert rc == 1 and "zones/%s does not exist" % kvm in err
    cn.zfs.add("zones/" + kvm)
    assert cn.run("zoneadm", "-z", kvm, "attach") == (0, "", "")
    assert "%s:installed:" % kvm in cn.index()
    assert cn.run("zoneadm", "-z", kvm, "boot") == (0, "", "")
    assert cn.workload.started == [(kvm, "/zones/%s/root" % kvm, "testcn")]
    rows = cn.run("zoneadm", "list", "-p")[1].splitlines()
    assert rows[1].startswith("1:%s:running:" % kvm)      # listed by zone id
    rc, _, err = cn.run("zoneadm", "-z", kvm, "boot")
    assert rc == 1 and err == "zoneadm: zone '%s': zone is already booted\n" % kvm
    assert cn.run("zoneadm", "-z", kvm, "halt") == (0, "", "")
    assert cn.workload.stopped == [(kvm, "testcn")]
    assert zones.zone_state(zones.index_entry(kvm)) == "installed"
    assert cn.run("zoneadm", "-z", "nosuch", "boot") == \
        (1, "", "zoneadm: nosuch: No such zone configured\n")


def hvm_payload(brand, uuid, image):
    return {"uuid": uuid, "brand": brand, "alias": "vm-" + brand, "ram": 1024,
            "max_physical_memory": 1024, "quota": 10, "autoboot": False,
            "nics": [{"mac": "90:b8:d0:01:02:03", "ip": "127.16.62.20",
                      "netmask": "255.255.255.0", "gateway": "127.16.62.1",
                      "nic_tag": "external", "network_uuid": "0" * 8 + "-0000-0000-0000-" + "0" * 12,
                      "primary": True}],
            "disks": [{"image_uuid": image, "boot": True, "size": 10240, "model": "virtio"},
                      {"size": 1024, "model": "virtio"}]}


def test_vmadm_create_kvm_and_bhyve_datasets(cn):
    image = "7c3e9f4a-5b6d-4c8e-8f1a-4d5e6f708104"
    cn.zfs.add_image(image, volsize=10240 << 20)
    kvm = "5a02245a-422c-4e0a-c5f8-fd6fac1ac04e"
    rc, _, err = cn.run("vmadm", "create", stdin=json.dumps(hvm_payload("kvm", kvm, image)))
    assert rc == 0, err
    ds = cn.zfs.ds
    assert ds["zones/" + kvm]["quota"] == 10 << 30
    assert ds["zones/%s-disk0" % kvm]["origin"] == "zones/%s@final" % image
    assert ds["zones/%s-disk0" % kvm]["volsize"] == 10240 << 20
    assert ds["zones/%s-disk1" % kvm]["type"] == "volume"
    assert "zones/cores/" + kvm in ds
    xml = cn.xml(kvm)
    assert '<device match="/dev/zvol/rdsk/zones/%s-disk0">' % kvm in xml
    assert '<device match="/dev/zvol/rdsk/zones/%s-disk1">' % kvm in xml
    assert '<attr name="vm-autoboot" type="string" value="false"/>' in xml
    obj = json.loads(cn.run("vmadm", "get", kvm)[1])
    assert obj["state"] == "stopped" and obj["ram"] == 1024
    assert [(d["path"], d["size"], d["boot"]) for d in obj["disks"]] == [
        ("/dev/zvol/rdsk/zones/%s-disk0" % kvm, 10240, True),
        ("/dev/zvol/rdsk/zones/%s-disk1" % kvm, 1024, False)]
    assert obj["nics"][0]["ips"] == ["127.16.62.20/24"]
    assert obj["nics"][0]["gateways"] == ["127.16.62.1"]

    bhyve = "aaac8650-4b58-6633-9054-a2c22e7beb36"
    rc, _, err = cn.run("vmadm", "create", stdin=json.dumps(hvm_payload("bhyve", bhyve, image)))
    assert rc == 0, err
    root = ds["zones/" + bhyve]
    assert ds["zones/%s/disk0" % bhyve]["origin"] == "zones/%s@final" % image
    assert ds["zones/%s/disk1" % bhyve]["volsize"] == 1024 << 20
    # setQuotaBhyve: refquota = quota (GiB); quota = refquota + the disks' refreservations
    vmadm = COMMANDS["vmadm"]
    refres = vmadm.volsize_to_refreservation(10240 << 20) + \
        vmadm.volsize_to_refreservation(1024 << 20)
    assert root["refquota"] == 10 << 30
    assert root["quota"] == refres + (10 << 30)
    assert refres > (11264 << 20)         # auto refreservation covers metadata too
    xml = cn.xml(bhyve)
    assert '<device match="/dev/zvol/rdsk/zones/%s/disk0">' % bhyve in xml
    assert '<net-attr name="pci-slot" value="0:4:1"/>' in xml
    assert cn.run("vmadm", "list", "-H", "-o", "uuid,type", "-s", "uuid")[1] == \
        "%s  KVM\n%s  BHYVE\n" % (kvm, bhyve)

    assert cn.run("vmadm", "delete", kvm) == (0, "", "Successfully deleted VM %s\n" % kvm)
    assert not any(n.startswith("zones/" + kvm) or n == "zones/cores/" + kvm for n in ds)
    assert kvm not in cn.index() and not os.path.exists(cn.root + "/etc/zones/%s.xml" % kvm)


def test_vmadm_start_stop_update(cn):
    get, payload = minimal_payload()
    payload["autoboot"] = False
    uuid = get["uuid"]
    cn.zfs.add_image(payload["image_uuid"])
    assert cn.run("vmadm", "create", stdin=json.dumps(payload))[0] == 0
    assert cn.workload.started == []
    assert zones.ZoneConfig.load(uuid).autoboot is False
    assert cn.run("vmadm", "start", uuid) == (0, "", "Successfully started VM %s\n" % uuid)
    assert zones.ZoneConfig.load(uuid).autoboot is True
    assert cn.run("vmadm", "start", uuid)[0] == 0            # already running: a no-op
    assert len(cn.workload.started) == 1
    assert cn.run("vmadm", "stop", uuid, "-F") == \
        (0, "", "Successfully completed stop for VM %s\n" % uuid)
    assert zones.ZoneConfig.load(uuid).autoboot is False
    assert cn.workload.stopped == [(uuid, "testcn")]
    rc, _, err = cn.run("vmadm", "update", uuid, "alias=renamed", "quota=30",
                        "do_not_inventory=true", "autoboot=true")
    assert (rc, err) == (0, "Successfully updated VM %s\n" % uuid)
    obj = json.loads(cn.run("vmadm", "get", uuid)[1])
    assert (obj["alias"], obj["quota"], obj["do_not_inventory"], obj["autoboot"]) == \
        ("renamed", 30, True, True)
    upd = {"set_tags": {"role": "db"}, "remove_tags": [], "set_customer_metadata": {"a": "b"},
           "do_not_inventory": False, "ram": 512}
    assert cn.run("vmadm", "update", uuid, stdin=json.dumps(upd))[0] == 0
    obj = json.loads(cn.run("vmadm", "get", uuid)[1])
    assert obj["tags"] == {"role": "db"} and obj["customer_metadata"] == {"a": "b"}
    assert "do_not_inventory" not in obj
    assert (obj["max_physical_memory"], obj["max_locked_memory"], obj["max_swap"]) == \
        (512, 512, 512)
    assert cn.run("vmadm", "update", uuid, "-f", "/nonexistent")[2] == \
        "File: /nonexistent does not exist.\n"
    assert cn.run("vmadm", "get", "00000000-0000-0000-0000-000000000000")[0] == 1
    assert cn.run("vmadm", "get", "bogus")[0] == 2


def test_vm_agent_report(cn, monkeypatch):
    get, payload = minimal_payload()
    cn.zfs.add_image(payload["image_uuid"])
    assert cn.run("vmadm", "create", stdin=json.dumps(payload))[0] == 0
    hidden = dict(payload, uuid="dddddddd-0000-4000-8000-000000000001", alias="hidden",
                  nics=[], do_not_inventory=True)
    assert cn.run("vmadm", "create", stdin=json.dumps(hidden))[0] == 0
    gone = dict(payload, uuid="dddddddd-0000-4000-8000-000000000002", alias="gone", nics=[])
    assert cn.run("vmadm", "create", stdin=json.dumps(gone))[0] == 0
    with open(cn.root + "/etc/zones/index") as f:
        text = f.read()
    with open(cn.root + "/etc/zones/index", "w") as f:
        f.write(text.replace(gone["uuid"] + ":", "#" + gone["uuid"] + ":"))
    calls = []

    def api(name, method, path, body=None, timeout=30, agent=None):
        calls.append((name, method, path, body))
        return 200, {}
    monkeypatch.setattr(common, "api", api)
    assert cn.run("svcadm", "restart", "svc:/smartdc/agent/vm-agent:default") == (0, "", "")
    (v, vmethod, vpath, vbody), (c, cmethod, cpath, cbody) = calls
    assert (v, vmethod, vpath) == ("vmapi", "PUT", "/vms?server_uuid=" + cn.server_uuid)
    assert list(vbody["vms"]) == [get["uuid"]]
    assert vbody["vms"][get["uuid"]]["state"] == "running"
    assert (c, cmethod, cpath) == ("cnapi", "POST", "/servers/" + cn.server_uuid)
    assert set(cbody) == {"disk_pool_size_bytes", "disk_pool_alloc_bytes",
                          "memory_available_bytes", "last_heartbeat"}
    assert cbody["disk_pool_size_bytes"] == (4 << 30) + (1 << 20)
    assert cbody["memory_available_bytes"] == (32768 - 2 * 128) << 20   # two running zones
    for name in ("vmadmd", "heartbeater", "vm-agent"):
        calls.clear()
        assert cn.run("svcadm", "restart", name)[0] == 0 and len(calls) == 2
    calls.clear()
    assert cn.run("svcadm", "disable", "vm-agent")[0] == 0
    assert cn.run("svcadm", "restart", "vmadmd")[0] == 0 and calls == []
    assert cn.run("svcadm", "enable", "vm-agent")[0] == 0 and len(calls) == 2

    def down(*a, **k):
        raise OSError("connection refused")
    monkeypatch.setattr(common, "api", down)
    rc, _, err = cn.run("svcadm", "restart", "vmadmd")
    assert rc == 1 and "could not report to VMAPI" in err
    assert cn.run("svcadm", "restart", "nosuchsvc") == \
        (1, "", "svcadm: Pattern 'nosuchsvc' doesn't match any instances\n")


def test_vm_agent_sends_one_update_per_zone_change(cn, monkeypatch):
    """sdc-vm-agent (lib/vm-agent.js, lib/watchers/fs-watcher.js): a change of
    /etc/zones or of a zone's state is one VMAPI update; a zone that vanished
    or turned do-not-inventory is left out (VMAPI marks it destroyed); a
    change to a hidden zone alone sends nothing."""
    puts = []

    def api(name, method, path, body=None, timeout=30, agent=None):
        assert agent == "vm-agent"
        if name == "vmapi":
            puts.append(sorted(body["vms"]))
        return 200, {}
    monkeypatch.setattr(common, "api", api)
    agent = vmagent.Agent("testcn", interval=3600)
    t = [1000.0]

    def step():
        t[0] += 0.2
        agent.step(t[0])
        got = list(puts)
        puts.clear()
        return got
    assert step() == [[]]                 # the initial report
    assert step() == []                   # nothing changed, nothing sent
    get, payload = minimal_payload()
    cn.zfs.add_image(payload["image_uuid"])
    assert cn.run("vmadm", "create", stdin=json.dumps(payload))[0] == 0
    uuid = get["uuid"]
    assert step() == [[uuid]] and step() == []
    assert cn.run("vmadm", "stop", uuid)[0] == 0
    assert step() == [[uuid]]
    assert cn.run("vmadm", "update", uuid, "do_not_inventory=true")[0] == 0
    assert step() == [[]]                 # hidden: as good as gone for VMAPI
    assert cn.run("vmadm", "update", uuid, "alias=renamed")[0] == 0
    assert step() == []                   # a hidden zone's change is nobody's news
    assert cn.run("vmadm", "update", uuid, "do_not_inventory=false")[0] == 0
    assert step() == [[uuid]]
    assert cn.run("vmadm", "delete", uuid)[0] == 0
    assert step() == [[]]


class FakeNapi:
    def __init__(self):
        self.nics, self.calls = {}, []

    def __call__(self, name, method, path, body=None, timeout=30, agent=None):
        assert name == "napi" and agent == "net-agent"
        self.calls.append((method, path))
        mac = path.rsplit("/", 1)[-1]
        if method == "GET":
            return (200, dict(self.nics[mac])) if mac in self.nics else (404, {})
        if method == "PUT":
            self.nics[mac].update({k: v for k, v in body.items() if k != "check_owner"})
            return 200, dict(self.nics[mac])
        if method == "DELETE":
            return (204, None) if self.nics.pop(mac, None) else (404, {})
        if method == "POST":
            self.nics[body["mac"]] = dict(body)
            return 200, dict(body)
        return 405, {}


def test_net_agent_nics_of_vanished_hidden_and_removed(cn, monkeypatch):
    """sdc-net-agent (lib/nic-fsm.js release.delete, remove.nic, remove.reboot):
    a vanished zone's NIC is deleted in NAPI, a hidden zone's is left alone,
    and a NIC NAPI no longer has is taken out of the zone, which reboots."""
    napi = FakeNapi()
    monkeypatch.setattr(common, "api", napi)
    get, payload = minimal_payload()
    cn.zfs.add_image(payload["image_uuid"])
    uuid = get["uuid"]
    mac = payload["nics"][0]["mac"].replace(":", "")
    napi.nics[mac] = {"mac": mac, "belongs_to_uuid": uuid, "state": "provisioning"}
    assert cn.run("vmadm", "create", stdin=json.dumps(payload))[0] == 0
    agent = netagent.Agent("testcn", refresh=0)
    agent.step(1000.0)
    assert napi.nics[mac]["state"] == "running"
    assert napi.nics[mac]["cn_uuid"] == cn.server_uuid
    # hidden: dropped from its view, NAPI untouched; visible again: back
    assert cn.run("vmadm", "update", uuid, "do_not_inventory=true")[0] == 0
    napi.calls.clear()
    agent.step(1001.0)
    assert mac in napi.nics and ("DELETE", "/nics/" + mac) not in napi.calls
    assert cn.run("vmadm", "update", uuid, "do_not_inventory=false")[0] == 0
    agent.step(1002.0)
    # NAPI lost it: out of the zone, and a reboot
    del napi.nics[mac]
    started = len(cn.workload.started)
    agent.step(1003.0)
    vm = zones.vm_object(uuid)
    assert "nics" not in vm or not vm["nics"]
    assert len(cn.workload.started) == started + 1 and cn.workload.stopped
    # a visible zone that vanishes: its NIC deleted in NAPI
    other = dict(payload, uuid="dddddddd-0000-4000-8000-000000000003",
                 nics=[dict(payload["nics"][0], mac="90:b8:d0:00:00:03")])
    napi.nics["90b8d0000003"] = {"mac": "90b8d0000003", "state": "running",
                                 "belongs_to_uuid": other["uuid"]}
    assert cn.run("vmadm", "create", stdin=json.dumps(other))[0] == 0
    agent.step(1004.0)
    assert cn.run("vmadm", "delete", other["uuid"])[0] == 0
    agent.step(1005.0)
    assert "90b8d0000003" not in napi.nics


def test_a_net_agent_before_triton_1814_deletes_a_hidden_zones_nics(cn, monkeypatch):
    """sdc-net-agent before 9077600 (TRITON-1814, 2.3.1): lib/watcher-fsm.js looks
    zones up with include_dni false and lib/vmadm-watcher-fsm.js filters
    do_not_inventory out, so a zone turning hidden is gone to updateVMs, whose
    InstanceFSM state_remove releases its NICs (nic-fsm release.delete): NAPI's
    NIC is deleted. 2.3.1 on stops tracking it instead; 1.x released only the
    NICs of zones zoneadm no longer listed (lib/vm.js checkDestroyed)."""
    assert netagent.releases_hidden("2.3.0") and netagent.releases_hidden("2.0.0")
    assert not netagent.releases_hidden("2.3.1") and not netagent.releases_hidden("1.4.0")
    napi = FakeNapi()
    monkeypatch.setattr(common, "api", napi)
    get, payload = minimal_payload()
    cn.zfs.add_image(payload["image_uuid"])
    uuid = "dddddddd-0000-4000-8000-000000000014"
    mac = "90b8d0000014"
    payload = dict(payload, uuid=uuid, nics=[dict(payload["nics"][0], mac="90:b8:d0:00:00:14")])
    napi.nics[mac] = {"mac": mac, "belongs_to_uuid": uuid, "state": "provisioning"}
    assert cn.run("vmadm", "create", stdin=json.dumps(payload))[0] == 0
    agent = netagent.Agent("testcn", refresh=0, version="2.3.0")
    agent.step(2000.0)
    assert napi.nics[mac]["state"] == "running"
    assert cn.run("vmadm", "update", uuid, "do_not_inventory=true")[0] == 0
    agent.step(2001.0)
    assert mac not in napi.nics and ("DELETE", "/nics/" + mac) in napi.calls
    assert cn.run("vmadm", "delete", uuid)[0] == 0


def test_zonecfg_delete_refuses_an_installed_zone(cn):
    """illumos zonecfg delete_func: zonecfg_destroy() gives Z_BAD_ZONE_STATE for an
    installed zone, -F or not; detached, it goes."""
    _, kvm = three_zones(cn)
    assert cn.run("zonecfg", "-z", kvm, "delete", "-F") == \
        (1, "", "%s: Zone state is invalid for the requested operation\n" % kvm)
    assert "%s:installed:" % kvm in cn.index() and os.path.exists(
        cn.root + "/etc/zones/%s.xml" % kvm)
    assert cn.run("zoneadm", "-z", kvm, "detach")[0] == 0
    assert cn.run("zonecfg", "-z", kvm, "delete", "-F") == (0, "", "")
    assert kvm not in cn.index()


def test_cn_reboot_boots_autoboot_zones_and_vm_autoboot_hvms_once(cn):
    """A power cycle: everything stops; svc:/system/zones boots autoboot zones,
    vmadmd the kvm/bhyve with vm-autoboot (smartos-live src/vm/README.vmadmd);
    a hidden zone with its autoboot off stays down."""
    running, kvm = three_zones(cn)
    cfg = zones.ZoneConfig.load(running)
    cfg.root.set("autoboot", "true")
    cfg.save(running)
    cfg = zones.ZoneConfig.load(kvm)
    cfg.set_attr("vm-autoboot", "true")
    cfg.save(kvm)
    hidden = "dddddddd-0000-4000-8000-000000000004"
    cfg = zones.ZoneConfig.new(hidden, "/zones/" + hidden, "kvm", iptype="exclusive")
    cfg.set_attr("vm-autoboot", "false")
    cfg.set_attr("do-not-inventory", "true")
    cn.put_xml(hidden, cfg.text())
    assert sorted(zones.power_cycle()) == sorted([(running, "zones"), (kvm, "vmadmd")])
    assert cn.workload.stopped == [(running, "testcn")]
    assert sorted(u for u, _, _ in cn.workload.started) == sorted([running, kvm])
    assert zones.zone_state(zones.index_entry(hidden)) == "installed"
    assert zones.ZoneConfig.load(kvm).autoboot is False      # zone autoboot untouched


def test_concurrent_zonecfg_keep_every_index_line(tmp_path):
    """Zones configured side by side (two migrations onto one CN): each zonecfg
    rewrites /etc/zones/index under the CN's lock, by temporary file and rename
    (libzonecfg's index lock, putzoneent()), so no line is lost."""
    root = tmp_path / "cn"
    (root / "etc/zones").mkdir(parents=True)
    (root / "etc/zones/index").write_text("global:installed:/\n")
    simdir = tmp_path / "simdc"
    simdir.mkdir()
    env = dict(os.environ, SIMDC_CN_ROOT=str(root), SIMDC_DIR=str(simdir), SIMDC_HOST="testcn")
    uuids = ["eeeeeeee-0000-4000-8000-%012d" % i for i in range(12)]
    procs = [subprocess.Popen([sys.executable, str(CN / "zonecfg"), "-z", u, "-f", "-"],
                              stdin=subprocess.PIPE, env=env, text=True) for u in uuids]
    for u, p in zip(uuids, procs):
        p.stdin.write("create -b\nset zonepath=/zones/%s\nset brand=joyent\nset uuid=%s\n"
                      % (u, u))
        p.stdin.close()
    assert [p.wait(timeout=60) for p in procs] == [0] * len(uuids)
    lines = (root / "etc/zones/index").read_text().splitlines()
    assert lines[0] == "global:installed:/"
    assert sorted(lines[1:]) == ["%s:configured:/zones/%s:%s" % (u, u, u) for u in uuids]


# ---- a real CN: private namespaces, zfs-fuse, the shim -----------------------------

NS_TOOLS = ("unshare", "nsenter", "zfs-fuse")


def _have_ns():
    return os.geteuid() == 0 and all(shutil.which(t) or os.path.exists("/usr/sbin/" + t)
                                     for t in NS_TOOLS) \
        and (CN / "zfs").exists() and (SIM / "simdc" / "workload.py").exists()


def _die_with_parent():
    """Children of the test end with it even if pytest itself is killed."""
    import ctypes
    ctypes.CDLL(None).prctl(1, 15)      # PR_SET_PDEATHSIG, SIGTERM


@pytest.fixture
def ns_cn(tmp_path):
    """A CN namespace of our own: a private zfs-fuse with pool `zones` at /zones."""
    simdir = tmp_path / "simdc"
    os.makedirs(simdir / "realbin")
    for b in ("zfs", "zpool"):
        shutil.copy2("/usr/sbin/" + b, simdir / "realbin" / b)
    etc_zones = tmp_path / "etc-zones"
    var_lib = tmp_path / "var-lib-zfs"
    zones_mnt = tmp_path / "zones-mnt"
    os.makedirs(etc_zones)
    os.makedirs(var_lib)
    os.makedirs(zones_mnt)
    (etc_zones / "index").write_text("global:installed:/\n")
    (simdir / "hosts.json").write_text(json.dumps({"nstest": {
        "uuid": "44454c4c-4d00-1036-8042-c2c04f485331", "admin_ip": "127.0.63.11",
        "platform": common.PLATFORM, "ram_mb": 8192, "headnode": False}}))
    setup = "; ".join([
        "set -e", "mount --make-rprivate /", "hostname nstest",
        "mount -t tmpfs tmpfs /var/run/zfs", "mount -t tmpfs tmpfs /var/lock/zfs",
        "mount --bind %s /var/lib/zfs" % var_lib, "mount --bind %s /etc/zones" % etc_zones,
        # an empty /zones of our own: the pool mounts there whatever the host's holds
        "mount --bind %s /zones" % zones_mnt,
        "mount -t overlay overlay -o lowerdir=%s:/usr/sbin /usr/sbin" % CN,
        "touch %s/ready" % tmp_path, "exec sleep infinity"])
    for d in ("/var/run/zfs", "/var/lock/zfs", "/var/lib/zfs", "/etc/zones", "/zones"):
        os.makedirs(d, exist_ok=True)
    env = dict(os.environ, SIMDC_DIR=str(simdir), SIMDC_NET="63", SIMDC_HOST="nstest",
               PYTHONPATH=str(SIM), PATH=common.CN_PATH)
    env.pop("SIMDC_CN_ROOT", None)
    env.pop("SIMDC_ZFS", None)
    holder = subprocess.Popen(["unshare", "--mount", "--uts", "--propagation", "private",
                               "--", "sh", "-c", setup], stdin=subprocess.DEVNULL,
                              start_new_session=True, preexec_fn=_die_with_parent)
    pids = [holder.pid]
    ns = ["nsenter", "-t", str(holder.pid), "-m", "-u", "--"]

    def run(*argv, input=None, check=True):
        p = subprocess.run(ns + [str(a) for a in argv], env=env, input=input, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
        if check and p.returncode:
            raise AssertionError("%s: %d %s%s" % (" ".join(map(str, argv)), p.returncode,
                                                  p.stdout, p.stderr))
        return p
    try:
        deadline = time.time() + 10
        while not (tmp_path / "ready").exists():
            assert holder.poll() is None and time.time() < deadline, "namespace did not start"
            time.sleep(0.05)
        daemon = subprocess.Popen(ns + ["/usr/sbin/zfs-fuse", "--no-daemon",
                                        "--pidfile", "/var/run/zfs/zfs-fuse.pid"],
                                  env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True,
                                  preexec_fn=_die_with_parent)
        pids.append(daemon.pid)
        zpool = str(simdir / "realbin" / "zpool")
        deadline = time.time() + 20
        while run(zpool, "list", check=False).returncode:
            assert time.time() < deadline, "zfs-fuse did not answer"
            time.sleep(0.1)
        img = tmp_path / "zones.img"
        with open(img, "w") as f:
            f.truncate(1 << 30)
        run(zpool, "create", "-f", "-m", "/zones", "zones", img)
        run(simdir / "realbin" / "zfs", "create", "zones/cores")
        yield types.SimpleNamespace(run=run, env=env, simdir=simdir, etc_zones=etc_zones)
    finally:
        with contextlib.suppress(Exception):
            for f in (simdir / "pids").glob("workload-*.pid"):
                pid = int(f.read_text().split()[0])
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 15)
        with contextlib.suppress(Exception):
            run(simdir / "realbin" / "zpool", "export", "-f", "zones", check=False)
        for pid in reversed(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 15)
        for pid in reversed(pids):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


@pytest.mark.skipif(not _have_ns(), reason="needs root, unshare, zfs-fuse, the zfs shim "
                    "and workload.py")
def test_real_cn_create_boot_halt_detach_attach(ns_cn):
    run = ns_cn.run
    zfs = str(ns_cn.simdir / "realbin" / "zfs")
    image = "4e3b8c1a-0b9f-4f5e-9c41-1d2f0a7b6e01"
    run(zfs, "create", "zones/" + image)
    run("sh", "-c", "mkdir -p /zones/%s/root/etc && echo img > /zones/%s/root/etc/release"
        % (image, image))
    run(zfs, "snapshot", "zones/%s@final" % image)
    zvol = "7c3e9f4a-5b6d-4c8e-8f1a-4d5e6f708104"
    run("zfs", "create", "-V", "64M", "zones/" + zvol)
    run("zfs", "snapshot", "zones/%s@final" % zvol)

    joyent = "6d7d6f4b-4553-49f1-bc0b-7fd16dcf0f2c"
    payload = {"uuid": joyent, "brand": "joyent", "alias": "testvm", "image_uuid": image,
               "max_physical_memory": 128, "quota": 1, "autoboot": True,
               "nics": [{"mac": "92:88:1a:79:75:71", "ip": "127.16.63.5",
                         "netmask": "255.255.255.0", "nic_tag": "external"}]}
    p = run("vmadm", "create", input=json.dumps(payload))
    assert p.stderr == "Successfully created VM %s\n" % joyent
    names = run("zfs", "list", "-H", "-o", "name,origin,quota", "-r", "zones").stdout
    assert "zones/%s\tzones/%s@final\t1G" % (joyent, image) in names
    assert "zones/cores/" + joyent in names
    assert run("zoneadm", "list", "-p").stdout.splitlines()[1].startswith(
        "1:%s:running:/zones/%s:%s:joyent:excl:" % (joyent, joyent, joyent))
    obj = json.loads(run("vmadm", "get", joyent).stdout)
    assert (obj["state"], obj["quota"], obj["zfs_filesystem"]) == \
        ("running", 1, "zones/" + joyent)

    kvm = "5a02245a-422c-4e0a-c5f8-fd6fac1ac04e"
    payload = {"uuid": kvm, "brand": "kvm", "alias": "kvm7", "ram": 256, "quota": 1,
               "autoboot": False,
               "nics": [{"mac": "b2:db:d2:3f:36:d9", "ip": "127.16.63.6",
                         "netmask": "255.255.255.0", "nic_tag": "external"}],
               "disks": [{"image_uuid": zvol, "size": 64}, {"size": 32}]}
    run("vmadm", "create", input=json.dumps(payload))
    vols = run("zfs", "list", "-H", "-p", "-o", "name,type,volsize,origin", "-r",
               "zones").stdout
    assert "zones/%s-disk0\tvolume\t%d\tzones/%s@final" % (kvm, 64 << 20, zvol) in vols
    assert "zones/%s-disk1\tvolume\t%d\t-" % (kvm, 32 << 20) in vols
    assert run("vmadm", "list", "-H", "-o", "uuid,type,state", "-s", "uuid").stdout == \
        "%s  KVM   stopped\n%s  OS    running\n" % (kvm, joyent)

    # boot, halt, detach, attach, boot again: the workload goes on writing
    run("vmadm", "start", kvm)
    assert json.loads(run("vmadm", "get", kvm).stdout)["state"] == "running"
    run("zoneadm", "-z", kvm, "halt")
    run("zoneadm", "-z", kvm, "detach")
    assert "%s:configured:" % kvm in (ns_cn.etc_zones / "index").read_text()
    run("zoneadm", "-z", kvm, "attach")
    run("zoneadm", "-z", kvm, "boot")
    assert run("zoneadm", "list", "-v").stdout.count("running") == 3
    run("vmadm", "stop", joyent)
    run("vmadm", "stop", kvm)
    run("vmadm", "delete", kvm)
    left = run("zfs", "list", "-H", "-o", "name", "-r", "zones").stdout.split()
    assert not [n for n in left if kvm in n]
    assert run("zoneadm", "list", "-c").stdout == "global\n%s\n" % joyent


# ---- vmadm's words, as vmadm.js reads them with nopt ---------------------------------
# smartos-live src/vm/sbin/vmadm.js (main, addCommandOptions, parseKeyEqualsValue,
# getUUID, parseStartArgs) and src/vm/node_modules/nopt.js (parse, resolveShort).

def test_vmadm_options_after_filters_and_combined_flags(cn):
    get, payload = minimal_payload()
    uuid = get["uuid"]
    cn.zfs.add_image(payload["image_uuid"])
    assert cn.run("vmadm", "create", stdin=json.dumps(payload))[0] == 0
    # what third-party CN scripts run: options after the filter, -H and -o glommed
    assert cn.run("vmadm", "list", "uuid=" + uuid, "-Ho", "alias") == (0, "testvm\n", "")
    assert cn.run("vmadm", "list", "-pHo", "uuid,alias")[1] == uuid + ":testvm\n"
    assert cn.run("vmadm", "list", "--order=alias", "-H", "state=running")[1] == "testvm\n"
    assert cn.run("vmadm", "list", "--ord", "alias", "--no-header")[1] == "testvm\n"
    assert cn.run("vmadm", "list", "-H", "-o", "uuid", "--", "alias=testvm")[1] == uuid + "\n"
    # an unknown option is no error: nopt gives it the next word (here the filter)
    assert cn.run("vmadm", "list", "-x", "alias=nope", "-Ho", "alias")[1] == "testvm\n"
    # -o without a value is String(true)
    assert cn.run("vmadm", "list", "-o")[:3:2] == (1, "invalid order field: true\n")
    assert cn.run("vmadm", "lookup", "alias=testvm", "-j", "-o", "alias")[1] == \
        '[\n  {\n    "alias": "testvm"\n  }\n]\n'
    assert cn.run("vmadm", "stop", uuid, "-F")[0] == 0
    assert cn.run("vmadm", "start", uuid, "order=cd")[0] == 0


def test_vmadm_bad_words_give_vmadm_js_errors(cn):
    usage_head = COMMANDS["vmadm"].USAGE
    # `if (kv < 2)` compares the split array, as a number, with 2: only a word
    # reading as a number below 2 is "unable to split"
    rc, out, err = cn.run("vmadm", "list", "1")
    assert (rc, out, err) == (2, "", "Bad arguments: unable to split 1\n" + usage_head)
    assert cn.run("vmadm", "list", "foo")[:3:2] == (1, 'Invalid filter key: "foo"\n')
    assert cn.run("vmadm", "list", "-o", "nics.*.ip")[:3:2] == \
        (1, 'Invalid order key: "nics.*.ip"\n')
    assert cn.run("vmadm", "list", "-s", "bogus")[:3:2] == (1, "invalid sort field: bogus\n")
    assert cn.run("vmadm", "lookup", "-o", "uuid")[:3:2] == (1, "Cannot specify -o without -j\n")
    assert cn.run("vmadm", "bogus") == (2, "", 'Invalid command: "bogus".\n' + usage_head)
    assert cn.run("vmadm", "stop", "-F") == \
        (2, "", "Invalid or missing UUID for stop\n" + usage_head)
    uuid = "00000000-0000-0000-0000-000000000000"
    assert cn.run("vmadm", "start", uuid, "foo=bar") == \
        (2, "", "Invalid argument to start: foo\n" + usage_head)
    assert cn.run("vmadm", "-h") == (0, usage_head, "")
    assert cn.run("vmadm") == (2, "", usage_head)


def test_nopt_parses_as_nopt_js():
    from simdc import nopt
    types_ = {"verbose": nopt.BOOL, "order": nopt.STRING, "header": [nopt.BOOL, "true"],
              "parsable": [nopt.BOOL, "false"]}
    shorts = {"v": ["--verbose", "true"], "o": ["--order"], "H": ["--header", "false"],
              "h": ["--header", "true"], "p": ["--parsable", "true"]}
    assert nopt.parse(types_, shorts, ["a=1", "-Ho", "x", "b=2"]) == \
        ({"header": False, "order": "x"}, ["a=1", "b=2"])
    assert nopt.parse(types_, shorts, ["-o=y", "--no-parsable", "-", "c"]) == \
        ({"order": "y", "parsable": False}, ["c"])
    assert nopt.parse(types_, shorts, ["--verb", "-z", " 12 ", "--", "-o"]) == \
        ({"verbose": True, "z": 12.0}, ["-o"])
    assert nopt.abbrev(["order", "output"]) == {"or": "order", "ord": "order",
                                                "orde": "order", "order": "order",
                                                "ou": "output", "out": "output",
                                                "outp": "output", "outpu": "output",
                                                "output": "output"}
@pytest.mark.skipif(not _have_ns(), reason="needs root, unshare, zfs-fuse, the zfs shim "
                    "and workload.py")
def test_real_cn_snapshots_and_indestructible(ns_cn):
    """vmadm create-/delete-/rollback-snapshot and indestructible_zoneroot as
    smartos-live src/vm/node_modules/VM.js does them: zfs snapshots
    DS@vmsnap-NAME listed in `snapshots`, names checked by validSnapshotName,
    @indestructible held with do_not_destroy, and vmadm delete refused."""
    run = ns_cn.run
    image = "4e3b8c1a-0b9f-4f5e-9c41-1d2f0a7b6e02"
    run(str(ns_cn.simdir / "realbin" / "zfs"), "create", "zones/" + image)
    run(str(ns_cn.simdir / "realbin" / "zfs"), "snapshot", "zones/%s@final" % image)
    vm = "8f2b1c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    run("vmadm", "create", input=json.dumps({
        "uuid": vm, "brand": "joyent", "image_uuid": image, "max_physical_memory": 128,
        "quota": 1, "autoboot": False, "nics": []}))
    data = "/zones/%s/root/state" % vm
    run("sh", "-c", "echo one > " + data)
    p = run("vmadm", "create-snapshot", vm, "first")
    assert p.stderr == "Created snapshot first for VM %s\n" % vm
    run("sh", "-c", "echo two > " + data)
    run("vmadm", "create-snapshot", vm, "second")
    for name, msg in (("first", 'snapshot with name "first" already exists.'),
                      ("bad/name", "Invalid snapshot name"), ("x" * 65, "Invalid snapshot name")):
        p = run("vmadm", "create-snapshot", vm, name, check=False)
        assert (p.returncode, p.stderr) == (1, msg + "\n")
    obj = json.loads(run("vmadm", "get", vm).stdout)
    assert sorted(s["name"] for s in obj["snapshots"]) == ["first", "second"]
    assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$", s["created_at"])
               for s in obj["snapshots"])
    snaps = run("zfs", "list", "-H", "-o", "name", "-t", "snapshot", "-r",
                "zones/" + vm).stdout.split()
    assert snaps == ["zones/%s@vmsnap-first" % vm, "zones/%s@vmsnap-second" % vm]

    # rollback: the data of `first` back, `second` gone (zfs rollback -r), started
    p = run("vmadm", "rollback-snapshot", vm, "first")
    assert p.stderr == "Rolled back snapshot first for VM %s\n" % vm
    assert run("cat", data).stdout == "one\n"
    obj = json.loads(run("vmadm", "get", vm).stdout)
    assert [s["name"] for s in obj["snapshots"]] == ["first"]
    assert obj["state"] == "running"
    p = run("vmadm", "delete-snapshot", vm, "second", check=False)
    assert (p.returncode, p.stderr) == (1, 'No snapshot named "second" for %s\n' % vm)
    p = run("vmadm", "delete-snapshot", vm, "first")
    assert p.stderr == "Deleted snapshot first for VM %s\n" % vm
    assert json.loads(run("vmadm", "get", vm).stdout)["snapshots"] == []

    # indestructible_zoneroot: @indestructible held; not a vmsnap, so not a snapshot
    assert "indestructible_zoneroot" not in json.loads(run("vmadm", "get", vm).stdout)
    run("vmadm", "update", vm, "indestructible_zoneroot=true")
    obj = json.loads(run("vmadm", "get", vm).stdout)
    assert obj["indestructible_zoneroot"] is True and obj["snapshots"] == []
    holds = run("zfs", "holds", "-H", "zones/%s@indestructible" % vm).stdout
    assert holds.split("\t")[:2] == ["zones/%s@indestructible" % vm, "do_not_destroy"]
    p = run("vmadm", "delete", vm, check=False)
    assert p.returncode == 1 and "indestructible_zoneroot is set, cannot delete" in p.stderr
    assert json.loads(run("vmadm", "get", vm).stdout)["uuid"] == vm
    run("vmadm", "update", vm, "indestructible_zoneroot=false")
    assert "indestructible_zoneroot" not in json.loads(run("vmadm", "get", vm).stdout)
    run("vmadm", "stop", vm)
    run("vmadm", "delete", vm)
    assert vm not in run("zfs", "list", "-H", "-o", "name", "-t", "all", "-r", "zones").stdout


@pytest.mark.skipif(not _have_ns(), reason="needs root, unshare, zfs-fuse, the zfs shim "
                    "and workload.py")
def test_real_cn_boot_zones_the_delegated_dataset(ns_cn):
    """A zone's boot sets zoned=on on its delegated dataset (VM.js
    delegate_dataset: zones/UUID/data, `add dataset` in its configuration),
    checking first (illumos-joyent usr/src/cmd/zoneadmd/vplat.c
    validate_datasets); from then on the global zone cannot mount it
    (usr/src/cmd/zfs/zfs_main.c share_mount_one: "cannot mount 'NAME': dataset
    is exported to a local zone", exit 1) and `zfs send -p` carries it
    (lib/libzfs/common/libzfs_sendrecv.c: the properties set on it)."""
    run = ns_cn.run
    image = "4e3b8c1a-0b9f-4f5e-9c41-1d2f0a7b6e03"
    run(str(ns_cn.simdir / "realbin" / "zfs"), "create", "zones/" + image)
    run(str(ns_cn.simdir / "realbin" / "zfs"), "snapshot", "zones/%s@final" % image)
    vm = "2b7c4e1a-9d3f-4c8b-a6e5-0f1d2c3b4a59"
    data = "zones/%s/data" % vm
    run("vmadm", "create", input=json.dumps({
        "uuid": vm, "brand": "joyent", "image_uuid": image, "max_physical_memory": 128,
        "quota": 1, "autoboot": False, "delegate_dataset": True, "nics": []}))
    assert '<dataset name="%s"/>' % data in (ns_cn.etc_zones / (vm + ".xml")).read_text()

    def props():
        return run("zfs", "get", "-H", "-o", "property,value,source", "zoned,mounted",
                   data).stdout.splitlines()
    # never booted: the global zone's, mounted there
    assert props() == ["zoned\toff\tdefault", "mounted\tyes\t-"]
    run("sh", "-c", "echo customer > /%s/file" % data)
    run("vmadm", "start", vm)
    assert props() == ["zoned\ton\tlocal", "mounted\tno\t-"]
    p = run("zfs", "mount", data, check=False)
    assert (p.returncode, p.stderr) == (
        1, "cannot mount '%s': dataset is exported to a local zone\n" % data)
    # a second boot finds it set and boots
    run("vmadm", "stop", vm)
    run("vmadm", "start", vm)
    assert props() == ["zoned\ton\tlocal", "mounted\tno\t-"]
    run("zfs", "snapshot", data + "@s")
    run("sh", "-c", "zfs send -p %s@s | zfs recv -u zones/copy" % data)
    assert run("zfs", "get", "-H", "-o", "value,source", "zoned", "zones/copy").stdout == \
        "on\treceived\n"
    assert run("zfs", "mount", "zones/copy", check=False).returncode == 1
    # what it holds is there, for whoever turns zoned off
    run("zfs", "set", "zoned=off", "zones/copy")
    run("zfs", "mount", "zones/copy")
    assert run("cat", "/zones/copy/file").stdout == "customer\n"
    run("vmadm", "stop", vm)
