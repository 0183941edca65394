"""Every code example of the seed documents, run with `import compat_v0 as ocp`.

Seeds 002 (Orbax "Checkpointing with Orbax"), 003 (Orbax "API Overview") and 004 (the
v0 to v1 migration guide) run fully; seeds 000 (Flax "Upgrading my codebase to Orbax")
and 001 (Flax "Save and load checkpoints") run every Orbax call, with the Flax-only
lines left out: Flax's `orbax_utils.save_args_from_target` / `restore_args_from_target`
are written as the `SaveArgs` / `RestoreArgs` trees they return, and Flax's
`TrainState` as a dict. Paths under /tmp are under pytest's tmp_path. The assertions
are the outputs the seeds print (or, where a seed prints none, what real Orbax
0.12.8 returns for the same code).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import compat_v0 as ocp
import orbax_v1
from compat_v0.checkpoint_managers import preservation_policy as preservation_policy_lib
from compat_v0.checkpoint_managers import (
    save_decision_policy as save_decision_policy_lib,
)


def same(got, want) -> None:
    """Same structure, leaf types (numpy vs jax) and values."""
    got_leaves, got_def = jax.tree_util.tree_flatten(got)
    want_leaves, want_def = jax.tree_util.tree_flatten(want)
    assert got_def == want_def, f"{got_def} != {want_def}"
    for g, w in zip(got_leaves, want_leaves):
        if isinstance(w, (np.ndarray, jax.Array)):
            assert type(g) is type(w) or (isinstance(g, jax.Array) and isinstance(w, jax.Array)), (
                type(g), type(w))
            assert g.dtype == w.dtype and g.shape == w.shape, (g, w)
            np.testing.assert_array_equal(np.asarray(g), np.asarray(w))
        else:
            assert g == w and type(g) is type(w), (g, w)


# ----------------------------------------------------------------------------------
# Seed 002: "Checkpointing with Orbax"
# ----------------------------------------------------------------------------------

def test_seed_002_save_restore_metadata_composite(tmp_path):
    path = ocp.test_utils.erase_and_create_empty(tmp_path / "my-checkpoints/")
    my_tree = {"a": np.arange(8), "b": {"c": 42, "d": np.arange(16)}}
    abstract_my_tree = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, my_tree)

    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path / "checkpoint_name", my_tree)
    restored = checkpointer.restore(path / "checkpoint_name/",
                                    args=ocp.args.StandardRestore(abstract_my_tree))
    same(restored, {"a": np.arange(8), "b": {"c": 42, "d": np.arange(16)}})

    meta = checkpointer.metadata(path / "checkpoint_name")
    assert (meta["a"].shape, meta["a"].dtype) == ((8,), np.int64)
    assert meta["b"]["c"].dtype == np.int64 and meta["b"]["c"].shape == ()
    assert (meta["b"]["d"].shape, meta["b"]["d"].dtype) == ((16,), np.int64)

    metadata = {"version": 1.0, "lang": "en"}
    checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler("state", "metadata"))
    checkpointer.save(path / "composite_checkpoint", args=ocp.args.Composite(
        state=ocp.args.StandardSave(my_tree), metadata=ocp.args.JsonSave(metadata)))
    restored = checkpointer.restore(path / "composite_checkpoint")
    same(restored.state, my_tree)
    assert restored.metadata == {"version": 1.0, "lang": "en"}
    # state, _CHECKPOINT_METADATA, metadata (and commit_success.txt since Orbax 0.12.3).
    assert sorted(p.name for p in (path / "composite_checkpoint").iterdir()) == [
        "_CHECKPOINT_METADATA", "commit_success.txt", "metadata", "state"]


def test_seed_002_checkpoint_manager(tmp_path):
    path = ocp.test_utils.erase_and_create_empty(tmp_path / "checkpoint_manager")
    state = {"a": np.arange(8), "b": np.arange(16)}
    extra_params = [42, 43]
    options = ocp.CheckpointManagerOptions(max_to_keep=3, save_interval_steps=2)
    mngr = ocp.CheckpointManager(path, options=options, item_names=("state", "extra_params"))
    for step in range(11):  # [0, 1, ..., 10]
        mngr.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            extra_params=ocp.args.JsonSave(extra_params)))
    mngr.wait_until_finished()
    restored = mngr.restore(10)
    restored_state, restored_extra_params = restored.state, restored.extra_params
    same(restored_state, state)
    assert restored_extra_params == [42, 43]
    assert mngr.all_steps() == [6, 8, 10]
    assert mngr.latest_step() == 10
    assert mngr.should_save(11) is False
    mngr.close()


def test_seed_002_standard_recipe_sharded(tmp_path):
    path = ocp.test_utils.erase_and_create_empty(tmp_path / "checkpoint_manager_sharded")
    mesh = jax.sharding.Mesh(jax.devices(), ("model",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("model"))
    create_sharded_array = lambda x: jax.device_put(x, sharding)
    train_state = {"a": np.arange(16), "b": np.ones(16)}
    train_state = jax.tree_util.tree_map(create_sharded_array, train_state)
    assert jax.tree_util.tree_map(lambda x: x.sharding, train_state) == {
        "a": sharding, "b": sharding}

    num_steps = 10
    options = ocp.CheckpointManagerOptions(max_to_keep=3, save_interval_steps=2)
    mngr = ocp.CheckpointManager(path, options=options)

    @jax.jit
    def train_fn(state):
        return jax.tree_util.tree_map(lambda x: x + 1, state)

    for step in range(num_steps):
        train_state = train_fn(train_state)
        mngr.save(step, args=ocp.args.StandardSave(train_state))
    mngr.wait_until_finished()
    restored = mngr.restore(mngr.latest_step())
    want = {"a": jnp.arange(9, 25, dtype=jnp.int32), "b": jnp.full(16, 10.0, jnp.float32)}
    same(restored, want)
    assert restored["a"].sharding == sharding  # restored on the saved sharding

    train_state = jax.tree_util.tree_map(np.zeros_like, train_state)
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None))
    train_state = jax.tree_util.tree_map(create_sharded_array, train_state)
    abstract_train_state = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, train_state)
    restored = mngr.restore(mngr.latest_step(),
                            args=ocp.args.StandardRestore(abstract_train_state))
    same(restored, want)
    assert jax.tree_util.tree_map(lambda x: x.sharding, restored) == {
        "a": sharding, "b": sharding}
    mngr.close()


# ----------------------------------------------------------------------------------
# Seed 003: "API Overview"
# ----------------------------------------------------------------------------------

@pytest.fixture
def api_overview(tmp_path):
    state = {"layer0": {"bias": np.ones((4,)), "weight": jnp.arange(16)}}
    return {
        "path": ocp.test_utils.erase_and_create_empty(tmp_path / "my-checkpoints/"),
        "state": state,
        "abstract_state": jax.tree.map(ocp.tree.to_shape_dtype_struct, state),
        "metadata": {"version": 1.0},
        "extra_metadata": {"version": 1.0, "step": 0},
        "base": tmp_path,
    }


def set_dtype(abstract_arr):
    return abstract_arr.update(dtype=np.float32)


def test_seed_003_manager_single_item(api_overview):
    state, abstract_state = api_overview["state"], api_overview["abstract_state"]
    directory = ocp.test_utils.erase_and_create_empty(
        api_overview["base"] / "checkpoint-manager-single/")
    options = ocp.CheckpointManagerOptions(
        save_decision_policy=save_decision_policy_lib.FixedIntervalPolicy(2),
        preservation_policy=preservation_policy_lib.LatestN(2))
    mngr = ocp.CheckpointManager(directory, options=options)

    def train_step(state):
        return jax.tree_util.tree_map(lambda x: x + 1, state)

    for step in range(5):
        state = train_step(state)
        mngr.save(step, args=ocp.args.StandardSave(state))
    mngr.wait_until_finished()
    assert mngr.latest_step() == 4
    assert mngr.all_steps() == [2, 4]
    same(mngr.restore(mngr.latest_step()),
         {"layer0": {"bias": np.full(4, 6.0), "weight": jnp.arange(5, 21, dtype=jnp.int32)}})
    same(mngr.restore(mngr.latest_step(), args=ocp.args.StandardRestore(
        jax.tree.map(set_dtype, abstract_state))),
        {"layer0": {"bias": np.full(4, 6.0, np.float32),
                    "weight": jnp.arange(5, 21, dtype=jnp.float32)}})


def test_seed_003_manager_multiple_items(api_overview):
    state, abstract_state = api_overview["state"], api_overview["abstract_state"]
    extra_metadata = api_overview["extra_metadata"]
    directory = ocp.test_utils.erase_and_create_empty(
        api_overview["base"] / "checkpoint-manager-multiple/")
    options = ocp.CheckpointManagerOptions(
        save_decision_policy=save_decision_policy_lib.FixedIntervalPolicy(2),
        preservation_policy=preservation_policy_lib.LatestN(2))
    mngr = ocp.CheckpointManager(directory, options=options)

    def train_step(step, _state, _extra_metadata):
        return jax.tree_util.tree_map(lambda x: x + 1, _state), {**_extra_metadata, "step": step}

    for step in range(5):
        state, extra_metadata = train_step(step, state, extra_metadata)
        mngr.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            extra_metadata=ocp.args.JsonSave(extra_metadata)))
    mngr.wait_until_finished()
    want_state = {"layer0": {"bias": np.full(4, 6.0), "weight": jnp.arange(5, 21, dtype=jnp.int32)}}
    result = mngr.restore(mngr.latest_step())
    assert isinstance(result, ocp.args.Composite) and sorted(result) == [
        "extra_metadata", "state"]
    same(result.state, want_state)
    assert result.extra_metadata == {"version": 1.0, "step": 4}
    only = mngr.restore(mngr.latest_step(), args=ocp.args.Composite(extra_metadata=None))
    assert dict(only) == {"extra_metadata": {"version": 1.0, "step": 4}}
    cast = mngr.restore(mngr.latest_step(), args=ocp.args.Composite(
        state=ocp.args.StandardRestore(jax.tree.map(set_dtype, abstract_state)),
        extra_metadata=None))
    same(cast.state, jax.tree.map(lambda x: x.astype(np.float32), want_state))
    assert cast.extra_metadata == {"version": 1.0, "step": 4}


def test_seed_003_checkpointer_layer(api_overview):
    path, state = api_overview["path"], api_overview["state"]
    abstract_state, metadata = api_overview["abstract_state"], api_overview["metadata"]
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path / "standard-ckpt-1", state)
        result = ckptr.restore(path / "standard-ckpt-1", abstract_state)
        same(result, state)
    with ocp.AsyncCheckpointer(ocp.StandardCheckpointHandler()) as ckptr:
        ckptr.save(path / "standard-ckpt-2", args=ocp.args.StandardSave(state))
    same(orbax_v1.load(path / "standard-ckpt-2", orbax_v1.metadata(
        path / "standard-ckpt-2", checkpointable_name=None), checkpointable_name=None), state)
    with ocp.Checkpointer(ocp.JsonCheckpointHandler()) as ckptr:
        ckptr.save(path / "json-ckpt-1", args=ocp.args.JsonSave({"a": "b"}))
        assert ckptr.restore(path / "json-ckpt-1") == {"a": "b"}
    ckptr = ocp.AsyncCheckpointer(ocp.StandardCheckpointHandler())
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
        ckptr.save(path / "composite-ckpt-1", args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), metadata=ocp.args.JsonSave(metadata)))
        restored = ckptr.restore(path / "composite-ckpt-1")
    same(restored.state, state)
    assert restored.metadata == {"version": 1.0}


def test_seed_003_items_and_registration(api_overview):
    state, extra_metadata = api_overview["state"], api_overview["extra_metadata"]
    directory = ocp.test_utils.erase_and_create_empty(
        api_overview["base"] / "checkpoint-manager-items-1/")
    mngr = ocp.CheckpointManager(directory)
    mngr.save(0, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                         extra_metadata=ocp.args.JsonSave(extra_metadata)))
    restored = mngr.restore(0)
    same(restored.state, state)
    assert restored.extra_metadata == {"version": 1.0, "step": 0}
    mngr.save(1, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                         extra_metadata=None))
    restored = mngr.restore(1)
    same(restored.state, state)
    assert restored.extra_metadata is None
    meta = mngr.item_metadata(1)
    assert meta.state["layer0"]["weight"].shape == (16,)
    assert meta.state["layer0"]["bias"].dtype == np.float64
    mngr.close()

    # A new manager restores with the handlers recorded on disk (as real Orbax 0.12.8
    # does; the guide's older text expected an error here).
    with ocp.CheckpointManager(directory) as mngr:
        restored = mngr.restore(0)
        same(restored.state, state)
        assert restored.extra_metadata == {"version": 1.0, "step": 0}
        meta = mngr.item_metadata(0)
        assert meta.extra_metadata is None and meta.state["layer0"]["weight"].shape == (16,)

    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    registry.add("state", ocp.args.StandardSave)
    registry.add("state", ocp.args.StandardRestore)
    with ocp.CheckpointManager(directory, handler_registry=registry) as mngr:
        restored = mngr.restore(0, args=ocp.args.Composite(state=None))
        assert sorted(restored) == ["state"]
        same(restored.state, state)
        assert mngr.item_metadata(0).state["layer0"]["bias"].shape == (4,)

    with ocp.CheckpointManager(directory, handler_registry=registry) as mngr:
        mngr.save(2, args=ocp.args.PyTreeSave({"a": "b"}))
        with pytest.raises(ValueError, match="does not match with any registered handler"):
            mngr.save(3, args=ocp.args.JsonSave({"a": "b"}))


# ----------------------------------------------------------------------------------
# Seed 004: the v0 to v1 migration guide (v0 calls through compat_v0, v1 loads)
# ----------------------------------------------------------------------------------

def test_seed_004_v0_saves_v1_loads(tmp_path):
    from etils import epath
    ocp_v0 = ocp
    root_dir = epath.Path(tmp_path / "migration/root_dir")
    root_dir.rmtree(missing_ok=True)
    data = {"params": np.ones(2)}
    args = ocp_v0.args.Composite(**{
        checkpointable_name: ocp_v0.args.StandardSave(data)
        for checkpointable_name in ["state", "pytree"]})
    with ocp_v0.CheckpointManager(root_dir) as mngr:
        step = 0
        mngr.save(step, args=args)
    step_dir = root_dir / f"{step}"
    assert sorted(os.listdir(step_dir)) == [
        "_CHECKPOINT_METADATA", "commit_success.txt", "pytree", "state"]

    loaded = orbax_v1.load_checkpointables(step_dir)
    same(loaded["state"], {"params": np.array([1.0, 1.0])})
    same(loaded["pytree"], {"params": np.array([1.0, 1.0])})

    my_checkpoint_dir = epath.Path(tmp_path / "migration/custom_checkpoint/my_checkpoint")
    my_checkpoint_dir.rmtree(missing_ok=True)
    with ocp_v0.StandardCheckpointer() as checkpointer:
        checkpointer.save(my_checkpoint_dir, data)
    assert {"_CHECKPOINT_METADATA", "_METADATA", "d", "manifest.ocdbt", "ocdbt.process_0"} <= set(
        os.listdir(my_checkpoint_dir))
    loaded = orbax_v1.load(my_checkpoint_dir, checkpointable_name=None)
    same(loaded, {"params": np.array([1.0, 1.0])})
