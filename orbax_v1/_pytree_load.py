"""Loading a pytree directory: as saved, or shaped by an abstract tree.

Reads the `_METADATA` real Orbax writes (or, when it is missing, rebuilds the tree
from the array names in the store), opens only the arrays the caller asked for, and
reads only the slices each target sharding needs.
"""

from __future__ import annotations

from typing import Any

import attrs
import jax
import numpy as np

from orbax_v1 import _files, _gcpause, _pytree, _types, errors
from orbax_v1._storage import files, paths
from orbax_v1._storage import reader as _reader
from orbax_v1._storage.format import MANIFEST
from orbax_v1._pytree_save import LAYOUT_KEY, SKELETON_KEY

DATA_TYPES = ("jax.Array", "np.ndarray", "scalar", "string")
_EMPTY_VALUES = {"None": lambda: None, "Dict": dict, "List": list, "Tuple": tuple,
                 "NamedTuple": tuple}


@attrs.frozen
class StoredLeaf:
    keys: _pytree.Keys
    key_types: tuple[int, ...]
    value_type: str
    numpy_scalar: bool = False  # saved as a numpy scalar (our skeleton says so)

    @property
    def name(self) -> str:
        return _pytree.param_name(self.keys)


@attrs.frozen
class StoredTree:
    directory: str
    leaves: dict[_pytree.Keys, StoredLeaf]
    skeleton: Any
    use_ocdbt: bool
    use_zarr3: bool
    fill_missing: bool
    custom_metadata: Any
    layout: dict | None = None  # our `array_layout`: param -> [shape, dtype, chunk shape]

    def reader(self) -> _reader.ArrayReader:
        return _reader.ArrayReader(self.directory, use_ocdbt=self.use_ocdbt,
                                   use_zarr3=self.use_zarr3, fill_missing=self.fill_missing,
                                   layout=self.layout)


def _numpy_scalar_paths(skeleton: Any, keys=()) -> set[_pytree.Keys]:
    if skeleton == "N":
        return {keys}
    if not isinstance(skeleton, dict):
        return set()
    kind, kids = skeleton["t"], skeleton.get("c", [])
    if kind in ("dict", "odict", "node"):
        names = [str(k) for k in skeleton["k"]]
    elif kind == "namedtuple":
        names = skeleton["f"]
    else:
        names = [str(i) for i in range(len(kids))]
    out: set = set()
    for name, kid in zip(names, kids):
        out |= _numpy_scalar_paths(kid, keys + (name,))
    return out


@_gcpause.while_paused
def read_stored_tree(directory: str) -> StoredTree:
    """The tree metadata of a pytree directory, without reading any array data."""
    path = paths.join(directory, _files.PYTREE_METADATA)
    try:
        meta = _files.read_json(path, what="Pytree metadata")
    except FileNotFoundError:
        return _rebuild_from_store(directory)
    try:
        skeleton = meta.get(SKELETON_KEY)
        np_scalars = _numpy_scalar_paths(skeleton)
        leaves = {}
        for entry in meta["tree_metadata"].values():
            keys = tuple(str(k["key"]) for k in entry["key_metadata"])
            key_types = tuple(int(k["key_type"]) for k in entry["key_metadata"])
            value_type = entry["value_metadata"]["value_type"]
            leaves[keys] = StoredLeaf(keys, key_types, value_type, keys in np_scalars)
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise errors.CorruptCheckpointError(
            f"Pytree metadata at {path} is malformed ({type(e).__name__}: {e}).") from e
    use_ocdbt = meta.get("use_ocdbt")
    if use_ocdbt is None:
        use_ocdbt = files.exists(paths.join(directory, MANIFEST))
    layout = meta.get(LAYOUT_KEY)
    return StoredTree(directory, leaves, skeleton, bool(use_ocdbt), bool(meta.get("use_zarr3")),
                      not meta.get("store_array_data_equal_to_fill_value", False),
                      meta.get("custom_metadata"), layout if isinstance(layout, dict) else None)


