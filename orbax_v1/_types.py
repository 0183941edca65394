"""Public value types: leaf metadata, checkpoint metadata and the PLACEHOLDER marker."""

from __future__ import annotations

import datetime
from typing import Any, Generic, TypeVar

import attrs
import jax
import numpy as np

T = TypeVar("T")

PLACEHOLDER = ...
"""An abstract leaf that means: do not read this leaf; the result holds `...` there."""


@attrs.frozen
class ArrayMetadata:
    """A stored array: what `metadata()` returns for it, usable as an abstract leaf.

    `kind` is `'jax'` for a saved `jax.Array` (loads as one) and `'numpy'` for a saved
    `np.ndarray`. `sharding` is the saved sharding when its devices exist here.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    kind: str = "numpy"
    sharding: jax.sharding.Sharding | None = None

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def ndim(self) -> int:
        return len(self.shape)


@attrs.frozen
class ScalarMetadata:
    """A stored scalar: `type` is `int`, `float`, `bool` or a numpy scalar type."""

    type: type
    dtype: np.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return ()


@attrs.frozen
class StringMetadata:
    """A stored Python `str`."""

    type: type = str


@attrs.frozen
class CheckpointMetadata(Generic[T]):
    """What `metadata()` returns: the tree of leaf metadata and the step-level fields."""

    path: str
    metadata: T
    init_timestamp_nsecs: int | None = None
    commit_timestamp_nsecs: int | None = None
    custom_metadata: Any = None

    @property
    def init_timestamp(self) -> datetime.datetime | None:
        return _utc(self.init_timestamp_nsecs)

    @property
    def commit_timestamp(self) -> datetime.datetime | None:
        return _utc(self.commit_timestamp_nsecs)


def _utc(nsecs: int | None) -> datetime.datetime | None:
    if nsecs is None:
        return None
    return datetime.datetime.fromtimestamp(nsecs / 1e9, tz=datetime.timezone.utc)
