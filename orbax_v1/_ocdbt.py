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


def _data_file_table(path: str | None) -> bytes:
    """A table of one data file (`path`, relative to the database, no base path), or
    an empty one."""
    if path is None:
        return varint(0)
    encoded = path.encode()
    return varint(1) + varint(len(encoded)) + varint(0) + encoded


def _key_columns(keys: Sequence[bytes]) -> tuple[bytes, bytes, bytes]:
    """(prefix lengths, suffix lengths, suffixes) of sorted keys, prefix-compressed."""
    prefixes, lengths, suffixes = bytearray(), bytearray(), bytearray()
    previous = b""
    for i, key in enumerate(keys):
        common = 0
        if i:
            limit = min(len(previous), len(key))
            while common < limit and previous[common] == key[common]:
                common += 1
            prefixes += varint(common)
        lengths += varint(len(key) - common)
        suffixes += key[common:]
        previous = key
    return bytes(prefixes), bytes(lengths), bytes(suffixes)


@attrs.frozen
class Entry:
    """One key: its value inline (`inline`), or `length` bytes at `offset` in the data file."""

    key: bytes
    length: int
    offset: int = 0
    inline: bytes | None = None


@attrs.frozen
class NodeRef:
    offset: int
    length: int
    num_keys: int
    tree_bytes: int
    indirect_bytes: int
    first_key: bytes = b""


def leaf_node(entries: Sequence[Entry], data_file: str) -> bytes:
    """An encoded leaf node of `entries` (sorted by key) in `data_file`."""
    prefixes, lengths, suffixes = _key_columns([e.key for e in entries])
    indirect = [e for e in entries if e.inline is None]
    body = b"".join([
        b"\0", _data_file_table(data_file if indirect else None), varint(len(entries)),
        prefixes, lengths, suffixes,
        b"".join(varint(e.length) for e in entries),
        b"".join(b"\0" if e.inline is not None else b"\1" for e in entries),
        varint(0) * len(indirect),
        b"".join(varint(e.offset) for e in indirect),
        b"".join(e.inline for e in entries if e.inline is not None),
    ])
    return _frame(BTREE_MAGIC, body)


def interior_node(children: Sequence[NodeRef], data_file: str) -> bytes:
    """An encoded height-1 node over leaf nodes (keys start at each child's first key)."""
    prefixes, lengths, suffixes = _key_columns([c.first_key for c in children])
    body = b"".join([
        b"\1", _data_file_table(data_file), varint(len(children)), prefixes, lengths,
        varint(0) * len(children), suffixes, varint(0) * len(children),
        *(b"".join(varint(getattr(c, field)) for c in children)
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


def manifest(root: NodeRef, height: int, data_file: str) -> bytes:
    """The manifest of a database whose only version has the given root node."""
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
    return _frame(MANIFEST_MAGIC, config + _data_file_table(data_file) + version + varint(0))


def new_data_file_name() -> str:
    return "d/" + os.urandom(16).hex()
