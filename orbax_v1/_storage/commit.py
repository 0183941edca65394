"""Commit: a checkpoint becomes visible all at once, or not at all.

Local disk (real Orbax's `AtomicRenameTemporaryPath`): everything is written under
`<parent>/<name>.orbax-checkpoint-tmp`, then `commit_success.txt` is written, every
directory synced, and the temporary directory renamed into place. Both libraries
recognise (and never load) the temporary name. A crash at any moment leaves at the
final path either what was there before or the complete new checkpoint.

Object stores (`CommitFileTemporaryPath`; there is no rename): everything is written
straight under the final prefix and `commit_success.txt` is written last. A prefix
without it is not a checkpoint: loads refuse it and step listings skip it. Replacing
a checkpoint (`overwrite=True`) or deleting one removes its `commit_success.txt`
first, so at no moment does a prefix load as a mixture of two checkpoints.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import time

from orbax_v1 import errors
from orbax_v1._storage import files, format, libc, objects
from orbax_v1._storage.paths import is_remote, join

TMP_SUFFIX = format.TMP_SUFFIX


def is_temporary(path: str) -> bool:
    """True for a directory an unfinished save left behind (any Orbax tmp naming)."""
    return TMP_SUFFIX in os.path.basename(os.path.normpath(path))


def is_committed(path: str) -> bool:
    """Whether `path` is a finished save: on an object store, `commit_success.txt`
    is there; on a local disk, the directory is under its final name."""
    if is_remote(path):
        return files.is_file(join(path, format.COMMIT_SUCCESS))
    return not is_temporary(path)


def list_checkpoints(root: str) -> tuple[list[str], list[str]]:
    """(committed, unfinished): the names of the directories directly under `root`.

    Locally, unfinished ones have Orbax's temporary naming; in an object store, they
    lack `commit_success.txt` (found with one listing of `root`)."""
    if not is_remote(root):
        names = files.subdirs(root)
        return ([n for n in names if not is_temporary(n)],
                [n for n in names if is_temporary(n)])
    dirs, done = set(), set()
    for key in objects.list_keys(root):
        head, sep, rest = key.partition("/")
        if sep:
            dirs.add(head)
            if rest == format.COMMIT_SUCCESS:
                done.add(head)
    return sorted(dirs & done), sorted(dirs - done)


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


def check_destination(path: str, *, overwrite: bool) -> bool:
    """Whether something is at `path`; an error if so and not `overwrite`."""
    if not files.exists(path):
        return False
    if overwrite:
        return True
    hint = ""
    if is_remote(path) and not is_committed(path):
        hint = (f" It holds no {format.COMMIT_SUCCESS}, so it is what an unfinished save "
                "left: overwrite=True replaces it.")
    raise errors.CheckpointExistsError(
        f"Destination {path} already exists: pass overwrite=True to replace it, or "
        f"save to another path.{hint}")


def temporary_path(path: str) -> str:
    """Where a save to `path` writes before its commit (`path` itself on object stores)."""
    return path if is_remote(path) else path + TMP_SUFFIX


def create_temporary(path: str, *, overwrite: bool) -> str:
    """A fresh, empty directory for a save to `path` (a leftover is removed).

    On an object store, an existing checkpoint at `path` (with `overwrite`) is
    removed here, its commit file first."""
    existed = check_destination(path, overwrite=overwrite)
    if is_remote(path):
        if existed:
            remove_checkpoint(path)
        return path
    tmp = temporary_path(path)
    if os.path.lexists(tmp):  # left by a crashed save to the same path
        shutil.rmtree(tmp)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.mkdir(tmp)
    return tmp


def publish(tmp: str, path: str) -> None:
    """Commits a complete temporary directory: `commit_success.txt`, then (locally)
    fsync and rename."""
    files.write_bytes(join(tmp, format.COMMIT_SUCCESS),
                      f"Checkpoint commit was successful to {path}".encode())
    if is_remote(path):
        return
    _fsync_tree_dirs(tmp)
    _replace(tmp, path)


def discard(tmp: str) -> None:
    """Removes what a failed save wrote (never committed: it has no commit file).

    Best effort: called while another error is on its way up, which must not be
    replaced by this one (an object store that went away cannot be cleaned; what is
    left there has no commit file, so it never loads, and the next save or the
    `Checkpointer` removes it)."""
    try:
        files.remove_tree(tmp)
    except (OSError, errors.CheckpointError):
        pass


def remove_checkpoint(path: str) -> None:
    """Deletes a checkpoint so that a crash part-way never leaves one that loads or lists.

    Locally it is first renamed to a temporary name (one atomic step); on an object
    store its `commit_success.txt` goes first, then every other object."""
    if is_remote(path):
        objects.delete(join(path, format.COMMIT_SUCCESS))
        objects.delete_tree(path)
        return
    if not os.path.lexists(path):
        return
    doomed = f"{path}{TMP_SUFFIX}-deleting-{time.time_ns()}"
    os.rename(path, doomed)  # atomic: from here on it is not a checkpoint any more
    files.remove_tree(doomed)


def _exchange(a: str, b: str) -> bool:
    """Swaps two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE).

    Returns False where the system cannot (another OS, an old kernel or filesystem).
    """
    fn = getattr(libc.libc(), "renameat2", None)
    if fn is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), b)


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
        files.remove_tree(tmp)
    else:
        old = f"{path}{TMP_SUFFIX}-replaced-{time.time_ns()}"
        os.rename(path, old)
        os.rename(tmp, path)
        _fsync_dir(parent)
        files.remove_tree(old)
    _fsync_dir(parent)
