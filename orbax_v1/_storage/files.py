"""Files and directories of a checkpoint, on a local disk or in a bucket.

The small-file and directory operations every layer above needs, each taking a
resolved path (`paths.resolve`) and going to the local filesystem or to the object
store (`objects`). On an object store a directory exists while any object lies
under it, and `make_dirs` has nothing to do.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from orbax_v1 import errors
from orbax_v1._storage import objects
from orbax_v1._storage.paths import is_remote


def write_bytes(path: str, data: bytes) -> None:
    """Writes a file (durably: a later directory rename or commit file commits it)."""
    if is_remote(path):
        objects.write_bytes(path, data)
        return
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_json(path: str, obj: Any) -> None:
    write_bytes(path, json.dumps(obj).encode())


def replace_bytes(path: str, data: bytes, *, tmp_suffix: str) -> None:
    """Writes a file so that readers see the old or the new content, never a part."""
    if is_remote(path):  # a single object put is atomic
        objects.write_bytes(path, data)
        return
    tmp = path + tmp_suffix
    write_bytes(tmp, data)
    os.replace(tmp, path)


def read_bytes(path: str) -> bytes:
    """A file's bytes; `FileNotFoundError` if it is absent."""
    if is_remote(path):
        return objects.read_bytes(path)
    with open(path, "rb") as f:
        return f.read()


def read_json(path: str, *, what: str) -> Any:
    """Parses a JSON file; a damaged one is a `CorruptCheckpointError` naming it."""
    try:
        return json.loads(read_bytes(path))
    except (FileNotFoundError, errors.StorageError):
        raise
    except (OSError, ValueError) as e:
        raise errors.CorruptCheckpointError(f"{what} at {path} is unreadable: {e}") from e


def exists(path: str) -> bool:
    if is_remote(path):
        return objects.is_file(path) or objects.is_dir(path)
    return os.path.lexists(path)


def is_file(path: str) -> bool:
    return objects.is_file(path) if is_remote(path) else os.path.isfile(path)


def is_dir(path: str) -> bool:
    return objects.is_dir(path) if is_remote(path) else os.path.isdir(path)


def subdirs(path: str) -> list[str]:
    """Names of the directories directly in `path`, sorted (none if it is absent)."""
    if is_remote(path):
        return sorted(n for n, d in objects.children(path).items() if d)
    if not os.path.isdir(path):
        return []
    return sorted(e.name for e in os.scandir(path) if e.is_dir())


def list_names(path: str) -> list[str]:
    """Names of every entry directly in `path`, sorted (none if it is absent)."""
    if is_remote(path):
        return sorted(objects.children(path))
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def make_dirs(path: str) -> None:
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)


def make_dir(path: str) -> None:
    """Creates a new empty directory (an error if it exists, locally)."""
    if not is_remote(path):
        os.mkdir(path)


def remove_file(path: str) -> None:
    if is_remote(path):
        objects.delete(path)
    else:
        os.remove(path)


def remove_tree(path: str) -> None:
    """Removes a directory and everything in it (nothing if it is absent)."""
    if is_remote(path):
        objects.delete_tree(path)
    elif os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def mtime(path: str) -> float | None:
    """When a local directory was last modified; None for objects (no such time)."""
    if is_remote(path):
        return None
    try:
        return os.path.getmtime(path)
    except OSError:
        return None


class DirView:
    """The files and directories under `path`, asked about by relative name (`a/b`).

    Locally each question is one filesystem call. In an object store the whole prefix
    is listed once, when the view is made, and every question is answered from that
    listing: layout resolution asks a dozen of them per load."""

    def __init__(self, path: str):
        self.path = path
        self._files: set[str] | None = None
        self._dirs: set[str] = set()
        if is_remote(path):
            keys = objects.list_keys(path)
            self._files = set(keys)
            for key in keys:
                parts = key.split("/")
                self._dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))

    def _local(self, rel: str) -> str:
        return os.path.join(self.path, rel) if rel else self.path

    def is_file(self, rel: str) -> bool:
        if self._files is None:
            return os.path.isfile(self._local(rel))
        return rel in self._files

    def is_dir(self, rel: str = "") -> bool:
        if self._files is None:
            return os.path.isdir(self._local(rel))
        return rel in self._dirs if rel else bool(self._files)

    def subdirs(self, rel: str = "") -> list[str]:
        """Names of the directories directly in `rel`, sorted."""
        if self._files is None:
            return subdirs(self._local(rel))
        prefix = rel + "/" if rel else ""
        return sorted({d[len(prefix):] for d in self._dirs
                       if d.startswith(prefix) and "/" not in d[len(prefix):]})
