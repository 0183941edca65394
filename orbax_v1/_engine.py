"""The array engine: every byte of array data goes through here.

Writing: each process stages its chunks into its own OCDBT database
(`<item>/ocdbt.process_<i>`) through one TensorStore transaction per batch, then the
primary process merges every per-process database into the item's root manifest so
any single reader sees every array. Reading: one TensorStore store per array, opened
concurrently; only the slices the target sharding needs are read.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import jax
import numpy as np
import tensorstore as ts

from orbax_v1 import _zarr

PROCESS_DIR_PREFIX = "ocdbt.process_"
STAGED_BYTES_PER_COMMIT = 32 << 20  # bounds the memory a save holds in TensorStore


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

    def _put(self, key: str, data: bytes) -> None:
        self._staged_kv.write(key, data)  # staged in the transaction; commit reports failures
        self._staged += len(data)
        if self._staged >= STAGED_BYTES_PER_COMMIT:
            self.flush()

    def flush(self) -> None:
        """Commits what is staged; the data is durable on disk when this returns."""
        self._txn.commit_async().result()
        self._txn = ts.Transaction()
        self._staged_kv = self._kv.with_transaction(self._txn)
        self._staged = 0


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


SMALL_ARRAY_BYTES = 1 << 20  # read with one key-value read instead of a TensorStore open


@attrs.frozen
class SmallArray:
    """An array we wrote as one uncompressed chunk (known from `_METADATA`'s layout)."""

    key: str
    shape: tuple[int, ...]
    dtype: np.dtype


class ArrayReader:
    """Opens and reads the arrays of one pytree directory.

    Arrays come back as *handles*: an opened TensorStore, or, for small arrays we
    wrote ourselves, a `SmallArray` read by a single key-value read (thousands of tiny
    arrays then cost thousands of reads, not thousands of TensorStore opens).
    """

    def __init__(self, item_dir: str, *, use_ocdbt: bool, use_zarr3: bool, fill_missing: bool,
                 layout: dict | None = None):
        self._dir = item_dir
        self._opts = dict(use_ocdbt=use_ocdbt, use_zarr3=use_zarr3, fill_missing=fill_missing)
        self._layout = (layout or {}) if use_ocdbt else {}
        self._context = new_context()
        self._kv = None

    def _small(self, param: str) -> SmallArray | None:
        entry = self._layout.get(param)
        if entry is None:
            return None
        shape, dtype, chunks = tuple(entry[0]), _zarr.dtype_from_name(entry[1]), entry[2]
        single = all(c >= max(d, 1) for c, d in zip(chunks, shape))
        if not single or math.prod(shape) * dtype.itemsize > SMALL_ARRAY_BYTES:
            return None
        return SmallArray(_zarr.chunk_key(param, (0,) * len(shape)), shape, dtype)

    def open(self, params: Sequence[str]) -> dict[str, Any]:
        """Starts opening every named array at once; metadata only, no data is read.

        Returns param -> a handle, or a TensorStore future still to be waited for.
        """
        out = {}
        for p in params:
            out[p] = self._small(p) or ts.open(
                _zarr.array_read_spec(self._dir, p, **self._opts), context=self._context,
                read=True, open=True)
        return out

    def _kvstore(self) -> ts.KvStore:
        if self._kv is None:
            spec = _zarr.kvstore_spec(self._dir, use_ocdbt=True)
            self._kv = ts.KvStore.open(spec, context=self._context).result()
        return self._kv

    def read_numpy(self, handle: Any, dtype: np.dtype | None):
        """Starts reading a whole array into host memory (cast to `dtype` if given).

        Returns a function that waits for the read and returns the array.
        """
        if isinstance(handle, SmallArray):
            if 0 in handle.shape:
                return lambda: np.zeros(handle.shape, dtype or handle.dtype)
            future = self._kvstore().read(handle.key)
            return lambda: _decode(future.result(), handle, dtype)
        store = handle
        if dtype is not None and np.dtype(dtype) != store.dtype.numpy_dtype:
            store = ts.cast(store, np.dtype(dtype))
        return store.read().result

    def read_sharded(self, handle: Any, sharding: jax.sharding.Sharding,
                     dtype: np.dtype | None):
        """Starts reading only the slices this process's devices hold under `sharding`.

        Returns a function that, once called, waits for the reads and builds the array.
        """
        if isinstance(handle, SmallArray):
            whole = self.read_numpy(handle, dtype)
            return lambda: jax.make_array_from_callback(handle.shape, sharding,
                                                        _index_into(whole))
        store = handle
        if dtype is not None and np.dtype(dtype) != store.dtype.numpy_dtype:
            store = ts.cast(store, np.dtype(dtype))
        shape = tuple(store.shape)
        index_map = sharding.addressable_devices_indices_map(shape)
        reads: dict[tuple, ts.Future] = {}
        for index in index_map.values():
            key = _index_key(index, shape)
            if key not in reads:
                reads[key] = store[tuple(slice(a, b) for a, b in key)].read()

        def finish() -> jax.Array:
            blocks = {k: f.result() for k, f in reads.items()}
            arrays = [jax.device_put(blocks[_index_key(index, shape)], device)
                      for device, index in index_map.items()]
            return jax.make_array_from_single_device_arrays(shape, sharding, arrays)

        return finish


def _index_into(whole):
    cache = []

    def callback(index):
        if not cache:
            cache.append(whole())
        return cache[0][index]

    return callback


def _decode(result: Any, handle: SmallArray, dtype: np.dtype | None) -> np.ndarray:
    if result.state != "value":
        raise ValueError(f"chunk {handle.key!r} is missing from the store")
    raw = np.frombuffer(result.value, dtype=handle.dtype.newbyteorder("<"))
    if raw.size != math.prod(handle.shape):
        raise ValueError(f"chunk {handle.key!r} holds {raw.size} values, expected "
                         f"shape {handle.shape}")
    array = raw.reshape(handle.shape).astype(dtype or handle.dtype)  # a writable copy
    return array


def _index_key(index: tuple[slice, ...], shape: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    return tuple(s.indices(d)[:2] for s, d in zip(index, shape))
