"""The free functions of the v1 API.

Data flows one way: call site → layout resolution (`_layout`) → handler
(`_builtin_handlers`, `handlers`) → tree layer (`_pytree_save`, `_pytree_load`,
`_restore`) → storage (`_storage`: the only package that touches files and TensorStore).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orbax_v1 import _background, _checkpointables, _layout
from orbax_v1._background import AsyncResponse
from orbax_v1._builtin_handlers import PyTreeHandler
from orbax_v1._types import CheckpointMetadata

PYTREE_CHECKPOINTABLE = "pytree"


def _prepare_pytree_save(path, pytree, checkpointable_name, overwrite, custom_metadata, copy):
    if checkpointable_name is None:
        return _checkpointables.prepare_save_direct(
            path, pytree, overwrite=overwrite, custom_metadata=custom_metadata, copy=copy)
    return _checkpointables.prepare_save(
        path, {checkpointable_name: pytree}, overwrite=overwrite,
        custom_metadata=custom_metadata, handler_types={checkpointable_name: PyTreeHandler},
        copy=copy)


def save_pytree(path: Any, pytree: Any, *,
                checkpointable_name: str | None = PYTREE_CHECKPOINTABLE,
                overwrite: bool = False, custom_metadata: Any = None) -> None:
    """Saves `pytree` as the checkpointable `checkpointable_name` of a new checkpoint.

    The whole tree is checked before anything is written; the checkpoint appears at
    `path` only once complete (written under a temporary name, then renamed).
    `checkpointable_name=None` writes the pytree directly into `path`, as v0
    `StandardCheckpointer` does (load it with `checkpointable_name=None`).
    Raises `CheckpointExistsError` (a `FileExistsError`) if `path` exists and
    `overwrite` is False, and `UnsupportedTreeError` for a leaf or key that cannot be
    stored, naming its key path.
    """
    _prepare_pytree_save(path, pytree, checkpointable_name, overwrite, custom_metadata,
                         copy=False)()


def save_pytree_async(path: Any, pytree: Any, *,
                      checkpointable_name: str | None = PYTREE_CHECKPOINTABLE,
                      overwrite: bool = False, custom_metadata: Any = None
                      ) -> AsyncResponse[None]:
    """`save_pytree` that returns once the arrays are copied (to host memory; on a GPU or
    TPU, on the device, and to host memory in the background).

    Everything else (directories, metadata, TensorStore writes, fsync, the commit)
    happens on the library's background thread. When this returns, the caller may
    modify, donate or delete the arrays. Errors found before writing (bad leaves, an
    existing path) raise here; later ones are re-raised by `.result()`.
    """
    commit = _prepare_pytree_save(path, pytree, checkpointable_name, overwrite,
                                  custom_metadata, copy=True)
    return _background.submit(commit, f"save of {_checkpointables.abspath(path)}")


def save_checkpointables(path: Any, checkpointables: Mapping[str, Any], *,
                         overwrite: bool = False, custom_metadata: Any = None,
                         handlers: Mapping[str, type] | None = None) -> None:
    """Saves each named checkpointable in its own subdirectory, committed together.

    Each value goes to `handlers[name]` if given, else to the handler registered under
    its name, else to the last registered handler that can save it: pytrees to the
    pytree handler, JSON-only values that are not pytrees (a str, say) to the JSON
    handler, single arrays to the array handler. See `orbax_v1.handlers`.
    """
    _checkpointables.save(path, checkpointables, overwrite=overwrite,
                          custom_metadata=custom_metadata, handler_types=handlers)


def save_checkpointables_async(path: Any, checkpointables: Mapping[str, Any], *,
                               overwrite: bool = False, custom_metadata: Any = None,
                               handlers: Mapping[str, type] | None = None
                               ) -> AsyncResponse[None]:
    """`save_checkpointables` that returns once the data is in host memory."""
    commit = _checkpointables.prepare_save(path, checkpointables, overwrite=overwrite,
                                           custom_metadata=custom_metadata,
                                           handler_types=handlers, copy=True)
    return _background.submit(commit, f"save of {_checkpointables.abspath(path)}")


def load(path: Any, abstract_pytree: Any = None, *,
         checkpointable_name: str | None = PYTREE_CHECKPOINTABLE,
         partial_load: bool = False) -> Any:
    """Loads a pytree.

    Args:
      path: a checkpoint directory (`path/<checkpointable_name>/` holds the pytree), or,
        with `checkpointable_name=None`, a directory that holds a pytree directly (what
        v0 `StandardCheckpointer` writes).
      abstract_pytree: None to load every leaf as saved: `jax.Array` leaves come back
        as `jax.Array` (on their saved sharding when those devices exist here, else on
        the default device), `np.ndarray` leaves as `np.ndarray`, scalars as Python or
        numpy scalars, strings as `str`. Otherwise a tree whose leaves say how to load
        each one: `jax.ShapeDtypeStruct` (with or without sharding), an array, a
        scalar, a type, a `metadata()` leaf, or `PLACEHOLDER` to skip the leaf.
      checkpointable_name: the subdirectory holding the pytree; None for a direct one.
      partial_load: allow `abstract_pytree` to name only some of the stored leaves.
    """
    directory = _layout.pytree_dir(_checkpointables.abspath(path), checkpointable_name)
    return PyTreeHandler(partial_load=partial_load).load(directory, abstract_pytree)


def load_checkpointables(path: Any, abstract_checkpointables: Mapping[str, Any] | None = None
                         ) -> dict[str, Any]:
    """Loads named checkpointables: all of them, or those `abstract_checkpointables` names.

    `{name: None}` loads that checkpointable as saved, `{name: abstract}` uses the
    abstract value; names not requested are not read.
    """
    return _checkpointables.load(path, abstract_checkpointables)


def metadata(path: Any, *, checkpointable_name: str | None = PYTREE_CHECKPOINTABLE
             ) -> CheckpointMetadata:
    """The tree of leaf metadata (shape, dtype, kind) and the checkpoint's own fields.

    Reads only metadata: no array data is read.
    """
    path = _checkpointables.abspath(path)
    directory = _layout.pytree_dir(path, checkpointable_name)
    return _checkpointables.step_metadata(path, PyTreeHandler().metadata(directory))


def checkpointables_metadata(path: Any) -> CheckpointMetadata:
    """The metadata of every checkpointable, by name; reads no array data."""
    return _checkpointables.metadata(path)


def load_async(path: Any, abstract_pytree: Any = None, *,
               checkpointable_name: str | None = PYTREE_CHECKPOINTABLE,
               partial_load: bool = False) -> AsyncResponse[Any]:
    """`load` on the background thread; `.result()` returns the tree."""
    return _background.submit(
        lambda: load(path, abstract_pytree, checkpointable_name=checkpointable_name,
                     partial_load=partial_load), f"load of {path}")


def load_checkpointables_async(path: Any, abstract_checkpointables: Mapping[str, Any] | None = None
                               ) -> AsyncResponse[dict[str, Any]]:
    """`load_checkpointables` on the background thread."""
    return _background.submit(lambda: load_checkpointables(path, abstract_checkpointables),
                              f"load of {path}")


load_pytree = load
load_pytree_async = load_async
pytree_metadata = metadata
