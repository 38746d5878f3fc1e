"""Parsing what Triton's tools print, against the samples."""
import os
import shlex

import pytest

from sdc_migrate import triton, zfs
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
