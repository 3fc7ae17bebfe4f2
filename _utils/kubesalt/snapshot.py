"""
Reading an etcd v3 snapshot without etcd: the checks kubesalt makes before it keeps a snapshot or restores one.

A snapshot is etcd's backend database (a bbolt file) as ``/v3/maintenance/snapshot`` streams it, followed by the
SHA-256 of everything before it (32 bytes; the trailer ``etcdutl snapshot restore`` checks). :py:func:`inspect`
checks, in this order, and raises :py:class:`SnapshotError` naming the first thing that is wrong:

1. the trailer: the file is ``<database><sha256 of database>``;
2. the database: a valid bbolt meta page (magic, version, FNV-1a checksum), pages inside the file;
3. etcd's content: the ``key`` bucket (every revision of every key, ``mvccpb.KeyValue`` protobufs keyed by
   ``<8-byte main revision>_<8-byte sub revision>[t]``) is walked to the end, giving the snapshot's revision (the
   highest main revision, as ``etcdutl snapshot status`` computes it) and the number of key revisions; the ``meta``
   bucket gives the last compaction (a revision whose changes compaction removed counts as reached);
4. Kubernetes Secrets: every revision of a key under ``/registry/secrets/`` must hold an encrypted value (the API
   server's ``k8s:enc:`` envelope); a cleartext one is counted and named, never printed.

bbolt's on-disk format (go.etcd.io/bbolt, stable since boltdb 1.0): pages of ``page_size`` bytes, each with a
16-byte header (id, flags, count, overflow); two meta pages (0 and 1, the valid one with the higher txid wins);
branch pages of (pos, ksize, pgid) elements and leaf pages of (flags, pos, ksize, vsize) elements, positions relative
to the element; a bucket's value is (root pgid, sequence) followed, when root is 0, by the bucket's inline page.
"""

import hashlib
import mmap
import os
import struct

MAGIC = 0xED0CDAED
VERSION = 2
TRAILER = hashlib.sha256().digest_size  # 32
_PAGE_HEADER = struct.Struct("<QHHI")  # id, flags, count, overflow
_META = struct.Struct("<IIII QQ QQQ Q")  # magic, version, page size, flags, root, sequence, freelist, pgid, txid, sum
_BRANCH_ELEM = struct.Struct("<IIQ")  # pos, ksize, pgid
_LEAF_ELEM = struct.Struct("<IIII")  # flags, pos, ksize, vsize
_BUCKET = struct.Struct("<QQ")  # root, sequence
BRANCH, LEAF, META_PAGE = 0x01, 0x02, 0x04
BUCKET_LEAF = 0x01
# The API server's envelope of an encrypted value (EncryptionConfiguration providers aescbc, aesgcm, secretbox, kms).
ENCRYPTED_PREFIX = b"k8s:enc:"
SECRETS_PREFIX = b"/registry/secrets/"


class SnapshotError(ValueError):
    """The file is not a complete, intact etcd snapshot (the message says what is wrong)."""


def _fnv64a(data):
    value = 0xCBF29CE484222325
    for byte in data:
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


class _Db:
    def __init__(self, buf, size):
        self.buf, self.size = buf, size
        self.page_size, self.root = self._meta()

    def _read_meta(self, start):
        """(page size, root pgid, txid) of the meta page at ``start``, or None when it is not valid."""
        if start + _PAGE_HEADER.size + _META.size > self.size:
            return None
        at = start + _PAGE_HEADER.size
        magic, version, size, _flags, root, _seq, _free, _pgid, txid, checksum = _META.unpack_from(self.buf, at)
        if magic != MAGIC or version != VERSION or _fnv64a(bytes(self.buf[at : at + _META.size - 8])) != checksum:
            return None
        return (size, root, txid) if size >= 512 and not size & (size - 1) else None

    def _meta(self):
        first = self._read_meta(0)
        second = self._read_meta(first[0] if first else 4096)
        valid = [m for m in (first, second) if m]
        if not valid:
            raise SnapshotError("no valid bbolt meta page (bad magic, version or checksum): not an etcd database")
        size, root, _txid = max(valid, key=lambda m: m[2])
        return size, root

    def page(self, pgid):
        start = pgid * self.page_size
        if pgid < 2 or start + _PAGE_HEADER.size > self.size:
            raise SnapshotError(f"page {pgid} lies outside the database ({self.size} bytes): the file is truncated")
        _id, flags, count, overflow = _PAGE_HEADER.unpack_from(self.buf, start)
        if start + (overflow + 1) * self.page_size > self.size:
            raise SnapshotError(f"page {pgid} (+{overflow} overflow) runs past the end of the database")
        return self.buf, start, flags, count

    def items(self, buf, start, flags, count):
        """(key, value, flags) of every leaf element under the page at ``start`` of ``buf``, in key order."""
        if flags & BRANCH:
            for index in range(count):
                at = start + _PAGE_HEADER.size + index * _BRANCH_ELEM.size
                _pos, _ksize, child = _BRANCH_ELEM.unpack_from(buf, at)
                yield from self.items(*self.page(child))
        elif flags & LEAF:
            for index in range(count):
                at = start + _PAGE_HEADER.size + index * _LEAF_ELEM.size
                elem_flags, pos, ksize, vsize = _LEAF_ELEM.unpack_from(buf, at)
                key = bytes(buf[at + pos : at + pos + ksize])
                value = buf[at + pos + ksize : at + pos + ksize + vsize]
                if len(key) != ksize or len(value) != vsize:
                    raise SnapshotError("a leaf element runs past its page: the database is damaged")
                yield key, value, elem_flags
        else:
            raise SnapshotError(f"unexpected page type 0x{flags:02x} in a bucket: the database is damaged")

    def bucket(self, name):
        """Every (key, value) of top-level bucket ``name``; None when there is no such bucket."""
        for key, value, flags in self.items(*self.page(self.root)):
            if key == name and flags & BUCKET_LEAF:
                root, _seq = _BUCKET.unpack_from(value, 0)
                if root == 0:  # an inline bucket: its page follows the bucket header
                    inline = bytes(value[_BUCKET.size :])
                    _id, flags, count, _over = _PAGE_HEADER.unpack_from(inline, 0)
                    return ((k, v) for k, v, _f in self.items(inline, 0, flags, count))
                return ((k, v) for k, v, _f in self.items(*self.page(root)))
        return None


