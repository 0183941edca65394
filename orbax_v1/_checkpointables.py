"""Saving and loading named checkpointables: one subdirectory each, one handler each.

`save_checkpointables` checks every checkpointable before anything is written, then
writes them all into one temporary directory that is committed atomically. The
loaders resolve the path through the compatibility matrix (`_layout`) and load each
checkpointable with the handler recorded for it in `_CHECKPOINT_METADATA`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from etils import epath

from orbax_v1 import _builtin_handlers, _files, _layout, _multihost, errors, handlers
from orbax_v1._storage import commit as _commit
from orbax_v1._storage import files, paths
from orbax_v1._types import CheckpointMetadata

# What real Orbax v0 records for a pytree saved directly into a directory.
_V0_PYTREE_HANDLER = "orbax.checkpoint._src.handlers.pytree_checkpoint_handler.PyTreeCheckpointHandler"


def abspath(path: Any) -> str:
    """The resolved form of a user's path: absolute local, or `gs://` / `s3://`."""
    return paths.resolve(path)


def _handler_dir(path: str):
    """The directory handed to a handler: an `etils.epath.Path`, as real Orbax gives
    (it keeps `gs://` and `s3://` URLs whole, where `pathlib` would not)."""
    return epath.Path(path)


def _check_names(names, *, call: str) -> None:
    for name in names:
        _layout.check_name(name, call=call)
        if not isinstance(name, str) or "/" in name or name in (".", "..") or (
                _commit.is_temporary(name)):
            raise errors.InvalidArgumentError(
                f"{name!r} cannot name a checkpointable in {call}: it must be a directory name.")


def _check_custom_metadata(custom_metadata: Any) -> None:
    try:
        json.dumps(custom_metadata)
    except (TypeError, ValueError) as e:
        raise errors.InvalidArgumentError(f"custom_metadata must be JSON-serializable: {e}") from e


def prepare_save(path: Any, checkpointables: Mapping[str, Any], *, overwrite: bool = False,
                 custom_metadata: Any = None, handler_types: Mapping[str, type] | None = None,
                 copy: bool = False, reserved_ok: bool = False) -> Callable[[], None]:
    """Checks everything and takes each checkpointable's data to host memory.

    Returns the function that writes and commits the checkpoint (the part an async
    save runs in the background). With `copy=True` that function no longer depends
    on the caller's objects. Raises, before anything is written, for a bad argument,
    an unsavable value, or an existing `path` without `overwrite`.
    """
    path = abspath(path)
    if not isinstance(checkpointables, Mapping) or not checkpointables:
        raise errors.InvalidArgumentError(
            "checkpointables must be a non-empty dict of names to objects to save, got "
            f"{type(checkpointables).__name__} {checkpointables!r:.80}.")
    _check_names([n for n in checkpointables if not (reserved_ok and n == "metrics")],
                 call="save_checkpointables")
    _check_custom_metadata(custom_metadata)
    _commit.check_destination(path, overwrite=overwrite)
    registry = handlers.global_registry()
    prepared = {}
    for name, value in checkpointables.items():
        if value is None:
            raise errors.InvalidArgumentError(f"Checkpointable {name!r} is None: nothing to save.")
        handler = ((handler_types or {}).get(name) or registry.for_save(name, value))()
        if hasattr(handler, "prepare"):
            value = handler.prepare(value, copy=copy)
        prepared[name] = (handler, value)
    start = time.time_ns()

    def step_files(tmp: str) -> None:
        _files.write_bytes(paths.join(tmp, _files.V1_MARKER), b"")
        item_handlers = {n: handlers.typestr(type(h)) for n, (h, _) in prepared.items()}
        _files.write_json(paths.join(tmp, _files.CHECKPOINT_METADATA),
                          _files.checkpoint_metadata_json(item_handlers, custom_metadata, start))

    parts = [(name, handler, value) for name, (handler, value) in prepared.items()]
    return lambda: _run_save(path, overwrite, parts, step_files)


def save(path: Any, checkpointables: Mapping[str, Any], **kwargs) -> None:
    """Writes every checkpointable under `path/<name>/` and commits them together."""
    prepare_save(path, checkpointables, **kwargs)()


