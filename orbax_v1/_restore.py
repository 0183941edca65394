"""Matching an abstract tree against a stored one, then reading what it asks for."""

from __future__ import annotations

from typing import Any

import attrs
import jax
import numpy as np

from orbax_v1 import _gcpause, _pytree, _types, errors
from orbax_v1._pytree_load import (
    DATA_TYPES, StoredLeaf, StoredTree, empty_value, leaf_metadata, open_arrays,
    read_strings, saved_shardings)

_ARRAY_TYPES = ("jax.Array", "np.ndarray", "scalar")


@attrs.frozen
class Target:
    """How one leaf is to be restored."""

    kind: str  # 'skip', 'numpy', 'jax', 'python', 'npscalar', 'string'
    dtype: Any = None
    shape: tuple[int, ...] | None = None
    sharding: Any = None
    type: Any = None


_SAVED_TARGETS = {"string": Target("string"), "npscalar": Target("npscalar"),
                  "python": Target("python"), "numpy": Target("numpy")}


def _as_saved(lf: StoredLeaf) -> Target:
    if lf.value_type == "string":
        return _SAVED_TARGETS["string"]
    if lf.value_type == "scalar":
        return _SAVED_TARGETS["npscalar" if lf.numpy_scalar else "python"]
    return _SAVED_TARGETS["numpy"]  # no target: host memory, whatever the saving topology


def _from_abstract(leaf: Any, keys: _pytree.Keys) -> Target:
    if leaf is ...:
        return Target("skip")
    if isinstance(leaf, (jax.ShapeDtypeStruct, jax.Array)):
        return Target("jax", leaf.dtype, tuple(leaf.shape), getattr(leaf, "sharding", None))
    if isinstance(leaf, np.ndarray):
        return Target("numpy", leaf.dtype, leaf.shape)
    if isinstance(leaf, _types.ArrayMetadata):
        return Target("jax" if leaf.kind == "jax" else "numpy", leaf.dtype, tuple(leaf.shape),
                      leaf.sharding)
    if isinstance(leaf, _types.ScalarMetadata):
        if issubclass(leaf.type, np.generic):
            return Target("npscalar", leaf.dtype, ())
        return Target("python", shape=(), type=leaf.type)
    if isinstance(leaf, (str, _types.StringMetadata)) or leaf is str:
        return Target("string")
    if isinstance(leaf, np.generic):
        return Target("npscalar", leaf.dtype, ())
    if isinstance(leaf, (bool, int, float, complex)):
        return Target("python", shape=(), type=type(leaf))
    if isinstance(leaf, type):
        if issubclass(leaf, np.generic):
            return Target("npscalar", np.dtype(leaf), ())
        if leaf in (bool, int, float, complex):
            return Target("python", shape=(), type=leaf)
        if issubclass(leaf, np.ndarray):
            return Target("numpy")
        if leaf is jax.Array:
            return Target("jax")
    raise errors.UnsupportedTreeError(
        f"Abstract leaf {_pytree.keypath_str(keys)} is a {type(leaf).__qualname__}, which says "
        "nothing about how to load it. Use jax.ShapeDtypeStruct, an array, a scalar, a type "
        "(np.ndarray, jax.Array, int, ...), a metadata() leaf, or PLACEHOLDER to skip it.")


def _check(lf: StoredLeaf, target: Target, store: Any) -> str | None:
    """Why `target` cannot be satisfied by the stored leaf, or None."""
    if target.kind == "skip":
        return None
    if target.kind == "string":
        return None if lf.value_type == "string" else f"expected a str, found {lf.value_type}"
    if lf.value_type not in _ARRAY_TYPES:
        return f"expected an array or scalar, found {lf.value_type}"
    found = store.shape
    if target.shape is not None and tuple(target.shape) != found:
        return f"expected shape {tuple(target.shape)}, found {found}"
    return None


def _start_read(reader, target: Target, store: Any, lf: StoredLeaf, strings: dict,
                directory: str):
    """Begins reading one leaf; returns a function that finishes it."""
    if target.kind == "string":
        value = strings.get(lf.name)
        if value is None:
            raise errors.CorruptCheckpointError(
                f"String leaf {_pytree.keypath_str(lf.keys)} is missing from the strings file "
                f"of {directory}.")
        return lambda: value
    if target.kind == "jax":
        sharding = target.sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
        return reader.read_sharded(store, sharding, target.dtype)
    read = reader.read_numpy(store, target.dtype)
    if target.kind == "numpy":
        return read
    if target.kind == "npscalar":
        return lambda: read()[()]
    if target.type is None:
        return lambda: read().item()
    return lambda: target.type(read().item())


def _read_all(stored: StoredTree, wanted: list[tuple[StoredLeaf, Target]]) -> list[Any]:
    with stored.reader() as reader:  # closes the data files when the load ends
        return _read_with(reader, stored, wanted)


