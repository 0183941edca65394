"""`SaveArgs`, `RestoreArgs` and `ArrayRestoreArgs`: per-leaf save and restore settings.

The same fields and defaults as real Orbax v0. What compat_v0 does with each:

- `SaveArgs.dtype` casts the leaf before saving; `aggregate` is ignored, as real
  Orbax 0.12 ignores it; `chunk_byte_size` and `shard_axes` raise
  `UnsupportedOptionError` (orbax_v1 chooses the chunks).
- `RestoreArgs(restore_type, dtype)`: `np.ndarray` restores a numpy array of the
  stored shape, `jax.Array` a `jax.Array`, `int`/`float`/`str` that type; `dtype` casts.
- `ArrayRestoreArgs`: a `jax.Array` with `sharding` (or `mesh` + `mesh_axes`), shape
  `global_shape` (or the target's, or the stored one) and `dtype`. `strict=False`
  (padding or truncating) raises `UnsupportedOptionError`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from compat_v0.options import unsupported


@dataclasses.dataclass
class SaveArgs:
    aggregate: bool = False
    dtype: Any = None
    chunk_byte_size: int | None = None
    shard_axes: tuple[int, ...] = ()

    def __post_init__(self):
        if self.chunk_byte_size is not None:
            raise unsupported("SaveArgs", "chunk_byte_size", self.chunk_byte_size,
                              "orbax_v1 chooses the chunk shapes (one chunk per shard)")
        if tuple(self.shard_axes):
            raise unsupported("SaveArgs", "shard_axes", self.shard_axes,
                              "orbax_v1 chooses the chunk shapes (one chunk per shard)")


@dataclasses.dataclass
class RestoreArgs:
    restore_type: Any = None
    dtype: Any = None


@dataclasses.dataclass
class ArrayRestoreArgs(RestoreArgs):
    restore_type: Any = jax.Array
    mesh: Any = None
    mesh_axes: Any = None
    sharding: Any = None
    global_shape: tuple[int, ...] | None = None
    shape: tuple[int, ...] | None = None
    strict: bool = True

    def __post_init__(self):
        if not self.strict:
            raise unsupported("ArrayRestoreArgs", "strict", self.strict,
                              "padding or truncating to another shape; restore the stored "
                              "shape and slice it")


__all__ = ["ArrayRestoreArgs", "RestoreArgs", "SaveArgs"]
