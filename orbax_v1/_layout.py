"""Where a pytree lives inside a path, and what a path holds when it is not there.

Every load resolves its path here first; a path that does not hold what the call
asks for gets an `InvalidLayoutError` that says what the directory holds and the
call that would load it.
"""

from __future__ import annotations

import os

from orbax_v1 import _commit, _files, errors

RESERVED_NAMES = frozenset({"metrics", ""})


def _is_pytree_dir(path: str) -> bool:
    """Holds pytree data: a `_METADATA` file, or an OCDBT store we can rebuild a tree from."""
    return os.path.isfile(os.path.join(path, _files.PYTREE_METADATA)) or os.path.isfile(
        os.path.join(path, "manifest.ocdbt"))


def _is_step_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, _files.CHECKPOINT_METADATA)) or os.path.isfile(
        os.path.join(path, _files.V1_MARKER))


def checkpointable_names(path: str) -> list[str]:
    """The committed subdirectories of a step directory, reserved names left out."""
    names = []
    for entry in sorted(os.listdir(path)):
        sub = os.path.join(path, entry)
        if os.path.isdir(sub) and entry not in RESERVED_NAMES and not _commit.is_temporary(entry):
            names.append(entry)
    return names


def _step_children(path: str) -> list[str]:
    kids = []
    for entry in sorted(os.listdir(path)):
        sub = os.path.join(path, entry)
        if os.path.isdir(sub) and not _commit.is_temporary(entry) and _is_step_dir(sub):
            kids.append(entry)
    return sorted(kids, key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n))


def describe(path: str) -> str:
    """What `path` holds and what to call instead, for error messages."""
    if _is_pytree_dir(path):
        if os.path.isfile(os.path.join(os.path.dirname(path), _files.CHECKPOINT_METADATA)):
            return (f"is a checkpointable inside the checkpoint {os.path.dirname(path)}: "
                    f"load the parent with checkpointable_name={os.path.basename(path)!r}")
        return "holds a pytree directly: use load(path, checkpointable_name=None)"
    steps = _step_children(path)
    if steps and not _is_step_dir(path):
        return f"is a root directory of steps {steps}: load one of them"
    names = [n for n in checkpointable_names(path) if _is_pytree_dir(os.path.join(path, n))]
    if names:
        return f"has checkpointables {names}: pass checkpointable_name={names[0]!r}"
    if os.path.isfile(os.path.join(os.path.dirname(path), _files.CHECKPOINT_METADATA)):
        return f"is inside a checkpoint: try the parent {os.path.dirname(path)}"
    return "holds no pytree checkpoint"


def check_name(name: str | None) -> None:
    if name in RESERVED_NAMES:
        raise errors.InvalidLayoutError(
            f"checkpointable_name={name!r} is reserved; choose another name.")


def resolve_pytree_dir(path: str, checkpointable_name: str | None) -> str:
    """The directory that holds the requested pytree, or a typed error saying why not."""
    check_name(checkpointable_name)
    if _commit.is_temporary(path):
        raise errors.IncompleteCheckpointError(
            f"{path} is an uncommitted temporary directory left by an unfinished save; "
            "it never loads. Load a committed checkpoint instead.")
    if not os.path.exists(path):
        raise errors.CheckpointNotFoundError(f"Checkpoint path {path} does not exist.")
    if not os.path.isdir(path):
        raise errors.InvalidLayoutError(f"Checkpoint path {path} is not a directory.")
    if checkpointable_name is None:
        if _is_pytree_dir(path):
            return path
        raise errors.InvalidLayoutError(
            f"{path} with checkpointable_name=None: expected a pytree metadata file "
            f"{_files.PYTREE_METADATA} in it, but it {describe(path)}.")
    sub = os.path.join(path, checkpointable_name)
    if os.path.isdir(sub) and _is_pytree_dir(sub):
        return sub
    raise errors.InvalidLayoutError(
        f"{path}: expected a subdirectory {checkpointable_name!r} holding a pytree, but it "
        f"{describe(path)}.")
