"""The handlers every checkpoint can use: pytrees, JSON data and v0 single arrays.

Each records the handler name real Orbax records, so real Orbax loads what we write,
and accepts the names real Orbax v0 and v1 recorded, so we load what it wrote.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import attrs
import jax
import numpy as np

from orbax_v1 import (_files, _layout, _multihost, _pytree, _pytree_load, _pytree_save, _restore,
                      _types, errors)
from orbax_v1 import handlers
from orbax_v1._storage import files, paths

_V1 = "orbax.checkpoint.experimental.v1._src.handlers."
_ARRAY_LEAVES = (np.ndarray, jax.Array, np.generic, int, float, bool, str)


@attrs.frozen
class _EncodedJson:
    data: bytes


class JsonHandler:
    """JSON-able data in `data.json` (reads v0's `metadata` and `metrics` files too)."""

    TYPESTR = _V1 + "json_handler.JsonHandler"
    FILENAME = "data.json"
    FILENAMES = ("data.json", "metadata", "metrics")  # tried in this order on load

    def is_handleable(self, checkpointable: Any) -> bool:
        try:
            return json.loads(json.dumps(checkpointable)) == checkpointable
        except (TypeError, ValueError):
            return False

    def is_abstract_handleable(self, abstract_checkpointable: Any) -> bool | None:
        return None

    def prepare(self, checkpointable: Any, *, copy: bool) -> _EncodedJson:
        try:
            return _EncodedJson(json.dumps(checkpointable).encode())
        except (TypeError, ValueError) as e:
            raise errors.UnsupportedTreeError(f"Not JSON-serializable: {e}") from e

    def save(self, directory: pathlib.Path, checkpointable: Any) -> None:
        if not _multihost.is_primary():
            return  # the same on every process: the primary writes it
        if not isinstance(checkpointable, _EncodedJson):  # called without prepare
            checkpointable = self.prepare(checkpointable, copy=False)
        _files.write_bytes(paths.join(paths.resolve(directory), self.FILENAME),
                           checkpointable.data)

    def load(self, directory: pathlib.Path, abstract_checkpointable: Any = None) -> Any:
        for name in self.FILENAMES:
            path = paths.join(paths.resolve(directory), name)
            if files.is_file(path):
                return _files.read_json(path, what="JSON checkpointable")
        raise errors.CorruptCheckpointError(
            f"JSON checkpointable {directory} holds none of {list(self.FILENAMES)}.")

    def metadata(self, directory: pathlib.Path) -> Any:
        return self.load(directory)


class MetricsHandler(JsonHandler):
    """Training metrics in the file `metrics`, as real Orbax's checkpointers write them.

    Only ever chosen by name (the `training.Checkpointer` uses it for `metrics`).
    """

    TYPESTR = _V1 + "json_handler.MetricsHandler"
    FILENAME = "metrics"
    FILENAMES = ("metrics", "data.json", "metadata")

    def is_handleable(self, checkpointable: Any) -> bool:
        return False


class PyTreeHandler:
    """A pytree of arrays, scalars and strings (the format real Orbax's PyTreeHandler uses)."""

    TYPESTR = _V1 + "pytree_handler.PyTreeHandler"

    def __init__(self, *, partial_load: bool = False):
        self.partial_load = partial_load

    def is_handleable(self, checkpointable: Any) -> bool:
        if _pytree.empty_kind(checkpointable) is not None or isinstance(checkpointable,
                                                                          _ARRAY_LEAVES):
            return False
        return all(isinstance(x, _ARRAY_LEAVES) for x in jax.tree.leaves(checkpointable))

    def is_abstract_handleable(self, abstract_checkpointable: Any) -> bool | None:
        if isinstance(abstract_checkpointable, _types.CheckpointMetadata):
            return True
        return isinstance(abstract_checkpointable, (dict, list, tuple)) or None

    def prepare(self, checkpointable: Any, *, copy: bool) -> _pytree_save.Plan:
        """Checks the whole tree and moves its arrays to host memory (see handlers.py)."""
        return _pytree_save.snapshot(_pytree_save.plan(checkpointable), copy=copy)

    def save(self, directory: pathlib.Path, checkpointable: Any) -> None:
        """This process's part of the tree (every process calls it)."""
        _pytree_save.write_local(paths.resolve(directory), _as_plan(checkpointable),
                                 process_index=_multihost.process_index(),
                                 primary=_multihost.is_primary(),
                                 single_process=_multihost.process_count() == 1)

    def finalize(self, directory: pathlib.Path, checkpointable: Any) -> None:
        """What is shared (the primary calls it once every process has saved)."""
        _pytree_save.write_global(paths.resolve(directory), _as_plan(checkpointable),
                                  merge=_multihost.process_count() > 1)

    def load(self, directory: pathlib.Path, abstract_checkpointable: Any = None) -> Any:
        stored = _pytree_load.read_stored_tree(paths.resolve(directory))
        return _restore.restore(stored, abstract_checkpointable, partial_load=self.partial_load)

    def metadata(self, directory: pathlib.Path) -> Any:
        return _restore.metadata_tree(_pytree_load.read_stored_tree(paths.resolve(directory)))


class ArrayHandler:
    """One array or scalar, stored as v0's ArrayCheckpointHandler does: `{'checkpoint': x}`."""

    TYPESTR = "orbax.checkpoint._src.handlers.array_checkpoint_handler.ArrayCheckpointHandler"
    KEY = "checkpoint"

    def is_handleable(self, checkpointable: Any) -> bool:
        return isinstance(checkpointable, (np.ndarray, jax.Array, np.generic, int, float, bool))

    def is_abstract_handleable(self, abstract_checkpointable: Any) -> bool | None:
        return None

    def prepare(self, checkpointable: Any, *, copy: bool) -> _pytree_save.Plan:
        return PyTreeHandler().prepare({self.KEY: checkpointable}, copy=copy)

    def save(self, directory: pathlib.Path, checkpointable: Any) -> None:
        PyTreeHandler().save(directory, self._plan(checkpointable))

    def finalize(self, directory: pathlib.Path, checkpointable: Any) -> None:
        PyTreeHandler().finalize(directory, self._plan(checkpointable))

    def _plan(self, checkpointable: Any) -> _pytree_save.Plan:
        if isinstance(checkpointable, _pytree_save.Plan):
            return checkpointable
        return self.prepare(checkpointable, copy=False)

    def load(self, directory: pathlib.Path, abstract_checkpointable: Any = None) -> Any:
        stored = _pytree_load.read_stored_tree(paths.resolve(directory))
        abstract = None if abstract_checkpointable is None else {self.KEY: abstract_checkpointable}
        return _restore.restore(stored, abstract)[self.KEY]

    def metadata(self, directory: pathlib.Path) -> Any:
        return PyTreeHandler().metadata(directory)[self.KEY]


def _as_plan(checkpointable: Any) -> _pytree_save.Plan:
    if isinstance(checkpointable, _pytree_save.Plan):
        return checkpointable
    return _pytree_save.plan(checkpointable)


def detect(directory: str) -> type | None:
    """The handler for a checkpointable whose handler was not recorded, from its files."""
    if _layout.is_pytree_dir(directory):
        return PyTreeHandler
    if _layout.is_json_dir(directory):
        return JsonHandler
    return None


# Registration order matters: among capable unnamed handlers the last one wins, so a
# dict of JSON-able values is saved as a pytree, as real Orbax does.
handlers.register_handler(JsonHandler, secondary_typestrs=("JsonCheckpointHandler",
                                                           "JsonHandler"))
handlers.register_handler(MetricsHandler, secondary_typestrs=("MetricsHandler",))
handlers.register_handler(ArrayHandler, secondary_typestrs=("ArrayCheckpointHandler",))
handlers.register_handler(PyTreeHandler, secondary_typestrs=(
    "PyTreeHandler", "PyTreeCheckpointHandler", "StandardCheckpointHandler"))
