"""The compatibility matrix: the seed's 16 rows on checkpoints written here, and a
property test over random directory layouts against a small statement of the matrix.

The statement below is independent of the implementation: it decides from how the
test *built* each layout, never by looking at the files.
"""

import os
import shutil

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import orbax_v1 as ocp
from orbax_v1 import errors

DATA = {"params": np.ones(2)}
OTHER = {"params": np.full(2, 7.0)}


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("matrix")
    root_dir = base / "root_dir"
    step_1234 = root_dir / "0"
    ocp.save_checkpointables(step_1234, {"state": DATA, "pytree": OTHER, "my_json_data": "json"})
    my_checkpoint = base / "custom_checkpoint" / "my_checkpoint"
    ocp.save_pytree(my_checkpoint, DATA, checkpointable_name=None)
    return root_dir, step_1234, my_checkpoint


def same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


# load(...) successes
def test_load_step_loads_the_pytree_subdir(dirs):
    same(ocp.load(dirs[1]), OTHER)


def test_load_step_named_pytree(dirs):
    same(ocp.load(dirs[1], checkpointable_name="pytree"), OTHER)


def test_load_step_named_state(dirs):
    same(ocp.load(dirs[1], checkpointable_name="state"), DATA)


def test_load_direct_with_name_none(dirs):
    same(ocp.load(dirs[2], checkpointable_name=None), DATA)


# load(...) errors
@pytest.mark.parametrize("name", ["pytree", None, "default-is-pytree"])
def test_load_root_dir_says_load_a_step(dirs, name):
    kwargs = {} if name == "default-is-pytree" else {"checkpointable_name": name}
    with pytest.raises(errors.InvalidLayoutError,
                       match=r"root_dir.*is a root directory of steps \[0\]: load one of them"):
        ocp.load(dirs[0], **kwargs)


def test_load_step_with_name_none_lists_checkpointables(dirs):
    with pytest.raises(errors.InvalidLayoutError, match=r"0 with checkpointable_name=None.*"
                       r"has checkpointables \['my_json_data', 'pytree', 'state'\]: "
                       r"pass checkpointable_name='state'"):
        ocp.load(dirs[1], checkpointable_name=None)


@pytest.mark.parametrize("kwargs", [{}, {"checkpointable_name": "pytree"}])
def test_load_direct_with_a_name_says_use_none(dirs, kwargs):
    with pytest.raises(errors.InvalidLayoutError,
                       match=r"my_checkpoint.*holds a pytree directly: use load\(path, "
                             r"checkpointable_name=None\)"):
        ocp.load(dirs[2], **kwargs)


# load_checkpointables(...) successes
def test_load_checkpointables_loads_all(dirs):
    out = ocp.load_checkpointables(dirs[1])
    assert sorted(out) == ["my_json_data", "pytree", "state"]
    same(out["state"], DATA)
    same(out["pytree"], OTHER)
    assert out["my_json_data"] == "json"


def test_load_checkpointables_loads_only_those_asked(dirs):
    out = ocp.load_checkpointables(dirs[1], {"state": {"params": np.zeros(2, np.float32)},
                                             "my_json_data": None})
    assert sorted(out) == ["my_json_data", "state"]
    assert out["state"]["params"].dtype == np.float32


# load_checkpointables(...) errors
@pytest.mark.parametrize("abstract", [None, {"state": DATA, "pytree": DATA}])
def test_load_checkpointables_root_dir_says_try_a_step(dirs, abstract):
    with pytest.raises(errors.InvalidLayoutError,
                       match=r"no named checkpointables: it is a root directory of steps \[0\]"):
        ocp.load_checkpointables(dirs[0], abstract)


@pytest.mark.parametrize("abstract", [None, {"state": DATA, "pytree": DATA}])
def test_load_checkpointables_direct_says_use_load(dirs, abstract):
    with pytest.raises(errors.InvalidLayoutError,
                       match=r"has no named checkpointables.*use load\(path, "
                             r"checkpointable_name=None\) instead"):
        ocp.load_checkpointables(dirs[2], abstract)


def test_other_rows(dirs, tmp_path):
    root_dir, step, direct = dirs
    with pytest.raises(errors.MissingCheckpointablesError, match=r"no checkpointables \['x'\]") as e:
        ocp.load_checkpointables(step, {"x": None})
    assert isinstance(e.value, KeyError)
    with pytest.raises(errors.InvalidLayoutError, match="inside a checkpoint: try the parent"):
        ocp.load(step / "state", checkpointable_name=None)
    with pytest.raises(errors.InvalidLayoutError, match="inside a checkpoint: try the parent"):
        ocp.load_checkpointables(step / "state")
    for bad in ("metrics", ""):
        with pytest.raises(errors.InvalidLayoutError, match="reserved"):
            ocp.load(step, checkpointable_name=bad)
        with pytest.raises(errors.InvalidLayoutError, match="reserved"):
            ocp.load_checkpointables(step, {bad: None})
        with pytest.raises(errors.InvalidLayoutError, match="reserved"):
            ocp.save_checkpointables(tmp_path / "r", {bad: DATA})
    assert not (tmp_path / "r").exists()
    meta = ocp.checkpointables_metadata(step)
    assert sorted(meta.metadata) == ["my_json_data", "pytree", "state"]
    assert meta.metadata["state"]["params"].shape == (2,)


