"""The OCDBT encoding: b+tree nodes and the manifest of a database we write ourselves.

TensorStore's OCDBT format (kvstore/ocdbt/index.rst in TensorStore) stores a key-value
database as data files (`d/<32 hex>`) holding raw values and encoded b+tree nodes, and
a `manifest.ocdbt` naming the root node of the latest version. Writing it here, rather
than through TensorStore's transactional writer, lets the array engine stream array
bytes to disk once, from aligned buffers, without copying them into Python `bytes`
and TensorStore buffers first (`_datafile`). Every reader (TensorStore, real Orbax)
sees an ordinary OCDBT database: one version, uncompressed nodes, and the
configuration real Orbax writes with.

Only what one writer of a fresh database needs is here: a leaf level of nodes (each at
most `max_decoded_node_bytes`), an interior root above them if there is more than one,
and a manifest holding that one version.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import attrs
import numpy as np
import tensorstore as ts

MANIFEST_MAGIC = 0x0CDB3A2A
BTREE_MAGIC = 0x0CDB20DE
MAX_INLINE_VALUE_BYTES = 1024  # as real Orbax configures its databases
MAX_DECODED_NODE_BYTES = 100_000_000
VERSION_TREE_ARITY_LOG2 = 4  # TensorStore's default
_ZSTD = 1  # the configured compression (TensorStore's default), for whoever writes next


_ONE_BYTE = [bytes((i,)) for i in range(128)]


def varint(n: int) -> bytes:
    """Unsigned LEB128."""
    if n < 128:
        return _ONE_BYTE[n]
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varints(values: Sequence[int]) -> bytes:
    """Unsigned LEB128 of each value, concatenated (vectorised: nodes hold many)."""
    a = np.asarray(values, dtype=np.uint64)
    if a.size == 0:
        return b""
    top = int(a.max())
    if top < 128:
        return a.astype(np.uint8).tobytes()
    width = (top.bit_length() + 6) // 7
    shifts = np.arange(width, dtype=np.uint64) * np.uint64(7)
    groups = (a[:, None] >> shifts) & np.uint64(0x7F)
    count = 1 + ((a[:, None] >> shifts[1:]) > 0).sum(axis=1)  # bytes per value
    place = np.arange(width)
    more = (place < (count[:, None] - 1)) * np.uint64(0x80)  # continuation bits
    return (groups | more).astype(np.uint8)[place < count[:, None]].tobytes()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of `data`, computed by TensorStore's zarr3 `crc32c` codec."""
    n = max(len(data), 1)
    store = ts.open({
        "driver": "zarr3", "kvstore": {"driver": "memory"},
        "metadata": {"shape": [n], "data_type": "uint8",
                     "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [n]}},
                     "codecs": [{"name": "bytes"}, {"name": "crc32c"}]},
    }, create=True).result()
    if not data:  # the checksum of nothing is 0
        return 0
    store.write(np.frombuffer(data, np.uint8)).result()
    encoded = store.kvstore.read("c/0").result().value
    return int.from_bytes(encoded[-4:], "little")


def _frame(magic: int, body: bytes, checksum: Callable[[bytes], int] = crc32c) -> bytes:
    """Header (magic, total length, format version 0, uncompressed), body, CRC-32C."""
    head = struct.pack(">I", magic) + struct.pack("<Q", 4 + 8 + 2 + len(body) + 4) + b"\0\0"
    framed = head + body
    return framed + struct.pack("<I", checksum(framed))


def _data_file_table(data_files: str | Sequence[str] | None, base_path: str = "") -> bytes:
    """A table of data files (each `base_path + path`, relative to the database), or an
    empty one. A non-empty `base_path` is also prefixed to every path below the node
    reached through this table (the format's transitive path). Paths are
    prefix-compressed against the one before."""
    if data_files is None:
        return varint(0)
    if isinstance(data_files, str):
        data_files = [data_files]
    full = [(base_path + p).encode() for p in data_files]
    common = [len(os.path.commonprefix((a, b))) for a, b in zip(full, full[1:])]
    suffixes = [full[0], *(p[c:] for p, c in zip(full[1:], common))]
    base = len(base_path.encode())
    return b"".join([varint(len(full)), varints(common), varints([len(x) for x in suffixes]),
                     varints([base] * len(full)), *suffixes])


_KEY_MATRIX_BYTES = 64 << 20  # beyond this, prefixes are found key by key


