"""Saving a pytree into one directory, in the files real Orbax's PyTreeHandler writes.

`plan()` checks the whole tree before anything touches the disk; `write()` then
streams the array data through the engine and writes the metadata files.
"""

from __future__ import annotations

import json
import math
from typing import Any, NamedTuple

import attrs
import jax
import jax.numpy as jnp
import numpy as np

from orbax_v1 import _files, _gcpause, _pytree, _zarr, errors
from orbax_v1._storage import files, paths
from orbax_v1._storage import writer as _writer
from orbax_v1._storage.format import PACK_KEY

SKELETON_KEY = "tree_structure"  # ours; real Orbax ignores unknown `_METADATA` keys
LAYOUT_KEY = "array_layout"  # ours: param -> [shape, dtype, chunk shape(, pack offset)]
PACK_MAX_BYTES = 1024
_ARRAY_VALUE_TYPES = ("jax.Array", "np.ndarray", "scalar")


class PlannedLeaf(NamedTuple):  # a tuple: trees have tens of thousands of leaves
    keys: _pytree.Keys
    key_types: tuple[int, ...]
    value_type: str  # the `_METADATA` value_type
    value: Any
    name: str  # the stored param name (`_pytree.param_name`)
    path: str  # the `_METADATA` entry key (`_pytree.keypath_str`)


@attrs.frozen
class Plan:
    leaves: list[PlannedLeaf]
    skeleton: Any
    in_host_memory: bool = False  # set by `snapshot`
    packed: dict[str, int] = attrs.field(factory=dict)  # set by `snapshot` (`pack_offsets`)
    # The host-memory plan `snapshot` made of this one, kept: the primary process's
    # `write_local` and `write_global` both need it, and it is made once.
    host: list = attrs.field(factory=list, eq=False, repr=False)


def _value_type(value: Any, where: str) -> str:
    kind = _pytree.empty_kind(value)
    if kind is not None:
        return kind
    if isinstance(value, (jax.Array, np.ndarray, np.generic)):
        dtype = np.dtype(value.dtype)
        if _zarr.zarr3_name(dtype) is None:
            raise errors.UnsupportedTreeError(
                f"Leaf {where} has dtype {dtype}, which cannot be stored; supported: "
                f"{sorted(map(str, _zarr.SUPPORTED_DTYPES))}.")
        if isinstance(value, jax.Array):
            return "jax.Array"
        return "scalar" if isinstance(value, np.generic) else "np.ndarray"
    if isinstance(value, (bool, float)):
        return "scalar"
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise errors.UnsupportedTreeError(
                f"Leaf {where} is the int {value}, which does not fit in int64.")
        return "scalar"
    if isinstance(value, str):
        return "string"
    raise errors.UnsupportedTreeError(
        f"Leaf {where} has type {type(value).__module__}.{type(value).__qualname__}, which "
        "cannot be saved. Supported leaves: jax.Array, np.ndarray, numpy scalars, int, "
        "float, bool, str, None and empty dict/list/tuple.")


@_gcpause.while_paused
def plan(tree: Any) -> Plan:
    """Checks every leaf and key of `tree`; raises before any I/O on the first problem."""
    if _pytree.empty_kind(tree) is not None:
        raise errors.UnsupportedTreeError(
            f"Nothing to save: the pytree is {tree!r}. Save a non-empty dict, list or tuple.")
    leaves, skeleton = _pytree.flatten(tree)
    if len(leaves) == 1 and leaves[0].keys == ():
        raise errors.UnsupportedTreeError(
            f"The pytree root is a single {type(tree).__name__} leaf; wrap it in a container, "
            "for example save_pytree(path, {'x': value}).")
    planned = []
    seen_paths: dict[str, _pytree.Keys] = {}
    seen_names: dict[str, _pytree.Keys] = {}
    for keys, key_types, value in leaves:
        path, name = _pytree.keypath_str(keys), _pytree.param_name(keys)
        planned.append(PlannedLeaf(keys, key_types, _value_type(value, path), value, name, path))
        stored_as = _zarr.key_prefix(name)  # 'a' and 'a/' share keys
        for table, seen in ((seen_paths, path), (seen_names, stored_as)):
            if seen in table:
                raise errors.UnsupportedTreeError(
                    f"Leaves {_pytree.keypath_str(table[seen])} and {path} would be stored "
                    f"under the same name {seen!r} (Orbax joins keys with '.', and stores "
                    "keys as strings). Rename one of them.")
            table[seen] = keys
    return Plan(planned, skeleton)


