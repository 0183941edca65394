"""`CheckpointManagerOptions`: every v0 field, v0's defaults, and each one honoured or refused."""

from __future__ import annotations

import dataclasses
import datetime

import numpy as np
import pytest

import compat_v0 as ocp
from compat_v0.errors import UnsupportedOptionError

V0_DEFAULTS = {
    "save_interval_steps": 1, "max_to_keep": None, "keep_time_interval": None,
    "keep_period": None, "best_fn": None, "best_mode": "max",
    "keep_checkpoints_without_metrics": True, "step_prefix": None,
    "step_format_fixed_length": None, "step_name_format": None, "create": True,
    "cleanup_tmp_directories": False, "save_on_steps": frozenset(),
    "single_host_load_and_broadcast": False, "todelete_subdir": None,
    "todelete_full_path": None, "enable_background_delete": False,
    "num_deletion_threads": None, "read_only": False, "enable_async_checkpointing": True,
    "async_options": None, "multiprocessing_options": ocp.MultiprocessingOptions(),
    "should_save_fn": None, "file_options": ocp.FileOptions(), "atomicity_options": None,
    "save_root_metadata": True, "temporary_path_class": None, "save_decision_policy": None,
    "preservation_policy": None, "prevent_write_metrics": False,
    "enable_should_save_is_saving_in_progress_check": True,
    "enable_per_process_directory_creation": False, "lightweight_initialize": False,
}


def test_every_v0_field_with_v0_defaults():
    options = ocp.CheckpointManagerOptions()
    assert [f.name for f in dataclasses.fields(options)] == list(V0_DEFAULTS)
    for name, default in V0_DEFAULTS.items():
        assert getattr(options, name) == default, name


def test_fields_and_defaults_match_real_orbax():
    ocp0 = pytest.importorskip("orbax.checkpoint")
    real = {f.name: f for f in dataclasses.fields(ocp0.CheckpointManagerOptions)}
    ours = {f.name: f for f in dataclasses.fields(ocp.CheckpointManagerOptions)}
    assert list(real) == list(ours)
    for name, field in real.items():
        if field.default is not dataclasses.MISSING:
            assert ours[name].default == field.default, name
        else:  # default_factory: the same option class, same field values
            want, got = field.default_factory(), ours[name].default_factory()
            assert type(want).__name__ == type(got).__name__, name
            for sub in dataclasses.fields(got):
                assert getattr(got, sub.name) == getattr(want, sub.name), (name, sub.name)


@pytest.mark.parametrize("field,value", [
    ("single_host_load_and_broadcast", True),
    ("todelete_subdir", "trash"),
    ("todelete_full_path", "gs://bucket/trash"),
    ("num_deletion_threads", 4),
    ("temporary_path_class", object),
    ("enable_per_process_directory_creation", True),
    ("lightweight_initialize", True),
    ("step_name_format", object()),
    ("atomicity_options", ocp.options.AtomicityOptions(mode="commit_file")),
    ("multiprocessing_options", ocp.MultiprocessingOptions(primary_host=None)),
    ("multiprocessing_options", ocp.MultiprocessingOptions(active_processes={0, 1})),
    ("file_options", ocp.FileOptions(path_permission_mode=0o700)),
    ("async_options", ocp.AsyncOptions(barrier_sync_fn=lambda *a: None)),
])
def test_unsupported_field_raises_naming_it(field, value):
    with pytest.raises(UnsupportedOptionError) as e:
        ocp.CheckpointManagerOptions(**{field: value})
    name = field if field != "atomicity_options" else "atomicity_options"
    assert name in str(e.value)
    assert isinstance(e.value, ValueError)


def test_background_delete_needs_async_saves():
    ocp.CheckpointManagerOptions(enable_background_delete=True)
    with pytest.raises(UnsupportedOptionError, match="enable_background_delete"):
        ocp.CheckpointManagerOptions(enable_background_delete=True,
                                     enable_async_checkpointing=False)


@pytest.mark.parametrize("kwargs,match", [
    ({"best_mode": "median"}, "best_mode"),
    ({"max_to_keep": -1}, "max_to_keep"),
    ({"todelete_subdir": "a", "todelete_full_path": "b"}, "todelete"),
    ({"max_to_keep": 2, "preservation_policy":
      ocp.checkpoint_managers.preservation_policy.LatestN(2)}, "max_to_keep"),
])
def test_v0_validation_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ocp.CheckpointManagerOptions(**kwargs)


def test_read_only_turns_saving_and_pruning_off_as_v0():
    options = ocp.CheckpointManagerOptions(read_only=True, max_to_keep=3, save_interval_steps=5)
    assert (options.save_interval_steps, options.max_to_keep, options.create) == (0, None, False)


def save_steps(tmp_path, steps, **options):
    root = tmp_path / "run"
    with ocp.CheckpointManager(root, options=ocp.CheckpointManagerOptions(
            enable_async_checkpointing=False, **options)) as mngr:
        for step in steps:
            mngr.save(step, args=ocp.args.StandardSave({"x": np.full(2, step)}),
                      metrics={"loss": float(abs(step - 4))})
        return list(mngr.all_steps()), mngr


