"""Step directories under a root: their names, which are committed, their metrics.

Names follow Orbax's step naming (`<step>`, `<prefix>_<step>`, fixed-length zero
padding), so roots written by real Orbax's v0 CheckpointManager and v1 Checkpointer
list here. A step directory exists under its final name only once committed (the
save renames it into place), so listing never shows a half-written step.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import time

import attrs

from orbax_v1 import _commit, _files
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
    path = os.path.join(step_dir, METRICS_DIR, "metrics")
    try:
        with open(path, "rb") as f:
            value = json.loads(f.read())
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
    step_dir = os.path.join(root, name_format.build_name(step))
    try:
        nsecs = _files.read_checkpoint_metadata(step_dir).get("commit_timestamp_nsecs")
    except FileNotFoundError:
        raise
    except Exception:  # noqa: BLE001 - a damaged metadata file still lists the step
        nsecs = None
    seconds = nsecs / 1e9 if isinstance(nsecs, int) else os.path.getmtime(step_dir)
    when = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return PolicyCheckpointInfo(step, when, read_metrics(step_dir))


def find_all(root: str, name_format: NameFormat) -> list[int]:
    """Committed steps under `root`, ascending."""
    if not os.path.isdir(root):
        return []
    steps = []
    for entry in os.scandir(root):
        if entry.is_dir() and not _commit.is_temporary(entry.name):
            step = name_format.parse(entry.name)
            if step is not None:
                steps.append(step)
    return sorted(steps)


def remove_temporary(root: str) -> list[str]:
    """Deletes leftovers of crashed saves: only directories in Orbax's temporary naming."""
    removed = []
    if not os.path.isdir(root):
        return removed
    for entry in os.scandir(root):
        if entry.is_dir(follow_symlinks=False) and _commit.is_temporary(entry.name):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.name)
    return removed


def delete_step_dir(step_dir: str) -> None:
    """Deletes a step so that a crash part-way never leaves a listed, half-deleted step."""
    doomed = f"{step_dir}{_commit.TMP_SUFFIX}-deleting-{time.time_ns()}"
    os.rename(step_dir, doomed)  # atomic: from here on it is not a step any more
    shutil.rmtree(doomed, ignore_errors=True)


def read_root_metadata(root: str):
    for name in ROOT_METADATA_FILES:
        path = os.path.join(root, ROOT_METADATA_DIR, name)
        if os.path.isfile(path):
            data = _files.read_json(path, what="Root metadata")
            return data.get("custom_metadata") if isinstance(data, dict) else None
    return None


def write_root_metadata(root: str, custom_metadata) -> None:
    """Written once: an existing root metadata file is never replaced."""
    directory = os.path.join(root, ROOT_METADATA_DIR)
    if any(os.path.isfile(os.path.join(directory, n)) for n in ROOT_METADATA_FILES):
        return
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f"_ROOT_METADATA{_commit.TMP_SUFFIX}")
    _files.write_json(tmp, {"internal_metadata": {}, "custom_metadata": custom_metadata})
    os.replace(tmp, os.path.join(directory, ROOT_METADATA_FILES[0]))
