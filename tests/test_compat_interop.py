"""compat_v0 against REAL Orbax v0 (orbax-checkpoint 0.12.8), both ways.

1. Roots and checkpoints written by real v0 (`CheckpointManager` composite, single
   `default` item, legacy dict form, step prefixes and fixed-length names, non-OCDBT,
   root metadata, metrics; direct `StandardCheckpointer` / JSON / array checkpoints)
   list, restore (with and without args) and give item metadata here.
2. What compat_v0 writes restores in real v0, without args (the v0 handler names are
   recorded) and with them, and has v0's layout: no `orbax.checkpoint` marker.

Values are compared exactly (dtype, shape, every element). Skipped when
orbax-checkpoint (the `test` extra) is not installed.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ocp0 = pytest.importorskip("orbax.checkpoint")

import compat_v0 as ocp
from test_compat_options import POLICY_CASES

pytestmark = [
    pytest.mark.interop,
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

PREFIXED = {"step_prefix": "step", "step_format_fixed_length": 4}
V0 = "orbax.checkpoint._src.handlers."


def make_tree(step: int) -> dict:
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()).reshape(4, 2), ("x", "y"))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("x", "y"))
    return {
        "params": {"w": np.arange(12, dtype=np.float32).reshape(3, 4) + step,
                   "b": np.array([1, 2, 3], dtype=np.int32) * (step + 1)},
        "opt": jax.device_put(jnp.arange(16, dtype=jnp.float32).reshape(8, 2) + step, sharding),
        "count": 100 + step,
    }


def assert_tree_equal(got, want) -> None:
    got_leaves, got_def = jax.tree_util.tree_flatten_with_path(got)
    want_leaves, want_def = jax.tree_util.tree_flatten_with_path(want)
    assert got_def == want_def, f"structure {got_def} != {want_def}"
    for (path, g), (_, w) in zip(got_leaves, want_leaves):
        where = jax.tree_util.keystr(path)
        if isinstance(w, (np.ndarray, jax.Array)):
            assert isinstance(g, (np.ndarray, jax.Array)), where
            assert g.dtype == w.dtype and g.shape == w.shape, (where, g.dtype, g.shape)
            np.testing.assert_array_equal(np.asarray(g), np.asarray(w), err_msg=where)
        else:
            assert g == w, (where, g, w)


def abstract_of(tree):
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def no_marker(root) -> None:
    for dirpath, _, files in os.walk(root):
        assert "orbax.checkpoint" not in files, dirpath


# ----------------------------------------------------------------------------------
# 1. Real v0 writes, compat_v0 reads.
# ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def v0_composite_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("v0") / "composite"
    options = ocp0.CheckpointManagerOptions(max_to_keep=2, best_fn=lambda m: m["loss"],
                                            best_mode="min", **PREFIXED)
    with ocp0.CheckpointManager(root, options=options, metadata={"run": 7}) as mngr:
        for step, loss in zip(range(4), [3.0, 1.0, 2.0, 5.0]):
            mngr.save(step, args=ocp0.args.Composite(
                state=ocp0.args.StandardSave(make_tree(step)),
                meta=ocp0.args.JsonSave({"step": step})), metrics={"loss": loss})
    return root


def test_real_v0_composite_root_restores_here(v0_composite_root):
    root = v0_composite_root
    assert sorted(os.listdir(root)) == ["metadata", "step_0001", "step_0002"]
    options = ocp.CheckpointManagerOptions(max_to_keep=2, best_fn=lambda m: m["loss"],
                                           best_mode="min", **PREFIXED)
    with ocp.CheckpointManager(root, options=options) as mngr:
        assert mngr.all_steps() == [1, 2] and mngr.latest_step() == 2
        assert mngr.best_step() == 1
        assert mngr.metrics(2) == {"loss": 2.0}
        assert mngr.metadata().custom_metadata == {"run": 7}
        restored = mngr.restore(2)  # no args: the handlers real v0 recorded
        assert sorted(restored) == ["meta", "state"]
        assert_tree_equal(restored.state, make_tree(2))
        assert isinstance(restored.state["opt"], jax.Array)
        assert restored.state["opt"].sharding == make_tree(2)["opt"].sharding
        assert restored.meta == {"step": 2}
        target = abstract_of(make_tree(0))
        restored = mngr.restore(1, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
        assert_tree_equal(restored.state, make_tree(1))
        meta = mngr.item_metadata(1)
        assert meta.meta is None
        assert meta.state["opt"].shape == (8, 2) and meta.state["params"]["b"].dtype == np.int32
        step_meta = mngr.metadata(1)
        assert step_meta.item_handlers["state"] == (
            V0 + "standard_checkpoint_handler.StandardCheckpointHandler")
        assert step_meta.metrics == {"loss": 1.0}


def test_real_v0_default_item_and_legacy_forms_restore_here(tmp_path):
    root = tmp_path / "default"
    with ocp0.CheckpointManager(root) as mngr:
        mngr.save(3, args=ocp0.args.StandardSave(make_tree(3)))
    with ocp.CheckpointManager(root) as mngr:
        assert mngr.all_steps() == [3]
        assert_tree_equal(mngr.restore(3), make_tree(3))
        assert_tree_equal(mngr.restore(None, args=ocp.args.StandardRestore(
            abstract_of(make_tree(0)))), make_tree(3))
        assert mngr.item_metadata(3)["count"].dtype == np.int64

    legacy = tmp_path / "legacy"
    mngr = ocp0.CheckpointManager(legacy, {"s": ocp0.PyTreeCheckpointer(),
                                           "j": ocp0.Checkpointer(ocp0.JsonCheckpointHandler())})
    mngr.save(0, {"s": make_tree(0), "j": {"z": 2}})
    mngr.wait_until_finished()
    mngr.close()
    mngr = ocp.CheckpointManager(legacy, {"s": ocp.PyTreeCheckpointer(),
                                          "j": ocp.Checkpointer(ocp.JsonCheckpointHandler())})
    restored = mngr.restore(0)
    assert_tree_equal(restored["s"], make_tree(0))
    assert restored["j"] == {"z": 2}
    mngr.close()


def test_real_v0_non_ocdbt_and_direct_checkpoints_restore_here(tmp_path):
    root = tmp_path / "non_ocdbt"
    with ocp0.CheckpointManager(root, item_handlers=ocp0.PyTreeCheckpointHandler(
            use_ocdbt=False)) as mngr:
        mngr.save(0, args=ocp0.args.PyTreeSave(make_tree(0)))
    assert not os.path.exists(root / "0" / "default" / "manifest.ocdbt")
    with ocp.CheckpointManager(root) as mngr:
        assert_tree_equal(mngr.restore(0), make_tree(0))

    with ocp0.StandardCheckpointer() as ckptr:
        ckptr.save(tmp_path / "standard", make_tree(1))
    ocp0.Checkpointer(ocp0.JsonCheckpointHandler()).save(
        tmp_path / "json", args=ocp0.args.JsonSave({"a": [1, 2]}))
    ocp0.Checkpointer(ocp0.ArrayCheckpointHandler()).save(tmp_path / "array", np.arange(5))
    with ocp.StandardCheckpointer() as ckptr:
        assert_tree_equal(ckptr.restore(tmp_path / "standard"), make_tree(1))
        assert_tree_equal(ckptr.restore(tmp_path / "standard", abstract_of(make_tree(0))),
                          make_tree(1))
    assert ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(tmp_path / "json") == {
        "a": [1, 2]}
    np.testing.assert_array_equal(
        ocp.Checkpointer(ocp.ArrayCheckpointHandler()).restore(tmp_path / "array"), np.arange(5))


# ----------------------------------------------------------------------------------
# 2. compat_v0 writes, real v0 reads.
# ----------------------------------------------------------------------------------

@pytest.mark.parametrize("enable_async", [True, False], ids=["async", "sync"])
def test_compat_composite_root_restores_in_real_v0(tmp_path, enable_async):
    root = tmp_path / "run"
    options = ocp.CheckpointManagerOptions(max_to_keep=2, best_fn=lambda m: m["loss"],
                                           best_mode="min", enable_async_checkpointing=enable_async,
                                           **PREFIXED)
    with ocp.CheckpointManager(root, options=options, metadata={"run": 7}) as mngr:
        for step, loss in zip(range(4), [3.0, 1.0, 2.0, 5.0]):
            assert mngr.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(make_tree(step)),
                meta=ocp.args.JsonSave({"step": step})), metrics={"loss": loss})
        mngr.wait_until_finished()
        assert mngr.all_steps() == [1, 2]  # as real v0: the newest (worst) step is pruned
    no_marker(root)
    assert sorted(os.listdir(root / "step_0002")) == [
        "_CHECKPOINT_METADATA", "commit_success.txt", "meta", "metrics", "state"]
    assert os.listdir(root / "step_0002" / "meta") == ["metadata"]
    with open(root / "step_0002" / "_CHECKPOINT_METADATA") as f:
        assert json.load(f)["item_handlers"] == {
            "state": V0 + "standard_checkpoint_handler.StandardCheckpointHandler",
            "meta": V0 + "json_checkpoint_handler.JsonCheckpointHandler",
            "metrics": V0 + "json_checkpoint_handler.JsonCheckpointHandler"}

    real_options = ocp0.CheckpointManagerOptions(
        max_to_keep=2, best_fn=lambda m: m["loss"], best_mode="min", **PREFIXED)
    with ocp0.CheckpointManager(root, options=real_options) as mngr:
        assert list(mngr.all_steps()) == [1, 2] and mngr.latest_step() == 2
        assert mngr.best_step() == 1 and mngr.metrics(2) == {"loss": 2.0}
        assert mngr.metadata().custom_metadata == {"run": 7}
        restored = mngr.restore(2)
        assert_tree_equal(restored.state, make_tree(2))
        assert restored.meta == {"step": 2}
        restored = mngr.restore(1, args=ocp0.args.Composite(
            state=ocp0.args.StandardRestore(abstract_of(make_tree(0)))))
        assert_tree_equal(restored.state, make_tree(1))
        assert restored.state["opt"].sharding == make_tree(1)["opt"].sharding


def test_compat_default_item_and_legacy_roots_restore_in_real_v0(tmp_path):
    root = tmp_path / "default"
    with ocp.CheckpointManager(root) as mngr:
        mngr.save(5, args=ocp.args.StandardSave(make_tree(5)))
    no_marker(root)
    with ocp0.CheckpointManager(root) as mngr:
        assert list(mngr.all_steps()) == [5]
        assert_tree_equal(mngr.restore(5), make_tree(5))
        assert_tree_equal(mngr.restore(5, args=ocp0.args.StandardRestore(
            abstract_of(make_tree(0)))), make_tree(5))

    legacy = tmp_path / "legacy"
    mngr = ocp.CheckpointManager(legacy, ocp.PyTreeCheckpointer(),
                                 ocp.CheckpointManagerOptions(max_to_keep=1))
    for step in range(3):
        mngr.save(step, make_tree(step) | {"name": f"s{step}"})
    mngr.close()
    real = ocp0.CheckpointManager(legacy, ocp0.PyTreeCheckpointer())
    assert list(real.all_steps()) == [2]
    restored = real.restore(2)
    assert restored["name"] == "s2"
    assert_tree_equal({k: v for k, v in restored.items() if k != "name"}, make_tree(2))
    real.close()


def test_compat_direct_checkpoints_restore_in_real_v0(tmp_path):
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(tmp_path / "standard", make_tree(1), custom_metadata={"k": 1})
    ocp.PyTreeCheckpointer().save(tmp_path / "pytree", {"s": "text", "x": np.arange(3)})
    ocp.Checkpointer(ocp.JsonCheckpointHandler()).save(tmp_path / "json", {"a": [1, 2]})
    ocp.Checkpointer(ocp.ArrayCheckpointHandler()).save(tmp_path / "array", np.arange(5))
    ocp.Checkpointer(ocp.CompositeCheckpointHandler()).save(
        tmp_path / "composite", args=ocp.args.Composite(
            state=ocp.args.StandardSave(make_tree(2)), extra=ocp.args.JsonSave({"e": 1})))
    no_marker(tmp_path)

    with ocp0.StandardCheckpointer() as ckptr:
        assert_tree_equal(ckptr.restore(tmp_path / "standard"), make_tree(1))
        assert_tree_equal(ckptr.restore(tmp_path / "standard", abstract_of(make_tree(0))),
                          make_tree(1))
        assert ckptr.metadata(tmp_path / "standard").custom_metadata == {"k": 1}
    restored = ocp0.PyTreeCheckpointer().restore(tmp_path / "pytree")
    assert restored["s"] == "text"
    np.testing.assert_array_equal(restored["x"], np.arange(3))
    assert ocp0.Checkpointer(ocp0.JsonCheckpointHandler()).restore(tmp_path / "json") == {
        "a": [1, 2]}
    np.testing.assert_array_equal(
        ocp0.Checkpointer(ocp0.ArrayCheckpointHandler()).restore(tmp_path / "array"),
        np.arange(5))
    restored = ocp0.Checkpointer(ocp0.CompositeCheckpointHandler()).restore(tmp_path / "composite")
    assert_tree_equal(restored.state, make_tree(2))
    assert restored.extra == {"e": 1}


# ----------------------------------------------------------------------------------
# 3. The same options keep the same steps as real v0.
# ----------------------------------------------------------------------------------

def _real_v0_options(options: dict):
    """The same options for real v0 (policy objects rebuilt from real v0's modules)."""
    from orbax.checkpoint.checkpoint_managers import preservation_policy as real_pp
    from orbax.checkpoint.checkpoint_managers import save_decision_policy as real_sdp
    out = dict(options)
    if "save_decision_policy" in out:
        out["save_decision_policy"] = real_sdp.SpecificStepsPolicy(
            out["save_decision_policy"].steps)
    if "preservation_policy" in out:
        out["preservation_policy"] = real_pp.CustomSteps(out["preservation_policy"].steps)
    return ocp0.CheckpointManagerOptions(enable_async_checkpointing=False, **out)


@pytest.mark.parametrize("options,steps,kept", POLICY_CASES)
def test_same_steps_kept_as_real_v0(tmp_path, options, steps, kept):
    with ocp0.CheckpointManager(tmp_path / "real", options=_real_v0_options(options)) as mngr:
        for step in steps:
            mngr.save(step, args=ocp0.args.StandardSave({"x": np.full(2, step)}),
                      metrics={"loss": float(abs(step - 4))})
        assert list(mngr.all_steps()) == kept
    assert sorted(int(n) for n in os.listdir(tmp_path / "real")) == kept
