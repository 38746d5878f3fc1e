"""sdc-migrate estimate: reading one compute node's listing, the figures, the format."""
import io
import subprocess
import sys

import pytest

from sdc_migrate import report
from sdc_migrate.commands import estimate
from sdc_migrate.errors import MigrateError, Refused, Usage
from sdc_migrate.report import cell_text

JOYENT = "5ca5b3dc-48fe-6f75-ed8c-8d8fbd77e2aa"
KVM = "43aba933-2cd6-6c47-e63e-b1d2d1ab4956"
BHYVE = "0b8bcb1a-2b49-4c5e-8f6b-5a1e2b3c4d5e"
NAT = "f1555267-0630-449d-b0eb-a727ad5fafd1"
HIDDEN = "cd79592f-6153-4f9c-a4c6-64b97745348a"
IMAGE = "4e3b8c1a-0b9f-4f5e-9c41-1d2f0a7b6e01"
MB = 1048576

# vmadm list -p -o uuid,brand,state,do_not_inventory,tags.smartdc_role,
# tags.smartdc_type,tags.manta_role,alias (estimate.VMADM_FIELDS)
VMADM = "\n".join([
    "%s:joyent:running:::::kirby" % JOYENT,
    "%s:kvm:stopped:::::db:with:colons" % KVM,
    "%s:bhyve:running:::::" % BHYVE,
    "%s:joyent-minimal:running::nat:core::nat-e9a808dd-fb03-4097-9411-89ac8d557872" % NAT,
    "%s:joyent:stopped:true::::old-copy" % HIDDEN,
])


