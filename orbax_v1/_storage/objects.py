"""Object-store operations on `gs://` and `s3://` paths, through TensorStore's kvstores.

An object store has no directories: a "directory" is every object whose name starts
with `<path>/`. Each function takes a resolved remote path (`paths.resolve`) and
raises `errors.StorageError` naming it when the store fails (after TensorStore's
bounded retries), `FileNotFoundError` for a missing object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import tensorstore as ts

from orbax_v1 import errors
from orbax_v1._storage import kvstore

T = TypeVar("T")


def _call(path: str, what: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except (FileNotFoundError, errors.CheckpointError):
        raise
    except Exception as e:  # noqa: BLE001 - any TensorStore failure: typed, with the path
        raise errors.StorageError(f"Cannot {what} {path}: {e}") from e


def _prefix_range(prefix: str) -> ts.KvStore.KeyRange:
    """The keys starting with `prefix` (a non-empty string ending in '/', or '')."""
    if not prefix:
        return ts.KvStore.KeyRange()
    raw = prefix.encode()
    return ts.KvStore.KeyRange(inclusive_min=raw, exclusive_max=raw[:-1] + bytes([raw[-1] + 1]))


def _dir_prefix(key: str) -> str:
    return key + "/" if key else ""


def read_bytes(path: str, byte_range: slice | None = None) -> bytes:
    store, key = kvstore.bucket_store(path)
    result = _call(path, "read", lambda: store.read(key, byte_range=byte_range).result())
    if result.state != "value":
        raise FileNotFoundError(f"No such object: {path}")
    return result.value


def write_bytes(path: str, data: bytes) -> None:
    store, key = kvstore.bucket_store(path)
    _call(path, "write", lambda: store.write(key, data).result())


def write_async(path: str, data: bytes | bytearray) -> ts.Future:
    """Starts writing one object; the future's `result()` raises on failure."""
    store, key = kvstore.bucket_store(path)
    return store.write(key, data)


def is_file(path: str) -> bool:
    store, key = kvstore.bucket_store(path)
    return _call(path, "read", lambda: store.read(key, byte_range=slice(0, 0)).result()
                 ).state == "value"


def list_keys(path: str) -> list[str]:
    """Every object name under the directory `path`, relative to it."""
    store, key = kvstore.bucket_store(path)
    prefix = _dir_prefix(key)
    keys = _call(path, "list", lambda: store.list(
        _prefix_range(prefix), strip_prefix_length=len(prefix.encode())).result())
    return sorted(k.decode() for k in keys)


def is_dir(path: str) -> bool:
    return bool(list_keys(path))


def children(path: str) -> dict[str, bool]:
    """The entries directly under `path`: name -> True for a "directory"."""
    out: dict[str, bool] = {}
    for k in list_keys(path):
        head, sep, _ = k.partition("/")
        out[head] = out.get(head, False) or bool(sep)
    return out


def delete(path: str) -> None:
    """Deletes one object (nothing if it is absent)."""
    store, key = kvstore.bucket_store(path)
    _call(path, "delete", lambda: store.write(key, None).result())


def delete_tree(path: str) -> None:
    """Deletes every object under the directory `path`."""
    store, key = kvstore.bucket_store(path)
    prefix = _dir_prefix(key)
    if not prefix:
        raise errors.InvalidArgumentError(f"Refusing to delete the whole bucket {path}.")
    _call(path, "delete", lambda: store.delete_range(_prefix_range(prefix)).result())
