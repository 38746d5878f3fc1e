"""`zfs receive -o origin=SNAPSHOT` on zfs-fuse, which has no receive -o.

On illumos (libzfs_sendrecv.c zfs_receive_one, dmu_recv.c
dmu_recv_begin_check) a stream received with a named origin becomes a clone
of that snapshot, a full stream included: the full stream's records (every
object, every block, the frees between them) rewrite the clone into the sent
snapshot. zfs-fuse receives a clone when the stream itself says so (DRR_BEGIN
with DRR_FLAG_CLONE and drr_fromguid = the origin's guid, found by guid on
the receiving pool). So the first substream's DRR_BEGIN is rewritten to name
the origin, and its DRR_END checksum (fletcher-4 of everything before it,
which the receiver verifies) is corrected for the words that changed. The
data passes through unchanged.

One difference remains: zfs-fuse finds the origin by guid, the first
snapshot in the pool with it, where illumos takes the one named. They differ
only when the pool holds a received copy of the origin (same guid, same
data) besides it; a CN holds an image once, as zones/IMAGE@final.
"""
import os
import struct

RECORD = 312                # sizeof (dmu_replay_record_t)
BACKUP_MAGIC = 0x2F5BACBAC
DRR_OBJECT, DRR_WRITE, DRR_END, DRR_SPILL = 1, 3, 5, 7
DRR_FLAG_CLONE = 1
M64 = 1 << 64


class StreamError(Exception):
    pass


def read_exact(fd, n):
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def payload_length(rec):
    """Bytes that follow a record header (dmu_recv.c restore_* readers)."""
    kind = struct.unpack_from("<I", rec, 0)[0]
    if kind == DRR_OBJECT:
        return (struct.unpack_from("<I", rec, 28)[0] + 7) // 8 * 8   # bonuslen, 8-aligned
    if kind == DRR_WRITE:
        return struct.unpack_from("<Q", rec, 32)[0]
    if kind == DRR_SPILL:
        return struct.unpack_from("<Q", rec, 16)[0]
    return struct.unpack_from("<I", rec, 4)[0]                     # drr_payloadlen


def fletcher4_delta(cksum, nwords, changes):
    """The fletcher-4 of a word stream after words changed: each change
    (index, old, new) of N words adds d to a, d*m to b, d*m(m+1)/2 to c and
    d*m(m+1)(m+2)/6 to d, where m = N - index."""
    a, b, c, d = cksum
    for index, old, new in changes:
        delta = (new - old) % M64
        m = nwords - index
        a = (a + delta) % M64
        b = (b + delta * m) % M64
        c = (c + delta * (m * (m + 1) // 2)) % M64
        d = (d + delta * (m * (m + 1) * (m + 2) // 6)) % M64
    return a, b, c, d


def begin_as_clone(begin, origin_guid):
    """(new DRR_BEGIN, word changes) naming origin_guid as the clone origin."""
    magic, _vinfo, _ctime, _type, flags, _toguid, fromguid = \
        struct.unpack_from("<QQQIIQQ", begin, 8)
    if magic != BACKUP_MAGIC:
        raise StreamError("invalid stream (bad magic number)")
    if fromguid not in (0, origin_guid):
        raise StreamError("clone origin is not the stream's incremental source")
    new = bytearray(begin)
    struct.pack_into("<I", new, 36, flags | DRR_FLAG_CLONE)
    struct.pack_into("<Q", new, 48, origin_guid)
    old_words = struct.unpack("<%dI" % (RECORD // 4), begin)
    new_words = struct.unpack("<%dI" % (RECORD // 4), bytes(new))
    changes = [(i, o, n) for i, (o, n) in enumerate(zip(old_words, new_words)) if o != n]
    return bytes(new), changes


def relay_as_clone(src, dst, begin, origin_guid, copy):
    """Write the stream from src (its DRR_BEGIN already read: `begin`) to
    dst as a clone of origin_guid; copy(src, dst, n) moves n payload bytes
    and then, with n None, the rest of the stream."""
    head, changes = begin_as_clone(begin, origin_guid)
    write_all(dst, head)
    offset = RECORD
    n = payload_length(begin)
    while True:
        if n:
            copy(src, dst, n)
            offset += n
        rec = read_exact(src, RECORD)
        if len(rec) < RECORD:
            raise StreamError("failed to read from stream")
        if struct.unpack_from("<I", rec, 0)[0] == DRR_END:
            cksum = struct.unpack_from("<4Q", rec, 8)
            if any(cksum):      # a zero checksum is not checked
                rec = bytearray(rec)
                struct.pack_into("<4Q", rec, 8, *fletcher4_delta(cksum, offset // 4, changes))
                rec = bytes(rec)
            write_all(dst, rec)
            copy(src, dst, None)    # later substreams (send -I) go as they are
            return
        write_all(dst, rec)
        offset += RECORD
        n = payload_length(rec)
