"""imgadm(8) of a simulated SmartOS compute node: import, get, list.

  imgadm import [-q] [-P zones] UUID
  imgadm get [-P zones] UUID
  imgadm list [-H] [-j] [-o field,...] [-s field,...]

Images come from the simulated IMGAPI: the manifest from GET /images/UUID,
the file (one zfs send stream of zones/UUID@final) from GET
/images/UUID/file, received with `zfs recv zones/UUID-partial` and renamed,
as imgadm does; so zones/UUID@final carries the GUID of the one stream and
is the same snapshot on every CN. A zvol image becomes an emulated volume
(its image_size). Installed images' info is kept under
host_dir(HOST, "imgadm", UUID + ".json"). Messages and exit codes follow
smartos-live src/img/lib (cli.js, errors.js, imgadm.js).
"""
import json
import os
import re
import subprocess
import sys

from .. import common, zfslib


NAME = "imgadm"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
LIST_FIELDS = ["source", "uuid", "owner", "name", "version", "state", "disabled",
               "public", "published", "published_at", "published_date", "type",
               "os", "urn", "nic_driver", "disk_driver", "cpu_type", "image_size",
               "generate_passwords", "description", "clones", "zpool", "pub"]


class ImgadmError(Exception):
    def __init__(self, code, message, exit_status=1):
        Exception.__init__(self, message)
        self.code, self.message, self.exit_status = code, message, exit_status


def host():
    return common.this_host()


def info_path(uuid):
    return common.host_dir(host(), "imgadm", uuid + ".json")


def source_url():
    return common.api_url("imgapi", "")


def human_size(nbytes):
    """common.humanSizeFromBytes(): one decimal, clipped ("127.2 MiB")."""
    sizes = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    if nbytes == 0:
        return "0 B"
    i = 0
    while nbytes >= 1024 ** (i + 1) and i < len(sizes) - 1:
        i += 1
    s = repr(nbytes / 1024 ** i)
    if "." not in s:
        s += ".0"
    whole, frac = s.split(".", 1)
    return "%s.%s %s" % (whole, (frac + "0")[:1], sizes[i])


def check_uuid(uuid):
    if not UUID_RE.match(uuid or ""):
        raise ImgadmError("InvalidUUID", 'invalid uuid: "%s"' % uuid)


def dataset_exists(name):
    return zfslib.zfs("get", "-H", "-o", "value", "type", name).returncode == 0


def installed(uuid, zpool):
    """The image info of an installed image, or None."""
    if not dataset_exists("%s/%s" % (zpool, uuid)):
        return None
    try:
        with open(info_path(uuid)) as f:
            return json.load(f)
    except (OSError, ValueError):
        # received without imgadm: known by its dataset only
        return {"manifest": {"uuid": uuid}, "zpool": zpool}


def get_manifest(uuid):
    status, body = common.api("imgapi", "GET", "/images/%s" % uuid)
    if status == 404:
        return None
    if status >= 300 or not isinstance(body, dict):
        msg = body.get("message") if isinstance(body, dict) else str(body)
        raise ImgadmError("APIError", "%s: %s" % (source_url(), msg))
    if body.get("state") not in (None, "active") or body.get("disabled"):
        return None
    return body


def label(manifest):
    return "%s@%s" % (manifest.get("name"), manifest.get("version"))


