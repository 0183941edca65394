"""The v0 checkpoint handlers, each a recipe over an orbax_v1 handler class.

A v0 handler says how one item is saved and restored. Here each one:
- turns its save args into the value an orbax_v1 handler saves (`save_value`), and
  names that orbax_v1 handler class (`V1`), whose `TYPESTR` is the v0 handler name
  real Orbax records in `_CHECKPOINT_METADATA`, so real v0 restores what we write;
- restores an item (`restore_item`) through the public orbax_v1 loaders;
- saves directly into a path (`save_direct`), as a v0 `Checkpointer` does.
"""

from __future__ import annotations

from typing import Any

import orbax_v1
from orbax_v1 import storage
from compat_v0 import _direct, _restore_tree
from compat_v0 import args as args_lib
from compat_v0.options import (
    MultiprocessingOptions,
    check_multiprocessing_options,
    unsupported,
)

_V0 = _direct.V0_HANDLERS


class _StandardV1(orbax_v1.PyTreeHandler):
    TYPESTR = _V0 + "standard_checkpoint_handler.StandardCheckpointHandler"


class _PyTreeV1(orbax_v1.PyTreeHandler):
    TYPESTR = _V0 + "pytree_checkpoint_handler.PyTreeCheckpointHandler"


class _JsonV1(orbax_v1.JsonHandler):
    TYPESTR = _V0 + "json_checkpoint_handler.JsonCheckpointHandler"
    FILENAME = "metadata"  # v0 JsonCheckpointHandler's default file name


class MetricsV1(_JsonV1):
    """The `metrics` item of a v0 CheckpointManager step: file `metrics`, v0 JSON handler."""

    FILENAME = "metrics"

    def is_handleable(self, checkpointable: Any) -> bool:
        return False


def _check_kwargs(handler: str, given: dict, tuning: tuple[str, ...], fixed: dict) -> None:
    """Tuning knobs are accepted (they change speed, not results); `fixed` must keep defaults."""
    for name, value in given.items():
        if name == "multiprocessing_options":
            check_multiprocessing_options(value, f"{handler}.multiprocessing_options")
        elif name in fixed:
            allowed = fixed[name]
            if value not in allowed:
                raise unsupported(handler, name, value, f"only {allowed} is supported")
        elif name not in tuning:
            raise TypeError(f"{handler}() got an unexpected keyword argument {name!r}")


class CheckpointHandler:
    """Base class of the v0 handlers (v0 `ocp.CheckpointHandler`)."""

    SAVE_ARGS: type = type(None)
    RESTORE_ARGS: type = type(None)
    V1: type = type(None)

    def save_value(self, args: Any) -> Any:
        raise NotImplementedError

    def restore_item(self, path: str, name: str | None, args: Any) -> Any:
        raise NotImplementedError

    def metadata_of(self, path: str, name: str | None) -> Any:
        return None

    def save_direct(self, path: str, args: Any, *, overwrite: bool, custom_metadata: Any,
                    asynchronous: bool):
        """Saves into `path` itself; returns an `orbax_v1.AsyncResponse` or None (done)."""
        raise NotImplementedError

    def post_commit(self, path: str) -> None:
        """After a direct save committed: make the files v0's (no marker, v0 handler name)."""
        _direct.strip_marker(path)
        if isinstance(self.V1.__dict__.get("TYPESTR"), str) and issubclass(
                self.V1, orbax_v1.PyTreeHandler):
            _direct.record_handler(path, self.V1.TYPESTR)
        elif self.V1 is orbax_v1.ArrayHandler:
            _direct.record_handler(path, orbax_v1.ArrayHandler.TYPESTR)

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class _PyTreeLike(CheckpointHandler):
    MODE = "standard"

    def _item_of(self, args: Any) -> Any:
        item = _restore_tree.apply_save_args(args.item, args.save_args)
        if item is None:
            raise orbax_v1.errors.UnsupportedTreeError("Found empty item: nothing to save.")
        return item

    def save_value(self, args: Any) -> Any:
        return self._item_of(args)

    def _restore_plan(self, args: Any) -> tuple[Any, Any, bool, bool]:
        return args.item, None, False, False

    def restore_item(self, path: str, name: str | None, args: Any) -> Any:
        item, restore_args, partial, fill = self._restore_plan(args or self.RESTORE_ARGS())
        return _restore_tree.restore(
            lambda abstract, partial_load: orbax_v1.load(
                path, abstract, checkpointable_name=name, partial_load=partial_load),
            lambda: self.metadata_of(path, name), item, restore_args, mode=self.MODE,
            partial=partial, fill_missing=fill)

    def metadata_of(self, path: str, name: str | None) -> Any:
        return orbax_v1.metadata(path, checkpointable_name=name).metadata

    def save_direct(self, path, args, *, overwrite, custom_metadata, asynchronous):
        save = orbax_v1.save_pytree_async if asynchronous else orbax_v1.save_pytree
        return save(path, self.save_value(args), checkpointable_name=None, overwrite=overwrite,
                    custom_metadata=custom_metadata)


