"""The compatibility matrix: what a path holds, and what each load call does with it.

`classify` looks at a directory once and names its layout; `pytree_dir` and
`checkpointables_dir` decide from that alone, so every load follows one table
(docs/layouts.md). Nothing is guessed: a call that does not fit the layout gets an
`InvalidLayoutError` saying what the directory holds and the call that would work.
"""

from __future__ import annotations

import enum

import attrs

from orbax_v1 import _files, errors
from orbax_v1._storage import commit as _commit
from orbax_v1._storage import files, paths
from orbax_v1._storage.format import MANIFEST

RESERVED_NAMES = frozenset({"metrics", ""})
_JSON_FILES = ("data.json", "metadata", "metrics")


class Kind(enum.Enum):
    MISSING = "does not exist"
    NOT_A_DIRECTORY = "is not a directory"
    TEMPORARY = "is an uncommitted temporary directory"
    ROOT = "is a root directory of steps"
    STEP = "is a checkpoint with named checkpointables"
    DIRECT = "holds a pytree directly"
    CHILD = "is inside a checkpoint"
    NOT_A_CHECKPOINT = "holds no checkpoint"


@attrs.frozen
class Layout:
    path: str
    kind: Kind
    names: tuple[str, ...] = ()  # checkpointables (STEP) or steps (ROOT)
    pytree_names: tuple[str, ...] = ()  # the checkpointables that hold a pytree

    def describe(self) -> str:
        """What the path holds and what to call instead, for error messages."""
        parent = paths.parent(self.path)
        if self.kind is Kind.ROOT:
            steps = [int(n) if n.isdigit() else n for n in self.names]
            return f"is a root directory of steps {steps}: load one of them"
        if self.kind is Kind.DIRECT:
            return "holds a pytree directly: use load(path, checkpointable_name=None)"
        if self.kind is Kind.CHILD:
            return (f"is inside a checkpoint: try the parent, load({parent!r}, "
                    f"checkpointable_name={paths.name(self.path)!r})")
        if self.kind is Kind.STEP:
            if self.pytree_names:
                best = "state" if "state" in self.pytree_names else self.pytree_names[0]
                return (f"has checkpointables {list(self.names)}: pass "
                        f"checkpointable_name={best!r}")
            return f"has checkpointables {list(self.names)}, none of them a pytree"
        return self.kind.value


def is_pytree_dir(path: str) -> bool:
    """Holds pytree data: a `_METADATA` file, or an OCDBT store a tree can be rebuilt from."""
    return _pytree_at(files.DirView(path), "")


def is_json_dir(path: str) -> bool:
    return _json_at(files.DirView(path), "")


