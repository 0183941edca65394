"""The array engine's write side: every byte saved goes through here.

Each process writes its chunks into its own OCDBT database (`<item>/ocdbt.process_<i>`),
encoding it itself (`ocdbt`) and streaming the array bytes to one data file on a local
disk (`datafile`) or to bounded parts in an object store (`objectfile`); then the
primary process merges every per-process database into the item's root manifest with
TensorStore, so any single reader sees every array. The read side is `reader`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any, NamedTuple

import jax
import numpy as np
import tensorstore as ts

from orbax_v1 import _zarr
from orbax_v1._storage import datafile as _datafile
from orbax_v1._storage import files, kvstore, objectfile, paths
from orbax_v1._storage import ocdbt as _ocdbt
from orbax_v1._storage.format import MANIFEST, PROCESS_DIR_PREFIX

LARGE_VALUE_BYTES = 1 << 20  # values this big start on an aligned offset in the data file


class HostArray(NamedTuple):  # a tuple: trees have tens of thousands of leaves
    """One array's data as this process will write it, already in host memory."""

    shape: tuple[int, ...]
    dtype: np.dtype
    write_shape: tuple[int, ...]
    blocks: list[tuple[tuple[int, ...], np.ndarray]]  # (origin, block) this process writes
    sharding: jax.sharding.Sharding | None = None


def start_device_to_host(values: Iterable[Any]) -> None:
    """Starts every device-to-host transfer at once, so that they overlap."""
    for value in values:
        if isinstance(value, jax.Array):
            for shard in value.addressable_shards:
                if shard.replica_id == 0:
                    shard.data.copy_to_host_async()


def to_host(value: Any, *, copy: bool) -> HostArray:
    """The blocks of `value` this process must write, in host memory.

    For a `jax.Array`, only addressable shards with `replica_id == 0` are taken, so
    every unique shard is written exactly once across all processes. `copy=True`
    makes the blocks independent of `value` (the caller may then modify, donate or
    delete it); `copy=False` lets numpy arrays and CPU shards be written in place.
    """
    if isinstance(value, jax.Array):
        blocks = [(tuple(s.start or 0 for s in shard.index), np.array(shard.data, copy=copy))
                  for shard in value.addressable_shards if shard.replica_id == 0]
        return HostArray(tuple(value.shape), np.dtype(value.dtype),
                         tuple(value.sharding.shard_shape(value.shape)), blocks, value.sharding)
    arr = np.array(value, copy=True) if copy else np.asarray(value)
    return HostArray(arr.shape, arr.dtype, arr.shape, [((0,) * arr.ndim, arr)])