def zfs_line(name, refer, type="filesystem", origin="-", sent=None):
    """A `zfs list` line: a dataset whose own blocks and snapshots' are sent
    (usedbydataset + usedbysnapshots), REFER maybe more (a clone's image)."""
    sent = refer if sent is None else sent
    return "\t".join([name, type, origin, str(refer), str(refer), "0", str(sent - MB // 2),
                      str(MB // 2), "-"])


ZFS = "\n".join([
    zfs_line("zones", 10 * MB),
    zfs_line("zones/" + IMAGE, 1 * MB),
    # a clone: REFER counts its image's 50 MB, which is not sent
    zfs_line("zones/" + JOYENT, 258 * MB, origin="zones/%s@final" % IMAGE, sent=208 * MB),
    zfs_line("zones/cores/" + JOYENT, 31 * 1024),
    zfs_line("zones/" + KVM, 1 * MB),
    zfs_line("zones/%s-disk0" % KVM, 100 * MB, "volume"),
    zfs_line("zones/%s-disk1" % KVM, 50 * MB, "volume"),
    zfs_line("zones/" + BHYVE, 2 * MB),
    zfs_line("zones/%s/disk0" % BHYVE, 300 * MB, "volume"),
    zfs_line("zones/" + NAT, 3 * MB),
    zfs_line("zones/" + HIDDEN, 40 * MB),
])

LISTING = VMADM + "\n" + estimate.SEPARATOR + "\n" + ZFS + "\n"


def by_uuid(instances):
    return {i["uuid"]: i for i in instances}


def test_the_listing_is_one_remote_command_line():
    cmds = estimate.listing_commands()
    assert cmds[0][:4] == ["vmadm", "list", "-p", "-o"]
    assert cmds[0][4].endswith(",alias")           # the user's field last
    assert cmds[1] == ["echo", estimate.SEPARATOR]
    assert cmds[2][:2] == ["zfs", "list"]


def test_sizes_count_every_dataset_of_an_instance_but_cores():
    got = by_uuid(estimate.parse_listing(LISTING))
    assert got[JOYENT]["bytes"] == 208 * MB
    assert got[JOYENT]["datasets"] == ["zones/" + JOYENT]
    assert got[KVM]["bytes"] == 151 * MB
    assert got[KVM]["datasets"] == ["zones/" + KVM, "zones/%s-disk0" % KVM,
                                    "zones/%s-disk1" % KVM]
    assert got[BHYVE]["bytes"] == 302 * MB
    assert got[KVM]["alias"] == "db:with:colons"
    assert got[BHYVE]["alias"] == ""


def test_nat_zones_and_hidden_copies_are_listed_not_counted():
    got = by_uuid(estimate.parse_listing(LISTING))
    assert "nat-recreate" in got[NAT]["note"]
    assert "cleanup-source" in got[HIDDEN]["note"]
    assert got[JOYENT]["note"] is None
    summary = estimate.summarize({"hostname": "source-server", "uuid": "u"},
                                 list(got.values()), 20, False)
    assert summary["instances"] == 3 and summary["not_counted"] == 2
    assert summary["bytes"] == (208 + 151 + 302) * MB
    assert got[NAT]["estimate_seconds"] is None


def test_purge_is_the_sum_of_the_estimates_each_with_the_seeds_two_minutes():
    instances = estimate.parse_listing(LISTING)
    summary = estimate.summarize({"hostname": "source-server", "uuid": "u"}, instances, 20, False)
    counted = [i for i in instances if i["note"] is None]
    assert summary["purge_seconds"] == pytest.approx(sum(i["estimate_seconds"] for i in counted))
    assert summary["purge_seconds"] == pytest.approx((208 + 151 + 302) / 20.0 + 3 * 120, abs=0.2)
    # the seed's figure for its 207.98 MB zone: 2.17 minutes
    seed = estimate.summarize({"hostname": "h", "uuid": "u"},
                              [{"bytes": int(207.98 * MB), "note": None}], 20, False)
    assert report.human_duration(seed["purge_seconds"]) == "2.17 minutes"


def test_a_measured_rate_is_used_and_said():
    instances = estimate.parse_listing(LISTING)
    s = estimate.summarize({"hostname": "source-server", "uuid": "u"}, instances, 77.24, True)
    assert s["rate_mb"] == 77.2 and s["rate_measured"]
    assert "(measured ~77.2 MB / second; +2 minutes extra each)" in estimate.purge_line(s)


def test_table_rows_and_purge_line():
    instances = estimate.parse_listing(LISTING)
    s = estimate.summarize({"hostname": "source-server", "uuid": "u"}, instances, 20, False)
    rows = {r[0]: [cell_text(c) for c in r] for r in estimate.instance_rows(instances)}
    assert rows[JOYENT] == [JOYENT, "kirby", "joyent", "running", "1", "208.00 MBytes",
                            "2.17 minutes"]
    assert rows[BHYVE][1] == "-"
    assert rows[NAT][6] == "(NAT zone: nat-recreate)"
    assert estimate.purge_line(s) == (
        "  purge source-server:  661.00 MBytes across 3 instances: 6.55 minutes"
        " (at ~20 MB / second; +2 minutes extra each)")


def test_unexpected_listing_is_an_error():
    with pytest.raises(MigrateError):
        estimate.parse_listing("vmadm: command not found\n")


def test_rate_must_be_a_positive_number():
    assert estimate.parse_rate("12.5") == 12.5
    for bad in ("0", "-3", "fast", ""):
        with pytest.raises(Usage):
            estimate.parse_rate(bad)


class FakeRunner:
    dry_run, trace, name = False, None, "cn"

    def __init__(self, outputs):
        self.outputs = outputs
        self.calls = []

    def run(self, argv, readonly=False, input=None):
        self.calls.append(argv)
        return self.outputs[argv[0]]

    def script(self, lines, readonly=False, input=None):
        self.calls.append(lines)
        return LISTING


def test_on_a_compute_node_it_reads_its_own_instances_locally(monkeypatch):
    monkeypatch.setattr(estimate, "HEADNODE_TOOL", "/nonexistent/sdc-cnapi")
    runner = FakeRunner({"sysinfo": '{"UUID": "cn-uuid", "Hostname": "source-server"}'})
    out = io.StringIO()
    e = estimate.Estimate(20, True, None, [], report=report.Report(out), runner=runner)
    assert e.run() == 0
    assert runner.calls[1] == estimate.listing_commands()        # one call for the listing
    lines = out.getvalue().splitlines()
    assert len(lines) == 6 and '"event": "cn"' in lines[-1]


def test_on_a_compute_node_other_nodes_and_measure_are_refused(monkeypatch):
    monkeypatch.setattr(estimate, "HEADNODE_TOOL", "/nonexistent/sdc-cnapi")
    runner = FakeRunner({"sysinfo": '{"UUID": "cn-uuid", "Hostname": "source-server"}'})
    with pytest.raises(Refused):
        estimate.Estimate(20, False, None, ["dest-server"], report=report.Report(io.StringIO()),
                          runner=runner).run()
    with pytest.raises(Refused):
        estimate.Estimate(20, False, "dest-server", [], report=report.Report(io.StringIO()),
                          runner=runner).run()


def test_bad_rate_on_the_command_line_is_one_line_and_status_2():
    p = subprocess.run([sys.executable, "-m", "sdc_migrate", "estimate", "--rate=fast"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr == "sdc-migrate estimate: error (Usage): --rate takes a positive number of MB/s, not 'fast'\n"


def test_a_listings_tags_decide_as_placement_kind_of_does():
    """The CN's listing carries the tags kind_of reads: a Manta zone (which
    also has a role) is moved, a core zone and a NAT zone are not."""
    head = "11111111-2222-4333-8444-5555555555%02d:joyent:running::"
    listing = "\n".join([head % 1 + "storage::storage:storage-1",
                          head % 2 + "imgapi:core::imgapi0",
                          head % 3 + "nat:core::nat-e9a808dd-fb03-4097-9411-89ac8d557872",
                          head % 4 + ":::plain"]) + "\n" + estimate.SEPARATOR + "\n"
    notes = [i["note"] for i in sorted(estimate.parse_listing(listing), key=lambda i: i["uuid"])]
    assert notes == [None, "(core zone imgapi: not moved)", "(NAT zone: nat-recreate)", None]
