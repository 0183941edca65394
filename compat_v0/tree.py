"""`compat_v0.tree` / `compat_v0.utils`: `to_shape_dtype_struct`, as in v0."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

__all__ = ["to_shape_dtype_struct"]


def to_shape_dtype_struct(arr: Any, dtype: Any = None, scalar_dtype: Any = None) -> Any:
    """The abstract form of a leaf, as v0 builds restore targets.

    A `jax.Array` (or anything with shape, dtype and sharding) becomes a
    `jax.ShapeDtypeStruct` with its sharding; a numpy array one without sharding (it
    restores as a numpy array); a scalar stays a scalar (cast by `scalar_dtype`).
    """
    if isinstance(arr, (bool, int, float, complex, np.generic, str)) and not (
            isinstance(arr, np.ndarray)):
        return scalar_dtype(arr) if scalar_dtype is not None else arr
    if isinstance(arr, np.ndarray):
        return jax.ShapeDtypeStruct(arr.shape, dtype or arr.dtype)
    return jax.ShapeDtypeStruct(tuple(arr.shape), dtype or arr.dtype,
                                sharding=getattr(arr, "sharding", None))
