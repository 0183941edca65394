"""The Orbax calls of the Flax seeds (000 "Upgrading my codebase to Orbax", 001 "Save and
load checkpoints"), run with `import compat_v0 as ocp` in place of `orbax.checkpoint`.

Flax-only lines are left out: `flax.training.orbax_utils.save_args_from_target(t)` is
written as the tree of `ocp.SaveArgs()` it returns, `restore_args_from_target(t,
mesh=None)` (single process, no multi-process arrays) as the tree of
`ocp.RestoreArgs(restore_type=np.ndarray)` it returns, and Flax's `TrainState` as a dict
with the same fields. `jax.distributed.initialize` is left out (single process).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import compat_v0 as ocp


def save_args_from_target(target):
    return jax.tree_util.tree_map(lambda _: ocp.SaveArgs(), target)


def restore_args_from_target(target, mesh=None):
    return jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)


def assert_equal(got, want):
    got_leaves, got_def = jax.tree_util.tree_flatten(got)
    want_leaves, want_def = jax.tree_util.tree_flatten(want)
    assert got_def == want_def, f"{got_def} != {want_def}"
    for g, w in zip(got_leaves, want_leaves):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


# ----------------------------------------------------------------------------------
# Seed 000: Flax "Upgrading my codebase to Orbax"
# ----------------------------------------------------------------------------------

MAX_STEPS = 5
CKPT_PYTREE = [12, {"foo": "str", "bar": np.array((2, 3))}, [1, 4, 10]]
TARGET_PYTREE = [0, {"foo": "", "bar": np.array(0)}, [0, 0, 0]]


def test_seed_000_manager_save_restore(tmp_path):
    ckpt_dir = str(tmp_path / "tmp") + "/"
    mgr_options = ocp.CheckpointManagerOptions(max_to_keep=3, keep_period=2, step_prefix="test_")
    ckpt_mgr = ocp.CheckpointManager(
        ckpt_dir, ocp.Checkpointer(ocp.PyTreeCheckpointHandler()), mgr_options)
    for step in range(MAX_STEPS):
        save_args = save_args_from_target(CKPT_PYTREE)
        ckpt_mgr.save(step, CKPT_PYTREE, save_kwargs={"save_args": save_args})
    # max_to_keep=3 keeps 2, 3, 4; keep_period=2 also keeps 0 (as real Orbax).
    assert sorted(os.listdir(ckpt_dir)) == ["test__0", "test__2", "test__3", "test__4"]
    assert ckpt_mgr.all_steps() == [0, 2, 3, 4]

    restore_args = restore_args_from_target(TARGET_PYTREE, mesh=None)
    restored = ckpt_mgr.restore(4, items=TARGET_PYTREE, restore_kwargs={"restore_args": restore_args})
    assert_equal(restored, [12, {"foo": "str", "bar": np.array([2, 3])}, [1, 4, 10]])
    assert isinstance(restored[1]["bar"], np.ndarray) and restored[1]["foo"] == "str"
    # Without restore args the target gives the structure, the checkpoint the values.
    assert_equal(ckpt_mgr.restore(4, items=TARGET_PYTREE), CKPT_PYTREE)


def test_seed_000_pure_save_load(tmp_path):
    pure_ckpt_dir = str(tmp_path / "pure")
    ckptr = ocp.Checkpointer(ocp.PyTreeCheckpointHandler())
    for _ in range(2):  # force=True overwrites, as flax's overwrite=True
        ckptr.save(pure_ckpt_dir, CKPT_PYTREE, save_args=save_args_from_target(CKPT_PYTREE),
                   force=True)
    restored = ckptr.restore(pure_ckpt_dir, item=TARGET_PYTREE,
                             restore_args=restore_args_from_target(TARGET_PYTREE, mesh=None))
    assert_equal(restored, CKPT_PYTREE)
    with pytest.raises(ValueError, match="already exists"):
        ckptr.save(pure_ckpt_dir, CKPT_PYTREE)

    notarget_ckpt_dir = str(tmp_path / "no_target")
    ckptr = ocp.Checkpointer(ocp.PyTreeCheckpointHandler())
    ckptr.save(notarget_ckpt_dir, CKPT_PYTREE, save_args=save_args_from_target(CKPT_PYTREE))
    restored = ckptr.restore(notarget_ckpt_dir, item=None)
    assert restored[1]["foo"] == "str" and restored[0] == 12
    assert_equal(restored, CKPT_PYTREE)

    async_ckptr = ocp.AsyncCheckpointer(ocp.PyTreeCheckpointHandler())
    async_ckptr.save(str(tmp_path / "async"), CKPT_PYTREE)
    async_ckptr.wait_until_finished()
    assert_equal(async_ckptr.restore(str(tmp_path / "async")), CKPT_PYTREE)

    arr_ckpt_dir = str(tmp_path / "singleton")
    ckptr = ocp.Checkpointer(ocp.ArrayCheckpointHandler())
    ckptr.save(arr_ckpt_dir, jnp.arange(10))
    restored = ckptr.restore(arr_ckpt_dir, item=None)
    np.testing.assert_array_equal(restored, np.arange(10))


# ----------------------------------------------------------------------------------
# Seed 001: Flax "Save and load checkpoints"
# ----------------------------------------------------------------------------------

@pytest.fixture
def flax_state():
    key1, _ = jax.random.split(jax.random.key(0))
    x1 = jax.random.normal(key1, (5,))
    params = {"Dense_0": {"kernel": jnp.ones((5, 3)), "bias": jnp.zeros(3)}}
    state = {"step": 1, "params": jax.tree.map(lambda p: p - 0.001, params),
             "opt_state": [{}, {}]}  # optax.sgd's state: (EmptyState(), EmptyState())
    config = {"dimensions": np.array([5, 3])}
    ckpt = {"model": state, "config": config, "data": [x1]}
    empty_state = {"step": 0, "params": jax.tree.map(np.zeros_like, params),
                   "opt_state": [{}, {}]}
    target = {"model": empty_state, "config": {"dimensions": np.array([0, 0])},
              "data": [jnp.zeros_like(x1)]}
    return x1, state, config, ckpt, target


def test_seed_001_save_restore_manage(tmp_path, flax_state):
    x1, state, config, ckpt, target = flax_state
    base = str(tmp_path / "flax_ckpt")
    orbax_checkpointer = ocp.PyTreeCheckpointer()
    save_args = save_args_from_target(ckpt)
    orbax_checkpointer.save(base + "/orbax/single_save", ckpt, save_args=save_args)

    options = ocp.CheckpointManagerOptions(max_to_keep=2, create=True)
    checkpoint_manager = ocp.CheckpointManager(base + "/orbax/managed", orbax_checkpointer, options)
    for step in range(5):
        checkpoint_manager.save(step, ckpt, save_kwargs={"save_args": save_args})
    assert sorted(os.listdir(base + "/orbax/managed")) == ["3", "4"]

    raw_restored = orbax_checkpointer.restore(base + "/orbax/single_save")
    assert_equal(raw_restored, ckpt)
    assert isinstance(raw_restored["model"]["params"]["Dense_0"]["kernel"], jax.Array)
    step = checkpoint_manager.latest_step()
    assert step == 4
    assert_equal(checkpoint_manager.restore(step), ckpt)

    state_restored = orbax_checkpointer.restore(base + "/orbax/single_save", item=target)
    assert_equal(state_restored, ckpt)
    assert_equal(checkpoint_manager.restore(4, items=target), ckpt)

    # "Restore when checkpoint structures differ"
    custom_state = dict(state, batch_stats=np.arange(10))
    custom_ckpt = {"model": custom_state, "config": config, "data": [x1]}
    custom_target = {"model": custom_state, "config": None, "data": [jnp.zeros_like(x1)]}
    checkpoint_manager.save(5, custom_ckpt,
                            save_kwargs={"save_args": save_args_from_target(custom_ckpt)})
    # Scenario 1 (a partial target) needs partial_restore in Orbax 0.12, as here.
    with pytest.raises(ValueError, match="batch_stats"):
        checkpoint_manager.restore(5, items=target)
    partial = checkpoint_manager.restore(5, items=target,
                                         restore_kwargs={"partial_restore": True})
    assert "batch_stats" not in partial["model"]
    assert_equal(partial, ckpt)

    # Scenario 2: the target has a field step 4 lacks.
    with pytest.raises(KeyError) as e:
        checkpoint_manager.restore(4, items=custom_target)
    assert "batch_stats" in str(e.value)
    custom_restore_args = restore_args_from_target(custom_target)
    restored = checkpoint_manager.restore(4, items=custom_target, restore_kwargs={
        "transforms": {}, "restore_args": custom_restore_args})
    np.testing.assert_equal(restored["model"]["batch_stats"],
                            custom_target["model"]["batch_stats"])
    assert restored["config"] is None
    np.testing.assert_array_equal(restored["model"]["params"]["Dense_0"]["kernel"],
                                  np.asarray(state["params"]["Dense_0"]["kernel"]))
    assert isinstance(restored["model"]["params"]["Dense_0"]["kernel"], np.ndarray)


def test_seed_001_async_and_multihost(tmp_path, flax_state):
    _, _, _, ckpt, target = flax_state
    base = str(tmp_path / "flax_ckpt")
    save_args = save_args_from_target(ckpt)
    async_checkpointer = ocp.AsyncCheckpointer(ocp.PyTreeCheckpointHandler(), timeout_secs=50)
    async_checkpointer.save(base + "/orbax/single_save_async", ckpt, save_args=save_args)
    async_checkpointer.wait_until_finished()
    assert_equal(async_checkpointer.restore(base + "/orbax/single_save_async", item=target), ckpt)

    options = ocp.CheckpointManagerOptions(max_to_keep=2, create=True)
    async_checkpoint_manager = ocp.CheckpointManager(
        base + "/orbax/managed_async", async_checkpointer, options)
    async_checkpoint_manager.wait_until_finished()

    from jax.sharding import NamedSharding, PartitionSpec
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()).reshape(4, 2), ("x", "y"))
    mp_array = jax.device_put(np.arange(8 * 2).reshape(8, 2),
                              NamedSharding(mesh, PartitionSpec("x", "y")))
    mp_ckpt = {"model": mp_array}
    async_checkpoint_manager.save(0, mp_ckpt)
    async_checkpoint_manager.wait_until_finished()

    mp_smaller = jax.device_put(np.arange(8).reshape(4, 2),
                                NamedSharding(mesh, PartitionSpec("x", "y")))
    ref_ckpt = {"model": mp_smaller}
    restore_args = restore_args_from_target(ref_ckpt)
    restored = async_checkpoint_manager.restore(
        0, items=ref_ckpt, restore_kwargs={"restore_args": restore_args})
    # Single process: restored as the whole np.ndarray, whatever the reference's shape.
    assert type(restored["model"]) is np.ndarray
    np.testing.assert_array_equal(restored["model"], np.arange(16).reshape(8, 2))
    # With the sharding asked for explicitly (the multi-process path of Flax's helper).
    restored = async_checkpoint_manager.restore(0, items=mp_ckpt, restore_kwargs={
        "restore_args": {"model": ocp.ArrayRestoreArgs(sharding=mp_smaller.sharding)}})
    assert restored["model"].sharding == mp_smaller.sharding
    np.testing.assert_array_equal(restored["model"], np.arange(16).reshape(8, 2))
    async_checkpoint_manager.close()
