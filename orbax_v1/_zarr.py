"""Zarr array formats: the metadata we write and the TensorStore specs we read with.

We write zarr3 arrays with the plain `bytes` codec (no compression: weights barely
compress and zstd is where real Orbax spends its save time), encoded here directly
so that thousands of small arrays cost one key-value write each. Reading goes
through TensorStore's `zarr3` / `zarr` drivers, which understand every codec real
Orbax has written (sharding_indexed, zstd, zarr v2 compressors, per-array dirs).
"""

from __future__ import annotations

import functools
import json
import math

import ml_dtypes
import numpy as np

# Byte-aligned dtypes TensorStore's zarr3 driver stores under their numpy names.
_ZARR3_NAMES = (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "complex64", "complex128", "bfloat16",
    "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
    "float8_e4m3b11fnuz", "float8_e3m4", "float8_e8m0fnu",
)
SUPPORTED_DTYPES = {}
for _name in _ZARR3_NAMES:
    _dt = getattr(ml_dtypes, _name, None) or _name
    try:
        SUPPORTED_DTYPES[np.dtype(_dt)] = _name
    except TypeError:  # an older ml_dtypes without this float8 variant
        pass

CHUNK_TARGET_BYTES = 16 << 20  # one chunk = one stored value; bounds copies in flight


@functools.cache
def dtype_from_name(name: str) -> np.dtype:
    """The numpy dtype of a zarr3 `data_type` name we write."""
    return np.dtype(getattr(ml_dtypes, name, None) or name)


@functools.cache
def zarr3_name(dtype: np.dtype) -> str | None:
    """The zarr3 `data_type` of `dtype`, or None if we do not store it."""
    return SUPPORTED_DTYPES.get(np.dtype(dtype).newbyteorder("="))


def _fill_value(dtype: np.dtype):
    if dtype == np.bool_:
        return False
    if dtype.kind == "c":
        return [0.0, 0.0]
    if dtype.kind in "iu":
        return 0
    return 0.0


def chunk_shape(write_shape: tuple[int, ...], itemsize: int,
                target: int | None = None) -> tuple[int, ...]:
    """A chunk shape that tiles `write_shape` exactly and holds at most `target` bytes.

    Zero-size dimensions are clamped to 1 (zarr needs positive chunk sizes). The
    leading dimension is repeatedly cut by its smallest prime factor, then the next
    one, so chunks never straddle a shard boundary, never need padding, and are
    contiguous runs of the shard's bytes wherever they can be (written and read in
    place, with no reshuffling copy). A dimension whose smallest factor is large (a
    big prime) is left whole: such a chunk may exceed `target`.
    """
    return _chunk_shape(tuple(write_shape), itemsize,
                        CHUNK_TARGET_BYTES if target is None else target)


def _smallest_factor(n: int) -> int:
    if n % 2 == 0:
        return 2
    for f in range(3, math.isqrt(n) + 1, 2):
        if n % f == 0:
            return f
    return n


@functools.lru_cache(maxsize=4096)
def _chunk_shape(write_shape: tuple[int, ...], itemsize: int, target: int) -> tuple[int, ...]:
    shape = [max(1, d) for d in write_shape]
    axis = 0
    while math.prod(shape) * itemsize > target and axis < len(shape):
        factor = _smallest_factor(shape[axis])
        if shape[axis] == 1 or factor > 64:
            axis += 1
            continue
        shape[axis] //= factor
    return tuple(shape)


@functools.lru_cache(maxsize=4096)
def zarr3_metadata(shape: tuple[int, ...], dtype: np.dtype, chunks: tuple[int, ...]) -> bytes:
    """`zarr.json` of an uncompressed zarr3 array (readable by real Orbax and TensorStore)."""
    dtype = np.dtype(dtype)
    codec = {"name": "bytes"}
    if dtype.itemsize > 1:
        codec["configuration"] = {"endian": "little"}
    meta = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": list(shape),
        "data_type": zarr3_name(dtype),
        "fill_value": _fill_value(dtype),
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunks)}},
        "chunk_key_encoding": {"name": "default"},
        "codecs": [codec],
    }
    return json.dumps(meta).encode()


def key_prefix(param: str) -> str:
    """Where an array's keys start, by the rule TensorStore's zarr drivers apply to a
    kvstore path: '/' alone means the root; otherwise a '/' is added unless present."""
    if param == "/":
        return ""
    return param if not param or param.endswith("/") else param + "/"


def metadata_key(param: str) -> str:
    return key_prefix(param) + "zarr.json"


def chunk_key(param: str, chunk_index: tuple[int, ...]) -> str:
    """Key of a chunk under the zarr3 default key encoding (`c` alone for rank 0)."""
    return key_prefix(param) + "/".join(("c", *map(str, chunk_index)))


def encode_chunk(block: np.ndarray) -> bytes:
    """The stored bytes of one chunk: C order, little endian."""
    if block.dtype.byteorder == ">":
        block = block.astype(block.dtype.newbyteorder("<"))
    return np.ascontiguousarray(block).tobytes()
