"""An operator's CN-to-CN migration, run by hand in the source CN's global
zone: the CN commands such scripts (vm-migration and its kind) run, in their
order, with the head node's key put on the source CN as their operators do.
It proves that the simulated global zone answers them as SmartOS would:
zonecfg export | zonecfg -f, zfs snapshot -r, zfs get -Ho property,value,
zfs send -I | ssh -c aes128-gcm | zfs recv -o PROP -o origin -d, imgadm
import, zoneadm attach, vmadm update do_not_inventory, vmadm start, json.

One migration, about 15 s.
"""
import contextlib
import time

from checks import assert_sequence_continues

KEY = "/root/.ssh/sdc.id_rsa"

# Each step is constant bash; the instance and the addresses come in as
# arguments ("$1"...), never as shell text.
SSH = 'ssh -i %s "$DEST"' % KEY
STEPS = {
    "create_target": 'zonecfg -z "$1" export | %s "cat > /tmp/$1.zcfg" && '
                     '%s "zonecfg -z $1 -f /tmp/$1.zcfg && rm /tmp/$1.zcfg"' % (SSH, SSH),
    "stop_and_snapshot": 'vmadm stop "$1" && zfs snapshot -r "zones/$1@$2"',
    "sync": '''
        ds="zones/$1"
        props=$(zfs get -Ho property,value quota,recordsize,mountpoint,sharenfs,sync "$ds" |
                awk '{print "-o", $1 "=" $2}' | xargs)
        origin=$(zfs get -Ho value origin "$ds")
        image=$(echo "$origin" | sed -n 's|zones/\\([0-9a-f-]*\\)@.*|\\1|p')
        %s "imgadm import $image" >/dev/null
        zfs send -I "$origin" "$ds@$2" |
            ssh -i %s -c aes128-gcm@openssh.com "$DEST" "zfs recv $props -o origin=$origin -d zones"
    ''' % (SSH, KEY),
    "attach": '%s "zoneadm -z $1 attach"' % SSH,
    "switch": 'vmadm update "$1" do_not_inventory=true && svcadm restart vm-agent && '
              '%s "vmadm update $1 do_not_inventory=false && vmadm start $1 && '
              'svcadm restart vm-agent"' % SSH,
    "remote_alias": '%s "vmadm list uuid=$1 -Ho alias; vmadm get $1 | /usr/bin/json zone_state"' % SSH,
}


def step(dc, name, *args, dest_ip):
    p = dc.exec("source-server", "env", "DEST=" + dest_ip, "bash", "-c",
                "set -eo pipefail\n" + STEPS[name], name, *args, check=False)
    assert p.returncode == 0, (name, p.stdout, p.stderr)
    return p.stdout


@contextlib.contextmanager
def head_node_key_on_source(dc, dest_ip):
    """What the operators of such scripts do first: the head node's key on the
    source CN, the destination's host key accepted once."""
    key = dc.exec("headnode", "cat", KEY).stdout
    dc.exec("source-server", "sh", "-c", 'umask 077; cat > "$1"', "put", KEY, input=key)
    try:
        dc.exec("source-server", "ssh", "-i", KEY, "-o", "StrictHostKeyChecking=accept-new",
                "-o", "BatchMode=yes", dest_ip, "true")
        yield
    finally:
        dc.exec("source-server", "rm", "-f", KEY, "/root/.ssh/known_hosts", check=False)


def test_operator_cn_to_cn_sequence_moves_a_running_zone(dc):
    hosts = dc.hosts()
    dest_ip = hosts["dest-server"]["admin_ip"]
    uuid = dc.provision("--alias", "by-hand", "--size", "1")
    src_props = dc.exec("source-server", "zfs", "get", "-Ho", "property,value",
                        "quota,recordsize,sync", "zones/" + uuid).stdout
    image = dc.exec("source-server", "zfs", "get", "-Ho", "value", "origin",
                    "zones/" + uuid).stdout.strip()
    # the workload has written something before the stop
    while dc.seq("source-server", uuid) < 3:
        time.sleep(0.2)
    with head_node_key_on_source(dc, dest_ip):
        # the CN's own tools as such a script first asks them
        assert dc.exec("source-server", "vmadm", "list", "uuid=" + uuid, "-Ho",
                       "alias").stdout == "by-hand\n"
        for name, args in (("create_target", ()), ("stop_and_snapshot", ("moving",)),
                           ("sync", ("moving",)), ("attach", ()), ("switch", ())):
            step(dc, name, uuid, *args, dest_ip=dest_ip)
        assert step(dc, "remote_alias", uuid, dest_ip=dest_ip) == "by-hand\nrunning\n"

    vm = dc.vm(uuid)
    assert (vm["server_uuid"], vm["state"]) == (hosts["dest-server"]["uuid"], "running")
    # on the destination: a clone of the same image, the preserved properties set
    dst = "zones/" + uuid
    assert dc.exec("dest-server", "zfs", "get", "-Ho", "value", "origin", dst).stdout.strip() \
        == image
    assert dc.exec("dest-server", "zfs", "get", "-Ho", "property,value", "quota,recordsize,sync",
                   dst).stdout == src_props
    assert "zones/%s@moving" % uuid in dc.zfs_names("dest-server")
    # the source copy stays, stopped and hidden from the inventory
    assert 'name="do-not-inventory"' in dc.exec("source-server", "cat",
                                                "/etc/zones/%s.xml" % uuid).stdout
    # each CN's /tmp is its own, as on SmartOS
    dc.exec("dest-server", "touch", "/tmp/only-on-dest-" + uuid)
    assert uuid not in dc.exec("source-server", "ls", "/tmp").stdout
    dc.exec("dest-server", "rm", "/tmp/only-on-dest-" + uuid)
    assert_sequence_continues(dc, uuid)
