"""`compat_v0.CheckpointManager`: the v0 call forms, errors, metadata and layout."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

import compat_v0 as ocp
import orbax_v1
from compat_v0 import errors

SYNC = ocp.CheckpointManagerOptions(enable_async_checkpointing=False)


def tree(step: int = 0) -> dict:
    return {"w": np.arange(6, dtype=np.float32).reshape(2, 3) + step, "n": step}


def test_constructor_forms_are_exclusive(tmp_path):
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    ckptr = ocp.PyTreeCheckpointer()
    for kwargs in ({"checkpointers": ckptr, "item_names": ("a",)},
                   {"checkpointers": ckptr, "item_handlers": ocp.PyTreeCheckpointHandler()},
                   {"checkpointers": ckptr, "handler_registry": registry},
                   {"item_handlers": {"a": ocp.PyTreeCheckpointHandler()},
                    "handler_registry": registry},
                   {"item_names": ("a",), "handler_registry": registry},
                   {"item_names": ("a",), "item_handlers": ocp.PyTreeCheckpointHandler()}):
        with pytest.raises(ValueError):
            ocp.CheckpointManager(tmp_path / "r", **kwargs)
    with pytest.raises(ValueError, match="Checkpointer"):
        ocp.CheckpointManager(tmp_path / "r", {"a": object()})


def test_save_argument_errors(tmp_path):
    with ocp.CheckpointManager(tmp_path / "single") as mngr:
        with pytest.raises(ValueError, match="Must provide `args`"):
            mngr.save(0)
        with pytest.raises(ValueError, match="args=args"):
            mngr.save(0, ocp.args.StandardSave(tree()))
        mngr.save(0, args=ocp.args.StandardSave(tree()))
        with pytest.raises(ValueError, match="Composite"):
            mngr.save(1, args=ocp.args.Composite(a=ocp.args.StandardSave(tree())))
    with ocp.CheckpointManager(tmp_path / "multi", item_names=("a",)) as mngr:
        with pytest.raises(ValueError, match="Composite"):
            mngr.save(0, args=ocp.args.StandardSave(tree()))
        with pytest.raises(ValueError, match="reserved"):
            mngr.save(0, args=ocp.args.Composite(metrics=ocp.args.JsonSave({})))


def test_existing_step_force_and_policy(tmp_path):
    options = ocp.CheckpointManagerOptions(save_interval_steps=5, enable_async_checkpointing=False)
    with ocp.CheckpointManager(tmp_path / "r", options=options) as mngr:
        assert mngr.save(0, args=ocp.args.StandardSave(tree(0)))
        assert mngr.save(3, args=ocp.args.StandardSave(tree(3))) is False
        assert mngr.save(3, args=ocp.args.StandardSave(tree(3)), force=True)
        assert mngr.save(2, args=ocp.args.StandardSave(tree(2))) is False  # before the latest
        with pytest.raises(errors.StepAlreadyExistsError) as e:
            mngr.save(3, args=ocp.args.StandardSave(tree(3)), force=True)
        assert isinstance(e.value, ValueError) and isinstance(e.value, FileExistsError)
        assert mngr.all_steps() == [0, 3]


def test_async_save_lists_in_flight_step_and_restores_it(tmp_path):
    with ocp.CheckpointManager(tmp_path / "r") as mngr:
        big = {"x": np.ones((512, 512), np.float32)}
        assert mngr.save(7, args=ocp.args.StandardSave(big))
        assert mngr.latest_step() == 7  # as v0: the step being saved counts
        np.testing.assert_array_equal(mngr.restore(7)["x"], big["x"])  # waits for it
        assert not mngr.is_saving_in_progress()
        mngr.check_for_errors()
    assert not os.path.exists(tmp_path / "r" / "7" / "orbax.checkpoint")


def test_restore_errors_and_directory(tmp_path):
    with ocp.CheckpointManager(tmp_path / "empty") as mngr, pytest.raises(
            FileNotFoundError, match="No steps found"):
        mngr.restore(None)
    with ocp.CheckpointManager(tmp_path / "r", options=SYNC) as mngr:
        mngr.save(1, args=ocp.args.StandardSave(tree(1)))
        with pytest.raises(FileNotFoundError):
            mngr.restore(2)
        with pytest.raises(ValueError, match="Composite"):
            mngr.restore(1, args=ocp.args.Composite(default=None))
    with ocp.CheckpointManager(tmp_path / "other") as other:
        restored = other.restore(None, directory=tmp_path / "r")
        np.testing.assert_array_equal(restored["w"], tree(1)["w"])


def test_restore_targets_placeholder_partial_and_casts(tmp_path):
    with ocp.CheckpointManager(tmp_path / "r", options=SYNC) as mngr:
        mngr.save(0, args=ocp.args.PyTreeSave({"a": np.arange(4), "b": {"c": 1.5, "s": "x"}}))
        out = mngr.restore(0, args=ocp.args.PyTreeRestore(
            {"a": ocp.PLACEHOLDER, "b": {"c": 0.0, "s": ""}}))
        assert out == {"a": ..., "b": {"c": 1.5, "s": "x"}}
        out = mngr.restore(0, args=ocp.args.PyTreeRestore(
            {"b": {"c": 0.0}}, partial_restore=True))
        assert out == {"b": {"c": 1.5}}
        out = mngr.restore(0, args=ocp.args.PyTreeRestore(restore_args={
            "a": ocp.RestoreArgs(restore_type=np.ndarray, dtype=np.float32),
            "b": {"c": ocp.RestoreArgs(), "s": ocp.RestoreArgs(restore_type=str)}}))
        assert out["a"].dtype == np.float32 and out["b"] == {"c": 1.5, "s": "x"}
        mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("d",))
        out = mngr.restore(0, args=ocp.args.PyTreeRestore(
            {"a": 0, "b": {"c": 0, "s": ""}}, restore_args={"a": ocp.ArrayRestoreArgs(
                mesh=mesh, mesh_axes=jax.sharding.PartitionSpec(None))}))
        assert isinstance(out["a"], jax.Array) and out["a"].sharding.mesh == mesh
        with pytest.raises(KeyError, match="zzz"):
            mngr.restore(0, args=ocp.args.PyTreeRestore({"a": 0, "b": {"c": 0, "s": ""},
                                                        "zzz": 1}))


def test_standard_save_rejects_strings_and_casts_with_save_args(tmp_path):
    with ocp.CheckpointManager(tmp_path / "r", options=SYNC) as mngr:
        with pytest.raises(ValueError, match="str"):
            mngr.save(0, args=ocp.args.StandardSave({"s": "text"}))
        assert mngr.all_steps() == [] and not os.path.exists(tmp_path / "r" / "0")
        mngr.save(0, args=ocp.args.StandardSave(
            {"x": np.ones(3)}, save_args={"x": ocp.SaveArgs(dtype=np.float16)}))
        assert mngr.restore(0)["x"].dtype == np.float16


def test_legacy_dict_form_with_kwargs(tmp_path):
    mngr = ocp.CheckpointManager(tmp_path / "r", {
        "state": ocp.AsyncCheckpointer(ocp.PyTreeCheckpointHandler()),
        "meta": ocp.Checkpointer(ocp.JsonCheckpointHandler())})
    mngr.save(0, {"state": tree(0), "meta": {"lr": 0.1}},
              save_kwargs={"state": {"save_args": {"w": ocp.SaveArgs(dtype=np.float16),
                                                   "n": ocp.SaveArgs()}}})
    mngr.wait_until_finished()
    restored = mngr.restore(0)
    assert restored["meta"] == {"lr": 0.1} and restored["state"]["w"].dtype == np.float16
    only = mngr.restore(0, items={"state": {"w": np.zeros((2, 3)), "n": 0}},
                        restore_kwargs={"state": {"restore_args": {
                            "w": ocp.RestoreArgs(restore_type=np.ndarray, dtype=np.float32),
                            "n": ocp.RestoreArgs(restore_type=int)}}})
    assert sorted(only) == ["state"] and only["state"]["w"].dtype == np.float32
    with pytest.raises(ValueError, match="Unknown key"):
        mngr.save(1, {"other": 1})
    mngr.close()


def test_item_handlers_array_items_and_metadata(tmp_path):
    root = tmp_path / "r"
    with ocp.CheckpointManager(root, options=SYNC, item_handlers={
            "arr": ocp.ArrayCheckpointHandler(), "cfg": ocp.JsonCheckpointHandler()}) as mngr:
        mngr.save(4, args=ocp.args.Composite(arr=ocp.args.ArraySave(np.arange(3)),
                                             cfg=ocp.args.JsonSave({"a": 1})),
                  custom_metadata={"note": "hi"})
        restored = mngr.restore(4)
        np.testing.assert_array_equal(restored.arr, np.arange(3))
        restored = mngr.restore(4, args=ocp.args.Composite(arr=ocp.args.ArrayRestore(
            restore_args=ocp.RestoreArgs(restore_type=np.ndarray, dtype=np.float32))))
        assert restored.arr.dtype == np.float32
        meta = mngr.metadata(4)
        assert meta.custom_metadata == {"note": "hi"}
        assert meta.item_metadata.arr.shape == (3,) and meta.item_metadata.cfg is None
        assert meta.commit_timestamp_nsecs >= meta.init_timestamp_nsecs
        assert mngr.item_metadata(4).arr.dtype == np.int64
        with pytest.raises(ValueError, match="step"):
            mngr.item_metadata(None)
    with open(root / "4" / "_CHECKPOINT_METADATA") as f:
        assert json.load(f)["item_handlers"]["arr"].endswith("ArrayCheckpointHandler")


def test_delete_reload_and_other_writers(tmp_path):
    root = tmp_path / "r"
    with ocp.CheckpointManager(root, options=SYNC) as a, ocp.CheckpointManager(
            root, options=SYNC) as b:
        a.save(0, args=ocp.args.StandardSave(tree(0)))
        a.save(1, args=ocp.args.StandardSave(tree(1)))
        assert b.all_steps() == []
        assert b.all_steps(read=True) == [0, 1]
        a.delete(0)
        with pytest.raises(FileNotFoundError, match="non-existent step"):
            a.delete(0)
        b.reload()
        assert b.all_steps() == [1]
        assert str(b.directory) == str(root)


def test_a_v0_layout_with_no_marker_and_v1_reads_it(tmp_path):
    root = tmp_path / "r"
    with ocp.CheckpointManager(root) as mngr:
        for step in range(3):
            mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(tree(step)),
                                                    meta=ocp.args.JsonSave({"s": step})))
    for dirpath, _, files in os.walk(root):
        assert "orbax.checkpoint" not in files
    assert os.listdir(root / "2" / "meta") == ["metadata"]
    loaded = orbax_v1.load_checkpointables(root / "2")
    assert loaded["meta"] == {"s": 2}
    np.testing.assert_array_equal(loaded["state"]["w"], tree(2)["w"])


def test_background_failure_surfaces_once(tmp_path, monkeypatch):
    from compat_v0 import _handlers

    def broken_save(self, directory, checkpointable):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(_handlers._StandardV1, "save", broken_save)
    mngr = ocp.CheckpointManager(tmp_path / "r")
    assert mngr.save(0, args=ocp.args.StandardSave(tree()))  # returns before the write
    with pytest.raises(RuntimeError, match="disk on fire"):
        mngr.wait_until_finished()
    mngr.check_for_errors()  # already reported
    assert mngr.all_steps() == [] and not os.path.exists(tmp_path / "r" / "0")
    monkeypatch.undo()
    assert mngr.save(1, args=ocp.args.StandardSave(tree(1)))
    mngr.close()
    assert ocp.CheckpointManager(tmp_path / "r").all_steps() == [1]


def test_step_written_by_another_manager_is_not_overwritten(tmp_path):
    root = tmp_path / "r"
    with ocp.CheckpointManager(root, options=SYNC) as a, ocp.CheckpointManager(
            root, options=SYNC) as b:
        b.save(10, args=ocp.args.StandardSave(tree(10)))
        with pytest.raises(errors.StepAlreadyExistsError):
            a.save(10, args=ocp.args.StandardSave(tree(0)), force=True)
        np.testing.assert_array_equal(a.restore(10)["w"], tree(10)["w"])
