"""Exact comparison of a saved tree with what `load` gave back, for the crash tests."""

from __future__ import annotations

import jax
import numpy as np


def _leaf_problem(expected, got) -> str | None:
    if isinstance(expected, jax.Array):  # no abstract tree: loads into host memory
        if type(got) is not np.ndarray:
            return f"expected a saved jax.Array to load as np.ndarray, got {type(got)}"
    elif type(got) is not type(expected):
        return f"expected type {type(expected)}, got {type(got)}"
    if isinstance(expected, (str, bool, int, float)) and not isinstance(expected, np.generic):
        return None if got == expected else f"expected {expected!r}, got {got!r}"
    e, g = np.asarray(expected), np.asarray(got)
    if e.dtype != g.dtype or e.shape != g.shape:
        return f"expected {e.dtype}{e.shape}, got {g.dtype}{g.shape}"
    return None if np.array_equal(e, g) else f"expected {e!r}, got {g!r}"


def tree_problem(expected, got) -> str | None:
    """None when `got` equals `expected` exactly (structure, leaf types, dtypes, values)."""
    e_leaves, e_def = jax.tree_util.tree_flatten_with_path(expected)
    g_leaves, g_def = jax.tree_util.tree_flatten_with_path(got)
    if e_def != g_def:
        return f"tree structure differs: expected {e_def}, got {g_def}"
    for (keypath, e), (_, g) in zip(e_leaves, g_leaves):
        problem = _leaf_problem(e, g)
        if problem:
            return f"leaf {jax.tree_util.keystr(keypath)}: {problem}"
    return None