def _rebuild_from_store(directory: str) -> StoredTree:
    """No `_METADATA`: recover the arrays from the names in the OCDBT store.

    Real Orbax cannot load such a directory. Names are split on '.' into nested
    dicts; every leaf comes back as a numpy array.
    """
    try:
        keys = _reader.list_keys(directory)
    except Exception as e:  # noqa: BLE001 - any TensorStore failure means unreadable
        raise errors.CorruptCheckpointError(
            f"{directory} has no {_files.PYTREE_METADATA} and its array store cannot be "
            f"read either: {e}") from e
    leaves, use_zarr3 = {}, True
    for key in (k.decode() for k in keys):
        for suffix, zarr3 in (("/zarr.json", True), ("/.zarray", False)):
            if key.endswith(suffix):
                use_zarr3 = zarr3
                parts = tuple(key[: -len(suffix)].split("."))
                leaves[parts] = StoredLeaf(parts, (_pytree.DICT_KEY,) * len(parts), "np.ndarray")
    if not leaves:
        raise errors.CorruptCheckpointError(
            f"{directory} has no {_files.PYTREE_METADATA} and no arrays in its store.")
    return StoredTree(directory, leaves, None, True, use_zarr3, False, None)


def read_strings(stored: StoredTree) -> dict[str, str]:
    if not any(lf.value_type == "string" for lf in stored.leaves.values()):
        return {}
    return _files.read_json(paths.join(stored.directory, _files.STRINGS), what="Strings file")


def saved_shardings(stored: StoredTree) -> dict[str, jax.sharding.Sharding | None]:
    """The `_sharding` entries whose devices exist here (a missing file is not an error)."""
    try:
        raw = _files.read_json(paths.join(stored.directory, _files.SHARDING),
                               what="Sharding file")
    except (FileNotFoundError, errors.CorruptCheckpointError):
        return {}
    if not isinstance(raw, dict):
        return {}
    out = {}
    for lf in stored.leaves.values():
        text = raw.get(_files.sharding_key(lf.name))
        if lf.value_type == "jax.Array" and isinstance(text, str):
            out[lf.name] = _files.sharding_from_json(text)
    return out


def open_arrays(stored: StoredTree, reader: _reader.ArrayReader,
                leaves: list[StoredLeaf]) -> dict[_pytree.Keys, _reader.ArrayHandle]:
    """Opens the arrays of `leaves` concurrently; a damaged one is a typed error."""
    opening = reader.open([lf.name for lf in leaves])
    out = {}
    for lf in leaves:
        try:
            out[lf.keys] = opening[lf.name]()
        except Exception as e:  # noqa: BLE001 - TensorStore raises ValueError and others
            raise errors.CorruptCheckpointError(
                f"Array {_pytree.keypath_str(lf.keys)} in {stored.directory} cannot be opened: "
                f"{e}") from e
    return out


def leaf_metadata(lf: StoredLeaf, handle: _reader.ArrayHandle, sharding) -> Any:
    """Public metadata of one stored leaf (from its opened array; no data read)."""
    if lf.value_type == "string":
        return _types.StringMetadata()
    shape, dtype = handle.shape, handle.dtype
    if lf.value_type == "scalar":
        if lf.numpy_scalar:
            return _types.ScalarMetadata(dtype.type, dtype)
        py = bool if dtype == np.bool_ else int if dtype.kind in "iu" else (
            complex if dtype.kind == "c" else float)
        return _types.ScalarMetadata(py, dtype)
    kind = "jax" if lf.value_type == "jax.Array" else "numpy"
    return _types.ArrayMetadata(shape, dtype, kind, sharding)


def empty_value(lf: StoredLeaf) -> Any:
    return _EMPTY_VALUES.get(lf.value_type, lambda: None)()