_EMPTY_VALUE_TYPES = ("None", "Dict", "List", "Tuple", "NamedTuple")
_quote = json.encoder.encode_basestring_ascii  # a JSON string literal, as json.dumps writes


def _entry_json(lf: PlannedLeaf, write_shape: tuple[int, ...] | None = None) -> str:
    """`"<path>": {"key_metadata": [...], "value_metadata": {...}}`: one leaf's member of
    `tree_metadata`, as JSON text. Written from a template rather than through dicts
    and `json.dumps`, which cost more than the rest of `write_global` for many leaves."""
    keys = ", ".join(f'{{"key": {_quote(k)}, "key_type": {t}}}'
                     for k, t in zip(lf.keys, lf.key_types))
    skip = "true" if lf.value_type in _EMPTY_VALUE_TYPES else "false"
    shape = "" if write_shape is None else f', "write_shape": [{", ".join(map(str, write_shape))}]'
    return (f'{_quote(lf.path)}: {{"key_metadata": [{keys}], "value_metadata": '
            f'{{"value_type": {_quote(lf.value_type)}, "skip_deserialize": {skip}{shape}}}}}')


@_gcpause.while_paused
def snapshot(the_plan: Plan, *, copy: bool) -> Plan:
    """The plan with every array and scalar moved to host memory (`_writer.HostArray`).

    This is the only part of a save that must run before the caller may touch its
    arrays again; with `copy=True` the caller may modify, donate or delete them. Arrays
    on an accelerator are then copied on the device instead (microseconds per GiB,
    against a second or more to the host: benchmarks/gpu_async_probe.py), and reach
    host memory when the save calls this again with `copy=False`, in the background.
    """
    if the_plan.in_host_memory:
        return the_plan
    if the_plan.host:
        return the_plan.host[0]
    device_copies = copy and any(_on_accelerator(lf.value) for lf in the_plan.leaves)
    _writer.start_device_to_host(lf.value for lf in the_plan.leaves
                                 if not (device_copies and _on_accelerator(lf.value)))
    leaves = []
    for lf in the_plan.leaves:
        value = lf.value
        if lf.value_type in _ARRAY_VALUE_TYPES and not isinstance(value, _writer.HostArray):
            if device_copies and _on_accelerator(value):
                value = jnp.copy(value)  # same sharding; donating the original is safe
            else:
                if not isinstance(value, (jax.Array, np.ndarray, np.generic)):
                    value = np.asarray(value)
                value = _writer.to_host(value, copy=copy)
            lf = PlannedLeaf(lf.keys, lf.key_types, lf.value_type, value, lf.name, lf.path)
        leaves.append(lf)
    if device_copies:
        return Plan(leaves, the_plan.skeleton)
    host = Plan(leaves, the_plan.skeleton, in_host_memory=True, packed=pack_offsets(leaves))
    if not copy:
        the_plan.host.append(host)
    return host


def _on_accelerator(value: Any) -> bool:
    """A jax.Array with a shard on a non-CPU device (GPU, TPU)."""
    return isinstance(value, jax.Array) and any(
        d.platform != "cpu" for d in value.sharding.device_set)


@_gcpause.while_paused
def write_local(directory: str, the_plan: Plan, *, process_index: int = 0,
                primary: bool = True, single_process: bool = False) -> None:
    """Writes this process's part: its shards into `ocdbt.process_<i>` and its
    `array_metadatas/process_<i>`. The primary also writes arrays every process
    holds whole (numpy arrays, scalars) and every array's zarr metadata. A
    `single_process` save also points the root manifest at its database (there is
    nothing to merge; `write_global` is then called with `merge=False`)."""
    the_plan = snapshot(the_plan, copy=False)
    writer = _writer.ArrayWriter(directory, process_index,
                                 expected_bytes=_local_bytes(the_plan, primary=primary))
    try:
        array_metadatas = _write_arrays(writer, the_plan, primary=primary)
        root = writer.close()
    except BaseException:
        writer.abort()
        raise
    if single_process and root is not None:
        _writer.share_process_database(directory, process_index, root)
    if array_metadatas:
        files.make_dirs(paths.join(directory, _files.ARRAY_METADATAS))
        files.write_json(paths.join(directory, _files.ARRAY_METADATAS, f"process_{process_index}"),
                          {"array_metadatas": array_metadatas})


