"""The option classes v0's `CheckpointManagerOptions` and checkpointers take.

Same fields and defaults as real Orbax v0. compat_v0 runs single-process, in one
library background thread; a value it cannot honour raises `UnsupportedOptionError`
naming the field (see `check_*` below and docs/migration.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from compat_v0.errors import UnsupportedOptionError


@dataclasses.dataclass
class AsyncOptions:
    timeout_secs: int = 1200
    barrier_sync_fn: Any = None
    post_finalization_callback: Callable[[], None] | None = None
    create_directories_asynchronously: bool = True


@dataclasses.dataclass
class MultiprocessingOptions:
    primary_host: int | None = 0
    active_processes: set[int] | None = None
    barrier_sync_key_prefix: str | None = None


@dataclasses.dataclass(frozen=True)
class FileOptions:
    path_permission_mode: int | None = None


@dataclasses.dataclass(frozen=True)
class AtomicityOptions:
    mode: str = "auto"
    allow_legacy_atomic_rename: bool = False


def unsupported(where: str, field: str, value: Any, why: str) -> UnsupportedOptionError:
    return UnsupportedOptionError(f"{where}.{field}={value!r} is not supported by compat_v0: "
                                  f"{why}. See docs/migration.md.")


def check_async_options(options: AsyncOptions | None, where: str = "AsyncOptions") -> None:
    if options is None:
        return
    if options.barrier_sync_fn is not None:
        raise unsupported(where, "barrier_sync_fn", options.barrier_sync_fn,
                          "saves are single-process; there is no barrier to sync")


def check_multiprocessing_options(options: MultiprocessingOptions | None,
                                  where: str = "MultiprocessingOptions") -> None:
    if options is None:
        return
    defaults = MultiprocessingOptions()
    for field in ("primary_host", "active_processes", "barrier_sync_key_prefix"):
        value = getattr(options, field)
        if value != getattr(defaults, field):
            raise unsupported(where, field, value, "compat_v0 saves from one process "
                              "(the primary host, process 0)")


def check_file_options(options: FileOptions | None, where: str = "FileOptions") -> None:
    if options is not None and options.path_permission_mode is not None:
        raise unsupported(where, "path_permission_mode", options.path_permission_mode,
                          "directories are created with the process umask")


def check_atomicity_options(options: AtomicityOptions | None,
                            where: str = "AtomicityOptions") -> None:
    if options is not None and options != AtomicityOptions():
        raise unsupported(where, "atomicity_options", options,
                          "every save is an atomic rename of a temporary directory")
