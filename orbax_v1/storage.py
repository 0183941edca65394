"""Where checkpoints live: local paths, `gs://` and `s3://`, the same calls for each.

Every function of this library takes a local path, `gs://bucket/prefix` or
`s3://bucket/prefix`, as a `str`, an `os.PathLike` or an `etils.epath.Path`; any other
`scheme://` raises `errors.UnsupportedPathError` before anything is written. The
functions here are the few file operations the rest of the library is built on, made
public for code that manages checkpoints around it (and for `compat_v0`):

    >>> from orbax_v1 import storage
    >>> storage.resolve("/tmp/../tmp/ckpt")
    '/tmp/ckpt'
    >>> storage.resolve("gs://bucket//run/./1/")
    'gs://bucket/run/1'

`configure(prefix, spec)` adds TensorStore kvstore spec fields for every path under a
prefix (an S3-compatible endpoint, a credentials profile, requester-pays, ...); see
docs/storage.md for what is read from the environment without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orbax_v1 import errors as _errors
from orbax_v1._storage import commit as _commit
from orbax_v1._storage import files as _files
from orbax_v1._storage import kvstore as _kvstore
from orbax_v1._storage import paths as _paths

__all__ = [
    "configure",
    "exists",
    "is_committed",
    "is_dir",
    "is_file",
    "is_remote",
    "join",
    "kvstore_spec",
    "read_bytes",
    "remove_checkpoint",
    "remove_file",
    "replace_bytes",
    "resolve",
    "save_files",
    "subdirs",
    "write_bytes",
]


def resolve(path: Any) -> str:
    """The canonical form of `path`: absolute local, or `gs://bucket/key` / `s3://bucket/key`."""
    return _paths.resolve(path)


def is_remote(path: Any) -> bool:
    """Whether `path` is in an object store (`gs://`, `s3://`)."""
    return _paths.is_remote(resolve(path))


def join(path: Any, *names: str) -> str:
    return _paths.join(resolve(path), *names)


def exists(path: Any) -> bool:
    """A file or directory exists at `path` (in an object store: any object under it)."""
    return _files.exists(resolve(path))


def is_file(path: Any) -> bool:
    return _files.is_file(resolve(path))


def is_dir(path: Any) -> bool:
    return _files.is_dir(resolve(path))


def subdirs(path: Any) -> list[str]:
    """The names of the directories directly in `path`, sorted."""
    return _files.subdirs(resolve(path))


def read_bytes(path: Any) -> bytes:
    """A file's bytes (`FileNotFoundError` if absent)."""
    return _files.read_bytes(resolve(path))


def write_bytes(path: Any, data: bytes) -> None:
    """Writes a file durably (creating local parent directories)."""
    path = resolve(path)
    _files.make_dirs(_paths.parent(path))
    _files.write_bytes(path, data)


def replace_bytes(path: Any, data: bytes) -> None:
    """Writes a file so that readers see its old or its new content, never a part."""
    _files.replace_bytes(resolve(path), data, tmp_suffix=_commit.TMP_SUFFIX)


def remove_file(path: Any, *, missing_ok: bool = True) -> None:
    path = resolve(path)
    try:
        _files.remove_file(path)
    except FileNotFoundError:
        if not missing_ok:
            raise


def is_committed(path: Any) -> bool:
    """Whether the checkpoint at `path` finished its save (never a temporary directory;
    in an object store, its `commit_success.txt` is there)."""
    path = resolve(path)
    return _files.is_dir(path) and _commit.is_committed(path)


def remove_checkpoint(path: Any) -> None:
    """Deletes a checkpoint so that no crash part-way leaves one that loads."""
    _commit.remove_checkpoint(resolve(path))


def save_files(path: Any, files: Mapping[str, bytes], *, overwrite: bool = False) -> None:
    """Saves a checkpoint made of small files (`name -> bytes`), committed as every
    checkpoint here is: all of it or nothing, with `commit_success.txt`.

    Raises `CheckpointExistsError` if `path` exists and `overwrite` is False."""
    path = resolve(path)
    tmp = _commit.create_temporary(path, overwrite=overwrite)
    try:
        for name, data in files.items():
            if "/" in name or name in ("", ".", ".."):
                raise _errors.InvalidArgumentError(f"{name!r} is not a file name.")
            _files.write_bytes(_paths.join(tmp, name), data)
        _commit.publish(tmp, path)
    except BaseException:
        _commit.discard(tmp)
        raise


def kvstore_spec(path: Any) -> dict:
    """The TensorStore kvstore spec this library uses for the directory `path`."""
    return _kvstore.base_spec(resolve(path))


def configure(prefix: Any, spec: Mapping[str, Any] | None) -> None:
    """Adds kvstore spec fields for every remote path under `prefix` (None: removes them).

    For example an S3-compatible service and a named credentials profile::

        storage.configure("s3://my-bucket", {
            "endpoint": "https://minio.example:9000",
            "aws_credentials": {"type": "profile", "profile": "training"}})

    The fields are those of TensorStore's `s3` / `gcs` kvstore drivers; the longest
    configured prefix of a path applies. Nothing is read or opened here."""
    prefix = resolve(prefix)
    if not _paths.is_remote(prefix):
        raise _errors.UnsupportedPathError(
            f"configure() applies to gs:// and s3:// prefixes, not {prefix!r}.")
    _kvstore.configure(prefix, None if spec is None else dict(spec))