def receive(uuid, manifest, zpool):
    """Stream the image file from IMGAPI into zfs recv, then rename into place."""
    import urllib.request
    partial = "%s/%s-partial" % (zpool, uuid)
    final = "%s/%s" % (zpool, uuid)
    if dataset_exists(partial):
        zfslib.zfs("destroy", "-r", partial)
    compression = ((manifest.get("files") or [{}])[0].get("compression") or "none")
    url = common.api_url("imgapi", "/images/%s/file" % uuid)
    try:
        resp = urllib.request.urlopen(url, timeout=60)
    except Exception as e:
        raise ImgadmError("DownloadError", "error downloading image %s: %s" % (uuid, e))
    decomp = None
    recv_in = subprocess.PIPE
    if compression in ("gzip", "bzip2", "xz"):
        decomp = subprocess.Popen([compression, "-dc"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE)
        recv_in = decomp.stdout
    recv = subprocess.Popen([zfslib.real_zfs(), "receive", partial], stdin=recv_in,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sink = decomp.stdin if decomp else recv.stdin
    if decomp:
        decomp.stdout.close()
    try:
        while True:
            chunk = resp.read(1 << 20)
            if not chunk:
                break
            sink.write(chunk)
    except (BrokenPipeError, OSError):
        pass
    finally:
        try:
            sink.close()
        except OSError:
            pass
        resp.close()
    if decomp:
        decomp.wait()
    else:
        recv.stdin = None       # closed above: communicate() must not flush it
    out, errout = recv.communicate()
    if recv.returncode != 0:
        if dataset_exists(partial):
            zfslib.zfs("destroy", "-r", partial)
        raise ImgadmError("InternalError", "zfs receive of image %s failed: %s"
                          % (uuid, errout.decode(errors="replace").strip()))
    # The image's snapshot must be @final (renamed, so its GUID stays the stream's).
    r = zfslib.zfs("list", "-H", "-o", "name", "-t", "snapshot", "-r", partial)
    snaps = [s for s in r.stdout.split() if s.startswith(partial + "@")]
    if partial + "@final" not in snaps and len(snaps) == 1:
        zfslib.zfs("rename", snaps[0], partial + "@final")
    r = zfslib.rename([partial, final])
    if r.returncode != 0:
        zfslib.zfs("destroy", "-r", partial)
        raise ImgadmError("InternalError", r.stderr.strip())
    if manifest.get("type") == "zvol":
        size = int(manifest.get("image_size") or 10240) * 1024 * 1024
        zfslib.zfs("set", "%s=%d" % (zfslib.VOLSIZE, size), final)
        zfslib.zfs("set", "%s=%d" % (zfslib.VOLBLOCK, zfslib.DEFAULT_VOLBLOCKSIZE), final)


def save_info(uuid, manifest, zpool):
    path = info_path(uuid)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = {"manifest": manifest, "zpool": zpool, "source": source_url()}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def do_import(opts, args):
    if len(args) != 1:
        raise ImgadmError("Usage", 'incorrect number of args (%d): "%s"'
                          % (len(args), " ".join(args)))
    uuid = args[0]
    check_uuid(uuid)
    zpool = opts.get("P") or "zones"
    have = installed(uuid, zpool)
    if have:
        m = have.get("manifest", {})
        print("Image %s (%s) is already installed, skipping" % (uuid, label(m)))
        return 0
    manifest = get_manifest(uuid)
    if manifest is None:
        raise ImgadmError("ActiveImageNotFound", 'an active image "%s" was not found'
                          % uuid)
    print('Importing %s (%s) from "%s"' % (uuid, label(manifest), source_url()))
    print("Gather image %s ancestry" % uuid)
    chain = [manifest]
    while chain[-1].get("origin"):
        origin = chain[-1]["origin"]
        if installed(origin, zpool):
            break
        m = get_manifest(origin)
        if m is None:
            raise ImgadmError("OriginNotInstalled", 'origin image "%s" was not found'
                              % origin)
        chain.append(m)
    chain.reverse()
    total = sum(int((m.get("files") or [{}])[0].get("size") or 0) for m in chain)
    print("Must download and install %d image%s (%s)"
          % (len(chain), "" if len(chain) == 1 else "s", human_size(total)))
    sys.stdout.flush()
    with common.locked("imgadm-%s" % host()):
        for m in chain:
            if installed(m["uuid"], zpool):
                continue
            receive(m["uuid"], m, zpool)
            save_info(m["uuid"], m, zpool)
            print("Imported image %s (%s)" % (m["uuid"], label(m)))
            sys.stdout.flush()
    return 0


def do_get(opts, args):
    if len(args) != 1:
        raise ImgadmError("Usage", 'incorrect number of args (%d): "%s"'
                          % (len(args), " ".join(args)))
    uuid = args[0]
    check_uuid(uuid)
    zpool = opts.get("P") or "zones"
    have = installed(uuid, zpool)
    if not have:
        raise ImgadmError("ImageNotInstalled", 'image "%s" was not found on zpool "%s"'
                          % (uuid, zpool), 3)
    print(json.dumps(have, indent=2))
    return 0


def list_images(zpool="zones"):
    r = zfslib.zfs("list", "-H", "-o", "name", "-d", "1", "-t", "filesystem", zpool)
    present = set(r.stdout.split())
    out = []
    d = common.host_dir(host(), "imgadm")
    for fn in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        if not fn.endswith(".json"):
            continue
        try:
            with open(os.path.join(d, fn)) as f:
                info = json.load(f)
        except (OSError, ValueError):
            continue
        if "%s/%s" % (info.get("zpool", zpool), fn[:-5]) in present:
            out.append(info)
    return out


def do_list(opts, args):
    if args:
        raise ImgadmError("Usage", "unexpected args: " + " ".join(args))
    infos = list_images()
    if opts.get("j"):
        print(json.dumps(infos, indent=2))
        return 0
    columns = (opts.get("o") or "uuid,name,version,os,type,pub").split(",")
    sort = (opts.get("s") or "published_at,name").split(",")
    for c in columns:
        if c not in LIST_FIELDS:
            raise ImgadmError("Usage", 'invalid output field: "%s"' % c)
    rows = []
    for info in infos:
        row = dict(info.get("manifest", {}))
        if row.get("published_at"):
            row["published_date"] = row["published_at"][:10]
            row["pub"] = row["published_at"][:10]
            row["published"] = re.sub(r"\.\d+Z$", "Z", row["published_at"])
        row["source"] = info.get("source")
        row["zpool"] = info.get("zpool")
        rows.append(row)
    for field in reversed(sort):
        rev = field.startswith("-")
        field = field.lstrip("-")
        rows.sort(key=lambda r: str(r.get(field) if r.get(field) is not None else ""),
                  reverse=rev)
    if not rows:
        return 0
    cells = [[("-" if r.get(c) is None else
               (str(r.get(c)).lower() if isinstance(r.get(c), bool) else str(r.get(c))))
              for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = []
    if not opts.get("H"):
        lines.append("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    print("\n".join(lines))
    return 0


def parse(argv):
    """nopt-style: options anywhere, -P/-o/-s take a value."""
    opts, args = {}, []
    with_value = {"P": "P", "o": "o", "s": "s", "zpool": "P", "output": "o", "sort": "s"}
    flags = {"q": "q", "j": "j", "H": "H", "quiet": "q", "json": "j", "h": "h",
             "help": "h", "v": "v", "verbose": "v", "skipHeader": "H"}
    it = iter(argv)
    for a in it:
        if a.startswith("--") and len(a) > 2:
            name = a[2:].split("=", 1)[0]
            if name in with_value:
                opts[with_value[name]] = a.split("=", 1)[1] if "=" in a else next(it, None)
            elif name in flags:
                opts[flags[name]] = True
            else:
                raise ImgadmError("UnknownOption", 'unknown option: "%s"' % name)
        elif a.startswith("-") and len(a) > 1:
            i = 1
            while i < len(a):
                c = a[i]
                if c in with_value:
                    opts[with_value[c]] = a[i + 1:] or next(it, None)
                    break
                if c in flags:
                    opts[flags[c]] = True
                else:
                    raise ImgadmError("UnknownOption", 'unknown option: "%s"' % c)
                i += 1
        else:
            args.append(a)
    return opts, args


COMMANDS = {"import": do_import, "get": do_get, "info": do_get, "list": do_list}


def main(argv):
    sub = None
    try:
        opts, args = parse(argv)
        if not args:
            print("Usage:\n    imgadm [<options>] <command> [<args>...]\n"
                  "    imgadm help <command>")
            return 0
        sub = args.pop(0)
        if sub not in COMMANDS:
            raise ImgadmError("UnknownCommand", 'unknown command: "%s"' % sub)
        return COMMANDS[sub](opts, args)
    except ImgadmError as e:
        sys.stderr.write("%s: error (%s): %s\n" % (NAME, e.code, e.message))
        return e.exit_status