def prepare_save_direct(path: Any, pytree: Any, *, overwrite: bool = False,
                        custom_metadata: Any = None, copy: bool = False) -> Callable[[], None]:
    """Like `prepare_save`, for a pytree written directly into `path` (v0 direct layout)."""
    path = abspath(path)
    _check_custom_metadata(custom_metadata)
    _commit.check_destination(path, overwrite=overwrite)
    handler = _builtin_handlers.PyTreeHandler()
    plan = handler.prepare(pytree, copy=copy)
    start = time.time_ns()

    def step_files(tmp: str) -> None:
        _files.write_json(paths.join(tmp, _files.CHECKPOINT_METADATA),
                          _files.checkpoint_metadata_json(_V0_PYTREE_HANDLER, custom_metadata,
                                                          start))

    return lambda: _run_save(path, overwrite, [("", handler, plan)], step_files)


def _run_save(path: str, overwrite: bool, parts: list[tuple[str, Any, Any]],
              step_files: Callable[[str], None]) -> None:
    """Writes and commits a checkpoint; with several processes, all take part.

    The primary creates the temporary directory; every process then writes its part
    of each checkpointable (`handler.save`); the primary finalizes each one
    (`handler.finalize`), writes the step files and commits. A failure in any process
    fails the save in all of them, and the temporary directory is removed.
    """
    phases = _multihost.Phases(f"save of {path}")
    tmp = _commit.temporary_path(path)
    created = []

    def create() -> None:
        _commit.create_temporary(path, overwrite=overwrite)
        created.append(tmp)
        for name, _, _ in parts:
            if name:
                files.make_dir(paths.join(tmp, name))

    try:
        phases.run("create", create, primary_only=True)
        phases.run("write", lambda: [h.save(_handler_dir(paths.join(tmp, n) if n else tmp), v) for n, h, v in parts])

        def finish() -> None:
            for name, handler, value in parts:
                if hasattr(handler, "finalize"):
                    handler.finalize(_handler_dir(paths.join(tmp, name) if name else tmp), value)
            step_files(tmp)
            _commit.publish(tmp, path)

        phases.run("commit", finish, primary_only=True)
    except BaseException:
        if created:
            _commit.discard(tmp)
        raise


def _handler_for(layout: _layout.Layout, name: str, recorded: Any, abstract: Any):
    directory = paths.join(layout.path, name)
    typestr = recorded.get(name) if isinstance(recorded, dict) else None
    handler_type = handlers.global_registry().for_load(name, typestr, abstract)
    if handler_type is None and typestr is None:
        handler_type = _builtin_handlers.detect(directory)
    if handler_type is None:
        raise errors.InvalidLayoutError(
            f"Checkpointable {name!r} in {layout.path} was saved by handler {typestr!r}, which "
            "is not registered here; register it with orbax_v1.handlers.register_handler.")
    return handler_type()


def load(path: Any, abstract_checkpointables: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every checkpointable (or those named in `abstract_checkpointables`), by name."""
    path = abspath(path)
    if isinstance(abstract_checkpointables, CheckpointMetadata):
        abstract_checkpointables = abstract_checkpointables.metadata
    if abstract_checkpointables is not None and not isinstance(abstract_checkpointables, Mapping):
        raise errors.InvalidArgumentError(
            "abstract_checkpointables must be a dict of names to abstract values (None loads "
            f"a checkpointable as saved), got {type(abstract_checkpointables).__name__}.")
    _check_names(abstract_checkpointables or (), call="load_checkpointables")
    layout = _layout.checkpointables_dir(path)
    wanted = dict(abstract_checkpointables or dict.fromkeys(layout.names))
    absent = sorted(set(wanted) - set(layout.names))
    if absent:
        raise errors.MissingCheckpointablesError(
            f"{path} has no checkpointables {absent}; it has {list(layout.names)}.")
    recorded = _files.read_checkpoint_metadata(path).get("item_handlers")
    handlers_by_name = {n: _handler_for(layout, n, recorded, a) for n, a in wanted.items()}
    return {n: h.load(_handler_dir(paths.join(path, n)), wanted[n]) for n, h in handlers_by_name.items()}


def step_metadata(path: str, metadata: Any) -> CheckpointMetadata:
    step = _files.read_checkpoint_metadata(path)
    return CheckpointMetadata(
        path=path, metadata=metadata,
        init_timestamp_nsecs=step.get("init_timestamp_nsecs"),
        commit_timestamp_nsecs=step.get("commit_timestamp_nsecs"),
        custom_metadata=step.get("custom_metadata"))


def metadata(path: Any) -> CheckpointMetadata:
    """The metadata of every checkpointable, by name; reads no array data."""
    path = abspath(path)
    layout = _layout.checkpointables_dir(path)
    recorded = _files.read_checkpoint_metadata(path).get("item_handlers")
    return step_metadata(path, {
        n: _handler_for(layout, n, recorded, None).metadata(_handler_dir(paths.join(path, n)))
        for n in layout.names})
