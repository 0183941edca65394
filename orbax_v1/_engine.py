"""The array engine's write side: every byte saved goes through here.

Each process stages its chunks into its own OCDBT database (`<item>/ocdbt.process_<i>`)
through TensorStore transactions of bounded size, then the primary process merges
every per-process database into the item's root manifest so any single reader sees
every array. The read side is `_reader`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from typing import Any

import attrs
import jax
import numpy as np
import tensorstore as ts

from orbax_v1 import _zarr

PROCESS_DIR_PREFIX = "ocdbt.process_"
STAGED_BYTES_PER_COMMIT = 32 << 20  # per commit; two batches at most are held in memory


def new_context() -> ts.Context:
    """A TensorStore context: no data cache (we never read twice), a small node cache."""
    return ts.Context({
        "cache_pool": {"total_bytes_limit": 0},
        "cache_pool#ocdbt": {"total_bytes_limit": 100_000_000},
        "file_io_concurrency": {"limit": 128},
    })


@attrs.frozen
class HostArray:
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
    arr = np.array(value, copy=copy) if copy else np.asarray(value)
    return HostArray(arr.shape, arr.dtype, arr.shape, [((0,) * arr.ndim, arr)])


class ArrayWriter:
    """Stages this process's chunks into `<item_dir>/ocdbt.process_<index>`."""

    def __init__(self, item_dir: str, process_index: int, context: ts.Context):
        path = os.path.join(item_dir, f"{PROCESS_DIR_PREFIX}{process_index}")
        self._kv = ts.KvStore.open(_zarr.ocdbt_write_spec(path), context=context).result()
        self._txn = ts.Transaction()
        self._staged_kv = self._kv.with_transaction(self._txn)
        self._staged = 0
        self._committing: ts.Future | None = None

    def write(self, param: str, shape: tuple[int, ...], dtype: np.dtype,
              write_shape: tuple[int, ...], blocks: Iterable[tuple[tuple[int, ...], np.ndarray]],
              *, write_metadata: bool = True) -> tuple[int, ...]:
        """Stages one array (its metadata and the given blocks); returns its chunk shape."""
        dtype = np.dtype(dtype)
        chunks = _zarr.chunk_shape(write_shape, dtype.itemsize)
        if write_metadata:
            self._put(_zarr.metadata_key(param),
                      _zarr.zarr3_metadata(tuple(shape), dtype, tuple(chunks)))
        if 0 in shape:
            return chunks
        for origin, block in blocks:
            per_axis = [range(0, b, c) for b, c in zip(block.shape, chunks)]
            for offsets in itertools.product(*per_axis):
                index = tuple((o + off) // c for o, off, c in zip(origin, offsets, chunks))
                piece = block[tuple(slice(off, off + c) for off, c in zip(offsets, chunks))]
                self._put(_zarr.chunk_key(param, index), _zarr.encode_chunk(piece))
        return chunks

    def put(self, key: str, data: bytes) -> None:
        """Stages one raw value (for the small-array pack)."""
        self._put(key, data)

    def _put(self, key: str, data: bytes) -> None:
        self._staged_kv.write(key, data)  # staged in the transaction; commit reports failures
        self._staged += len(data)
        if self._staged >= STAGED_BYTES_PER_COMMIT:
            self.flush(wait=False)

    def flush(self, *, wait: bool = True) -> None:
        """Commits what is staged; with `wait`, everything is durable when this returns.

        Without `wait` the commit runs while the next batch is staged; at most one
        commit is left in flight, so memory stays bounded by two batches.
        """
        if self._committing is not None:
            self._committing.result()
        self._committing = self._txn.commit_async()
        self._txn = ts.Transaction()
        self._staged_kv = self._kv.with_transaction(self._txn)
        self._staged = 0
        if wait:
            self._committing.result()
            self._committing = None


def merge_process_databases(item_dir: str, context: ts.Context) -> None:
    """Points the item's root OCDBT manifest at every per-process database (no data copy)."""
    children = sorted(n for n in os.listdir(item_dir) if n.startswith(PROCESS_DIR_PREFIX))
    if not children:
        return
    # Children are opened with the same spec as the parent: TensorStore copies ranges
    # between OCDBT databases only when their storage options agree.
    opened = [ts.KvStore.open(_zarr.ocdbt_write_spec(os.path.join(item_dir, c)), context=context)
              for c in children]
    parent = ts.KvStore.open(_zarr.ocdbt_write_spec(item_dir), context=context).result()
    txn = ts.Transaction(atomic=True)
    copies = [child.result().experimental_copy_range_to(parent.with_transaction(txn))
              for child in opened]
    for fut in copies:
        fut.result()
    txn.commit_async().result()
