"""`orbax_v1.training.Checkpointer` against roots of REAL Orbax (0.12.8), both ways.

1. Roots written by real v0 `CheckpointManager` (single `default` item, prefixed /
   fixed-length step names, `max_to_keep` + `best_fn` metrics, `Composite` items, root
   metadata, sync and async saves, a crash's leftover tmp dirs) list and load here.
2. Roots written by real v1 `ocp1.training.Checkpointer` (item `state`) list and load here.
3. Roots written here are read by real v1 (`training.Checkpointer`, free `ocp1.load`)
   and listed by real v0 `CheckpointManager`; v0 restores them given explicit args
   (spec §5.4: without them v0 cannot resolve the v1 handler typestrings).

Values are compared exactly (dtype, shape and every element). The module is skipped
when orbax-checkpoint (the `test` extra) is not installed.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ocp0 = pytest.importorskip("orbax.checkpoint")
ocp1 = pytest.importorskip("orbax.checkpoint.experimental.v1")

from orbax_v1 import training

pytestmark = [
    pytest.mark.interop,
    # Real Orbax is chatty (sharding-file warnings, deprecations); none of it matters here.
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

PREFIXED = {"step_prefix": "step", "step_format_fixed_length": 4}


# ----------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------

def make_tree(step: int) -> dict:
    """A small tree whose values depend on `step`, so a wrong step never compares equal."""
    return {
        "params": {
            "w": np.arange(12, dtype=np.float32).reshape(3, 4) + step,
            "b": np.array([1, 2, 3], dtype=np.int32) * (step + 1),
        },
        "count": np.array(100 + step, dtype=np.int64),
        "opt": jnp.full((8,), step, dtype=jnp.float32),
    }


def assert_tree_equal(got, want) -> None:
    """Same structure (dict keys), and per leaf the same dtype, shape and values."""
    got_leaves, got_def = jax.tree_util.tree_flatten_with_path(got)
    want_leaves, want_def = jax.tree_util.tree_flatten_with_path(want)
    assert got_def == want_def, f"structure {got_def} != {want_def}"
    for (path, g), (_, w) in zip(got_leaves, want_leaves):
        where = jax.tree_util.keystr(path)
        g, w = np.asarray(g), np.asarray(w)
        assert g.dtype == w.dtype, f"{where}: dtype {g.dtype} != {w.dtype}"
        assert g.shape == w.shape, f"{where}: shape {g.shape} != {w.shape}"
        np.testing.assert_array_equal(g, w, err_msg=where)


def file_commit_nsecs(step_dir) -> int:
    with open(os.path.join(step_dir, "_CHECKPOINT_METADATA")) as f:
        return json.load(f)["commit_timestamp_nsecs"]


def assert_timestamps(checkpointer: training.Checkpointer) -> None:
    """Each listed step has the commit time of its `_CHECKPOINT_METADATA`.

    Both real Orbax and `orbax_v1` go through a `datetime` (microsecond resolution,
    float seconds), so the nanoseconds come back to within a microsecond or two.
    """
    previous = None
    for ckpt in checkpointer.checkpoints:
        assert ckpt.commit_timestamp is not None, ckpt
        assert ckpt.commit_timestamp.tzinfo is not None
        assert abs(ckpt.commit_timestamp_nsecs - file_commit_nsecs(ckpt.path)) < 2_000
        if previous is not None:
            assert ckpt.commit_timestamp >= previous
        previous = ckpt.commit_timestamp


def steps_of(checkpointer) -> list[int]:
    return [c.step for c in checkpointer.checkpoints]


def metrics_of(checkpointer) -> list:
    return [c.metrics for c in checkpointer.checkpoints]


# ----------------------------------------------------------------------------------
# 1. Real v0 CheckpointManager writes; orbax_v1 lists and loads.
# ----------------------------------------------------------------------------------

@pytest.mark.parametrize("enable_async", [True, False], ids=["async", "sync"])
def test_v0_default_single_item(tmp_path, enable_async):
    root = tmp_path / "run"
    options = ocp0.CheckpointManagerOptions(enable_async_checkpointing=enable_async)
    with ocp0.CheckpointManager(root, options=options) as mngr:
        for step in range(3):
            assert mngr.save(step, args=ocp0.args.StandardSave(make_tree(step)))
        mngr.wait_until_finished()
        assert mngr.all_steps() == [0, 1, 2]
    assert sorted(os.listdir(root / "1")) == [
        "_CHECKPOINT_METADATA", "commit_success.txt", "default"]

    for read_only in (True, False):
        ckpt = training.Checkpointer(root, read_only=read_only)
        assert steps_of(ckpt) == [0, 1, 2]
        assert metrics_of(ckpt) == [None, None, None]  # v0 writes metrics only with best_fn
        assert ckpt.latest.step == 2
        assert ckpt.checkpoints[1].path == str(root / "1")
        assert_timestamps(ckpt)
        for step in range(3):
            assert_tree_equal(ckpt.load_pytree(step, checkpointable_name="default"),
                              make_tree(step))
        assert_tree_equal(ckpt.load_pytree(checkpointable_name="default"), make_tree(2))
        loaded = ckpt.load_checkpointables(1)
        assert set(loaded) == {"default"}
        assert_tree_equal(loaded["default"], make_tree(1))
        meta = ckpt.metadata(1, checkpointable_name="default")
        assert meta.step == 1 and meta.metrics is None
        assert set(meta.metadata) == {"params", "count", "opt"}
        assert ckpt.root_metadata().custom_metadata is None
        ckpt.close()
    # Opening read/write changed nothing that real v0 sees.
    with ocp0.CheckpointManager(root) as mngr:
        assert mngr.all_steps() == [0, 1, 2]
        assert_tree_equal(mngr.restore(2), jax.tree.map(np.asarray, make_tree(2)))


def test_v0_prefixed_fixed_length_names(tmp_path):
    root = tmp_path / "run"
    options = ocp0.CheckpointManagerOptions(**PREFIXED)
    with ocp0.CheckpointManager(root, options=options) as mngr:
        for step in (0, 7, 12345):
            mngr.save(step, args=ocp0.args.StandardSave(make_tree(step)), force=True)
        mngr.wait_until_finished()
    assert sorted(os.listdir(root)) == ["step_0000", "step_0007", "step_12345"]

    ckpt = training.Checkpointer(
        root, step_name_format=training.standard_name_format(**PREFIXED))
    assert steps_of(ckpt) == [0, 7, 12345]
    assert ckpt.checkpoints[1].path == str(root / "step_0007")
    assert_timestamps(ckpt)
    for step in (0, 7, 12345):
        assert_tree_equal(ckpt.load_pytree(step, checkpointable_name="default"),
                          make_tree(step))
    # The default format (`<step>`) recognises none of these names...
    assert steps_of(training.Checkpointer(root, read_only=True)) == []
    # ...and a shorter fixed length matches only names at least that long without a
    # superfluous leading zero (Orbax's `(0\d{n-1}|[1-9]\d{n-1}\d*)`): just step_12345.
    other = training.standard_name_format(step_prefix="step", step_format_fixed_length=3)
    assert steps_of(training.Checkpointer(root, read_only=True, step_name_format=other)) == [
        12345]


def test_v0_max_to_keep_with_best_fn_metrics(tmp_path):
    root = tmp_path / "run"
    losses = [3.0, 1.0, 2.0, 0.5, 4.0]
    options = ocp0.CheckpointManagerOptions(
        max_to_keep=2, best_fn=lambda m: m["loss"], best_mode="min")
    with ocp0.CheckpointManager(root, options=options) as mngr:
        for step, loss in enumerate(losses):
            mngr.save(step, args=ocp0.args.StandardSave(make_tree(step)),
                      metrics={"loss": loss, "step": step})
        mngr.wait_until_finished()
        v0_steps = list(mngr.all_steps())
        v0_best = mngr.best_step()
    # BestN keeps the two lowest losses (steps 3 and 1); the newest (4) is not special
    # in v0 when best_fn is set.
    assert v0_steps == [1, 3] and v0_best == 3
    assert os.path.isfile(root / "1" / "metrics" / "metrics")

    ckpt = training.Checkpointer(root)
    assert steps_of(ckpt) == v0_steps
    assert metrics_of(ckpt) == [{"loss": 1.0, "step": 1}, {"loss": 0.5, "step": 3}]
    assert min(ckpt.checkpoints, key=lambda c: c.metrics["loss"]).step == v0_best
    assert ckpt.metadata(3, checkpointable_name="default").metrics == {"loss": 0.5, "step": 3}
    assert_timestamps(ckpt)
    for step in v0_steps:
        assert_tree_equal(ckpt.load_pytree(step, checkpointable_name="default"),
                          make_tree(step))
    # `metrics` is bookkeeping, not a checkpointable (real v1 does the same).
    assert set(ckpt.load_checkpointables(3)) == {"default"}


@pytest.mark.parametrize("enable_async", [True, False], ids=["async", "sync"])
def test_v0_composite_items_and_root_metadata(tmp_path, enable_async):
    root = tmp_path / "run"
    root_meta = {"run": "abc", "lr": 0.125, "layers": [1, 2, 3], "nested": {"ok": True}}
    options = ocp0.CheckpointManagerOptions(enable_async_checkpointing=enable_async,
                                            **PREFIXED)
    with ocp0.CheckpointManager(root, options=options, metadata=root_meta) as mngr:
        for step in (5, 10):
            mngr.save(step, args=ocp0.args.Composite(
                state=ocp0.args.StandardSave(make_tree(step)),
                extra=ocp0.args.JsonSave({"epoch": step // 5, "name": f"s{step}"})))
        mngr.wait_until_finished()
    assert sorted(os.listdir(root)) == ["metadata", "step_0005", "step_0010"]
    assert os.path.isfile(root / "metadata" / "_ROOT_METADATA")

    ckpt = training.Checkpointer(
        root, step_name_format=training.standard_name_format(**PREFIXED))
    assert steps_of(ckpt) == [5, 10]
    assert metrics_of(ckpt) == [None, None]
    assert ckpt.root_metadata().custom_metadata == root_meta
    assert_timestamps(ckpt)
    for step in (5, 10):
        loaded = ckpt.load_checkpointables(step)
        assert set(loaded) == {"state", "extra"}
        assert_tree_equal(loaded["state"], make_tree(step))
        assert loaded["extra"] == {"epoch": step // 5, "name": f"s{step}"}
        assert_tree_equal(ckpt.load_pytree(step, checkpointable_name="state"),
                          make_tree(step))
    assert set(ckpt.checkpointables_metadata(10).metadata) >= {"state", "extra"}
    ckpt.close()

    # Root metadata is written once: opening with other custom_metadata keeps v0's.
    again = training.Checkpointer(root, custom_metadata={"other": 1},
                                  step_name_format=training.standard_name_format(**PREFIXED))
    assert again.root_metadata().custom_metadata == root_meta
    with ocp0.CheckpointManager(root, options=ocp0.CheckpointManagerOptions(**PREFIXED)) as m:
        assert m.metadata().custom_metadata == root_meta


def test_load_by_name_of_a_non_pytree_checkpointable(tmp_path):
    """`Checkpointer.load(step, checkpointable_name=n)` is `load_checkpointables(step)[n]`.

    Spec §1.12: real v1 `load` loads `{name: abstract}` through `load_checkpointables`,
    so it also returns a v0 `JsonSave` item (real v1 returns the dict here).
    """
    root = tmp_path / "run"
    with ocp0.CheckpointManager(root) as mngr:
        mngr.save(5, args=ocp0.args.Composite(
            state=ocp0.args.StandardSave(make_tree(5)),
            extra=ocp0.args.JsonSave({"epoch": 1, "name": "s5"})))
    with ocp1.training.Checkpointer(root) as real:
        assert real.load(5, checkpointable_name="extra") == {"epoch": 1, "name": "s5"}
    ckpt = training.Checkpointer(root, read_only=True)
    assert ckpt.load_checkpointables(5)["extra"] == {"epoch": 1, "name": "s5"}
    assert ckpt.load(5, checkpointable_name="extra") == {"epoch": 1, "name": "s5"}


def test_v0_root_with_leftover_tmp_dirs(tmp_path):
    root = tmp_path / "run"
    options = ocp0.CheckpointManagerOptions(enable_async_checkpointing=False)
    with ocp0.CheckpointManager(root, options=options) as mngr:
        for step in range(2):
            mngr.save(step, args=ocp0.args.StandardSave(make_tree(step)))

    # A crash during the save of step 7 (the shape real v0 leaves, §4.2), plus an
    # old-style timestamped tmp name, plus things that are not Orbax's to touch.
    crashed = root / "7.orbax-checkpoint-tmp"
    (crashed / "default.orbax-checkpoint-tmp").mkdir(parents=True)
    (crashed / "_CHECKPOINT_METADATA").write_text("{not json")
    (crashed / "default.orbax-checkpoint-tmp" / "junk.bin").write_bytes(os.urandom(64))
    old_style = root / "8.orbax-checkpoint-tmp-1700000000123"
    old_style.mkdir()
    (old_style / "junk").write_text("junk")
    (root / "notes").mkdir()
    (root / "README.txt").write_text("keep me")
    (root / "9").write_text("a file named like a step is not a step")

    # Real v0 does not list them either.
    with ocp0.CheckpointManager(root, options=ocp0.CheckpointManagerOptions(read_only=True)) as m:
        assert m.all_steps() == [0, 1]

    ro = training.Checkpointer(root, read_only=True)
    assert steps_of(ro) == [0, 1] and ro.latest.step == 1
    assert_tree_equal(ro.load_pytree(checkpointable_name="default"), make_tree(1))
    assert crashed.is_dir() and old_style.is_dir()  # read_only deletes nothing
    assert (crashed / "default.orbax-checkpoint-tmp" / "junk.bin").is_file()
    ro.close()

    rw = training.Checkpointer(root)
    assert steps_of(rw) == [0, 1]
    assert not crashed.exists() and not old_style.exists()
    assert sorted(os.listdir(root)) == ["0", "1", "9", "README.txt", "notes"]
    assert (root / "README.txt").read_text() == "keep me"
    assert_tree_equal(rw.load_pytree(0, checkpointable_name="default"), make_tree(0))
    # Step 7 never committed, so it can be saved now.
    assert rw.save_pytree(7, make_tree(7))
    assert steps_of(rw) == [0, 1, 7]
    assert_tree_equal(rw.load_pytree(7), make_tree(7))
    rw.close()


# ----------------------------------------------------------------------------------
# 2. Real v1 training.Checkpointer writes; orbax_v1 lists and loads.
# ----------------------------------------------------------------------------------

def test_v1_training_checkpointer_root(tmp_path):
    root = tmp_path / "run"
    with ocp1.training.Checkpointer(root, custom_metadata={"exp": "v1", "seed": 3}) as real:
        for step in range(3):
            assert real.save(step, make_tree(step), metrics={"acc": step / 8, "n": step})
        assert real.save(3, make_tree(3))  # no metrics for this one
        real.wait()
        assert [c.step for c in real.checkpoints] == [0, 1, 2, 3]
    # (A freshly opened one: the writer's cached times are taken when each save began.)
    with ocp1.training.Checkpointer(root) as real:
        real_times = [c.commit_timestamp_nsecs for c in real.checkpoints]
    assert sorted(os.listdir(root / "1")) == [
        "_CHECKPOINT_METADATA", "commit_success.txt", "metrics", "state"]

    ckpt = training.Checkpointer(root)
    assert steps_of(ckpt) == [0, 1, 2, 3]
    assert metrics_of(ckpt) == [{"acc": s / 8, "n": s} for s in range(3)] + [None]
    assert [c.commit_timestamp_nsecs for c in ckpt.checkpoints] == real_times
    assert_timestamps(ckpt)
    assert ckpt.latest.step == 3
    assert ckpt.root_metadata().custom_metadata == {"exp": "v1", "seed": 3}
    for step in range(4):
        assert_tree_equal(ckpt.load_pytree(step, checkpointable_name="state"),
                          make_tree(step))
    assert_tree_equal(ckpt.load_pytree(checkpointable_name="state"), make_tree(3))
    assert set(ckpt.load_checkpointables(2)) == {"state"}
    meta = ckpt.metadata(2, checkpointable_name="state")
    assert meta.step == 2 and meta.metrics == {"acc": 0.25, "n": 2}
    assert set(meta.metadata) == {"params", "count", "opt"}


# ----------------------------------------------------------------------------------
# 3. orbax_v1 writes; real v1 (and v0) read.
# ----------------------------------------------------------------------------------

def _write_ours(root, name_format=None, custom_metadata=None) -> None:
    with training.Checkpointer(root, step_name_format=name_format,
                               custom_metadata=custom_metadata) as ckpt:
        for step in range(3):
            assert ckpt.save_pytree(step, make_tree(step),
                                    metrics={"loss": 1.0 / (step + 1), "step": step})
        assert ckpt.save_pytree(3, make_tree(3))  # no metrics


# What real Orbax gives back: it restores numpy arrays as numpy, jax arrays as jax.
def _expected(step):
    return make_tree(step)


@pytest.mark.parametrize("prefixed", [False, True], ids=["plain", "prefixed"])
def test_ours_read_by_real_v1_checkpointer(tmp_path, prefixed):
    root = tmp_path / "run"
    ours_fmt = training.standard_name_format(**PREFIXED) if prefixed else None
    real_fmt = ocp1.path.step.standard_name_format(**PREFIXED) if prefixed else None
    _write_ours(root, ours_fmt, custom_metadata={"who": "orbax_v1", "v": [1, 2]})
    ours = training.Checkpointer(root, read_only=True, step_name_format=ours_fmt)
    our_times = [c.commit_timestamp_nsecs for c in ours.checkpoints]

    with ocp1.training.Checkpointer(root, step_name_format=real_fmt) as real:
        assert [c.step for c in real.checkpoints] == [0, 1, 2, 3]
        assert real.latest.step == 3
        assert [c.metrics for c in real.checkpoints] == (
            [{"loss": 1.0 / (s + 1), "step": s} for s in range(3)] + [None])
        assert [c.commit_timestamp_nsecs for c in real.checkpoints] == our_times
        assert real.root_metadata().custom_metadata == {"who": "orbax_v1", "v": [1, 2]}
        for step in range(4):
            assert_tree_equal(real.load(step, checkpointable_name="pytree"), _expected(step))
        assert_tree_equal(real.load(checkpointable_name="pytree"), _expected(3))
        loaded = real.load_checkpointables(1)
        assert set(loaded) == {"pytree"}  # real v1 leaves `metrics` out too
        assert_tree_equal(loaded["pytree"], _expected(1))
        meta = real.metadata(2)  # AUTO name resolves to `pytree`
        assert meta.metrics == {"loss": 1.0 / 3, "step": 2}
        assert set(meta.metadata) == {"params", "count", "opt"}
        with pytest.raises(KeyError, match="pytree"):  # real v1's default name is `state`
            real.load(1)


def test_ours_read_by_real_v1_free_load(tmp_path):
    root = tmp_path / "run"
    _write_ours(root)
    for step in range(4):
        step_dir = root / str(step)
        assert_tree_equal(ocp1.load(step_dir, checkpointable_name="pytree"), _expected(step))
        assert set(ocp1.load_checkpointables(step_dir)) >= {"pytree"}
    assert ocp1.is_orbax_checkpoint(root / "2")


def test_ours_read_by_real_v0_checkpoint_manager(tmp_path):
    root = tmp_path / "run"
    _write_ours(root, custom_metadata={"who": "orbax_v1"})
    options = ocp0.CheckpointManagerOptions(read_only=True)

    # Listing, metrics and root metadata work through v0 unchanged.
    with ocp0.CheckpointManager(root, options=options) as mngr:
        assert list(mngr.all_steps()) == [0, 1, 2, 3]
        assert mngr.latest_step() == 3
        assert mngr.metrics(1) == {"loss": 0.5, "step": 1}
        assert mngr.metrics(3) is None
        assert mngr.metadata().custom_metadata == {"who": "orbax_v1"}
        # Documented limitation of real Orbax (spec §5.4): the step records v1 handler
        # typestrings (`...v1._src.handlers.pytree_handler.PyTreeHandler`), which v0's
        # default registry cannot resolve, so an argument-less restore fails -- exactly
        # as it does for steps written by REAL v1's training.Checkpointer.
        with pytest.raises(ValueError, match='Item "pytree" was found in the checkpoint, '
                                             "but could not be restored"):
            mngr.restore(2)

    # With explicit args (each on a fresh manager: v0 binds the item's handler on first
    # use), v0 restores our steps exactly.
    with ocp0.CheckpointManager(root, options=options) as mngr:
        got = mngr.restore(2, args=ocp0.args.Composite(
            pytree=ocp0.args.StandardRestore(), metrics=ocp0.args.JsonRestore()))
        assert_tree_equal(got["pytree"], _expected(2))
        assert got["metrics"] == {"loss": 1.0 / 3, "step": 2}
    with ocp0.CheckpointManager(root, options=options) as mngr:
        got = mngr.restore(0, args=ocp0.args.Composite(pytree=ocp0.args.PyTreeRestore()))
        assert_tree_equal(got["pytree"], _expected(0))


def test_resume_a_real_v1_run_and_hand_it_back(tmp_path):
    """A run started by real v1, continued here under its item name, read back by real v1."""
    root = tmp_path / "run"
    with ocp1.training.Checkpointer(root, custom_metadata={"exp": 1}) as real:
        for step in range(2):
            assert real.save(step, make_tree(step), metrics={"loss": float(step)})

    with training.Checkpointer(root, custom_metadata={"exp": 2}) as ckpt:
        assert steps_of(ckpt) == [0, 1]
        assert not ckpt.should_save(1)
        assert ckpt.save_pytree(2, make_tree(2), checkpointable_name="state",
                                metrics={"loss": 2.0})
        assert steps_of(ckpt) == [0, 1, 2]
        assert ckpt.root_metadata().custom_metadata == {"exp": 1}  # written once, by v1

    with ocp1.training.Checkpointer(root) as real:
        assert [c.step for c in real.checkpoints] == [0, 1, 2]
        assert [c.metrics for c in real.checkpoints] == [{"loss": float(s)} for s in range(3)]
        for step in range(3):
            assert_tree_equal(real.load(step), _expected(step))  # default name `state`
        assert real.save(3, make_tree(3), metrics={"loss": 3.0})

    ckpt = training.Checkpointer(root, read_only=True)
    assert steps_of(ckpt) == [0, 1, 2, 3]
    assert_tree_equal(ckpt.load_pytree(checkpointable_name="state"), make_tree(3))
