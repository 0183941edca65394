"""v0 checkpointers: one checkpoint at one path, saved by one handler.

`Checkpointer(handler)` saves synchronously, `AsyncCheckpointer(handler)` returns once
the arrays are in host memory and commits on orbax_v1's background thread.
`StandardCheckpointer()` and `PyTreeCheckpointer()` are the usual shorthands. The
layout is v0's: a pytree (or JSON, or one array) directly in the path, or one
subdirectory per item with `CompositeCheckpointHandler`.
"""

from __future__ import annotations

from typing import Any

import orbax_v1
from orbax_v1 import storage
from compat_v0 import _direct, _handlers, errors
from compat_v0.args import CheckpointArgs
from compat_v0.options import (
    AsyncOptions,
    check_async_options,
    check_atomicity_options,
    check_file_options,
    check_multiprocessing_options,
    unsupported,
)


def _check_common(where: str, multiprocessing_options=None, file_options=None,
                  atomicity_options=None, checkpoint_metadata_store=None,
                  temporary_path_class=None) -> None:
    check_multiprocessing_options(multiprocessing_options, f"{where}.multiprocessing_options")
    check_file_options(file_options, f"{where}.file_options")
    check_atomicity_options(atomicity_options, f"{where}.atomicity_options")
    for field, value in (("checkpoint_metadata_store", checkpoint_metadata_store),
                         ("temporary_path_class", temporary_path_class)):
        if value is not None:
            raise unsupported(where, field, value, "orbax_v1 owns the metadata and commit")


def _path(directory: Any) -> str:
    if directory is None or (isinstance(directory, str) and not directory):
        raise orbax_v1.errors.InvalidArgumentError("directory must not be None or empty.")
    return storage.resolve(directory)


def build_args(handler: _handlers.CheckpointHandler, cls: type, positional: tuple,
               kwargs: dict) -> Any:
    """v0's ways to say what to save or restore: `args=...`, an args object, or legacy kwargs."""
    if "args" in kwargs:
        args = kwargs.pop("args")
        if positional or kwargs:
            raise orbax_v1.errors.InvalidArgumentError(
                "Pass either args=... or the legacy item and keyword arguments, not both.")
        return args
    if len(positional) == 1 and not kwargs and isinstance(positional[0], CheckpointArgs):
        return positional[0]
    if not positional and not kwargs:
        return None
    return cls(*positional, **kwargs)


class Checkpointer:
    """Saves and restores one checkpoint at a path, with `handler` (synchronously)."""

    _ASYNC = False

    def __init__(self, handler: _handlers.CheckpointHandler, *, multiprocessing_options=None,
                 file_options=None, atomicity_options=None, checkpoint_metadata_store=None,
                 temporary_path_class=None):
        if not isinstance(handler, _handlers.CheckpointHandler):
            raise orbax_v1.errors.InvalidArgumentError(
                f"Checkpointer needs a compat_v0 CheckpointHandler, got {handler!r}.")
        _check_common(type(self).__name__, multiprocessing_options, file_options,
                      atomicity_options, checkpoint_metadata_store, temporary_path_class)
        self._handler = handler

    @property
    def handler(self) -> _handlers.CheckpointHandler:
        return self._handler

    def save(self, directory: Any, *args: Any, force: bool = False,
             custom_metadata: dict | None = None, **kwargs: Any) -> None:
        """Saves to `directory`; an existing one is replaced only with `force=True`.

        Raises `DestinationExistsError` (a `ValueError` and a `FileExistsError`) if
        `directory` exists and `force` is False.
        """
        path = _path(directory)
        save_args = build_args(self._handler, self._handler.SAVE_ARGS, args, kwargs)
        if save_args is None:
            raise orbax_v1.errors.InvalidArgumentError("Nothing to save: pass args=... or an item.")
        self._before_save()
        if storage.exists(path) and not force:
            raise errors.DestinationExistsError(f"Destination {path} already exists.")
        response = self._handler.save_direct(path, save_args, overwrite=force,
                                             custom_metadata=custom_metadata,
                                             asynchronous=self._ASYNC)
        self._after_save(path, response)

    def _before_save(self) -> None:
        pass

    def _after_save(self, path: str, response: Any) -> None:
        self._handler.post_commit(path)

    def restore(self, directory: Any, *args: Any, **kwargs: Any) -> Any:
        """Restores what `directory` holds (shaped by `args`/the legacy item, if given)."""
        self.wait_until_finished()
        path = _direct.check_restorable(_path(directory))
        restore_args = build_args(self._handler, self._handler.RESTORE_ARGS, args, kwargs)
        return self._handler.restore_item(path, None, restore_args)

    def metadata(self, directory: Any) -> _direct.StepMetadata:
        """`_CHECKPOINT_METADATA` and the item's metadata (no array data is read)."""
        self.wait_until_finished()
        path = _direct.check_restorable(_path(directory))
        return _direct.step_metadata(path, self._handler.metadata_of(path, None))

    def wait_until_finished(self) -> None:
        pass

    def check_for_errors(self) -> None:
        pass

    def close(self) -> None:
        self.wait_until_finished()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class AsyncCheckpointer(Checkpointer):
    """`save` returns once the data is in host memory; the commit runs in the background.

    One save is in flight at a time: a new save first waits for the previous one.
    `wait_until_finished()` blocks until committed and re-raises a background error.
    """

    _ASYNC = True

    def __init__(self, handler: _handlers.CheckpointHandler, timeout_secs: int | None = None, *,
                 async_options: AsyncOptions | None = None, multiprocessing_options=None,
                 file_options=None, atomicity_options=None, checkpoint_metadata_store=None,
                 temporary_path_class=None):
        super().__init__(handler, multiprocessing_options=multiprocessing_options,
                         file_options=file_options, atomicity_options=atomicity_options,
                         checkpoint_metadata_store=checkpoint_metadata_store,
                         temporary_path_class=temporary_path_class)
        async_options = async_options or AsyncOptions()
        check_async_options(async_options, f"{type(self).__name__}.async_options")
        self._timeout = timeout_secs or async_options.timeout_secs
        self._callback = async_options.post_finalization_callback
        self._pending: tuple[str, Any, _direct.Once] | None = None

    def _before_save(self) -> None:
        self.wait_until_finished()

    def _after_save(self, path: str, response: Any) -> None:
        if response is None:  # saved synchronously (JSON)
            self._committed(path)
            return
        committed = _direct.Once(lambda: self._committed(path))
        self._pending = (path, response, committed)
        response.on_complete(committed)

    def _committed(self, path: str) -> None:
        self._handler.post_commit(path)
        if self._callback is not None and storage.is_dir(path):
            self._callback()

    @property
    def timeout_secs(self) -> int:
        return self._timeout

    def is_saving_in_progress(self) -> bool:
        return self._pending is not None and not self._pending[1].done()

    def wait_until_finished(self) -> None:
        finish_pending(self)

    def check_for_errors(self) -> None:
        if self._pending is not None and self._pending[1].done():
            self.wait_until_finished()


