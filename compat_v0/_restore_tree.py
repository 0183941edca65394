"""v0 restore targets and `SaveArgs`/`RestoreArgs` trees, in terms of orbax_v1.

A v0 restore gives a target tree (`item`) and/or a tree of `RestoreArgs`; orbax_v1
takes one abstract tree. `restore` matches both to the stored leaves by key path,
turns each leaf into an orbax_v1 abstract leaf with v0's meaning, loads, and builds
the result in the target's own structure (its containers and node types).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

import orbax_v1
from compat_v0 import errors
from compat_v0.options import unsupported
from compat_v0.type_handlers import ArrayRestoreArgs, RestoreArgs, SaveArgs

Keys = tuple[str, ...]
_METADATA_LEAVES = (orbax_v1.ArrayMetadata, orbax_v1.ScalarMetadata, orbax_v1.StringMetadata)
_SCALARS = (bool, int, float, complex, np.generic)


def keys_of(path: tuple) -> Keys:
    """A jax key path as strings, as orbax_v1 and real Orbax name leaves."""
    out = []
    for k in path:
        if isinstance(k, jax.tree_util.DictKey):
            out.append(str(k.key))
        elif isinstance(k, jax.tree_util.SequenceKey):
            out.append(str(k.idx))
        elif isinstance(k, jax.tree_util.GetAttrKey):
            out.append(k.name)
        else:
            out.append(str(getattr(k, "key", k)))
    return tuple(out)


def flatten(tree: Any, is_leaf: Callable[[Any], bool] | None = None):
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)
    return [(keys_of(path), leaf) for path, leaf in flat], treedef


def nest(pairs: dict[Keys, Any]) -> dict:
    root: dict = {}
    for keys, value in pairs.items():
        node = root
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return root


def _is_args_leaf(x: Any) -> bool:
    return x is None or isinstance(x, (SaveArgs, RestoreArgs))


def apply_save_args(item: Any, save_args: Any) -> Any:
    """`item` with each leaf cast to its `SaveArgs.dtype` (the only SaveArgs field that acts)."""
    if save_args is None:
        return item
    by_keys = {k: a for k, a in flatten(save_args, _is_args_leaf)[0] if a is not None}

    def cast(path, leaf):
        arg = by_keys.get(keys_of(path))
        if arg is None or arg.dtype is None:
            return leaf
        if isinstance(leaf, (jax.Array, np.ndarray)):
            return leaf.astype(arg.dtype)
        return np.asarray(leaf).astype(arg.dtype)[()]

    return jax.tree_util.tree_map_with_path(cast, item)


def reject_strings(item: Any, handler: str) -> None:
    """v0 `StandardSave` refuses str leaves; so do we, before anything is written."""
    for keys, leaf in flatten(item)[0]:
        if isinstance(leaf, str):
            raise orbax_v1.errors.UnsupportedTreeError(
                f"Unsupported type: {type(leaf)} for key {keys}: {handler} does not save str "
                "leaves (as in real Orbax v0); use PyTreeSave / PyTreeCheckpointHandler.")


def _sharding_of(arg: ArrayRestoreArgs, leaf: Any, meta: Any):
    if arg.sharding is not None:
        return arg.sharding
    if arg.mesh is not None:
        axes = arg.mesh_axes
        spec = axes if isinstance(axes, jax.sharding.PartitionSpec) else (
            jax.sharding.PartitionSpec(*(axes or ())))
        return jax.sharding.NamedSharding(arg.mesh, spec)
    return getattr(leaf, "sharding", None) or getattr(meta, "sharding", None)


def _numpy(meta: Any, dtype: Any) -> orbax_v1.ArrayMetadata:
    return orbax_v1.ArrayMetadata(tuple(meta.shape), np.dtype(dtype or meta.dtype), "numpy")


def _from_restore_args(keys: Keys, leaf: Any, arg: RestoreArgs, meta: Any, mode: str) -> Any:
    rtype, dtype = arg.restore_type, arg.dtype
    if isinstance(arg, ArrayRestoreArgs) or rtype is jax.Array:
        shape = (getattr(arg, "global_shape", None) or getattr(arg, "shape", None)
                 or getattr(leaf, "shape", None) or meta.shape)
        dtype = dtype or getattr(leaf, "dtype", None) or meta.dtype
        sharding = _sharding_of(arg, leaf, meta) if isinstance(arg, ArrayRestoreArgs) else (
            getattr(leaf, "sharding", None) or getattr(meta, "sharding", None))
        return jax.ShapeDtypeStruct(tuple(shape), dtype, sharding=sharding)
    if rtype is np.ndarray:
        return _numpy(meta, dtype)
    if rtype is str:
        return str
    if isinstance(rtype, type) and issubclass(rtype, _SCALARS):
        return rtype
    if rtype is None:
        base = meta if leaf is None else _from_leaf(keys, leaf, meta, mode)
        if dtype is not None and isinstance(base, orbax_v1.ArrayMetadata):
            return orbax_v1.ArrayMetadata(base.shape, np.dtype(dtype), base.kind, base.sharding)
        if dtype is not None and isinstance(base, jax.ShapeDtypeStruct):
            return jax.ShapeDtypeStruct(base.shape, dtype, sharding=base.sharding)
        return base
    raise unsupported("RestoreArgs", "restore_type", rtype,
                      "restore as np.ndarray, jax.Array, int, float, bool or str")


def _from_leaf(keys: Keys, leaf: Any, meta: Any, mode: str) -> Any:
    """The abstract leaf v0's `construct_restore_args` would make of a target leaf."""
    if mode == "pytree":  # PyTreeRestore without restore_args: as saved, in the target's shape
        return meta
    if isinstance(leaf, (*_METADATA_LEAVES, type)):
        return leaf
    if isinstance(leaf, jax.Array):
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding)
    if isinstance(leaf, jax.ShapeDtypeStruct):
        if leaf.sharding is not None:
            return leaf
        if isinstance(meta, orbax_v1.ArrayMetadata) and meta.kind == "jax":
            return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=meta.sharding)
        return _numpy(meta, leaf.dtype)  # v0: a numpy array of that dtype
    if isinstance(leaf, np.ndarray):
        return _numpy(meta, leaf.dtype)  # v0 ignores a numpy target's shape
    if isinstance(leaf, _SCALARS):
        return leaf
    raise orbax_v1.errors.UnsupportedTreeError(
        f"Unsupported type: {type(leaf)} for key {keys} in the restore target; use "
        "jax.ShapeDtypeStruct, an array, a scalar, a str, a type or a metadata leaf.")


