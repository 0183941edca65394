"""The array engine's read side: every byte loaded comes through here.

Arrays we wrote (their layout is in `_METADATA`) are read chunk by chunk straight from
the key-value store into the result, through one queue per load with a bound on the
bytes in flight; small whole arrays come from one packed value, read once. Arrays
other writers wrote go through TensorStore's zarr drivers, which read every codec
real Orbax used. Either way only the chunks a target sharding needs are read.
"""

from __future__ import annotations

import collections
import functools
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import jax
import numpy as np
import tensorstore as ts

from orbax_v1 import _engine, _zarr
from orbax_v1._pytree_save import PACK_KEY

IN_FLIGHT_BYTES = 64 << 20  # chunk reads waiting to be copied into a result, at most


@attrs.frozen
class StoredArray:
    """An array we wrote: uncompressed chunks at known keys (from `array_layout`)."""

    param: str
    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...]
    pack_offset: int | None = None  # where it also sits in the small-array pack

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def chunk_indices(self, region: tuple[tuple[int, int], ...]):
        """Grid indices of the chunks that overlap `region` ((start, stop) per axis)."""
        return itertools.product(*[range(a // c, -(-b // c)) if b > a else range(0)
                                   for (a, b), c in zip(region, self.chunks)])


Region = tuple[tuple[int, int], ...]


class ArrayReader:
    """Opens and reads the arrays of one pytree directory.

    `open` gives a handle per array: a `StoredArray` (no I/O needed) or a TensorStore.
    The `read_*` methods start reading and return a function that finishes the read.
    """

    def __init__(self, item_dir: str, *, use_ocdbt: bool, use_zarr3: bool, fill_missing: bool,
                 layout: dict | None = None):
        self._dir = item_dir
        self._opts = dict(use_ocdbt=use_ocdbt, use_zarr3=use_zarr3, fill_missing=fill_missing)
        self._layout = (layout or {}) if use_ocdbt and use_zarr3 else {}
        self._context = _engine.new_context()
        self._kv = None
        self._pack_read = None
        self._queue: _ReadQueue | None = None

    def _stored(self, param: str) -> StoredArray | None:
        entry = self._layout.get(param)
        if entry is None:
            return None
        shape, chunks = tuple(entry[0]), tuple(entry[2])
        if len(shape) != len(chunks):
            return None
        offset = entry[3] if len(entry) > 3 and isinstance(entry[3], int) else None
        return StoredArray(param, shape, _zarr.dtype_from_name(entry[1]), chunks, offset)

    def _pack(self) -> Callable[[], bytes]:
        """The small-array pack, read once (on first use) for every array in it."""
        if self._pack_read is None:
            future = self._kvstore().read(PACK_KEY)

            def value() -> bytes:
                result = future.result()
                if result.state != "value":
                    raise ValueError("the small-array pack is missing from the store")
                return result.value

            self._pack_read = functools.cache(value)
        return self._pack_read

    def open(self, params: Sequence[str]) -> dict[str, Any]:
        """Starts opening every named array at once; metadata only, no data is read.

        Returns param -> a `StoredArray`, or a TensorStore future still to be waited for.
        """
        return {p: self._stored(p) or ts.open(
            _zarr.array_read_spec(self._dir, p, **self._opts), context=self._context,
            read=True, open=True) for p in params}

    def _kvstore(self) -> ts.KvStore:
        if self._kv is None:
            spec = _zarr.kvstore_spec(self._dir, use_ocdbt=True)
            self._kv = ts.KvStore.open(spec, context=self._context).result()
        return self._kv

    def read_numpy(self, handle: Any, dtype: np.dtype | None) -> Callable[[], np.ndarray]:
        """Starts reading a whole array into host memory (cast to `dtype` if given)."""
        if isinstance(handle, StoredArray):
            whole = tuple((0, d) for d in handle.shape)
            if 0 in handle.shape:
                return lambda: np.zeros(handle.shape, dtype or handle.dtype)
            if handle.pack_offset is not None:
                pack = self._pack()
                return lambda: _from_pack(pack(), handle, dtype)
            return self._read_region(handle, whole, dtype)
        store = handle
        if dtype is not None and np.dtype(dtype) != store.dtype.numpy_dtype:
            store = ts.cast(store, np.dtype(dtype))
        return store.read().result

    def read_sharded(self, handle: Any, sharding: jax.sharding.Sharding,
                     dtype: np.dtype | None) -> Callable[[], jax.Array]:
        """Starts reading only the slices this process's devices hold under `sharding`."""
        if isinstance(handle, StoredArray):
            shape = handle.shape
            index_map = sharding.addressable_devices_indices_map(shape)
            regions = {_region(index, shape) for index in index_map.values()}
            reads = {r: self._read_region(handle, r, dtype) for r in regions}
            read = lambda: {r: finish() for r, finish in reads.items()}  # noqa: E731
        else:
            store = handle
            if dtype is not None and np.dtype(dtype) != store.dtype.numpy_dtype:
                store = ts.cast(store, np.dtype(dtype))
            shape = tuple(store.shape)
            index_map = sharding.addressable_devices_indices_map(shape)
            futures = {}
            for index in index_map.values():
                region = _region(index, shape)
                if region not in futures:
                    futures[region] = store[_slices(region)].read()
            read = lambda: {r: f.result() for r, f in futures.items()}  # noqa: E731

        def finish() -> jax.Array:
            blocks = read()
            arrays = [jax.device_put(blocks[_region(index, shape)], device)
                      for device, index in index_map.items()]
            return jax.make_array_from_single_device_arrays(shape, sharding, arrays)

        return finish

    def _read_region(self, handle: StoredArray, region: Region, dtype):
        """Queues the reads of the chunks overlapping `region`; returns the finisher."""
        if self._queue is None:
            self._queue = _ReadQueue(self._kvstore(), IN_FLIGHT_BYTES)
        chunk_bytes = math.prod(handle.chunks) * handle.dtype.itemsize
        tickets = [(index, self._queue.add(_zarr.chunk_key(handle.param, index), chunk_bytes))
                   for index in handle.chunk_indices(region)]
        queue = self._queue
        return lambda: self._assemble(handle, region, dtype,
                                      ((index, queue.take(t)) for index, t in tickets))

    @staticmethod
    def _assemble(handle: StoredArray, region: Region, dtype, reads) -> np.ndarray:
        out = np.empty([b - a for a, b in region], dtype or handle.dtype)
        little = handle.dtype.newbyteorder("<")
        for index, result in reads:
            if result.state != "value":
                raise ValueError(f"chunk {index} of {handle.param!r} is missing from the store")
            start = [i * c for i, c in zip(index, handle.chunks)]
            chunk = np.frombuffer(result.value, dtype=little)
            if chunk.size != math.prod(handle.chunks):
                raise ValueError(f"chunk {index} of {handle.param!r} holds {chunk.size} values, "
                                 f"expected {math.prod(handle.chunks)}")
            chunk = chunk.reshape(handle.chunks)
            src, dst = [], []
            for (a, b), s, c in zip(region, start, handle.chunks):
                lo, hi = max(a, s), min(b, s + c)
                src.append(slice(lo - s, hi - s))
                dst.append(slice(lo - a, hi - a))
            np.copyto(out[(*dst, ...)], chunk[(*src, ...)], casting="unsafe")
        return out


class _ReadQueue:
    """The chunk reads of one load, issued in order, with at most `limit` bytes read
    but not yet copied into a result (at least one read is always in flight).

    Finishers take their chunks in the order they were queued, so reads of the next
    arrays overlap the copying of the current one.
    """

    def __init__(self, kv: ts.KvStore, limit: int):
        self._kv, self._limit = kv, limit
        self._waiting: collections.deque = collections.deque()  # (ticket, key, nbytes)
        self._issued: dict[int, tuple[Any, int]] = {}
        self._in_flight = 0
        self._tickets = itertools.count()

    def add(self, key: str, nbytes: int) -> int:
        ticket = next(self._tickets)
        self._waiting.append((ticket, key, nbytes))
        self._pump()
        return ticket

    def _issue(self) -> None:
        ticket, key, nbytes = self._waiting.popleft()
        self._issued[ticket] = (self._kv.read(key), nbytes)
        self._in_flight += nbytes

    def _pump(self) -> None:
        while self._waiting and (not self._issued
                                 or self._in_flight + self._waiting[0][2] <= self._limit):
            self._issue()

    def take(self, ticket: int) -> Any:
        while ticket not in self._issued:  # taken out of order: issue up to it
            self._issue()
        future, nbytes = self._issued.pop(ticket)
        try:
            return future.result()
        finally:
            self._in_flight -= nbytes
            self._pump()


def _from_pack(pack: bytes, handle: StoredArray, dtype) -> np.ndarray:
    count = math.prod(handle.shape)
    if handle.pack_offset + count * handle.dtype.itemsize > len(pack):
        raise ValueError(f"{handle.param!r} lies beyond the end of the small-array pack")
    raw = np.frombuffer(pack, dtype=handle.dtype.newbyteorder("<"), count=count,
                        offset=handle.pack_offset)
    return raw.reshape(handle.shape).astype(dtype or handle.dtype)  # a writable copy


def _region(index: tuple[slice, ...], shape: tuple[int, ...]) -> Region:
    return tuple(s.indices(d)[:2] for s, d in zip(index, shape))


def _slices(region: Region) -> tuple[slice, ...]:
    return tuple(slice(a, b) for a, b in region)
