"""Pytree structure: flatten a tree into key-addressed leaves and build it back.

Real Orbax names every leaf by the tuple of its keys as strings (`('params', 'w')`)
and records only whether each key indexes a sequence or a mapping, so tuples load
back as lists and int dict keys as strings. We write the same entries, plus a
*skeleton* (an extra `_METADATA` key real Orbax ignores) that records the exact
container types, so trees written here come back exactly as they were saved.
"""

from __future__ import annotations

import collections
import sys
from typing import Any, NamedTuple

import jax
import numpy as np

from orbax_v1 import errors

SEQUENCE_KEY = 1  # Orbax KeyType.SEQUENCE: a list or tuple index.
DICT_KEY = 2  # Orbax KeyType.DICT: a mapping key or an attribute name.

Keys = tuple[str, ...]

_EMPTY_KINDS = {type(None): "None", dict: "Dict", list: "List", tuple: "Tuple"}
_FAST_LEAF_TYPES = (np.ndarray, jax.Array, np.generic, int, float, bool, str, bytes)


class Leaf(NamedTuple):
    keys: Keys  # each key as a string, as real Orbax records it
    key_types: tuple[int, ...]
    value: Any


def keypath_str(keys: Keys) -> str:
    """`('a', 'b')`: the form used as the entry key in `_METADATA` and in messages."""
    return repr(tuple(keys))


def param_name(keys: Keys) -> str:
    """The TensorStore name of a leaf: its keys joined by '.', as real Orbax does."""
    return ".".join(keys)


def empty_kind(value: Any) -> str | None:
    """The `_METADATA` value_type of an empty node (None, {}, [], (), empty NamedTuple)."""
    if value is None:
        return "None"
    if isinstance(value, (dict, list, tuple)) and len(value) == 0:
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            return "NamedTuple"
        return _EMPTY_KINDS.get(type(value), "Dict" if isinstance(value, dict) else "List")
    return None


def _children(node: Any, keys: Keys) -> tuple[dict, list] | None:
    """One level of `node`: (skeleton header, [(key str, key type, child)]), or None for a leaf."""
    if isinstance(node, dict):
        out = []
        for k in node:
            if isinstance(k, bool) or not isinstance(k, (str, int)):
                raise errors.UnsupportedTreeError(
                    f"Dict key {k!r} of type {type(k).__name__} at {keypath_str(keys)} cannot be "
                    "saved: only str and int keys are supported.")
            out.append((str(k), DICT_KEY, node[k]))
        kind = "odict" if isinstance(node, collections.OrderedDict) else "dict"
        return {"t": kind, "k": list(node)}, out
    if isinstance(node, tuple) and hasattr(node, "_fields"):
        cls = type(node)
        header = {"t": "namedtuple", "n": f"{cls.__module__}:{cls.__qualname__}",
                  "f": list(node._fields)}
        return header, [(f, DICT_KEY, getattr(node, f)) for f in node._fields]
    if isinstance(node, (list, tuple)):
        kind = "tuple" if isinstance(node, tuple) else "list"
        return {"t": kind}, [(str(i), SEQUENCE_KEY, c) for i, c in enumerate(node)]
    if node is None or isinstance(node, _FAST_LEAF_TYPES):
        return None
    # Any other registered pytree node (a dataclass, a flax struct): one level via jax.
    flat, _ = jax.tree_util.tree_flatten_with_path(node, is_leaf=lambda x: x is not node)
    if len(flat) == 1 and flat[0][0] == ():
        return None
    out = [(*_key(k), child) for (k,), child in flat]
    return {"t": "node", "n": type(node).__qualname__, "k": [c[0] for c in out]}, out


def _key(k: Any) -> tuple[str, int]:
    """A jax key-path entry as (the string key we store, its `_METADATA` key type)."""
    if isinstance(k, jax.tree_util.GetAttrKey):
        return k.name, DICT_KEY
    if isinstance(k, jax.tree_util.DictKey):
        return str(k.key), DICT_KEY
    if isinstance(k, jax.tree_util.SequenceKey):
        return str(k.idx), SEQUENCE_KEY
    return str(k.key), SEQUENCE_KEY


