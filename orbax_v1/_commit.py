"""Atomic commit: write everything under a temporary name, then rename it into place.

The temporary directory is `<parent>/<name>.orbax-checkpoint-tmp`, as real Orbax names
it, so both libraries recognise (and never load) an unfinished save. A crash at any
moment leaves either nothing at the final path or the checkpoint that was there before.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator

from orbax_v1 import _files, errors

TMP_SUFFIX = ".orbax-checkpoint-tmp"


def is_temporary(path: str) -> bool:
    """True for a directory an unfinished save left behind (any Orbax tmp naming)."""
    return TMP_SUFFIX in os.path.basename(os.path.normpath(path))


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree_dirs(root: str) -> None:
    """Makes every directory entry under `root` durable (file contents are synced on write)."""
    for dirpath, _, _ in os.walk(root):
        _fsync_dir(dirpath)


@contextlib.contextmanager
def atomic_directory(path: str, *, overwrite: bool) -> Iterator[str]:
    """Yields a fresh temporary directory; on clean exit it becomes `path`, atomically.

    On any exception the temporary directory is removed and `path` is untouched.
    """
    if os.path.lexists(path) and not overwrite:
        raise errors.CheckpointExistsError(
            f"Destination {path} already exists: pass overwrite=True to replace it, or "
            "save to another path.")
    tmp = path + TMP_SUFFIX
    if os.path.lexists(tmp):  # left by a crashed save to the same path
        shutil.rmtree(tmp)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.mkdir(tmp)
    try:
        yield tmp
        _files.write_bytes(os.path.join(tmp, _files.COMMIT_SUCCESS),
                           f"Checkpoint commit was successful to {path}".encode())
        _fsync_tree_dirs(tmp)
        _replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace(tmp: str, path: str) -> None:
    """Renames `tmp` to `path`; an existing `path` is moved aside first, then deleted."""
    parent = os.path.dirname(path)
    old = None
    if os.path.lexists(path):
        old = f"{path}{TMP_SUFFIX}-replaced-{time.time_ns()}"
        os.rename(path, old)
    os.rename(tmp, path)
    _fsync_dir(parent)
    if old is not None:
        if os.path.isdir(old) and not os.path.islink(old):
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.remove(old)
