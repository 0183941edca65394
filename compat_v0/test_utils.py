"""`compat_v0.test_utils`: `erase_and_create_empty`, as in v0."""

from __future__ import annotations

from etils import epath

__all__ = ["erase_and_create_empty"]


def erase_and_create_empty(directory: epath.PathLike) -> epath.Path:
    """Deletes `directory` if it exists and creates it empty (its parent must exist)."""
    directory = epath.Path(directory)
    if directory.exists():
        directory.rmtree()
    directory.mkdir()
    return directory
