"""`compat_v0.utils`: the v0 helpers call sites use."""

from compat_v0.tree import to_shape_dtype_struct as to_shape_dtype_struct

__all__ = ["to_shape_dtype_struct"]