class StandardCheckpointHandler(_PyTreeLike):
    """Pytrees of arrays and scalars (no str leaves), with `StandardSave`/`StandardRestore`."""

    SAVE_ARGS, RESTORE_ARGS, V1 = args_lib.StandardSave, args_lib.StandardRestore, _StandardV1

    def __init__(self, **kwargs: Any):
        _check_kwargs("StandardCheckpointHandler", kwargs,
                      ("save_concurrent_gb", "restore_concurrent_gb", "pytree_metadata_options"),
                      {"use_ocdbt": (True,)})

    def save_value(self, args: Any) -> Any:
        item = self._item_of(args)
        _restore_tree.reject_strings(item, "StandardSave")
        return item


class PyTreeCheckpointHandler(_PyTreeLike):
    """Pytrees of arrays, scalars and strings, with `PyTreeSave`/`PyTreeRestore`.

    Files are written in zarr3 (`use_zarr3` and `use_compression` do not change that);
    real Orbax reads both zarr versions.
    """

    SAVE_ARGS, RESTORE_ARGS, V1 = args_lib.PyTreeSave, args_lib.PyTreeRestore, _PyTreeV1
    MODE = "pytree"

    def __init__(self, aggregate_filename: str | None = None, **kwargs: Any):
        if aggregate_filename is not None:
            raise unsupported("PyTreeCheckpointHandler", "aggregate_filename", aggregate_filename,
                              "msgpack aggregate files are neither written nor read")
        _check_kwargs("PyTreeCheckpointHandler", kwargs, (
            "save_concurrent_gb", "restore_concurrent_gb", "save_device_host_concurrent_gb",
            "memory_limit_options", "use_zarr3", "use_compression", "pytree_metadata_options",
            "array_metadata_validator", "enable_pinned_host_transfer", "is_prioritized_key_fn"),
            {"use_ocdbt": (True,), "type_handler_registry": (None,), "handler_impl": (None,)})

    def _restore_plan(self, args: Any) -> tuple[Any, Any, bool, bool]:
        return args.item, args.restore_args, args.partial_restore, args.transforms == {}


class JsonCheckpointHandler(CheckpointHandler):
    """JSON data in the file `metadata`, with `JsonSave`/`JsonRestore`."""

    SAVE_ARGS, RESTORE_ARGS, V1 = args_lib.JsonSave, args_lib.JsonRestore, _JsonV1

    def __init__(self, filename: str | None = None, *,
                 multiprocessing_options: MultiprocessingOptions | None = None):
        if filename not in (None, "metadata"):
            raise unsupported("JsonCheckpointHandler", "filename", filename,
                              "JSON items are stored in the file 'metadata', as v0's default")
        check_multiprocessing_options(multiprocessing_options,
                                      "JsonCheckpointHandler.multiprocessing_options")

    def save_value(self, args: Any) -> Any:
        if args.item is None:
            raise orbax_v1.errors.UnsupportedTreeError("JsonSave got item=None: nothing to save.")
        return args.item

    def restore_item(self, path: str, name: str | None, args: Any) -> Any:
        if name is None:
            return _direct.read_json(path)
        return orbax_v1.load_checkpointables(path, {name: None})[name]

    def save_direct(self, path, args, *, overwrite, custom_metadata, asynchronous):
        _direct.save_json(path, self.save_value(args), overwrite=overwrite,
                          custom_metadata=custom_metadata)


