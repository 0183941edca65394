"""Atomic commit: write everything under a temporary name, then rename it into place.

The temporary directory is `<parent>/<name>.orbax-checkpoint-tmp`, as real Orbax names
it, so both libraries recognise (and never load) an unfinished save. A crash at any
moment leaves at the final path either what was there before (nothing, or the old
checkpoint) or the complete new checkpoint, never a mix.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
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


def check_destination(path: str, *, overwrite: bool) -> None:
    if os.path.lexists(path) and not overwrite:
        raise errors.CheckpointExistsError(
            f"Destination {path} already exists: pass overwrite=True to replace it, or "
            "save to another path.")


def temporary_path(path: str) -> str:
    return path + TMP_SUFFIX


def create_temporary(path: str, *, overwrite: bool) -> str:
    """A fresh, empty temporary directory for a save to `path` (a leftover is removed)."""
    check_destination(path, overwrite=overwrite)
    tmp = temporary_path(path)
    if os.path.lexists(tmp):  # left by a crashed save to the same path
        shutil.rmtree(tmp)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.mkdir(tmp)
    return tmp


def publish(tmp: str, path: str) -> None:
    """Commits a complete temporary directory: `commit_success.txt`, fsync, rename."""
    _files.write_bytes(os.path.join(tmp, _files.COMMIT_SUCCESS),
                       f"Checkpoint commit was successful to {path}".encode())
    _fsync_tree_dirs(tmp)
    _replace(tmp, path)


def discard(tmp: str) -> None:
    shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(path: str, *, overwrite: bool) -> Iterator[str]:
    """Yields a fresh temporary directory; on clean exit it becomes `path`, atomically.

    On any exception the temporary directory is removed and `path` is untouched.
    """
    tmp = create_temporary(path, overwrite=overwrite)
    try:
        yield tmp
        publish(tmp, path)
    except BaseException:
        discard(tmp)
        raise


def _exchange(a: str, b: str) -> bool:
    """Swaps two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE).

    Returns False where the system cannot (another OS, an old kernel or filesystem).
    """
    fn = getattr(_libc(), "renameat2", None)
    if fn is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), b)


@functools.cache
def _libc():
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        os.remove(path)


def _replace(tmp: str, path: str) -> None:
    """Makes `tmp` appear at `path`; an existing `path` is swapped out atomically.

    With an existing `path`, both are exchanged in one step, so at every instant
    `path` holds either the old or the new checkpoint; the old one, now at the
    temporary name (which never loads), is then deleted. Where the system cannot swap,
    the old one is moved aside to a temporary name first (a crash between the two
    renames then leaves the old checkpoint only under that name).
    """
    parent = os.path.dirname(path)
    if not os.path.lexists(path):
        os.rename(tmp, path)
    elif _exchange(tmp, path):
        _fsync_dir(parent)
        _remove(tmp)
    else:
        old = f"{path}{TMP_SUFFIX}-replaced-{time.time_ns()}"
        os.rename(path, old)
        os.rename(tmp, path)
        _fsync_dir(parent)
        _remove(old)
    _fsync_dir(parent)
