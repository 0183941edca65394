"""Where a checkpoint lives: a local directory, or a prefix in a GCS or S3 bucket.

Every path a user gives goes through `resolve` first, which returns the one string
form the rest of the library passes around: an absolute local path, or
`gs://bucket/key` / `s3://bucket/key` (no trailing slash, no empty or `.`
components). A `scheme://` this library cannot reach is an `UnsupportedPathError`
before anything is written: never a local folder named `gs:`.
"""

from __future__ import annotations

import os
import posixpath
import re
from typing import Any

from orbax_v1 import errors

REMOTE_SCHEMES = ("gs", "s3")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)
_COLLAPSED = re.compile(r"^(gs|s3):/(?!/)", re.IGNORECASE)  # what pathlib makes of gs://


def resolve(path: Any) -> str:
    """The canonical form of a user's path (`str`, `os.PathLike`, `etils.epath.Path`)."""
    if path is None or (isinstance(path, (str, bytes)) and not path):
        raise errors.CheckpointNotFoundError("Path must not be None or empty.")
    try:
        text = os.fspath(path)
    except TypeError as e:
        raise errors.InvalidArgumentError(
            f"A checkpoint path must be a str, os.PathLike or etils.epath.Path, got "
            f"{type(path).__name__} {path!r:.80}.") from e
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    match = _URL.match(text)
    if match is None:
        if _COLLAPSED.match(text):
            raise errors.UnsupportedPathError(
                f"{text!r} looks like a {text[:2].lower()}:// URL whose '//' was collapsed "
                "(pathlib.Path does this): pass it as a str or an etils.epath.Path.")
        return os.path.abspath(text)
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme == "file":
        return os.path.abspath(rest)
    if scheme not in REMOTE_SCHEMES:
        raise errors.UnsupportedPathError(
            f"{text!r}: the scheme {scheme}:// is not supported. Use a local path, "
            "gs://bucket/prefix or s3://bucket/prefix.")
    bucket, _, key = rest.partition("/")
    parts = [p for p in key.split("/") if p not in ("", ".")]
    if not bucket or ".." in parts:
        raise errors.UnsupportedPathError(
            f"{text!r} is not a usable {scheme}:// path: it needs a bucket name and no '..' "
            f"components, as in {scheme}://bucket/prefix.")
    return "/".join([f"{scheme}://{bucket}", *parts])


def is_remote(path: str) -> bool:
    """True for a resolved `gs://` or `s3://` path."""
    return path.startswith(("gs://", "s3://"))


def split_remote(path: str) -> tuple[str, str, str]:
    """(scheme, bucket, key) of a resolved remote path; the key has no trailing '/'."""
    scheme, _, rest = path.partition("://")
    bucket, _, key = rest.partition("/")
    return scheme, bucket, key


def join(path: str, *names: str) -> str:
    return posixpath.join(path, *names) if is_remote(path) else os.path.join(path, *names)


def parent(path: str) -> str:
    """The directory holding `path` (a bucket's root is its own parent)."""
    if is_remote(path):
        scheme, bucket, key = split_remote(path)
        return "/".join([f"{scheme}://{bucket}", *key.split("/")[:-1]]) if key else path
    return os.path.dirname(path)


def name(path: str) -> str:
    """The last component of `path`."""
    return path.rstrip("/").rsplit("/", 1)[-1] if is_remote(path) else os.path.basename(path)