class StandardCheckpointer(AsyncCheckpointer):
    """`AsyncCheckpointer(StandardCheckpointHandler())`: save and restore pytrees."""

    def __init__(self, *, async_options: AsyncOptions | None = None, multiprocessing_options=None,
                 file_options=None, atomicity_options=None, checkpoint_metadata_store=None,
                 temporary_path_class=None, **handler_kwargs: Any):
        super().__init__(_handlers.StandardCheckpointHandler(**handler_kwargs),
                         async_options=async_options,
                         multiprocessing_options=multiprocessing_options,
                         file_options=file_options, atomicity_options=atomicity_options,
                         checkpoint_metadata_store=checkpoint_metadata_store,
                         temporary_path_class=temporary_path_class)

    def save(self, directory: Any, state: Any = None, *, save_args: Any = None,
             force: bool = False, custom_metadata: dict | None = None, args: Any = None) -> None:
        if args is None:
            args = self._handler.SAVE_ARGS(state, save_args=save_args)
        super().save(directory, args=args, force=force, custom_metadata=custom_metadata)

    def restore(self, directory: Any, target: Any = None, *, strict: bool = True,
                args: Any = None) -> Any:
        if args is None:
            args = self._handler.RESTORE_ARGS(target, strict=strict)
        return super().restore(directory, args=args)


class PyTreeCheckpointer(Checkpointer):
    """`Checkpointer(PyTreeCheckpointHandler())`: synchronous pytree saves."""

    def __init__(self, primary_host: int | None = 0, use_ocdbt: bool = True,
                 use_zarr3: bool = False, use_compression: bool = True):
        if primary_host != 0:
            raise unsupported("PyTreeCheckpointer", "primary_host", primary_host,
                              "compat_v0 saves from process 0")
        super().__init__(_handlers.PyTreeCheckpointHandler(
            use_ocdbt=use_ocdbt, use_zarr3=use_zarr3, use_compression=use_compression))


def finish_pending(owner) -> bool:
    """Waits for `owner._pending`, a `(path, response, committed)` save, then runs its
    post-commit step; False if nothing was pending.

    A failure is raised once (the save is no longer pending); on TimeoutError the save
    is still in flight and stays pending, so a later wait can finish it.
    """
    pending, owner._pending = owner._pending, None
    if pending is None:
        return False
    _, response, committed = pending
    try:
        response.result(timeout=owner._timeout)
    except TimeoutError:
        owner._pending = pending
        raise
    committed()
    return True