# ---- property test: random layouts against a statement of the matrix ----

NAMES = ["pytree", "state", "extra", "metrics"]


@st.composite
def layouts(draw):
    kind = draw(st.sampled_from(["root", "step_v1", "step_v0", "step_no_metadata", "direct",
                                 "temporary", "child", "empty", "missing"]))
    parts = draw(st.lists(st.tuples(st.sampled_from(NAMES), st.booleans()), min_size=1,
                          max_size=3, unique_by=lambda p: p[0]))
    stray = draw(st.booleans())
    return kind, dict(parts), stray


def build(base, kind, parts, stray):
    """Builds the layout; returns the path to load and the ground truth."""
    values = {n: ({"v": np.full(2, i, np.int32)} if is_tree else f"json-{n}")
              for i, (n, is_tree) in enumerate(sorted(parts.items()))}
    if set(values) == {"metrics"}:
        values["pytree"] = {"v": np.zeros(1)}
    step = base / "step"
    if kind in ("root", "step_v1", "step_v0", "step_no_metadata", "child", "temporary"):
        ocp.save_checkpointables(step, {n: v for n, v in values.items() if n != "metrics"}
                                 or {"pytree": {"v": np.zeros(1)}})
        if "metrics" in values:  # as v0 CheckpointManager writes it; reserved, never loaded
            (step / "metrics").mkdir()
            (step / "metrics" / "metrics").write_text('{"loss": 1.0}')
        if kind in ("step_v0", "step_no_metadata"):
            os.remove(step / "orbax.checkpoint")
        if kind == "step_no_metadata":
            os.remove(step / "_CHECKPOINT_METADATA")
    if kind == "direct":
        ocp.save_pytree(base / "direct", {"v": np.arange(3)}, checkpointable_name=None)
    if stray:
        target = {"root": base, "direct": base / "direct"}.get(kind, step)
        target.mkdir(parents=True, exist_ok=True)
        (target / "notes.txt").write_text("stray")
        (target / "logs").mkdir(exist_ok=True)
    if kind == "root":
        (base / "root").mkdir()
        shutil.move(str(step), str(base / "root" / "7"))
        return base / "root", values
    if kind == "temporary":
        shutil.move(str(step), str(base / "step.orbax-checkpoint-tmp"))
        return base / "step.orbax-checkpoint-tmp", values
    if kind == "child":
        return step / sorted(parts)[0], values
    if kind == "direct":
        return base / "direct", values
    if kind == "empty":
        (base / "empty").mkdir(exist_ok=True)
        return base / "empty", values
    if kind == "missing":
        return base / "missing", values
    return step, values


def expected_load(kind, values, name):
    """The matrix for load(path, checkpointable_name=name): a value, or an error type + text."""
    trees = {n for n, v in values.items() if isinstance(v, dict) and n != "metrics"}
    if name == "metrics":
        return errors.InvalidLayoutError, "reserved"
    if kind == "missing":
        return errors.CheckpointNotFoundError, "does not exist"
    if kind == "temporary":
        return errors.IncompleteCheckpointError, "temporary"
    if kind == "root":
        return errors.InvalidLayoutError, "root directory of steps [7]"
    if kind == "child":
        return errors.InvalidLayoutError, "inside a checkpoint"
    if kind == "direct":
        return ("ok", {"v": np.arange(3)}) if name is None else (
            errors.InvalidLayoutError, "holds a pytree directly")
    if kind == "empty":
        return errors.InvalidLayoutError, "holds no checkpoint"
    if name in trees:
        return "ok", values[name]
    return errors.InvalidLayoutError, "has checkpointables"


def expected_load_checkpointables(kind, values):
    if kind in ("missing", "temporary"):
        return expected_load(kind, values, None)
    if kind in ("root", "child", "direct", "empty"):
        return errors.InvalidLayoutError, "no named checkpointables"
    return "ok", {n: v for n, v in values.items() if n != "metrics"}


def check(outcome, call):
    kind_or_ok, detail = outcome
    if kind_or_ok == "ok":
        got = call()
        assert got.keys() == detail.keys()
        for k in detail:
            if isinstance(detail[k], dict):
                assert got[k].keys() == detail[k].keys()
                for kk in detail[k]:
                    np.testing.assert_array_equal(got[k][kk], detail[k][kk])
            elif isinstance(detail[k], str):
                assert got[k] == detail[k]
            else:
                np.testing.assert_array_equal(got[k], detail[k])
    else:
        with pytest.raises(kind_or_ok) as info:
            call()
        assert detail in str(info.value)


@given(layout=layouts(), name=st.sampled_from(NAMES + [None]))
def test_random_layouts_follow_the_matrix(tmp_path_factory, layout, name):
    kind, parts, stray = layout
    base = tmp_path_factory.mktemp("layout")
    path, values = build(base, kind, parts, stray)
    outcome = expected_load(kind, values, name)
    if outcome[0] == "ok" and name is not None:
        check(("ok", {"x": outcome[1]}),
              lambda: {"x": ocp.load(path, checkpointable_name=name)})
    elif outcome[0] == "ok":
        check(outcome, lambda: ocp.load(path, checkpointable_name=None))
    else:
        check(outcome, lambda: ocp.load(path, checkpointable_name=name))
    check(expected_load_checkpointables(kind, values), lambda: ocp.load_checkpointables(path))