@_gcpause.while_paused
def _start_reads(reader, stored: StoredTree, wanted: list[tuple[StoredLeaf, Target]]) -> list:
    """Opens, checks and starts every read: Python work per leaf, so the collector is
    paused. Waiting for the reads (`_read_with`) is not: with the collector paused
    there too, loads of large arrays measured several times slower
    (benchmarks/save_load.py (b), "warm": 1.35-1.5 s against 0.13-0.2 s), for
    reasons not yet pinned down."""
    to_open = [lf for lf, t in wanted if t.kind not in ("skip", "string")]
    stores = open_arrays(stored, reader, to_open)
    problems = []
    for lf, target in wanted:
        why = _check(lf, target, stores.get(lf.keys))
        if why:
            problems.append((lf.keys, why))
    if problems:
        lines = "\n".join(f"  {_pytree.keypath_str(k)}: {why}" for k, why in problems)
        raise errors.TreeMismatchError(
            f"The abstract tree does not match the checkpoint at {stored.directory}:\n{lines}",
            mismatched=problems)
    strings = read_strings(stored) if any(t.kind == "string" for _, t in wanted) else {}
    finishers = []
    for lf, target in wanted:
        if target.kind == "skip":
            finishers.append(lambda: ...)
        else:
            finishers.append(_start_read(reader, target, stores.get(lf.keys), lf, strings,
                                         stored.directory))
    return finishers


def _read_with(reader, stored: StoredTree, wanted: list[tuple[StoredLeaf, Target]]) -> list[Any]:
    finishers = _start_reads(reader, stored, wanted)
    out = []
    for (lf, _), finish in zip(wanted, finishers):
        try:
            out.append(finish())
        except errors.CheckpointError:
            raise
        except Exception as e:  # noqa: BLE001 - TensorStore read failures
            raise errors.CorruptCheckpointError(
                f"Array {_pytree.keypath_str(lf.keys)} in {stored.directory} cannot be read: "
                f"{e}") from e
    return out


def restore(stored: StoredTree, abstract: Any = None, *, partial_load: bool = False) -> Any:
    """The stored tree, as saved (`abstract=None`) or in the shape of `abstract`."""
    if isinstance(abstract, _types.CheckpointMetadata):
        abstract = abstract.metadata
    if abstract is None:
        data = [lf for lf in stored.leaves.values() if lf.value_type in DATA_TYPES]
        values = dict(zip([lf.keys for lf in data],
                          _read_all(stored, [(lf, _as_saved(lf)) for lf in data])))
        return _build(stored, values)
    flat, treedef = _pytree.abstract_leaves(abstract)
    data_keys = {k for k, lf in stored.leaves.items() if lf.value_type in DATA_TYPES}
    asked = {keys for keys, _ in flat}
    missing = [] if partial_load else sorted(data_keys - asked)
    unexpected = sorted(asked - data_keys)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append("  stored but absent from the abstract tree (pass partial_load=True "
                         "to load a subset): " + ", ".join(map(_pytree.keypath_str, missing)))
        if unexpected:
            parts.append("  in the abstract tree but not stored: "
                         + ", ".join(map(_pytree.keypath_str, unexpected)))
        raise errors.TreeMismatchError(
            f"The abstract tree does not match the checkpoint at {stored.directory}:\n"
            + "\n".join(parts), missing=missing, unexpected=unexpected)
    wanted = [(stored.leaves[keys], _from_abstract(leaf, keys)) for keys, leaf in flat]
    return jax.tree_util.tree_unflatten(treedef, _read_all(stored, wanted))


@_gcpause.while_paused
def _build(stored: StoredTree, values: dict) -> Any:
    for keys, lf in stored.leaves.items():
        if lf.value_type not in DATA_TYPES:
            values[keys] = empty_value(lf)
    if stored.skeleton is not None:
        return _pytree.unflatten(stored.skeleton, values)
    return _pytree.nest([(k, lf.key_types, values[k]) for k, lf in stored.leaves.items()])


@_gcpause.while_paused
def metadata_tree(stored: StoredTree) -> Any:
    """The tree of leaf metadata (shape, dtype, kind); opens arrays, reads no data."""
    shardings = saved_shardings(stored)
    data = [lf for lf in stored.leaves.values() if lf.value_type in ("jax.Array", "np.ndarray",
                                                                     "scalar")]
    stores = open_arrays(stored, stored.reader(), data)
    values = {lf.keys: leaf_metadata(lf, stores[lf.keys], shardings.get(lf.name)) for lf in data}
    for lf in stored.leaves.values():
        if lf.value_type == "string":
            values[lf.keys] = _types.StringMetadata()
    return _build(stored, values)
