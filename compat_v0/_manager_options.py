"""`CheckpointManagerOptions`: every field of real Orbax v0's, with the same defaults.

Each field is either honoured (mapped to orbax_v1 `training.Checkpointer` policies,
name format and flags) or raises `UnsupportedOptionError` naming it when set to a
value compat_v0 cannot honour. docs/migration.md has the table, field by field.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Callable, Container
from typing import Any

import attrs

from compat_v0.options import (
    AsyncOptions,
    FileOptions,
    MultiprocessingOptions,
    check_async_options,
    check_atomicity_options,
    check_file_options,
    check_multiprocessing_options,
    unsupported,
)
from orbax_v1 import training
from orbax_v1.training import preservation_policies as pp
from orbax_v1.training import save_decision_policies as sdp

_log = logging.getLogger("compat_v0")


@dataclasses.dataclass
class CheckpointManagerOptions:
    """Options of a `CheckpointManager` (v0 `ocp.CheckpointManagerOptions`)."""

    save_interval_steps: int = 1
    max_to_keep: int | None = None
    keep_time_interval: datetime.timedelta | None = None
    keep_period: int | None = None
    best_fn: Callable[[Any], float] | None = None
    best_mode: str = "max"
    keep_checkpoints_without_metrics: bool = True
    step_prefix: str | None = None
    step_format_fixed_length: int | None = None
    step_name_format: Any = None
    create: bool = True
    cleanup_tmp_directories: bool = False
    save_on_steps: Container[int] | None = None
    single_host_load_and_broadcast: bool = False
    todelete_subdir: str | None = None
    todelete_full_path: str | None = None
    enable_background_delete: bool = False
    num_deletion_threads: int | None = None
    read_only: bool = False
    enable_async_checkpointing: bool = True
    async_options: AsyncOptions | None = None
    multiprocessing_options: MultiprocessingOptions = dataclasses.field(
        default_factory=MultiprocessingOptions)
    should_save_fn: Callable[[int, int | None], bool] | None = None
    file_options: FileOptions = dataclasses.field(default_factory=FileOptions)
    atomicity_options: Any = None
    save_root_metadata: bool = True
    temporary_path_class: Any = None
    save_decision_policy: Any = None
    preservation_policy: Any = None
    prevent_write_metrics: bool = False
    enable_should_save_is_saving_in_progress_check: bool = True
    enable_per_process_directory_creation: bool = False
    lightweight_initialize: bool = False

    def __post_init__(self):
        if self.best_mode not in ("min", "max"):
            raise ValueError("`CheckpointManagerOptions.best_mode` must be one of None, 'min' "
                             f"or 'max'. Got {self.best_mode}.")
        if self.preservation_policy is None and self.max_to_keep is not None and (
                self.max_to_keep < 0):
            raise ValueError("Setting of `max_to_keep` must be None or non-negative.")
        if self.todelete_subdir is not None and self.todelete_full_path is not None:
            raise ValueError("todelete_subdir and todelete_full_path both cannot be set togther")
        if self.read_only:  # as v0: a read-only manager neither saves nor deletes
            for field, off in (("save_interval_steps", 0), ("max_to_keep", None),
                               ("keep_time_interval", None), ("keep_period", None),
                               ("create", False), ("cleanup_tmp_directories", False),
                               ("save_on_steps", None), ("todelete_subdir", None),
                               ("todelete_full_path", None), ("should_save_fn", None)):
                if getattr(self, field) not in (off, None):
                    _log.warning("CheckpointManagerOptions.read_only=True, setting %s=%r.",
                                 field, off)
                    setattr(self, field, off)
        self.save_on_steps = frozenset(self.save_on_steps or ())
        check_supported(self)


_UNSUPPORTED_IF_SET = {
    "single_host_load_and_broadcast": (False, "loads read on every process"),
    "todelete_subdir": (None, "deleted steps are removed, not moved"),
    "todelete_full_path": (None, "deleted steps are removed, not moved"),
    "num_deletion_threads": (None, "deletion runs on orbax_v1's one background thread"),
    "temporary_path_class": (None, "orbax_v1 owns the temporary directory and the commit"),
    "enable_per_process_directory_creation": (False, "one process creates the directories"),
    "lightweight_initialize": (False, "the steps' metrics are always read when listing"),
}


def check_supported(options: CheckpointManagerOptions) -> None:
    """Raises `UnsupportedOptionError` naming the first field compat_v0 cannot honour."""
    where = "CheckpointManagerOptions"
    for field, (default, why) in _UNSUPPORTED_IF_SET.items():
        value = getattr(options, field)
        if value is not default and value != default:
            raise unsupported(where, field, value, why)
    if options.enable_background_delete and not options.enable_async_checkpointing:
        raise unsupported(where, "enable_background_delete", True,
                          "with enable_async_checkpointing=False, old steps are deleted before "
                          "save returns")
    if options.prevent_write_metrics and options.best_fn is not None:
        raise unsupported(where, "prevent_write_metrics", True,
                          "with best_fn set, the preservation policy reads each step's metrics "
                          "from <step>/metrics/metrics, so they must be written")
    if options.step_name_format is not None and not isinstance(
            options.step_name_format, training.NameFormat):
        raise unsupported(where, "step_name_format", options.step_name_format,
                          "use compat_v0.step.standard_name_format(...) (or step_prefix and "
                          "step_format_fixed_length)")
    check_async_options(options.async_options, f"{where}.async_options")
    check_multiprocessing_options(options.multiprocessing_options,
                                  f"{where}.multiprocessing_options")
    check_file_options(options.file_options, f"{where}.file_options")
    check_atomicity_options(options.atomicity_options, f"{where}.atomicity_options")
    if options.preservation_policy is not None:
        for field in ("max_to_keep", "keep_period", "keep_time_interval"):
            if getattr(options, field) is not None:
                raise ValueError(f"preservation_policy and {field} cannot both be set: put a "
                                 "LatestN/EveryNSteps/EveryNSeconds policy in preservation_policy.")


@attrs.frozen
class _ShouldSaveFnPolicy:
    should_save_fn: Callable[[int, int | None], bool]

    def should_save(self, step, previous_steps, *, context) -> bool:
        return bool(self.should_save_fn(step.step,
                                        previous_steps[-1].step if previous_steps else None))


@attrs.frozen
class _IgnoreSavingInProgress:
    """`enable_should_save_is_saving_in_progress_check=False`: policies never see a save in flight."""

    policy: Any

    def should_save(self, step, previous_steps, *, context) -> bool:
        context = attrs.evolve(context, is_saving_in_progress=False)
        return self.policy.should_save(step, previous_steps, context=context)


def save_decision_policy(options: CheckpointManagerOptions):
    """v0's save policy: the given one, or built from the interval options."""
    policy = options.save_decision_policy
    if policy is None:
        if options.should_save_fn is not None:
            parts = [_ShouldSaveFnPolicy(options.should_save_fn)]
        else:
            parts = []
            if options.save_interval_steps:
                parts.append(sdp.FixedIntervalPolicy(options.save_interval_steps))
            if options.save_on_steps:
                parts.append(sdp.SpecificStepsPolicy(options.save_on_steps))
            parts.append(sdp.InitialSavePolicy())
        policy = sdp.AnySavePolicy(parts + [sdp.PreemptionCheckpointingPolicy()])
    if not options.enable_should_save_is_saving_in_progress_check:
        policy = _IgnoreSavingInProgress(policy)
    return policy


def preservation_policy(options: CheckpointManagerOptions):
    """v0's preservation policy: the given one, or built from max_to_keep, keep_period, ..."""
    if options.preservation_policy is not None:
        return options.preservation_policy
    parts: list[Any] = []
    if options.keep_period is not None:
        parts.append(pp.EveryNSteps(options.keep_period))
    if options.keep_time_interval is not None:
        parts.append(pp.EveryNSeconds(int(options.keep_time_interval.total_seconds())))
    if options.best_fn is not None:
        parts.append(pp.BestN(get_metric_fn=options.best_fn,
                              reverse=options.best_mode == "min", n=options.max_to_keep,
                              keep_checkpoints_without_metrics=(
                                  options.keep_checkpoints_without_metrics)))
    else:
        parts.append(pp.LatestN(options.max_to_keep))
    return pp.AnyPreservationPolicy(parts)


def name_format(options: CheckpointManagerOptions) -> training.NameFormat:
    if options.step_name_format is not None:
        return options.step_name_format
    return training.standard_name_format(step_prefix=options.step_prefix,
                                         step_format_fixed_length=options.step_format_fixed_length)
