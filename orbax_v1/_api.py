"""The free functions: save_pytree, load, metadata.

Each call resolves its path (layout), then hands one checkpointable directory to the
pytree save/load code, which drives the array engine.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from orbax_v1 import _commit, _files, _layout, _pytree_load, _pytree_save, _restore, errors
from orbax_v1._types import CheckpointMetadata

PYTREE_CHECKPOINTABLE = "pytree"
# The handler real Orbax v1 records for a pytree; writing it lets real Orbax load ours.
PYTREE_HANDLER = "orbax.checkpoint.experimental.v1._src.handlers.pytree_handler.PyTreeHandler"


def _abspath(path: Any) -> str:
    if path is None or (isinstance(path, str) and not path):
        raise errors.CheckpointNotFoundError("Path must not be None or empty.")
    return os.path.abspath(os.fspath(path))


def _check_custom_metadata(custom_metadata: Any) -> None:
    try:
        json.dumps(custom_metadata)
    except (TypeError, ValueError) as e:
        raise errors.InvalidArgumentError(
            f"custom_metadata must be JSON-serializable: {e}") from e


def save_pytree(path: Any, pytree: Any, *, overwrite: bool = False,
                custom_metadata: Any = None) -> None:
    """Saves `pytree` as the checkpointable `pytree` of a new checkpoint at `path`.

    The whole tree is checked before anything is written; the checkpoint appears at
    `path` only once complete (written under a temporary name, then renamed).
    Raises `CheckpointExistsError` (a `FileExistsError`) if `path` exists and
    `overwrite` is False, and `UnsupportedTreeError` for a leaf or key that cannot be
    stored, naming its key path.
    """
    path = _abspath(path)
    _check_custom_metadata(custom_metadata)
    plan = _pytree_save.plan(pytree)
    start = time.time_ns()
    with _commit.atomic_directory(path, overwrite=overwrite) as tmp:
        item = os.path.join(tmp, PYTREE_CHECKPOINTABLE)
        os.mkdir(item)
        _pytree_save.write(item, plan)
        _files.write_bytes(os.path.join(tmp, _files.V1_MARKER), b"")
        _files.write_json(os.path.join(tmp, _files.CHECKPOINT_METADATA),
                          _files.checkpoint_metadata_json(
                              {PYTREE_CHECKPOINTABLE: PYTREE_HANDLER}, custom_metadata, start))


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
    directory = _layout.resolve_pytree_dir(_abspath(path), checkpointable_name)
    stored = _pytree_load.read_stored_tree(directory)
    return _restore.restore(stored, abstract_pytree, partial_load=partial_load)


def metadata(path: Any, *, checkpointable_name: str | None = PYTREE_CHECKPOINTABLE
             ) -> CheckpointMetadata:
    """The tree of leaf metadata (shape, dtype, kind) and the checkpoint's own fields.

    Reads only metadata: no array data is read.
    """
    path = _abspath(path)
    directory = _layout.resolve_pytree_dir(path, checkpointable_name)
    stored = _pytree_load.read_stored_tree(directory)
    step = _files.read_checkpoint_metadata(path)
    return CheckpointMetadata(
        path=path,
        metadata=_restore.metadata_tree(stored),
        init_timestamp_nsecs=step.get("init_timestamp_nsecs"),
        commit_timestamp_nsecs=step.get("commit_timestamp_nsecs"),
        custom_metadata=step.get("custom_metadata"),
    )


load_pytree = load
pytree_metadata = metadata
