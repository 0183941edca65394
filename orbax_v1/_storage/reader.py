"""The array engine's read side: every byte loaded comes through here.

Arrays we wrote on a local disk (their layout is in `_METADATA`) are read chunk by
chunk straight from the data files into a page-aligned result: the first chunk read
finds where every value lies (`_locate`), then `_fileread` reads each chunk with `preadv` into its place, or
through a bounded temporary buffer where it must be reshaped or cast. Small whole
arrays come from one packed value, read once. Arrays other writers wrote, and arrays in
an object store, go through TensorStore's zarr drivers (every codec real Orbax used;
batched ranged reads of objects). Either way only the chunks a target sharding needs
are read.
"""

from __future__ import annotations

import functools
import itertools
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import jax
import numpy as np
import tensorstore as ts

from orbax_v1 import _zarr
from orbax_v1._storage import aligned as _aligned
from orbax_v1._storage import fileread as _fileread
from orbax_v1._storage import kvstore, paths
from orbax_v1._storage import locate as _locate
from orbax_v1._storage.format import PACK_KEY

IN_FLIGHT_BYTES = 64 << 20  # temporary buffers of chunks being cast or reshaped, at most


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


@attrs.frozen
class ArrayHandle:
    """One opened array, whichever engine reads it: its shape and dtype, no data read.

    `source` is how it is read: a `StoredArray` (our own chunk reads) or an opened
    TensorStore (every other case)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    source: Any


def _opened(future) -> ArrayHandle:
    store = future.result()
    return ArrayHandle(tuple(store.shape), store.dtype.numpy_dtype, store)


class ArrayReader:
    """Opens and reads the arrays of one pytree directory.

    `open` gives a handle per array: a `StoredArray` (no I/O needed) or a TensorStore.
    The `read_*` methods start reading and return a function that finishes the read.
    `close()` (or leaving a `with` block) ends the load: it waits for the reads still in
    flight and closes the data files.
    """

    def __init__(self, item_dir: str, *, use_ocdbt: bool, use_zarr3: bool, fill_missing: bool,
                 layout: dict | None = None):
        self._dir = item_dir
        self._opts = dict(use_ocdbt=use_ocdbt, use_zarr3=use_zarr3, fill_missing=fill_missing)
        self._layout = (layout or {}) if use_ocdbt and use_zarr3 else {}
        # Our own chunk reads are from local data files; in an object store only the
        # small-array pack is read by us, other arrays through TensorStore's zarr driver.
        self._remote = paths.is_remote(item_dir)
        self._context = kvstore.new_context()
        self._kv = None
        self._pack_read = None
        self._located: dict[bytes, _locate.Location] | None = None
        self._files: _fileread.FileReader | None = None

    def _stored(self, param: str) -> StoredArray | None:
        entry = self._layout.get(param)
        if entry is None:
            return None
        shape, chunks = tuple(entry[0]), tuple(entry[2])
        if len(shape) != len(chunks):
            return None
        offset = entry[3] if len(entry) > 3 and isinstance(entry[3], int) else None
        if offset is None and self._remote:
            return None
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

        Returns param -> a function that finishes opening it (raising if it cannot)
        and returns its `ArrayHandle`.
        """
        out: dict[str, Callable[[], ArrayHandle]] = {}
        for p in params:
            stored = self._stored(p)
            if stored is not None:
                out[p] = functools.partial(ArrayHandle, stored.shape, stored.dtype, stored)
                continue
            future = ts.open(kvstore.array_read_spec(self._dir, p, **self._opts),
                             context=self._context, read=True, open=True)
            out[p] = functools.partial(_opened, future)
        return out

    def _kvstore(self) -> ts.KvStore:
        if self._kv is None:
            spec = kvstore.kvstore_spec(self._dir, use_ocdbt=True)
            self._kv = ts.KvStore.open(spec, context=self._context).result()
        return self._kv

    def read_numpy(self, array: ArrayHandle, dtype: np.dtype | None
                   ) -> Callable[[], np.ndarray]:
        """Starts reading a whole array into host memory (cast to `dtype` if given)."""
        handle = array.source
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

    def read_sharded(self, array: ArrayHandle, sharding: jax.sharding.Sharding,
                     dtype: np.dtype | None) -> Callable[[], jax.Array]:
        """Starts reading only the slices this process's devices hold under `sharding`."""
        handle = array.source
        if isinstance(handle, StoredArray):
            shape = handle.shape
            index_map = sharding.addressable_devices_indices_map(shape)
            regions = {_region(index, shape) for index in index_map.values()}
            if self._remote:  # a small packed array (`_stored`): read whole, then sliced
                whole = self.read_numpy(array, dtype)
                read = lambda: {r: whole()[_slices(r)] for r in regions}  # noqa: E731
            else:
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

    def _read_region(self, handle: StoredArray, region: Region, dtype) -> Callable[[], np.ndarray]:
        """Starts reading the chunks overlapping `region` into a new page-aligned array;
        returns the finisher. Any failure is raised by the finisher, not here."""
        out = _aligned.empty(tuple(b - a for a, b in region), dtype or handle.dtype)
        try:
            reads = self._start_chunk_reads(handle, region, out)
        except Exception as e:  # noqa: BLE001 - reported when the caller finishes the read
            error = e

            def fail() -> np.ndarray:
                raise error
            return fail

        def finish() -> np.ndarray:
            for read in reads:
                read.result()
            return out

        return finish

    def _start_chunk_reads(self, handle: StoredArray, region: Region, out: np.ndarray) -> list:
        values = self._values()
        if self._files is None:
            self._files = _fileread.FileReader(IN_FLIGHT_BYTES)
        chunk_bytes = math.prod(handle.chunks) * handle.dtype.itemsize
        direct = sys.byteorder == "little" and out.dtype == handle.dtype
        flat = out.reshape(-1).view(np.uint8)
        reads = []
        for index in handle.chunk_indices(region):
            where = values.get(_zarr.chunk_key(handle.param, index).encode())
            length = len(where) if isinstance(where, bytes) else getattr(where, "length", 0)
            if where is None or length != chunk_bytes:
                what = "is missing from the store" if where is None else (
                    f"holds {length} bytes, expected {chunk_bytes}")
                raise ValueError(f"chunk {index} of {handle.param!r} {what}")
            start = [i * c for i, c in zip(index, handle.chunks)]
            src, dst = _overlap(region, start, handle.chunks)
            if isinstance(where, bytes):  # a tiny chunk, inline in the tree
                _copy_chunk(handle, out, src, dst, where)
            elif direct and _lands_contiguously(region, start, handle.chunks):
                offset = sum(d.start * s for d, s in zip(dst, out.strides))
                reads.append(self._files.read_into(
                    where, memoryview(flat[offset:offset + chunk_bytes])))
            else:
                reads.append(self._files.read_then(
                    where, functools.partial(_copy_chunk, handle, out, src, dst)))
        return reads

    def _values(self) -> dict[bytes, _locate.Location]:
        """Where every value lies (found once per load, on the first chunk read)."""
        if self._located is None:
            self._located = _locate.locate_values(self._dir, self._context)
        return self._located

    def close(self) -> None:
        """Ends this load's reads: waits for those in flight and closes the data files."""
        if self._files is not None:
            self._files.close()
            self._files = None

    def __enter__(self) -> ArrayReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def list_keys(item_dir: str) -> list[bytes]:
    """Every key of the OCDBT database in `item_dir` (no value is read)."""
    spec = kvstore.kvstore_spec(item_dir, use_ocdbt=True)
    return ts.KvStore.open(spec, context=kvstore.new_context()).result().list().result()


