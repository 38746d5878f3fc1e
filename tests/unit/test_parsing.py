"""Parsing what Triton's tools print, against the samples."""
import os
import re
import shlex

import pytest

from sdc_migrate import triton, zfs
from sdc_migrate.steps import zone
from sdc_migrate.errors import MigrateError

SAMPLES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "triton-samples")


def sample(name):
    with open(os.path.join(SAMPLES, name)) as f:
        return f.read()


def test_parse_response_reads_the_wrappers_header_block():
    text = "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\r\n" + \
        sample("vmapi-error-notfound.json")
    status, body = triton.parse_response(text)
    assert status == 404 and body["code"] == "ResourceNotFound"


def test_parse_response_of_the_napi_sample_transcript():
    text = sample("sdc-napi-output-create-nictag.txt")
    text = text[text.index("HTTP/"):]
    status, body = triton.parse_response(text)
    assert status == 200 and "name" in body


def test_parse_response_refuses_what_is_not_http():
    with pytest.raises(MigrateError):
        triton.parse_response("curl: (7) Failed to connect")


def test_admin_ip_from_sysinfo_network_interfaces():
    import json
    server = {"hostname": "cn", "sysinfo": json.loads(sample("sysinfo-cn.json"))}
    server["sysinfo"].pop("Admin IP", None)
    ip = triton.admin_ip(server)
    nics = server["sysinfo"]["Network Interfaces"].values()
    assert ip in [n.get("ip4addr") for n in nics if "admin" in n.get("NIC Names", [])]


# (reservation, refreservation and usedbyrefreservation: none of them here)
LISTING = "\n".join("\t".join(row + ("none", "none", "0")) for row in [
    ("zones/cores/U", "filesystem", "-", "100", "100", "1000", "100", "0", "-"),
    ("zones/U", "filesystem", "zones/IMG@final", "5000", "9000", "10737418240", "4000", "1000",
     "-"),
    ("zones/U@indestructible", "snapshot", "-", "1000", "9000", "-", "-", "-", "1"),
    ("zones/U@vmsnap-mine", "snapshot", "-", "1000", "9000", "-", "-", "-", "0"),
    ("zones/U-disk0", "volume", "zones/IMG@final", "7000", "7000", "-", "700", "0", "-"),
    ("zones/U-disk0@indestructible", "snapshot", "-", "0", "7000", "-", "-", "-", "0"),
    ("zones/U-disk1", "volume", "-", "3000", "3000", "-", "3000", "0", "-"),
    ("zones/U/disk0", "volume", "zones/IMG@final", "7000", "7000", "-", "700", "0", "-"),
    ("zones/UU", "filesystem", "-", "1", "1", "-", "1", "0", "-"),
    ("zones/IMG", "filesystem", "-", "1", "1", "-", "1", "0", "-"),
])


def test_instance_datasets_are_the_zone_its_children_and_kvm_disks_parents_first():
    names = [d.name for d in zfs.instance_datasets(LISTING, "U")]
    assert names == ["zones/U", "zones/U-disk0", "zones/U-disk1", "zones/U/disk0"]


def test_sent_size_is_own_blocks_and_snapshots_not_refer_nor_children():
    ds = zfs.instance_datasets(LISTING, "U")
    # zones/U: 4000 + 1000, not its REFER of 9000 (its image), nor its disk0
    assert [d.sent for d in ds] == [5000, 700, 3000, 700]
    assert zfs.sent_size(ds) == 9400


def test_held_indestructible_snapshots_and_migration_snapshot_names():
    ds = zfs.instance_datasets(LISTING, "U")
    assert zfs.indestructible_snapshots(LISTING, ds) == ["zones/U@indestructible"]
    snap = zfs.migration_snapshot(1796218862)
    assert snap.startswith(zfs.SNAP_PREFIX) and not snap.startswith("vmsnap-")


def test_image_origin_only_for_image_final_snapshots():
    ds = zfs.instance_datasets(LISTING, "U")
    assert [zfs.image_origin(d) for d in ds] == ["IMG", "IMG", None, "IMG"]


def test_send_pipeline_quotes_every_word_once():
    argv = zfs.send_pipeline("zones/U", "snap-1", "zones/U@snap-0", "127.0.10.11", "127.0.10.12",
                             "/root/.ssh/migr-key-1", "/root/.ssh/migr-known-1")
    assert argv[:3] == ["bash", "-o", "pipefail"]
    send, ssh = argv[-1].split(" | ")
    assert shlex.split(send) == ["zfs", "send", "-i", "zones/U@snap-0", "zones/U@snap-1"]
    words = shlex.split(ssh)
    # -s: a cut stream can be resumed; -u: nothing mounted behind the tool's back
    # (as sdc-cn-agent lib/backends/smartos/bin/machine-migrate-receive.js receives)
    assert "StrictHostKeyChecking=yes" in words and words[-1] == "zfs recv -s -u -F zones/U"
    assert "BindAddress=127.0.10.11" in words
    token = "1-e3c7bb5d1-c0-789c'; rm -rf /"
    argv = zfs.send_pipeline("zones/U", None, None, "127.0.10.11", "127.0.10.12",
                             "/root/.ssh/migr-key-1", "/root/.ssh/migr-known-1", token=token)
    assert shlex.split(argv[-1].split(" | ")[0]) == ["zfs", "send", "-t", token]


