"""Step directories under a root: their names, which are committed, their metrics.

Names follow Orbax's step naming (`<step>`, `<prefix>_<step>`, fixed-length zero
padding), so roots written by real Orbax's v0 CheckpointManager and v1 Checkpointer
list here. Listing never shows a half-written step: locally a step exists under its
final name only once committed (the save renames it into place); in an object store
only once its `commit_success.txt` is written (`_storage.commit`).
"""

from __future__ import annotations

import datetime
import json
import re

import attrs

from orbax_v1 import _files
from orbax_v1._storage import commit as _commit
from orbax_v1._storage import files, paths
from orbax_v1.training.save_decision_policies import PolicyCheckpointInfo

ROOT_METADATA_DIR = "metadata"
ROOT_METADATA_FILES = ("_ROOT_METADATA", "metadata")  # current name, legacy name
METRICS_DIR = "metrics"


@attrs.frozen
class NameFormat:
    """How a step number becomes a directory name, and back."""

    step_prefix: str | None = None
    step_format_fixed_length: int | None = None

    def build_name(self, step: int) -> str:
        digits = f"{step:0{self.step_format_fixed_length or 0}d}"
        return f"{self.step_prefix}_{digits}" if self.step_prefix else digits

    def parse(self, name: str) -> int | None:
        """The step a directory name stands for, or None if it is not one of ours."""
        n = self.step_format_fixed_length
        number = rf"(0\d{{{n - 1}}}|[1-9]\d{{{n - 1}}}\d*)" if n else r"(0|[1-9]\d*)"
        prefix = re.escape(self.step_prefix) + "_" if self.step_prefix else ""
        match = re.fullmatch(prefix + number, name)
        return int(match.group(1)) if match else None


def standard_name_format(*, step_prefix: str | None = None,
                         step_format_fixed_length: int | None = None) -> NameFormat:
    """`23`, `0023`, `step_23` or `step_0023`, as real Orbax names steps."""
    return NameFormat(step_prefix, step_format_fixed_length)


def read_metrics(step_dir: str) -> dict | None:
    path = paths.join(step_dir, METRICS_DIR, "metrics")
    try:
        value = json.loads(files.read_bytes(path))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def step_infos(root: str, name_format: NameFormat) -> list[PolicyCheckpointInfo]:
    """Every committed step under `root`; one deleted meanwhile (by another process) is
    left out."""
    infos = []
    for step in find_all(root, name_format):
        try:
            infos.append(step_info(root, name_format, step))
        except FileNotFoundError:
            continue
    return infos


def step_info(root: str, name_format: NameFormat, step: int) -> PolicyCheckpointInfo:
    step_dir = paths.join(root, name_format.build_name(step))
    try:
        nsecs = _files.read_checkpoint_metadata(step_dir).get("commit_timestamp_nsecs")
    except FileNotFoundError:
        raise
    except Exception:  # noqa: BLE001 - a damaged metadata file still lists the step
        nsecs = None
    seconds = nsecs / 1e9 if isinstance(nsecs, int) else (files.mtime(step_dir) or 0.0)
    when = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return PolicyCheckpointInfo(step, when, read_metrics(step_dir))


def find_all(root: str, name_format: NameFormat) -> list[int]:
    """Committed steps under `root`, ascending."""
    committed, _ = _commit.list_checkpoints(root)
    return sorted(s for s in map(name_format.parse, committed) if s is not None)


def remove_temporary(root: str, name_format: NameFormat) -> list[str]:
    """Deletes leftovers of crashed saves: locally, only directories in Orbax's
    temporary naming; in an object store, only step directories without a commit file."""
    _, unfinished = _commit.list_checkpoints(root)
    if paths.is_remote(root):
        unfinished = [n for n in unfinished if name_format.parse(n) is not None]
    for name in unfinished:
        files.remove_tree(paths.join(root, name))
    return unfinished


def delete_step_dir(step_dir: str) -> None:
    """Deletes a step so that a crash part-way never leaves a listed, half-deleted step."""
    _commit.remove_checkpoint(step_dir)


def read_root_metadata(root: str):
    for name in ROOT_METADATA_FILES:
        path = paths.join(root, ROOT_METADATA_DIR, name)
        if files.is_file(path):
            data = _files.read_json(path, what="Root metadata")
            return data.get("custom_metadata") if isinstance(data, dict) else None
    return None


def write_root_metadata(root: str, custom_metadata) -> None:
    """Written once: an existing root metadata file is never replaced."""
    directory = paths.join(root, ROOT_METADATA_DIR)
    if any(files.is_file(paths.join(directory, n)) for n in ROOT_METADATA_FILES):
        return
    files.make_dirs(directory)
    files.replace_bytes(paths.join(directory, ROOT_METADATA_FILES[0]), json.dumps(
        {"internal_metadata": {}, "custom_metadata": custom_metadata}).encode(),
        tmp_suffix=_commit.TMP_SUFFIX)