class ArrayCheckpointHandler(CheckpointHandler):
    """One array or scalar (stored as the pytree `{'checkpoint': x}`), `ArraySave`/`ArrayRestore`."""

    SAVE_ARGS, RESTORE_ARGS, V1 = args_lib.ArraySave, args_lib.ArrayRestore, orbax_v1.ArrayHandler
    KEY = "checkpoint"

    def __init__(self, checkpoint_name: str | None = None):
        if checkpoint_name not in (None, self.KEY):
            raise unsupported("ArrayCheckpointHandler", "checkpoint_name", checkpoint_name,
                              "the array is stored under the name 'checkpoint'")

    def save_value(self, args: Any) -> Any:
        return _restore_tree.apply_save_args({self.KEY: args.item},
                                             {self.KEY: args.save_args})[self.KEY]

    def restore_item(self, path: str, name: str | None, args: Any) -> Any:
        args = args or args_lib.ArrayRestore()
        wrap = (lambda x: None if x is None else {self.KEY: x})
        return _restore_tree.restore(
            lambda abstract, partial: orbax_v1.load(path, abstract, checkpointable_name=name),
            lambda: orbax_v1.metadata(path, checkpointable_name=name).metadata,
            wrap(args.item), wrap(args.restore_args), mode="standard")[self.KEY]

    def metadata_of(self, path: str, name: str | None) -> Any:
        return orbax_v1.metadata(path, checkpointable_name=name).metadata[self.KEY]

    def save_direct(self, path, args, *, overwrite, custom_metadata, asynchronous):
        save = orbax_v1.save_pytree_async if asynchronous else orbax_v1.save_pytree
        return save(path, {self.KEY: self.save_value(args)}, checkpointable_name=None,
                    overwrite=overwrite, custom_metadata=custom_metadata)


HANDLER_FOR_ARGS: dict[type, type[CheckpointHandler]] = {
    args_cls: handler
    for handler in (StandardCheckpointHandler, PyTreeCheckpointHandler, JsonCheckpointHandler,
                    ArrayCheckpointHandler)
    for args_cls in (handler.SAVE_ARGS, handler.RESTORE_ARGS)
}

_BY_RECORDED_NAME = {
    "StandardCheckpointHandler": StandardCheckpointHandler,
    "PyTreeCheckpointHandler": PyTreeCheckpointHandler,
    "PyTreeHandler": PyTreeCheckpointHandler,
    "JsonCheckpointHandler": JsonCheckpointHandler,
    "JsonHandler": JsonCheckpointHandler,
    "ArrayCheckpointHandler": ArrayCheckpointHandler,
}


def handler_class_for(args_cls: type) -> type[CheckpointHandler]:
    cls = HANDLER_FOR_ARGS.get(args_cls)
    if cls is None:
        raise orbax_v1.errors.InvalidArgumentError(
            f"compat_v0 has no handler for args of type {args_cls.__name__}; supported: "
            f"{sorted(c.__name__ for c in HANDLER_FOR_ARGS)}.")
    return cls


def handler_for_args(args: Any) -> CheckpointHandler:
    return handler_class_for(type(args))()


def handler_for_recorded(typestr: Any) -> CheckpointHandler | None:
    """The handler real Orbax recorded for an item (by class name), or None if unknown."""
    if not isinstance(typestr, str):
        return None
    cls = _BY_RECORDED_NAME.get(typestr.rpartition(".")[2])
    return cls() if cls else None


def accepts(handler: CheckpointHandler, args: Any) -> bool:
    return isinstance(args, (handler.SAVE_ARGS, handler.RESTORE_ARGS))


def item_dirs(step_dir: str) -> list[str]:
    """The items a step holds: its subdirectories, less `metrics` and unfinished ones."""
    return [n for n in storage.subdirs(step_dir)
            if n != "metrics" and _direct.TMP_SUFFIX not in n]
