"""--bwlimit: the throttle stage of the CN-to-CN stream (zfs.throttle_command),
run here with this machine's node as a SmartOS global zone runs it with
/usr/node/bin/node (smartos-live src/vm/sbin/vminfod.js and vmadm are node
programs under that path), and the options that set it."""
import hashlib
import os
import shlex
import shutil
import subprocess
import time

import pytest

from sdc_migrate import cli, zfs
from sdc_migrate.commands import evacuate
from sdc_migrate.errors import Usage


def stages(argv):
    return [shlex.split(s)[0] for s in argv[-1].split(" | ")]


def test_the_stream_is_throttled_on_the_source_only_when_asked():
    plain = zfs.send_pipeline("zones/U", "s1", None, "127.0.10.11", "127.0.10.12", "k", "kh")
    limited = zfs.send_pipeline("zones/U", "s1", None, "127.0.10.11", "127.0.10.12", "k", "kh",
                                bwlimit=20 << 20)
    assert stages(plain) == ["zfs", "ssh"]
    assert stages(limited) == ["zfs", zfs.NODE, "ssh"]
    node = shlex.split(limited[-1].split(" | ")[1])
    assert node[-1] == str(20 << 20)


def test_the_throttle_passes_every_byte_unchanged_and_no_faster_than_the_rate():
    data = os.urandom(3 << 20)
    # tools/setup installs nodejs
    argv = [shutil.which("node") or "/usr/bin/node"] + zfs.throttle_command(1 << 20)[1:]
    t0 = time.monotonic()
    p = subprocess.run(argv, input=data, stdout=subprocess.PIPE, check=True)
    elapsed = time.monotonic() - t0
    assert hashlib.sha1(p.stdout).digest() == hashlib.sha1(data).digest()
    # 3 MB at 1 MB/s: the first chunk goes at once, the rest when due
    assert elapsed >= 2.7


@pytest.mark.parametrize("text,rate", [("20M", 20 << 20), ("512K", 512 << 10), ("1000", 1000)])
def test_bwlimit_takes_a_size_a_second(text, rate):
    assert cli.parse_rate(text) == rate


@pytest.mark.parametrize("text", ["0", "-5M", "fast", ""])
def test_bwlimit_refuses_what_is_not_a_rate(text):
    with pytest.raises(Usage):
        cli.parse_rate(text)


def test_an_evacuation_shares_its_limit_among_the_migrations_at_once():
    e = evacuate.Evacuation("source-server", concurrency=4, bwlimit=40 << 20)
    item = {"kind": "migrate", "uuid": "u", "dest": "dest-server"}
    assert evacuate.mover(item, e.opts, None).opts.bwlimit == 10 << 20
    # its plan counts with the share: 100 MB at 10 MB/s, plus the seed's two minutes
    assert e.seconds({"bytes": 100 << 20}) == pytest.approx(10 + 120)