def _key_columns(keys: Sequence[bytes]) -> tuple[bytes, bytes, bytes]:
    """(prefix lengths, suffix lengths, suffixes) of sorted keys, prefix-compressed."""
    if not keys:
        return b"", b"", b""
    lengths = np.fromiter(map(len, keys), np.int64, len(keys))
    width = int(lengths.max())
    if len(keys) == 1:
        common = []
    elif len(keys) * width > _KEY_MATRIX_BYTES:  # a few very long keys: key by key
        common = [len(os.path.commonprefix((a, b))) for a, b in zip(keys, keys[1:])]
    else:  # one row per key, zero-padded: compare each row with the one before
        rows = np.frombuffer(b"".join(k.ljust(width, b"\0") for k in keys), np.uint8)
        rows = rows.reshape(len(keys), width)
        differs = rows[1:] != rows[:-1]
        first = np.where(differs.any(axis=1), differs.argmax(axis=1), width)
        common = np.minimum(first, np.minimum(lengths[1:], lengths[:-1])).tolist()
    suffixes = b"".join([keys[0], *(k[c:] for k, c in zip(keys[1:], common))])
    return varints(common), varints(lengths - np.array([0, *common])), suffixes


class Entry(NamedTuple):  # a tuple: a database may hold hundreds of thousands
    """One key: its value inline (`inline`), or `length` bytes at `offset` in data file
    number `file` (an index into the writer's list of data files)."""

    key: bytes
    length: int
    offset: int = 0
    inline: bytes | None = None
    file: int = 0


@attrs.frozen
class NodeRef:
    offset: int
    length: int
    num_keys: int
    tree_bytes: int
    indirect_bytes: int
    first_key: bytes = b""
    file: int = 0  # which data file holds the node


def leaf_node(entries: Sequence[Entry], data_files: str | Sequence[str]) -> bytes:
    """An encoded leaf node of `entries` (sorted by key), whose values lie in
    `data_files` (entry `file` indexes this list)."""
    prefixes, lengths, suffixes = _key_columns([e.key for e in entries])
    indirect = [e for e in entries if e.inline is None]
    body = b"".join([
        b"\0", _data_file_table(data_files if indirect else None), varint(len(entries)),
        prefixes, lengths, suffixes,
        varints([e.length for e in entries]),
        bytes(e.inline is None for e in entries),
        varints([e.file for e in indirect]),
        varints([e.offset for e in indirect]),
        b"".join(e.inline for e in entries if e.inline is not None),
    ])
    return _frame(BTREE_MAGIC, body)


def interior_node(children: Sequence[NodeRef], data_files: str | Sequence[str]) -> bytes:
    """An encoded height-1 node over leaf nodes (keys start at each child's first key)."""
    prefixes, lengths, suffixes = _key_columns([c.first_key for c in children])
    body = b"".join([
        b"\1", _data_file_table(data_files), varint(len(children)), prefixes, lengths,
        varint(0) * len(children), suffixes, varints([c.file for c in children]),
        *(varints([getattr(c, field) for c in children])
          for field in ("offset", "length", "num_keys", "tree_bytes", "indirect_bytes")),
    ])
    return _frame(BTREE_MAGIC, body)


def leaf_groups(entries: Sequence[Entry], max_bytes: int = MAX_DECODED_NODE_BYTES
                ) -> list[Sequence[Entry]]:
    """Splits sorted entries into runs whose leaf nodes stay within `max_bytes` decoded."""
    groups, start, size = [], 0, 64
    for i, e in enumerate(entries):
        cost = len(e.key) + 3 * 10 + (len(e.inline) if e.inline is not None else 0)
        if i > start and size + cost > max_bytes:
            groups.append(entries[start:i])
            start, size = i, 64
        size += cost
    groups.append(entries[start:])
    return groups


@attrs.frozen
class Root:
    """The b+tree of a database just written: its root node, height and data file."""

    node: NodeRef
    height: int
    data_file: str


def manifest(root: NodeRef, height: int, data_file: str, base_path: str = "") -> bytes:
    """The manifest of a database whose only version has the given root node.

    With `base_path` (a directory inside this database, ending in '/'), the tree is the
    one written into that directory's own database, shared rather than copied."""
    config = b"".join([
        os.urandom(16), b"\0",  # uuid, manifest kind "single"
        varint(MAX_INLINE_VALUE_BYTES), varint(MAX_DECODED_NODE_BYTES),
        bytes([VERSION_TREE_ARITY_LOG2]), varint(_ZSTD), struct.pack("<i", 0),
    ])
    version = b"".join([
        varint(1), varint(1), bytes([height]),  # one version: generation 1
        varint(0), varint(root.offset), varint(root.length),
        varint(root.num_keys), varint(root.tree_bytes), varint(root.indirect_bytes),
        struct.pack("<Q", time.time_ns()),
    ])
    return _frame(MANIFEST_MAGIC,
                  config + _data_file_table(data_file, base_path) + version + varint(0))


def new_data_file_name() -> str:
    return "d/" + os.urandom(16).hex()
