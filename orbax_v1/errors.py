"""Every exception this library raises on purpose.

Each class also derives from the builtin exception users already catch
(`FileNotFoundError`, `FileExistsError`, `ValueError`, `KeyError`, `TypeError`), so
`except FileExistsError:` keeps working for code written against real Orbax.
Messages name the checkpoint path and, where one is involved, the pytree key path.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "CheckpointExistsError",
    "CheckpointNotFoundError",
    "CorruptCheckpointError",
    "IncompleteCheckpointError",
    "InvalidArgumentError",
    "InvalidLayoutError",
    "MissingCheckpointablesError",
    "StorageError",
    "TreeMismatchError",
    "UnsupportedPathError",
    "UnsupportedTreeError",
]


class CheckpointError(Exception):
    """Base class of every error raised by `orbax_v1` and `compat_v0`."""


class CheckpointExistsError(CheckpointError, FileExistsError):
    """The destination already holds something and `overwrite` was not given."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The path does not exist, or holds nothing that can be loaded."""


class InvalidLayoutError(CheckpointError, ValueError):
    """The path exists but is not laid out as the call expects.

    The message says what the directory holds and which call would load it.
    """


class IncompleteCheckpointError(InvalidLayoutError):
    """The path is an uncommitted temporary directory left by an unfinished save."""


class CorruptCheckpointError(CheckpointError, ValueError):
    """The checkpoint is committed but some of its files are missing or unreadable."""


class UnsupportedTreeError(CheckpointError, ValueError, TypeError):
    """The pytree given to save cannot be stored (leaf type, key type, key collision)."""


class TreeMismatchError(CheckpointError, ValueError):
    """The abstract tree given to load does not match what the checkpoint holds.

    Attributes:
      missing: key paths stored in the checkpoint but absent from the abstract tree.
      unexpected: key paths in the abstract tree that the checkpoint does not hold.
      mismatched: `(key path, expected, found)` for leaves whose shape disagrees.
    """

    def __init__(self, message, *, missing=(), unexpected=(), mismatched=()):
        super().__init__(message)
        self.missing = tuple(missing)
        self.unexpected = tuple(unexpected)
        self.mismatched = tuple(mismatched)


class InvalidArgumentError(CheckpointError, ValueError, TypeError):
    """An argument other than the pytree is not usable (for example custom_metadata)."""


class UnsupportedPathError(InvalidArgumentError):
    """The path's scheme (`hdfs://`, ...) or form is not one this library can reach.

    Raised before anything is written; local paths, `gs://` and `s3://` are supported.
    """


class StorageError(CheckpointError, OSError):
    """The storage backend (a bucket, an object store, its credentials) failed.

    The message names the path and what the backend said; the operation either
    never took effect or left nothing that loads.
    """


class MissingCheckpointablesError(CheckpointError, KeyError):
    """`load_checkpointables` asked for names the checkpoint does not hold."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""
