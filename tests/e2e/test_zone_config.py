"""The zone configuration an older platform exports, copied whole.

VM.js keeps an instance's alias and its qemu options base64 in the zone XML
(smartos-live src/vm/node_modules/VM.js). Before illumos-joyent c8236ea
(zonecfg.c export_prop(), December 2019) `zonecfg export` leaves such a value
bare, `set value=d2luZG93cw==`, and zonecfg's lexer ends a bare word at '='
(zonecfg_lex.l): `zonecfg -f` of that export is a syntax error per such
value (smartos-live#912). old-server runs such a platform; an evacuation is
usually from an old CN.
"""
import base64
import json
import re

from checks import assert_migrated, assert_sequence_continues, net_agent

SRC = "old-server"
ALIAS = "win2k"              # base64 ends in '='
QEMU = "-boot menu=on"       # base64 ends in '=='


def b64(text):
    return base64.b64encode(text.encode()).decode()


def attrs(xml):
    return dict(re.findall(r'<attr name="([^"]*)" type="string" value="([^"]*)"/>', xml))


def test_base64_values_exported_bare_reach_the_destination(dc):
    assert b64(ALIAS).endswith("=") and b64(QEMU).endswith("==")
    uuid = dc.provision("--server", SRC, "--brand", "kvm", "--disks", "1", "--alias", ALIAS,
                        "--qemu-extra-opts=" + QEMU)
    src_attrs = attrs(dc.exec(SRC, "cat", "/etc/zones/%s.xml" % uuid).stdout)
    assert (src_attrs["alias"], src_attrs["qemu-extra-opts"]) == (b64(ALIAS), b64(QEMU))
    # what the source's zonecfg exports cannot be read back as it is
    exported = dc.exec(SRC, "zonecfg", "-z", uuid, "export").stdout.splitlines()
    assert "set value=" + b64(QEMU) in exported
    before = dc.vm(uuid)
    # old-server's net-agent of `simdc up` predates TRITON-1814: the
    # migration would be refused (test_oldplatform); here one fixed since
    with net_agent(dc, SRC, "2.3.6"):
        p = dc.migrate("-y", uuid, "dest-server")
    assert p.returncode == 0, p.stdout + p.stderr
    vm = assert_migrated(dc, uuid, before, p.stdout, src=SRC)
    assert vm["alias"] == ALIAS and vm["state"] == "running"
    # every attr the source had at the stop (the migration adds dataset-uuid
    # there first, AGENT-629), the same; hidden and autoboot are the migration's
    src_attrs = attrs(dc.exec(SRC, "cat", "/etc/zones/%s.xml" % uuid).stdout)
    dst_attrs = attrs(dc.exec("dest-server", "cat", "/etc/zones/%s.xml" % uuid).stdout)
    assert (dst_attrs["alias"], dst_attrs["qemu-extra-opts"]) == (b64(ALIAS), b64(QEMU))
    ours = ("do-not-inventory", "vm-autoboot")
    assert {k: v for k, v in dst_attrs.items() if k not in ours} == \
        {k: v for k, v in src_attrs.items() if k not in ours}
    # vmadm decodes them there (VMAPI has no qemu_extra_opts: sdc-vmapi translateVm)
    got = json.loads(dc.exec("dest-server", "vmadm", "get", uuid).stdout)
    assert (got["alias"], got["qemu_extra_opts"]) == (ALIAS, QEMU)
    assert_sequence_continues(dc, uuid, src=SRC)