def _local_bytes(the_plan: Plan, *, primary: bool) -> int:
    """How many array bytes this process writes (to size the writer's buffers)."""
    return sum(block.nbytes for lf in the_plan.leaves if lf.value_type in _ARRAY_VALUE_TYPES
               and (primary or lf.value.sharding is not None)
               for _, block in lf.value.blocks)


def _write_arrays(writer: _writer.ArrayWriter, the_plan: Plan, *, primary: bool) -> list:
    """Writes every array this process owns; returns its `array_metadatas` entries."""
    if primary and the_plan.packed:
        packed = the_plan.packed
        writer.put(PACK_KEY, b"".join(_zarr.encode_chunk(lf.value.blocks[0][1])
                                      for lf in the_plan.leaves if lf.name in packed))
    array_metadatas = []
    for lf in the_plan.leaves:
        if lf.value_type not in _ARRAY_VALUE_TYPES:
            continue
        host, name = lf.value, lf.name
        if not primary and host.sharding is None:
            continue  # the same on every process: the primary writes it
        chunks = writer.write(name, host.shape, host.dtype, host.write_shape, host.blocks,
                              write_metadata=primary)
        if lf.value_type == "jax.Array":
            array_metadatas.append({"array_metadata": {
                "param_name": name, "write_shape": list(host.write_shape),
                "chunk_shape": list(chunks), "ext_metadata": None}})
    return array_metadatas


@_gcpause.while_paused
def write_global(directory: str, the_plan: Plan, *, merge: bool = True) -> None:
    """The primary's part, once every process wrote its own: merges the per-process
    databases into the root manifest (unless `write_local` already pointed it at the
    only one) and writes `_METADATA`, `_sharding`, `_strings.json`."""
    if merge:
        _writer.merge_process_databases(directory)
    the_plan = snapshot(the_plan, copy=False)  # a no-op after write_local
    packed = the_plan.packed
    tree_metadata, shardings, strings, layout = [], {}, {}, {}
    for lf in the_plan.leaves:
        name, write_shape = lf.name, None
        if lf.value_type in _ARRAY_VALUE_TYPES:
            host = lf.value
            chunks = _zarr.chunk_shape(host.write_shape, host.dtype.itemsize)
            layout[name] = [list(host.shape), _zarr.zarr3_name(host.dtype), list(chunks)]
            if name in packed:
                layout[name].append(packed[name])
            if lf.value_type == "jax.Array":
                write_shape = host.write_shape
                encoded = _files.sharding_json(host.sharding)
                if encoded is not None:
                    shardings[_files.sharding_key(name)] = encoded
        elif lf.value_type == "string":
            strings[name] = lf.value
        tree_metadata.append(_entry_json(lf, write_shape))
    if shardings:
        files.write_json(paths.join(directory, _files.SHARDING), shardings)
    if strings:
        files.write_json(paths.join(directory, _files.STRINGS), strings)
    rest = json.dumps({
        "use_ocdbt": True,
        "use_zarr3": True,
        "store_array_data_equal_to_fill_value": True,
        "custom_metadata": None,
        SKELETON_KEY: the_plan.skeleton,
        LAYOUT_KEY: layout,
    })
    files.write_bytes(paths.join(directory, _files.PYTREE_METADATA),
                       f'{{"tree_metadata": {{{", ".join(tree_metadata)}}}, {rest[1:]}'.encode())


def pack_offsets(leaves: list[PlannedLeaf]) -> dict[str, int]:
    """Where each small whole array sits in the pack (`PACK_KEY`), by param name.

    Small arrays every process holds whole (numpy arrays and scalars, written by the
    primary) are also stored concatenated under one extra key, which real Orbax never
    reads, so that loading thousands of them costs one read. Their own zarr arrays are
    written as usual. Empty if any array's keys would collide with the pack's key.
    """
    offsets, offset = {}, 0
    for lf in leaves:
        if lf.value_type not in _ARRAY_VALUE_TYPES:
            continue
        name = lf.name
        if name == PACK_KEY or name.startswith(PACK_KEY + "/"):
            return {}
        host = lf.value
        nbytes = math.prod(host.shape) * host.dtype.itemsize
        if host.sharding is None and 0 < nbytes <= PACK_MAX_BYTES:
            offsets[name] = offset
            offset += nbytes
    return offsets
