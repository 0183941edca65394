"""compat_v0 checkpointers, handlers and args: call forms, errors and the direct layout."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import compat_v0 as ocp
from compat_v0 import errors
from compat_v0.errors import UnsupportedOptionError

V0 = "orbax.checkpoint._src.handlers."


def test_direct_layouts_record_v0_handler_names(tmp_path):
    ocp.Checkpointer(ocp.JsonCheckpointHandler()).save(tmp_path / "json", {"a": 1})
    assert sorted(os.listdir(tmp_path / "json")) == [
        "_CHECKPOINT_METADATA", "commit_success.txt", "metadata"]
    with open(tmp_path / "json" / "_CHECKPOINT_METADATA") as f:
        assert json.load(f)["item_handlers"] == V0 + "json_checkpoint_handler.JsonCheckpointHandler"
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(tmp_path / "std", {"x": np.arange(3)})
    files = set(os.listdir(tmp_path / "std"))
    assert {"_CHECKPOINT_METADATA", "_METADATA", "manifest.ocdbt"} <= files
    assert "orbax.checkpoint" not in files
    ocp.Checkpointer(ocp.ArrayCheckpointHandler()).save(tmp_path / "arr", np.arange(3))
    for name, handler in (("std", "standard_checkpoint_handler.StandardCheckpointHandler"),
                          ("arr", "array_checkpoint_handler.ArrayCheckpointHandler")):
        with open(tmp_path / name / "_CHECKPOINT_METADATA") as f:
            assert json.load(f)["item_handlers"] == V0 + handler
    assert sorted(os.listdir(tmp_path / "std")) == sorted(
        [f for f in os.listdir(tmp_path / "std") if "tmp" not in f])
    ocp.Checkpointer(ocp.CompositeCheckpointHandler()).save(
        tmp_path / "comp", args=ocp.args.Composite(a=ocp.args.PyTreeSave({"s": "x"})))
    assert "orbax.checkpoint" not in os.listdir(tmp_path / "comp")
    with open(tmp_path / "comp" / "_CHECKPOINT_METADATA") as f:
        assert json.load(f)["item_handlers"] == {
            "a": V0 + "pytree_checkpoint_handler.PyTreeCheckpointHandler"}


def test_existing_destination_force_and_missing_paths(tmp_path):
    ckptr = ocp.PyTreeCheckpointer()
    ckptr.save(tmp_path / "c", {"x": 1})
    with pytest.raises(errors.DestinationExistsError) as e:
        ckptr.save(tmp_path / "c", {"x": 2})
    assert isinstance(e.value, ValueError) and isinstance(e.value, FileExistsError)
    ckptr.save(tmp_path / "c", {"x": 2}, force=True)
    assert ckptr.restore(tmp_path / "c") == {"x": 2}
    with pytest.raises(FileNotFoundError, match="not found"):
        ckptr.restore(tmp_path / "missing")
    os.makedirs(tmp_path / "c2.orbax-checkpoint-tmp")
    with pytest.raises(ValueError, match="incomplete"):
        ckptr.restore(tmp_path / "c2.orbax-checkpoint-tmp")
    json_ckptr = ocp.Checkpointer(ocp.JsonCheckpointHandler())
    json_ckptr.save(tmp_path / "j", args=ocp.args.JsonSave({"v": 1}))
    json_ckptr.save(tmp_path / "j", args=ocp.args.JsonSave({"v": 2}), force=True)
    assert json_ckptr.restore(tmp_path / "j") == {"v": 2}
    assert json_ckptr.metadata(tmp_path / "j").item_handlers.endswith("JsonCheckpointHandler")


def test_async_checkpointer_waits_and_reports(tmp_path):
    calls = []
    ckptr = ocp.AsyncCheckpointer(ocp.StandardCheckpointHandler(), async_options=ocp.AsyncOptions(
        post_finalization_callback=lambda: calls.append(1)))
    data = {"x": np.ones((256, 256), np.float32)}
    ckptr.save(tmp_path / "a", args=ocp.args.StandardSave(data))
    data["x"][:] = 0  # the save holds its own copy
    ckptr.save(tmp_path / "b", args=ocp.args.StandardSave(data))  # waits for "a" first
    ckptr.wait_until_finished()
    assert calls == [1, 1] and not ckptr.is_saving_in_progress()
    assert ckptr.restore(tmp_path / "a")["x"].max() == 1.0
    assert ckptr.restore(tmp_path / "b")["x"].max() == 0.0
    meta = ckptr.metadata(tmp_path / "a")
    assert meta.item_metadata["x"].shape == (256, 256) and meta["x"].dtype == np.float32
    ckptr.close()


def test_standard_checkpointer_call_forms(tmp_path):
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(tmp_path / "s", {"x": np.arange(4)}, custom_metadata={"k": "v"})
        ckptr.wait_until_finished()
        assert ckptr.metadata(tmp_path / "s").custom_metadata == {"k": "v"}
        target = {"x": np.zeros(4, np.float32)}
        assert ckptr.restore(tmp_path / "s", target)["x"].dtype == np.float32
        assert ckptr.restore(tmp_path / "s", args=ocp.args.StandardRestore(target))[
            "x"].dtype == np.float32
        with pytest.raises(ValueError, match="str"):
            ckptr.save(tmp_path / "t", {"s": "text"})
        assert not os.path.exists(tmp_path / "t")


@pytest.mark.parametrize("make,field", [
    (lambda: ocp.PyTreeCheckpointHandler(use_ocdbt=False), "use_ocdbt"),
    (lambda: ocp.PyTreeCheckpointHandler("aggregate"), "aggregate_filename"),
    (lambda: ocp.StandardCheckpointHandler(use_ocdbt=False), "use_ocdbt"),
    (lambda: ocp.JsonCheckpointHandler("other.json"), "filename"),
    (lambda: ocp.ArrayCheckpointHandler("arr"), "checkpoint_name"),
    (lambda: ocp.PyTreeCheckpointer(primary_host=None), "primary_host"),
    (lambda: ocp.Checkpointer(ocp.PyTreeCheckpointHandler(),
                              file_options=ocp.FileOptions(path_permission_mode=0o700)),
     "path_permission_mode"),
    (lambda: ocp.SaveArgs(chunk_byte_size=1 << 20), "chunk_byte_size"),
    (lambda: ocp.SaveArgs(shard_axes=(0,)), "shard_axes"),
    (lambda: ocp.ArrayRestoreArgs(strict=False), "strict"),
    (lambda: ocp.args.StandardRestore(None, strict=False), "strict"),
    (lambda: ocp.args.StandardRestore(None, fallback_sharding=object()), "fallback_sharding"),
    (lambda: ocp.args.StandardSave({}, custom_metadata={"a": 1}), "custom_metadata"),
    (lambda: ocp.args.PyTreeSave({}, ocdbt_target_data_file_size=1), "ocdbt_target_data_file"),
    (lambda: ocp.args.PyTreeRestore(transforms={"a": 1}), "transforms"),
    (lambda: ocp.args.PyTreeRestore(legacy_transform_fn=len), "legacy_transform_fn"),
])
def test_unsupported_settings_raise_naming_them(make, field):
    with pytest.raises(UnsupportedOptionError, match=field):
        make()


def test_tuning_knobs_are_accepted():
    ocp.PyTreeCheckpointHandler(use_zarr3=True, use_compression=False, save_concurrent_gb=4,
                                restore_concurrent_gb=4)
    ocp.StandardCheckpointHandler(save_concurrent_gb=1)
    ocp.SaveArgs(aggregate=True)  # ignored by real Orbax 0.12 too
    with pytest.raises(TypeError, match="unexpected keyword"):
        ocp.StandardCheckpointHandler(nonsense=1)


def test_composite_args_and_registry():
    c = ocp.args.Composite(a=1, b=None)
    assert c.a == 1 and c["b"] is None and "a" in c and len(c) == 2 and dict(c) == {"a": 1,
                                                                                     "b": None}
    with pytest.raises(AttributeError):
        c.a = 2
    with pytest.raises(AttributeError, match="has no item"):
        _ = c.zzz
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    registry.add("state", ocp.args.StandardSave)
    registry.add("state", ocp.args.StandardRestore)
    assert registry.get("state", ocp.args.StandardSave) is registry.get(
        "state", ocp.args.StandardRestore)
    assert registry.has("state", ocp.args.StandardSave)
    with pytest.raises(ValueError, match="already exists"):
        registry.add("state", ocp.args.StandardSave)
    registry.add("meta", ocp.args.JsonSave, ocp.JsonCheckpointHandler)
    assert isinstance(registry.get("meta", ocp.args.JsonSave), ocp.JsonCheckpointHandler)


def test_to_shape_dtype_struct_and_erase(tmp_path):
    import jax
    assert ocp.utils.to_shape_dtype_struct(3) == 3
    sds = ocp.tree.to_shape_dtype_struct(np.zeros((2, 3), np.float32))
    assert (sds.shape, sds.dtype, sds.sharding) == ((2, 3), np.float32, None)
    arr = jax.numpy.ones(4)
    assert ocp.tree.to_shape_dtype_struct(arr).sharding == arr.sharding
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    path = ocp.test_utils.erase_and_create_empty(tmp_path / "d")
    assert list(path.iterdir()) == [] and str(path) == str(tmp_path / "d")