def _varint(data, at):
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise SnapshotError("a key revision holds a truncated protobuf varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def key_value(data):
    """``(key, value)`` of an ``mvccpb.KeyValue`` protobuf (fields 1 and 5); other fields are skipped."""
    data, at, key, value = bytes(data), 0, b"", b""
    while at < len(data):
        tag, at = _varint(data, at)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            _, at = _varint(data, at)
        elif wire == 2:
            size, at = _varint(data, at)
            chunk = data[at : at + size]
            at += size
            if field == 1:
                key = chunk
            elif field == 5:
                value = chunk
        elif wire in (1, 5):
            at += 8 if wire == 1 else 4
        else:
            raise SnapshotError(f"a key revision holds an unknown protobuf wire type {wire}")
    return key, value


def inspect(path):
    """
    Check the snapshot at ``path`` (see the module docstring) and return what it holds: ``size`` (bytes),
    ``sha256`` (of the whole file), ``revision`` (the newest key revision, as ``etcdutl snapshot status`` reports
    it), ``compact_revision`` (the last finished compaction), ``revisions`` (key revisions stored), ``secrets``,
    ``secrets_encrypted`` and ``cleartext_secrets`` (the names of Secret keys with a cleartext revision).
    """
    size = os.path.getsize(path)
    if size <= TRAILER:
        raise SnapshotError(f"{path} is {size} bytes: too small to be an etcd snapshot")
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        body = size - TRAILER
        digest = hashlib.sha256()
        for start in range(0, body, 1 << 20):
            digest.update(buf[start : min(start + (1 << 20), body)])
        if digest.digest() != buf[body:size]:
            raise SnapshotError(
                f"{path}: the SHA-256 trailer does not match the database (a truncated or altered snapshot, or "
                "a bare database file copied from a data directory)"
            )
        whole = digest.copy()
        whole.update(buf[body:size])
        db = _Db(buf, body)
        keys = db.bucket(b"key")
        if keys is None:
            raise SnapshotError(f"{path} is a bbolt database without etcd's 'key' bucket: not an etcd snapshot")
        revision = revisions = secrets = encrypted = 0
        cleartext = set()
        for rev_key, value in keys:
            if len(rev_key) not in (17, 18):
                raise SnapshotError(f"{path}: a 'key' bucket entry has a {len(rev_key)}-byte revision key")
            revision = max(revision, struct.unpack_from(">Q", rev_key, 0)[0])
            revisions += 1
            key, stored = key_value(value)
            if key.startswith(SECRETS_PREFIX) and len(rev_key) == 17:  # 18 bytes: a deletion (tombstone)
                secrets += 1
                if stored.startswith(ENCRYPTED_PREFIX):
                    encrypted += 1
                else:
                    cleartext.add(key.decode("utf-8", "backslashreplace"))
        compacted = 0
        for key, value in db.bucket(b"meta") or ():
            if key == b"finishedCompactRev" and len(value) >= 8:
                compacted = struct.unpack_from(">Q", value, 0)[0]
    return {
        "size": size,
        "compact_revision": compacted,
        "sha256": whole.hexdigest(),
        "revision": revision,
        "revisions": revisions,
        "secrets": secrets,
        "secrets_encrypted": encrypted,
        "cleartext_secrets": sorted(cleartext),
    }