def _overlap(region: Region, start: Sequence[int], chunks: Sequence[int]):
    """(slices into the chunk, slices into the result) of where the two overlap."""
    src, dst = [], []
    for (a, b), s, c in zip(region, start, chunks):
        lo, hi = max(a, s), min(b, s + c)
        src.append(slice(lo - s, hi - s))
        dst.append(slice(lo - a, hi - a))
    return tuple(src), tuple(dst)


def _lands_contiguously(region: Region, start: Sequence[int], chunks: Sequence[int]) -> bool:
    """Whether the whole chunk lies in `region` as one contiguous run of the C-order
    result: every axis before the first longer than 1 has extent 1, every axis after it
    spans the region."""
    if any(s < a or s + c > b for (a, b), s, c in zip(region, start, chunks)):
        return False
    first = next((i for i, c in enumerate(chunks) if c != 1), len(chunks))
    return all(c == b - a for (a, b), c in zip(region[first + 1:], chunks[first + 1:]))


def _copy_chunk(handle: StoredArray, out: np.ndarray, src, dst, data) -> None:
    """Copies the `src` part of one stored chunk (little-endian C order) to `out[dst]`."""
    chunk = np.frombuffer(data, dtype=handle.dtype.newbyteorder("<")).reshape(handle.chunks)
    np.copyto(out[(*dst, ...)], chunk[(*src, ...)], casting="unsafe")

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