def _abstract_leaf(keys: Keys, leaf: Any, arg: Any, meta: Any, mode: str) -> Any:
    if leaf is ... or arg is ...:
        return ...
    if isinstance(meta, orbax_v1.StringMetadata):
        return str
    if arg is not None:
        return _from_restore_args(keys, leaf, arg, meta, mode)
    return meta if leaf is None else _from_leaf(keys, leaf, meta, mode)


def restore(load: Callable[[Any, bool], Any], metadata: Callable[[], Any], item: Any,
            restore_args: Any, *, mode: str, partial: bool = False,
            fill_missing: bool = False) -> Any:
    """Loads through `load(abstract, partial_load)` with v0's meaning of item/restore_args.

    `mode` is 'standard' (`StandardRestore`: target leaves say how to load) or 'pytree'
    (`PyTreeRestore`: the target gives the structure, `restore_args` the types).
    `fill_missing` (the legacy empty `transforms`) takes leaves the checkpoint lacks
    from the target.
    """
    if item is None and restore_args is None:  # as saved, jax.Arrays on their saved shardings
        return load(metadata(), False)
    if item is None:
        pairs, treedef = flatten(restore_args, lambda x: isinstance(x, RestoreArgs))
        pairs = [(k, None) for k, _ in pairs]
    else:
        pairs, treedef = flatten(item)
    args = {} if restore_args is None else dict(flatten(restore_args, _is_args_leaf)[0])
    stored = dict(flatten(metadata())[0])
    absent = [k for k, _ in pairs if k not in stored]
    if absent and not fill_missing:
        raise errors.TreeMismatchError(
            f"The restore target has leaves the checkpoint does not hold: {absent}. Pass "
            "restore_kwargs={'transforms': {}} to take them from the target.",
            unexpected=absent)
    abstract = {k: _abstract_leaf(k, leaf, args.get(k), stored[k], mode)
                for k, leaf in pairs if k in stored}
    partial_load = partial or fill_missing
    loaded = dict(flatten(load(nest(abstract), partial_load))[0]) if (
        abstract or not partial_load) else {}
    return jax.tree_util.tree_unflatten(
        treedef, [loaded[k] if k in stored else leaf for k, leaf in pairs])
