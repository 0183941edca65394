"""The few files compat_v0 handles itself (through `orbax_v1.storage`), next to what
orbax_v1 writes.

- `_CHECKPOINT_METADATA` is read as JSON for what the public orbax_v1 metadata does
  not return: the handler names recorded per item (`item_handlers`).
- A JSON checkpoint written directly into a directory (v0
  `Checkpointer(JsonCheckpointHandler())`): orbax_v1 has no direct layout for a
  non-pytree, so the `metadata` file and `_CHECKPOINT_METADATA` are written here, through
  `orbax_v1.storage.save_files` (the same commit as every checkpoint).
- The `orbax.checkpoint` marker orbax_v1 writes in every checkpoint is removed once
  committed: a v0 layout has none.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import attrs

import orbax_v1
from orbax_v1 import storage

CHECKPOINT_METADATA = "_CHECKPOINT_METADATA"
V1_MARKER = "orbax.checkpoint"
TMP_SUFFIX = ".orbax-checkpoint-tmp"
V0_HANDLERS = "orbax.checkpoint._src.handlers."


@attrs.frozen
class StepMetadata:
    """v0 `StepMetadata`: what `_CHECKPOINT_METADATA` says, plus each item's metadata.

    Indexing (`m['a']`) reads `item_metadata`, as `Checkpointer.metadata(path)` returned
    the tree itself in Orbax before 0.12.
    """

    item_handlers: Any = None
    item_metadata: Any = None
    metrics: Any = attrs.Factory(dict)
    performance_metrics: Any = attrs.Factory(dict)
    init_timestamp_nsecs: int | None = None
    commit_timestamp_nsecs: int | None = None
    custom_metadata: Any = attrs.Factory(dict)

    def __getitem__(self, key: Any) -> Any:
        return self.item_metadata[key]


@attrs.frozen
class RootMetadata:
    """v0 `RootMetadata` of a `CheckpointManager` root (`metadata()` with no step)."""

    internal_metadata: Any = attrs.Factory(dict)
    custom_metadata: Any = attrs.Factory(dict)


def read_step_metadata(path: str) -> dict:
    """`_CHECKPOINT_METADATA` as a dict (`{}` when missing, as real Orbax reads it)."""
    file = storage.join(path, CHECKPOINT_METADATA)
    try:
        data = json.loads(storage.read_bytes(file))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise orbax_v1.errors.CorruptCheckpointError(f"{file} is unreadable: {e}") from e
    return data if isinstance(data, dict) else {}


def step_metadata(path: str, item_metadata: Any, metrics: Any = None) -> StepMetadata:
    raw = read_step_metadata(path)
    return StepMetadata(
        item_handlers=raw.get("item_handlers"), item_metadata=item_metadata,
        metrics=metrics if metrics is not None else (raw.get("metrics") or {}),
        performance_metrics=raw.get("performance_metrics") or {},
        init_timestamp_nsecs=raw.get("init_timestamp_nsecs"),
        commit_timestamp_nsecs=raw.get("commit_timestamp_nsecs"),
        custom_metadata=raw.get("custom_metadata") or {})


class Once:
    """Runs `fn` once, whichever of the background thread or a waiter gets there first.

    The other caller blocks until it has run, so `wait_until_finished()` returns only
    after the post-commit steps (marker removal, callbacks) are done.
    """

    def __init__(self, fn):
        self._fn, self._lock, self._done = fn, threading.Lock(), False

    def __call__(self, *_):
        with self._lock:
            if not self._done:
                self._done = True
                self._fn()


def strip_marker(path: str) -> None:
    """Removes the v1 marker file from a committed checkpoint (v0 layouts have none)."""
    storage.remove_file(storage.join(path, V1_MARKER))


def record_handler(path: str, typestr: str) -> None:
    """Rewrites the handler name a direct checkpoint records (atomically, file replace).

    orbax_v1's direct pytree save records v0's `PyTreeCheckpointHandler`; v0's
    `StandardCheckpointer` and array checkpointer record their own handler names. A
    crash before the rewrite leaves the PyTree name, which loads the same.
    """
    raw = read_step_metadata(path)
    if not raw or raw.get("item_handlers") == typestr:
        return
    raw["item_handlers"] = typestr
    storage.replace_bytes(storage.join(path, CHECKPOINT_METADATA), json.dumps(raw).encode())


def check_restorable(path: str) -> str:
    """v0's checks before a direct restore: the path exists and is committed."""
    path = storage.resolve(path)
    if TMP_SUFFIX in path.rstrip("/").rsplit("/", 1)[-1]:
        raise orbax_v1.errors.IncompleteCheckpointError(f"Found incomplete checkpoint at {path}.")
    if not storage.is_dir(path):
        raise orbax_v1.errors.CheckpointNotFoundError(f"Checkpoint at {path} not found.")
    if not storage.is_committed(path):
        raise orbax_v1.errors.IncompleteCheckpointError(
            f"Found incomplete checkpoint at {path}: it has no commit_success.txt.")
    return path


def save_json(path: str, data: Any, *, overwrite: bool, custom_metadata: Any) -> None:
    """A direct JSON checkpoint: `path/metadata` and `path/_CHECKPOINT_METADATA`."""
    try:
        encoded = json.dumps(data).encode()
        json.dumps(custom_metadata)
    except (TypeError, ValueError) as e:
        raise orbax_v1.errors.UnsupportedTreeError(f"Not JSON-serializable: {e}") from e
    start = time.time_ns()
    storage.save_files(path, {
        "metadata": encoded,
        CHECKPOINT_METADATA: json.dumps({
            "item_handlers": V0_HANDLERS + "json_checkpoint_handler.JsonCheckpointHandler",
            "metrics": {}, "performance_metrics": {}, "init_timestamp_nsecs": start,
            "commit_timestamp_nsecs": time.time_ns(),
            "custom_metadata": {} if custom_metadata is None else custom_metadata}).encode(),
    }, overwrite=overwrite)


def read_json(path: str) -> Any:
    for name in ("metadata", "data.json"):
        file = storage.join(path, name)
        if storage.is_file(file):
            return json.loads(storage.read_bytes(file))
    raise orbax_v1.errors.CorruptCheckpointError(f"No JSON file (metadata) in {path}.")