def _in(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def _pytree_at(view: files.DirView, rel: str) -> bool:
    return (view.is_file(_in(rel, _files.PYTREE_METADATA))
            or view.is_file(_in(rel, MANIFEST)))


def _json_at(view: files.DirView, rel: str) -> bool:
    return any(view.is_file(_in(rel, f)) for f in _JSON_FILES)


def _markers_at(view: files.DirView, rel: str) -> bool:
    return (view.is_file(_in(rel, _files.CHECKPOINT_METADATA))
            or view.is_file(_in(rel, _files.V1_MARKER)))


def _committed_at(view: files.DirView, rel: str) -> bool:
    """Locally every directory under its final name is committed; in an object store,
    one with its commit file (real Orbax's CommitFileTemporaryPath)."""
    if paths.is_remote(view.path):
        return view.is_file(_in(rel, _files.COMMIT_SUCCESS))
    return not _commit.is_temporary(rel or view.path)


def _recorded_names(view: files.DirView) -> set[str]:
    """Checkpointable names recorded in `_CHECKPOINT_METADATA` (empty if none or unreadable)."""
    if not view.is_file(_files.CHECKPOINT_METADATA):
        return set()
    try:
        recorded = _files.read_checkpoint_metadata(view.path).get("item_handlers")
    except errors.CorruptCheckpointError:
        return set()
    return set(recorded) if isinstance(recorded, dict) else set()


def classify(path: str) -> Layout:
    """The layout of `path`; looks only at `path`, its parent and its children (in an
    object store: one listing of `path`, and the parent's markers)."""
    if _commit.is_temporary(path):
        return Layout(path, Kind.TEMPORARY)
    view = files.DirView(path)
    if not view.is_dir():
        return Layout(path, Kind.NOT_A_DIRECTORY if files.exists(path) else Kind.MISSING)
    here = _markers_at(view, "")
    if not here and (_pytree_at(view, "") or _json_at(view, "")):
        parent = files.DirView(paths.parent(path)) if not paths.is_remote(path) else None
        parent_markers = (_markers_at(parent, "") if parent is not None else any(
            files.is_file(paths.join(paths.parent(path), n))
            for n in (_files.CHECKPOINT_METADATA, _files.V1_MARKER)))
        if parent_markers:
            return Layout(path, Kind.CHILD)
    # On an object store a save writes in place: without its commit file, a
    # checkpoint is unfinished.
    uncommitted = not _committed_at(view, "")
    if _pytree_at(view, ""):
        return Layout(path, Kind.TEMPORARY if uncommitted else Kind.DIRECT)
    subdirs = [n for n in view.subdirs() if not _commit.is_temporary(n)]
    recorded = _recorded_names(view)
    names = tuple(n for n in subdirs if n not in RESERVED_NAMES and (
        n in recorded or _pytree_at(view, n) or _json_at(view, n)))
    pytree_names = tuple(n for n in names if _pytree_at(view, n))
    if here:
        if uncommitted:
            return Layout(path, Kind.TEMPORARY)
        return Layout(path, Kind.STEP, names, pytree_names)
    steps = [n for n in subdirs if _markers_at(view, n) and _committed_at(view, n)]
    if steps:
        steps.sort(key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n))
        return Layout(path, Kind.ROOT, tuple(steps))
    if names:  # composite, metadata lost
        return Layout(path, Kind.TEMPORARY if uncommitted else Kind.STEP, names, pytree_names)
    # In an object store, objects without a commit file are what a save (or a
    # deletion) that did not finish leaves behind.
    return Layout(path, Kind.TEMPORARY if uncommitted else Kind.NOT_A_CHECKPOINT)


def check_name(name: str | None, *, call: str = "load") -> None:
    if name in RESERVED_NAMES or (name is not None and not isinstance(name, str)):
        raise errors.InvalidLayoutError(
            f"checkpointable_name={name!r} is reserved or invalid in {call}; reserved names: "
            f"{sorted(RESERVED_NAMES)}.")


def _fail_unusable(layout: Layout) -> None:
    """Errors every load call shares: missing, not a directory, unfinished save."""
    if layout.kind is Kind.MISSING:
        raise errors.CheckpointNotFoundError(f"Checkpoint path {layout.path} does not exist.")
    if layout.kind is Kind.TEMPORARY:
        what = (f"holds no {_files.COMMIT_SUCCESS}: an unfinished save" if paths.is_remote(
            layout.path) else "is an uncommitted temporary directory left by an unfinished save")
        raise errors.IncompleteCheckpointError(
            f"{layout.path} {what}; it never loads. Load a committed checkpoint instead.")
    if layout.kind is Kind.NOT_A_DIRECTORY:
        raise errors.InvalidLayoutError(f"Checkpoint path {layout.path} is not a directory.")


def pytree_dir(path: str, checkpointable_name: str | None) -> str:
    """The directory `load(path, checkpointable_name=...)` reads, or a typed error."""
    check_name(checkpointable_name)
    layout = classify(path)
    _fail_unusable(layout)
    if checkpointable_name is None:
        if layout.kind is Kind.DIRECT:
            return path
        raise errors.InvalidLayoutError(
            f"{path} with checkpointable_name=None: expected the pytree metadata file "
            f"{_files.PYTREE_METADATA} in it, but it {layout.describe()}.")
    if layout.kind is Kind.STEP and checkpointable_name in layout.pytree_names:
        return paths.join(path, checkpointable_name)
    raise errors.InvalidLayoutError(
        f"{path}: expected a subdirectory {checkpointable_name!r} holding a pytree, but it "
        f"{layout.describe()}.")


def checkpointables_dir(path: str) -> Layout:
    """The layout `load_checkpointables(path)` reads (a STEP), or a typed error."""
    layout = classify(path)
    _fail_unusable(layout)
    if layout.kind is Kind.STEP:
        return layout
    if layout.kind is Kind.DIRECT:
        raise errors.InvalidLayoutError(
            f"{path} has no named checkpointables: it holds a pytree directly, so use "
            "load(path, checkpointable_name=None) instead.")
    raise errors.InvalidLayoutError(f"{path} has no named checkpointables: it {layout.describe()}.")