class ArrayWriter:
    """Writes this process's chunks as the OCDBT database `<item_dir>/ocdbt.process_<i>`.

    Values of more than `_ocdbt.MAX_INLINE_VALUE_BYTES` stream into one data file as
    they come (`_datafile`), so memory stays bounded by its few buffers; smaller ones
    (zarr metadata, tiny chunks) are kept for the b+tree's leaves. `close()` appends
    the b+tree nodes, makes the data file durable, then writes the manifest. Nothing
    is readable before the manifest exists.
    """

    def __init__(self, item_dir: str, process_index: int, *, expected_bytes: int = 0):
        self._dir = paths.join(item_dir, f"{PROCESS_DIR_PREFIX}{process_index}")
        self._buffer_bytes = _datafile.buffer_bytes_for(expected_bytes)
        self._file: _LocalDataFile | objectfile.ObjectDataFiles | None = None
        self._entries: dict[bytes, _ocdbt.Entry] = {}

    def write(self, param: str, shape: tuple[int, ...], dtype: np.dtype,
              write_shape: tuple[int, ...], blocks: Iterable[tuple[tuple[int, ...], np.ndarray]],
              *, write_metadata: bool = True) -> tuple[int, ...]:
        """Writes one array (its metadata and the given blocks); returns its chunk shape."""
        dtype, shape = np.dtype(dtype), tuple(shape)
        chunks = _zarr.chunk_shape(write_shape, dtype.itemsize)
        if write_metadata:
            self.put(_zarr.metadata_key(param), _zarr.zarr3_metadata(shape, dtype, chunks))
        if 0 in shape:
            return chunks
        if chunks == shape:  # one chunk holds the whole array (most small arrays)
            for _, block in blocks:
                self.put(_zarr.chunk_key(param, (0,) * len(shape)), block)
            return chunks
        for origin, block in blocks:
            per_axis = [range(0, b, c) for b, c in zip(block.shape, chunks)]
            for offsets in itertools.product(*per_axis):
                index = tuple((o + off) // c for o, off, c in zip(origin, offsets, chunks))
                piece = block[(*(slice(off, off + c) for off, c in zip(offsets, chunks)), ...)]
                self.put(_zarr.chunk_key(param, index), piece)
        return chunks

    def put(self, key: str, data: bytes | np.ndarray) -> None:
        """Writes one value: bytes, or an array's C-order little-endian bytes."""
        encoded = key.encode()
        if encoded in self._entries:
            raise ValueError(f"key {key!r} written twice into {self._dir}")
        is_array = isinstance(data, np.ndarray)
        nbytes = data.nbytes if is_array else len(data)
        if nbytes <= _ocdbt.MAX_INLINE_VALUE_BYTES:
            inline = _zarr.encode_chunk(data) if is_array else bytes(data)
            self._entries[encoded] = _ocdbt.Entry(encoded, nbytes, 0, inline)
            return
        file = self._data_file()
        if nbytes >= LARGE_VALUE_BYTES:
            file.pad_to(_datafile.ALIGN)  # so that it can be read straight into place
        index, offset = file.append(data)
        self._entries[encoded] = _ocdbt.Entry(encoded, nbytes, offset, None, index)

    def _data_file(self) -> _LocalDataFile | objectfile.ObjectDataFiles:
        if self._file is None:
            if paths.is_remote(self._dir):
                self._file = objectfile.ObjectDataFiles(self._dir)
            else:
                self._file = _LocalDataFile(self._dir, self._buffer_bytes)
        return self._file

    def close(self) -> _ocdbt.Root | None:
        """Appends the b+tree, syncs the data file, then writes the manifest (durably).

        Returns the database's root (None if nothing was written)."""
        if not self._entries:
            return None
        entries = [self._entries[k] for k in sorted(self._entries)]
        file = self._data_file()
        leaves = []
        for group in _ocdbt.leaf_groups(entries):
            # The node's table lists the files known so far: every value's is among them.
            node = _ocdbt.leaf_node(group, list(file.names))
            index, offset = file.append(node)
            leaves.append(_ocdbt.NodeRef(
                offset, len(node), len(group), len(node),
                sum(e.length for e in group if e.inline is None), group[0].key, index))
        root, height = leaves[0], 0
        if len(leaves) > 1:
            names = list(file.names)
            node = _ocdbt.interior_node(leaves, names)
            index, offset = file.append(node)
            root = _ocdbt.NodeRef(offset, len(node), len(entries),
                                  len(node) + sum(c.tree_bytes for c in leaves),
                                  sum(c.indirect_bytes for c in leaves), b"", index)
            height = 1
        file.close()
        root_file = file.names[root.file]
        files.write_bytes(paths.join(self._dir, MANIFEST),
                          _ocdbt.manifest(root, height, root_file))
        return _ocdbt.Root(root, height, root_file)

    def abort(self) -> None:
        """Stops after a failure: the data file's writers end, nothing is committed."""
        if self._file is not None:
            self._file.abort()


class _LocalDataFile:
    """The one data file of a database on a local disk (`datafile.DataFile`)."""

    def __init__(self, directory: str, buffer_bytes: int):
        name = _ocdbt.new_data_file_name()
        files.make_dirs(paths.join(directory, "d"))
        self.names = [name]
        self._file = _datafile.DataFile(paths.join(directory, name), buffer_bytes=buffer_bytes)

    def pad_to(self, alignment: int) -> None:
        self._file.pad_to(alignment)

    def append(self, data) -> tuple[int, int]:
        return 0, self._file.append(data)

    def close(self) -> None:
        self._file.close()

    def abort(self) -> None:
        self._file.abort()


def share_process_database(item_dir: str, process_index: int, root: _ocdbt.Root) -> None:
    """Makes the item's root manifest point at the one process database's own b+tree.

    When a single process wrote the item, nothing needs merging: the root manifest
    references that database's root node through the base path `ocdbt.process_<i>/`,
    so every path below it resolves inside that directory (no node is rewritten).
    The root's own `d/` stays empty; it is created because real Orbax's item
    directories always list one (the v0-to-v1 migration guide shows it)."""
    files.make_dirs(paths.join(item_dir, "d"))
    files.write_bytes(paths.join(item_dir, MANIFEST), _ocdbt.manifest(
        root.node, root.height, root.data_file, f"{PROCESS_DIR_PREFIX}{process_index}/"))


def merge_process_databases(item_dir: str) -> None:
    """Points the item's root OCDBT manifest at every per-process database (no data copy)."""
    children = [n for n in files.subdirs(item_dir) if n.startswith(PROCESS_DIR_PREFIX)]
    if not children:
        return
    context = kvstore.new_context()
    # Children are opened with the same spec as the parent: TensorStore copies ranges
    # between OCDBT databases only when their storage options agree.
    opened = [ts.KvStore.open(kvstore.ocdbt_write_spec(paths.join(item_dir, c)), context=context)
              for c in children]
    parent = ts.KvStore.open(kvstore.ocdbt_write_spec(item_dir), context=context).result()
    txn = ts.Transaction(atomic=True)
    copies = [child.result().experimental_copy_range_to(parent.with_transaction(txn))
              for child in opened]
    for fut in copies:
        fut.result()
    txn.commit_async().result()
