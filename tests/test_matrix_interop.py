"""The migration guide's compatibility matrix, on checkpoints written by the real Orbax.

The seed `004_552dddc2b2617a75.txt` (the v0 -> v1 migration guide) builds two layouts
with the real v0 API and lists, for each load call, whether it loads or fails:

    root_dir/                 ocp0.CheckpointManager(root_dir), step 0
      0/  (= step_1234)       _CHECKPOINT_METADATA, state/, pytree/, my_json_data/
    my_checkpoint/            ocp0.StandardCheckpointer().save(...): a pytree stored directly

One test per row of its four tables (the cells are restored in
spec/orbax-reference.md §2.2), named after the row. Our decisions (spec/README.md):
`load` defaults to `checkpointable_name='pytree'` and never guesses; every error is
typed, names the path, and says what the directory holds and the call that would
load it. A few more tests run the same calls on a checkpoint the real v1 API wrote.
"""

import numpy as np
import pytest

ocp0 = pytest.importorskip("orbax.checkpoint")
ocp1 = pytest.importorskip("orbax.checkpoint.experimental.v1")

import orbax_v1  # noqa: E402
from orbax_v1 import errors  # noqa: E402

pytestmark = pytest.mark.interop

DATA = {"params": np.ones(2)}
JSON_DATA = {"a": 1}
ABSTRACT_TREE = {"params": np.zeros(2)}  # a numpy leaf: float64 without enabling jax x64


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """The seed's layouts, written by the real Orbax, plus a real v1 checkpoint."""
    base = tmp_path_factory.mktemp("matrix")

    root_dir = base / "root_dir"
    args = ocp0.args.Composite(
        state=ocp0.args.StandardSave(DATA),
        pytree=ocp0.args.StandardSave(DATA),
        my_json_data=ocp0.args.JsonSave(JSON_DATA))
    with ocp0.CheckpointManager(root_dir) as mngr:
        mngr.save(0, args=args)
        mngr.wait_until_finished()

    my_checkpoint = base / "custom_checkpoint" / "my_checkpoint"
    with ocp0.StandardCheckpointer() as checkpointer:
        checkpointer.save(my_checkpoint, DATA)
        checkpointer.wait_until_finished()

    v1 = base / "v1_checkpoint"
    ocp1.save_checkpointables(v1, {"state": DATA, "extra": DATA})

    return {"root_dir": root_dir, "step_1234": root_dir / "0",
            "my_checkpoint": my_checkpoint, "v1": v1}


@pytest.fixture(scope="module")
def root_dir(layouts):
    return layouts["root_dir"]


@pytest.fixture(scope="module")
def step_1234(layouts):
    return layouts["step_1234"]


@pytest.fixture(scope="module")
def my_checkpoint(layouts):
    return layouts["my_checkpoint"]


@pytest.fixture(scope="module")
def v1_checkpoint(layouts):
    return layouts["v1"]


def assert_tree_equal(actual, expected):
    assert isinstance(actual, dict) and set(actual) == set(expected), actual
    for key, value in expected.items():
        np.testing.assert_array_equal(np.asarray(actual[key]), value)
        assert np.asarray(actual[key]).dtype == np.asarray(value).dtype


def assert_message(excinfo, path, *phrases):
    """The error names the path and says what it holds and what to call instead."""
    message = str(excinfo.value)
    assert str(path) in message, message
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} not in {message!r}"


def test_the_layouts_are_the_seeds(root_dir, step_1234, my_checkpoint, v1_checkpoint):
    """Guards the fixture: what the real Orbax wrote is what the guide shows."""
    assert sorted(p.name for p in root_dir.iterdir()) == ["0"]
    step_entries = {p.name for p in step_1234.iterdir()}
    assert {"_CHECKPOINT_METADATA", "state", "pytree", "my_json_data"} <= step_entries
    assert (step_1234 / "state" / "_METADATA").is_file()
    assert (step_1234 / "pytree" / "_METADATA").is_file()
    direct_entries = {p.name for p in my_checkpoint.iterdir()}
    assert {"_CHECKPOINT_METADATA", "_METADATA", "manifest.ocdbt",
            "ocdbt.process_0"} <= direct_entries
    assert (v1_checkpoint / "orbax.checkpoint").is_file()
    assert {"state", "extra"} <= {p.name for p in v1_checkpoint.iterdir()}


# --- load(...), success ---------------------------------------------------------------


def test_load_step_1234(step_1234):
    # The default name is 'pytree': the subdirectory `pytree`, never a guess.
    assert_tree_equal(orbax_v1.load(step_1234), DATA)


def test_load_step_1234_checkpointable_name_pytree(step_1234):
    assert_tree_equal(orbax_v1.load(step_1234, checkpointable_name="pytree"), DATA)


def test_load_step_1234_checkpointable_name_state(step_1234):
    assert_tree_equal(orbax_v1.load(step_1234, checkpointable_name="state"), DATA)


def test_load_my_checkpoint_checkpointable_name_none(my_checkpoint):
    assert_tree_equal(orbax_v1.load(my_checkpoint, checkpointable_name=None), DATA)


# --- load(...), error -----------------------------------------------------------------


def test_load_root_dir(root_dir):
    with pytest.raises(errors.InvalidLayoutError) as excinfo:
        orbax_v1.load(root_dir)
    assert isinstance(excinfo.value, ValueError)
    assert_message(excinfo, root_dir, "is a root directory of steps [0]: load one of them")