CHAIN_LISTING = """zones/U@vmsnap-1
zones/U@sdc-migrate_ops_migration_5
zones/U/data@sdc-migrate_ops_migration_5
zones/U@vmsnap-2
zones/U@sdc-migrate_ops_migration_5-1
1234
"""


def test_snapshot_chains_keep_zfs_order_per_dataset():
    assert zfs.snapshot_chains(CHAIN_LISTING) == {
        "zones/U": ["vmsnap-1", "sdc-migrate_ops_migration_5", "vmsnap-2",
                    "sdc-migrate_ops_migration_5-1"],
        "zones/U/data": ["sdc-migrate_ops_migration_5"]}


def test_legs_send_every_snapshot_one_stream_each():
    chain = zfs.snapshot_chains(CHAIN_LISTING)["zones/U"]
    m5 = "sdc-migrate_ops_migration_5"
    # nothing there: the oldest whole, then one -i a snapshot, up to the round's
    assert zfs.legs("zones/U", chain, None, m5) == [
        (None, "vmsnap-1"), ("zones/U@vmsnap-1", m5)]
    # a clone: from its image's @final
    assert zfs.legs("zones/U", chain, "zones/IMG@final", "vmsnap-1") == [
        ("zones/IMG@final", "vmsnap-1")]
    # the next round: a snapshot the customer took in between travels too
    assert zfs.legs("zones/U", chain, "zones/U@" + m5, m5 + "-1") == [
        ("zones/U@" + m5, "vmsnap-2"), ("zones/U@vmsnap-2", m5 + "-1")]
    # --dry-run: the round's snapshot is not there
    assert zfs.legs("zones/U", chain, "zones/U@" + m5, m5 + "-9") == [
        ("zones/U@" + m5, "vmsnap-2"), ("zones/U@vmsnap-2", m5 + "-1"),
        ("zones/U@" + m5 + "-1", m5 + "-9")]


def test_resume_tokens_are_the_datasets_with_one():
    out = "zones/U\t1-abc-10-789c\nzones/U-disk0\t-\n"
    assert zfs.resume_tokens(out) == {"zones/U": "1-abc-10-789c"}


# `zonecfg export` of one kvm zone: before illumos-joyent c8236ea (zonecfg.c
# export_prop: quoteit, a value quoted only with a space) and since (every
# value quoted). smartos-live#912.
OLD_EXPORT = """create -b
set zonepath=/zones/U
set brand=kvm
set autoboot=true
set limitpriv=default,-file_link_any
set ip-type=exclusive
set uuid=U
add net
set physical=net0
set global-nic=external
add property (name=ips,value="127.16.100.10/24")
end
add rctl
set name=zone.cpu-shares
add value (priv=privileged,limit=100,action=none)
end
add attr
set name=alias
set type=string
set value=d2luZG93cw==
end
add attr
set name=vm-autoboot
set type=string
set value=true
end
add attr
set name=note
set type=string
set value="two words"
end
"""


def test_the_destination_config_quotes_every_value_hidden_first_and_never_boots():
    new_export = re.sub(r'^((?:\s*)set (?!zonepath|brand|autoboot|limitpriv|ip-type|uuid)'
                        r'[a-z-]+=)([^"].*)$', r'\1"\2"', OLD_EXPORT, flags=re.M)
    assert 'set value="d2luZG93cw=="' in new_export and "set uuid=U\n" in new_export
    config = zone.hidden_config(OLD_EXPORT, "U")
    assert zone.hidden_config(new_export, "U") == config
    lines = config.splitlines()
    assert lines[:9] == ["create -b", 'set uuid="U"', 'set zonepath="/zones/U"',
                         'set brand="kvm"', 'set autoboot="false"',
                         'set limitpriv="default,-file_link_any"', 'set ip-type="exclusive"',
                         "add attr", 'set name="do-not-inventory"']
    assert 'set value="d2luZG93cw=="' in lines and 'set value="two words"' in lines
    assert lines[lines.index('set name="vm-autoboot"') + 2] == 'set value="false"'
    assert [l for l in lines if l.startswith("set ") and not l.endswith('"')] == []
    # what a zonecfg saved of it: all, or what it lacks
    xml = ('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE zone PUBLIC "-//Sun Microsystems'
           ' Inc//DTD Zones//EN" "file:///usr/share/lib/xml/dtd/zonecfg.dtd.1">\n'
           '<zone name="U" zonepath="/zones/U" autoboot="false" brand="kvm">\n'
           '  <attr name="do-not-inventory" type="string" value="true"/>\n'
           '  <network physical="net0"/>\n  <rctl name="zone.cpu-shares"/>\n'
           '  <attr name="alias" type="string" value="d2luZG93cw=="/>\n'
           '  <attr name="vm-autoboot" type="string" value="false"/>\n'
           '  <attr name="note" type="string" value="two words"/>\n</zone>\n')
    assert zone.lacking(config, xml) == []
    partial = xml.replace('  <attr name="alias" type="string" value="d2luZG93cw=="/>\n', "")
    partial = partial.replace('  <network physical="net0"/>\n', "")
    assert zone.lacking(config, partial) == ["attr alias", "0 of 1 network"]
    cut = xml.replace('value="d2luZG93cw=="', 'value="d2luZG93cw"')
    assert zone.lacking(config, cut) == ["attr alias"]