POLICY_CASES = [
    ({"save_interval_steps": 2, "keep_period": 4, "max_to_keep": 1}, range(9), [0, 4, 8]),
    ({"save_interval_steps": 3}, range(10), [0, 3, 6, 9]),
    ({"save_interval_steps": 100, "save_on_steps": [5, 7]}, range(10), [0, 5, 7]),
    ({"should_save_fn": lambda step, last: last is None or step - last >= 4}, range(10), [0, 4, 8]),
    ({"max_to_keep": 2, "best_fn": lambda m: m["loss"], "best_mode": "min"}, range(7), [4, 5]),
    ({"max_to_keep": 2, "best_fn": lambda m: m["loss"]}, range(7), [0, 1]),
    ({"keep_time_interval": datetime.timedelta(hours=1), "max_to_keep": 1}, range(3), [0, 2]),
    ({"save_decision_policy": ocp.checkpoint_managers.save_decision_policy.SpecificStepsPolicy(
        [1, 2]), "preservation_policy":
        ocp.checkpoint_managers.preservation_policy.CustomSteps([1])}, range(4), [1]),
]


@pytest.mark.parametrize("options,steps,kept", POLICY_CASES)
def test_policies_from_options(tmp_path, options, steps, kept):
    assert save_steps(tmp_path, steps, **options)[0] == kept


def test_best_step_and_metrics_only_with_best_fn(tmp_path):
    _, mngr = save_steps(tmp_path, range(5), best_fn=lambda m: -m["loss"])
    assert mngr.best_step() == 4 and mngr.metrics(4) == {"loss": 0.0}
    assert (tmp_path / "run" / "4" / "metrics" / "metrics").is_file()
    other = tmp_path / "other"
    with ocp.CheckpointManager(other, options=ocp.CheckpointManagerOptions(
            enable_async_checkpointing=False)) as mngr:
        mngr.save(0, args=ocp.args.StandardSave({"x": np.ones(1)}), metrics={"loss": 1.0})
        assert mngr.metrics(0) is None and mngr.best_step() == 0
    assert not (other / "0" / "metrics").exists()
    with ocp.CheckpointManager(tmp_path / "prevent", options=ocp.CheckpointManagerOptions(
            prevent_write_metrics=True)) as mngr:
        mngr.save(0, args=ocp.args.StandardSave({"x": np.ones(1)}), metrics={"loss": 1.0})
    assert not (tmp_path / "prevent" / "0" / "metrics").exists()
    with pytest.raises(UnsupportedOptionError, match="prevent_write_metrics"):
        ocp.CheckpointManagerOptions(best_fn=lambda m: m["loss"], prevent_write_metrics=True)


def test_step_names_and_root_metadata(tmp_path):
    root = tmp_path / "run"
    options = ocp.CheckpointManagerOptions(step_prefix="ckpt", step_format_fixed_length=5)
    with ocp.CheckpointManager(root, options=options, metadata={"lr": 0.1}) as mngr:
        mngr.save(42, args=ocp.args.StandardSave({"x": np.ones(1)}))
    assert (root / "ckpt_00042").is_dir()
    assert (root / "metadata" / "_ROOT_METADATA").is_file()
    fmt = ocp.step.standard_name_format(step_prefix="ckpt", step_format_fixed_length=5)
    with ocp.CheckpointManager(root, options=ocp.CheckpointManagerOptions(
            step_name_format=fmt)) as mngr:
        assert mngr.all_steps() == [42] and mngr.metadata().custom_metadata == {"lr": 0.1}
    with ocp.CheckpointManager(tmp_path / "no_root_meta", metadata={"lr": 0.1},
                               options=ocp.CheckpointManagerOptions(save_root_metadata=False)):
        pass
    assert not (tmp_path / "no_root_meta" / "metadata").exists()


def test_create_and_read_only(tmp_path):
    with pytest.raises(UnsupportedOptionError, match="create"):
        ocp.CheckpointManager(tmp_path / "missing",
                              options=ocp.CheckpointManagerOptions(create=False))
    root = tmp_path / "run"
    with ocp.CheckpointManager(root) as mngr:
        mngr.save(0, args=ocp.args.StandardSave({"x": np.ones(1)}))
    with ocp.CheckpointManager(root, options=ocp.CheckpointManagerOptions(read_only=True)) as mngr:
        assert mngr.save(1, args=ocp.args.StandardSave({"x": np.ones(1)})) is False
        assert mngr.should_save(1) is False
        mngr.delete(0)  # a no-op, as in v0
        assert mngr.all_steps() == [0]
        np.testing.assert_array_equal(mngr.restore(0)["x"], np.ones(1))


def test_async_options_callback_and_saving_in_progress_check(tmp_path):
    calls = []
    options = ocp.CheckpointManagerOptions(
        async_options=ocp.AsyncOptions(timeout_secs=30, post_finalization_callback=(
            lambda: calls.append(1))),
        enable_should_save_is_saving_in_progress_check=False,
        save_decision_policy=ocp.checkpoint_managers.save_decision_policy
        .ContinuousCheckpointingPolicy())
    with ocp.CheckpointManager(tmp_path / "run", options=options) as mngr:
        for step in range(3):
            assert mngr.save(step, args=ocp.args.StandardSave({"x": np.ones(1000)}))
        mngr.wait_until_finished()
        assert mngr.all_steps() == [0, 1, 2]
    assert len(calls) == 3