def test_load_root_dir_checkpointable_name_pytree(root_dir):
    with pytest.raises(errors.InvalidLayoutError) as excinfo:
        orbax_v1.load(root_dir, checkpointable_name="pytree")
    assert_message(excinfo, root_dir, "is a root directory of steps [0]: load one of them")


def test_load_root_dir_checkpointable_name_none(root_dir):
    with pytest.raises(errors.InvalidLayoutError) as excinfo:
        orbax_v1.load(root_dir, checkpointable_name=None)
    assert_message(excinfo, root_dir, "is a root directory of steps [0]: load one of them")


def test_load_step_1234_checkpointable_name_none(step_1234):
    with pytest.raises(errors.InvalidLayoutError) as excinfo:
        orbax_v1.load(step_1234, checkpointable_name=None)
    assert_message(excinfo, step_1234,
                   "has checkpointables ['my_json_data', 'pytree', 'state']",
                   "pass checkpointable_name='state'")


def test_load_my_checkpoint(my_checkpoint):
    with pytest.raises(errors.InvalidLayoutError) as excinfo:
        orbax_v1.load(my_checkpoint)
    assert_message(excinfo, my_checkpoint,
                   "holds a pytree directly: use load(path, checkpointable_name=None)")


def test_load_my_checkpoint_checkpointable_name_pytree(my_checkpoint):
    with pytest.raises(errors.InvalidLayoutError) as excinfo:
        orbax_v1.load(my_checkpoint, checkpointable_name="pytree")
    assert_message(excinfo, my_checkpoint,
                   "holds a pytree directly: use load(path, checkpointable_name=None)")


# --- load_checkpointables(...), success -----------------------------------------------


def test_load_checkpointables_step_1234(step_1234):
    loaded = orbax_v1.load_checkpointables(step_1234)
    assert set(loaded) == {"state", "pytree", "my_json_data"}
    assert_tree_equal(loaded["state"], DATA)
    assert_tree_equal(loaded["pytree"], DATA)
    assert loaded["my_json_data"] == JSON_DATA


def test_load_checkpointables_step_1234_state_and_my_json_data(step_1234):
    loaded = orbax_v1.load_checkpointables(
        step_1234, dict(state=ABSTRACT_TREE, my_json_data=None))
    assert set(loaded) == {"state", "my_json_data"}
    assert_tree_equal(loaded["state"], DATA)
    assert loaded["my_json_data"] == JSON_DATA


# --- load_checkpointables(...), error -------------------------------------------------


def test_load_checkpointables_root_dir(root_dir):
    # "Error: suggesting to try a subdir instead"
    with pytest.raises(errors.InvalidLayoutError) as excinfo:
        orbax_v1.load_checkpointables(root_dir)
    assert_message(excinfo, root_dir, "has no named checkpointables",
                   "is a root directory of steps [0]: load one of them")


def test_load_checkpointables_my_checkpoint(my_checkpoint):
    # "Error: suggesting to use load instead"
    with pytest.raises(errors.InvalidLayoutError) as excinfo:
        orbax_v1.load_checkpointables(my_checkpoint)
    assert_message(excinfo, my_checkpoint, "has no named checkpointables",
                   "load(path, checkpointable_name=None)")


def test_load_checkpointables_root_dir_state_and_pytree(root_dir):
    with pytest.raises(errors.InvalidLayoutError) as excinfo:
        orbax_v1.load_checkpointables(root_dir, dict(state=ABSTRACT_TREE, pytree=ABSTRACT_TREE))
    assert_message(excinfo, root_dir, "has no named checkpointables",
                   "is a root directory of steps [0]: load one of them")


def test_load_checkpointables_my_checkpoint_state_and_pytree(my_checkpoint):
    with pytest.raises(errors.InvalidLayoutError) as excinfo:
        orbax_v1.load_checkpointables(my_checkpoint,
                                      dict(state=ABSTRACT_TREE, pytree=ABSTRACT_TREE))
    assert_message(excinfo, my_checkpoint, "has no named checkpointables",
                   "load(path, checkpointable_name=None)")


# --- the same calls on a checkpoint the real v1 API wrote ------------------------------


def test_load_v1_checkpoint_checkpointable_name_state(v1_checkpoint):
    assert_tree_equal(orbax_v1.load(v1_checkpoint, checkpointable_name="state"), DATA)


def test_load_v1_checkpoint_default_name_is_pytree_and_not_guessed(v1_checkpoint):
    with pytest.raises(errors.InvalidLayoutError) as excinfo:
        orbax_v1.load(v1_checkpoint)
    assert_message(excinfo, v1_checkpoint,
                   "has checkpointables ['extra', 'state']: pass checkpointable_name='state'")


def test_load_checkpointables_v1_checkpoint(v1_checkpoint):
    loaded = orbax_v1.load_checkpointables(v1_checkpoint)
    assert set(loaded) == {"state", "extra"}
    assert_tree_equal(loaded["state"], DATA)
    assert_tree_equal(loaded["extra"], DATA)


def test_load_checkpointables_v1_checkpoint_missing_name(v1_checkpoint):
    with pytest.raises(errors.MissingCheckpointablesError) as excinfo:
        orbax_v1.load_checkpointables(v1_checkpoint, dict(state=None, pytree=None))
    assert isinstance(excinfo.value, KeyError)
    assert_message(excinfo, v1_checkpoint, "'pytree'", "'extra'", "'state'")


def test_checkpointables_metadata_v1_checkpoint(v1_checkpoint):
    meta = orbax_v1.checkpointables_metadata(v1_checkpoint)
    assert set(meta.metadata) == {"state", "extra"}