def flatten(tree: Any) -> tuple[list[Leaf], Any]:
    """All leaves of `tree` (empty nodes included, as real Orbax records them) and its skeleton."""
    leaves: list[Leaf] = []

    def walk(node, keys, key_types):
        kind = empty_kind(node)
        level = None if kind == "None" else _children(node, keys)
        if level is None or not level[1]:
            leaves.append(Leaf(keys, key_types, node))
            if level is None:
                return "N" if isinstance(node, np.generic) else "L"
        header, kids = level
        header["c"] = [walk(c, keys + (k,), key_types + (kt,)) for k, kt, c in kids]
        return header

    skeleton = walk(tree, (), ())
    return leaves, skeleton


def _namedtuple_class(name: str, fields: list[str]):
    """The saved NamedTuple class if it is already imported, else an equivalent one.

    Nothing is imported because a checkpoint names it: loading never runs code.
    """
    module, _, qualname = name.partition(":")
    obj = sys.modules.get(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if isinstance(obj, type) and list(getattr(obj, "_fields", ())) == fields:
        return obj
    simple = qualname.rsplit(".", 1)[-1]
    return collections.namedtuple(simple if simple.isidentifier() else "Restored", fields)


def unflatten(skeleton: Any, values: dict[Keys, Any]) -> Any:
    """Build the tree described by `skeleton`, taking leaves from `values` by key path.

    Leaves absent from `values` (not requested) are left out of their container.
    """
    missing = object()

    def build(node, keys):
        if not isinstance(node, dict):
            return values.get(keys, missing)
        kind = node["t"]
        kids = node.get("c", [])
        if kind in ("dict", "odict", "node"):
            key_list = node["k"]
            built = ((k, build(c, keys + (str(k),))) for k, c in zip(key_list, kids))
            items = [(k, v) for k, v in built if v is not missing]
            return collections.OrderedDict(items) if kind == "odict" else dict(items)
        if kind == "namedtuple":
            fields = node["f"]
            vals = [build(c, keys + (f,)) for f, c in zip(fields, kids)]
            if any(v is missing for v in vals):
                return {f: v for f, v in zip(fields, vals) if v is not missing}
            return _namedtuple_class(node["n"], fields)(*vals)
        vals = [build(c, keys + (str(i),)) for i, c in enumerate(kids)]
        vals = [v for v in vals if v is not missing]
        return tuple(vals) if kind == "tuple" else vals

    out = build(skeleton, ())
    return {} if out is missing else out


def nest(entries: list[tuple[Keys, tuple[int, ...], Any]]) -> Any:
    """Build nested dicts and lists from key paths alone (checkpoints written by real Orbax)."""
    if len(entries) == 1 and entries[0][0] == ():
        return entries[0][2]
    root: dict = {}
    seq_nodes: set[int] = set()
    for keys, key_types, value in entries:
        node = root
        for i, (k, kt) in enumerate(zip(keys, key_types)):
            if kt == SEQUENCE_KEY:
                seq_nodes.add(id(node))
            if i == len(keys) - 1:
                node[k] = value
            else:
                node = node.setdefault(k, {})

    def finish(node):
        if not isinstance(node, dict):
            return node
        done = {k: finish(v) for k, v in node.items()}
        if id(node) in seq_nodes and all(k.isdigit() for k in done):
            return [done[k] for k in sorted(done, key=int)]
        return done

    return finish(root)


def abstract_leaves(abstract: Any) -> tuple[list[tuple[Keys, Any]], Any]:
    """Leaves of an abstract tree with their string key paths, and its treedef."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(abstract)
    return [(tuple(_key(k)[0] for k in path), leaf) for path, leaf in flat], treedef
