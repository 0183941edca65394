"""Loading with an abstract tree, metadata, and the typed errors of save and load."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P, SingleDeviceSharding

import orbax_v1 as ocp
from orbax_v1 import errors
from orbax_v1._storage import reader as _reader


@pytest.fixture
def saved(tmp_path):
    tree = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": {"c": np.int32(5)},
            "step": 3, "name": "run", "j": jnp.arange(8, dtype=jnp.float32)}
    ocp.save_pytree(tmp_path / "c", tree, custom_metadata={"epoch": 2})
    return tmp_path / "c", tree


def needs_8_devices():
    if jax.device_count() < 8:
        pytest.skip("needs 8 devices")


def test_shape_dtype_struct_with_sharding_reshards(saved):
    needs_8_devices()
    path, tree = saved
    for shape, spec in [((4, 2), P("x", "y")), ((2, 4), P("y", "x")), ((8, 1), P(None, "x")),
                        ((8, 1), P())]:
        mesh = jax.make_mesh(shape, ("x", "y"))
        abstract = {**jax.tree.map(lambda x: ..., tree),
                    "j": jax.ShapeDtypeStruct((8,), jnp.float32, sharding=NamedSharding(mesh, P("x")
                                              if spec != P() else P())),
                    "w": jax.ShapeDtypeStruct((3, 4), jnp.bfloat16,
                                              sharding=NamedSharding(mesh, P()))}
        out = ocp.load(path, abstract)
        assert out["w"].dtype == jnp.bfloat16 and out["w"].sharding == abstract["w"].sharding
        np.testing.assert_array_equal(np.asarray(out["w"], np.float32), tree["w"])
        assert out["j"].sharding == abstract["j"].sharding
        np.testing.assert_array_equal(np.asarray(out["j"]), np.asarray(tree["j"]))
        assert out["name"] is ... and out["step"] is ...


def test_abstract_without_sharding_goes_to_default_device(saved):
    path, tree = saved
    out = ocp.load(path, {"w": jax.ShapeDtypeStruct((3, 4), np.float32), "b": {"c": np.int32(0)},
                          "step": 0, "name": "", "j": np.zeros(8, np.float16)})
    assert out["w"].sharding == SingleDeviceSharding(jax.devices()[0])
    assert type(out["b"]["c"]) is np.int32 and out["b"]["c"] == 5
    assert type(out["step"]) is int and out["step"] == 3
    assert out["name"] == "run"
    assert isinstance(out["j"], np.ndarray) and out["j"].dtype == np.float16


def test_types_as_abstract_leaves(saved):
    path, tree = saved
    out = ocp.load(path, {"w": jax.Array, "b": {"c": int}, "step": float, "name": str,
                          "j": np.ndarray})
    assert isinstance(out["w"], jax.Array) and out["b"]["c"] == 5 and type(out["b"]["c"]) is int
    assert out["step"] == 3.0 and type(out["step"]) is float
    assert isinstance(out["j"], np.ndarray)


def test_placeholder_skips_without_opening(saved, monkeypatch):
    path, tree = saved
    opened = []
    real_open = _reader.ArrayReader.open
    monkeypatch.setattr(_reader.ArrayReader, "open",
                        lambda self, params: opened.extend(params) or real_open(self, params))
    out = ocp.load(path, {"w": ..., "b": {"c": ...}, "step": ..., "name": ..., "j": np.ndarray})
    assert opened == ["j"]
    assert out["w"] is ocp.PLACEHOLDER and out["b"]["c"] is ...


def test_tree_mismatch_lists_every_offending_key(saved):
    path, _ = saved
    with pytest.raises(errors.TreeMismatchError) as info:
        ocp.load(path, {"w": np.zeros((3, 4), np.float32), "extra": np.zeros(1)})
    msg = str(info.value)
    assert str(path) in msg
    for key in ("('b', 'c')", "('step',)", "('name',)", "('j',)", "('extra',)"):
        assert key in msg
    assert set(info.value.missing) == {("b", "c"), ("step",), ("name",), ("j",)}
    assert info.value.unexpected == (("extra",),)
    assert isinstance(info.value, ValueError)


def test_shape_mismatch_names_expected_and_found(saved):
    path, tree = saved
    abstract = {**tree, "w": jax.ShapeDtypeStruct((5, 4), np.float32)}
    with pytest.raises(errors.TreeMismatchError, match=r"\('w',\): expected shape \(5, 4\), found \(3, 4\)"):
        ocp.load(path, abstract)
    with pytest.raises(errors.TreeMismatchError, match="expected a str, found np.ndarray"):
        ocp.load(path, {**tree, "w": "text"})


def test_partial_load_only_when_asked(saved):
    path, tree = saved
    with pytest.raises(errors.TreeMismatchError):
        ocp.load(path, {"b": {"c": np.int32(0)}})
    assert ocp.load(path, {"b": {"c": np.int32(0)}}, partial_load=True) == {"b": {"c": 5}}


def test_metadata_reads_no_array_data(saved, monkeypatch):
    path, tree = saved

    def forbidden(*a, **k):
        raise AssertionError("metadata() read array data")

    monkeypatch.setattr(_reader.ArrayReader, "read_numpy", staticmethod(forbidden))
    monkeypatch.setattr(_reader.ArrayReader, "read_sharded", staticmethod(forbidden))
    meta = ocp.metadata(path)
    assert meta.custom_metadata == {"epoch": 2}
    assert meta.commit_timestamp is not None and meta.init_timestamp <= meta.commit_timestamp
    assert meta.metadata["w"] == ocp.ArrayMetadata((3, 4), np.dtype(np.float32), "numpy")
    assert meta.metadata["j"].kind == "jax" and meta.metadata["j"].shape == (8,)
    assert meta.metadata["step"] == ocp.ScalarMetadata(int, np.dtype(np.int64))
    assert meta.metadata["b"]["c"].type is np.int32
    assert meta.metadata["name"] == ocp.StringMetadata()


def test_metadata_tree_is_an_abstract_tree(saved):
    path, tree = saved
    monkeypatch_free = ocp.load(path, ocp.metadata(path))
    assert monkeypatch_free["step"] == 3 and monkeypatch_free["name"] == "run"
    assert isinstance(monkeypatch_free["j"], jax.Array)
    np.testing.assert_array_equal(monkeypatch_free["w"], tree["w"])


def test_unsupported_leaf_is_rejected_before_any_write(tmp_path):
    path = tmp_path / "c"
    with pytest.raises(errors.UnsupportedTreeError, match=r"\('a', 'b', '0'\).*builtins.object"):
        ocp.save_pytree(path, {"a": {"b": [object()]}, "ok": np.ones(2)})
    assert os.listdir(tmp_path) == []
    with pytest.raises(errors.UnsupportedTreeError, match="dtype object"):
        ocp.save_pytree(path, {"a": np.array([None])})
    with pytest.raises(errors.UnsupportedTreeError, match="int64"):
        ocp.save_pytree(path, {"a": 2**70})
    with pytest.raises(errors.UnsupportedTreeError, match="Nothing to save"):
        ocp.save_pytree(path, {})
    with pytest.raises(errors.InvalidArgumentError, match="JSON"):
        ocp.save_pytree(path, {"a": 1}, custom_metadata={"x": object()})
    assert os.listdir(tmp_path) == []


def test_colliding_names_are_rejected(tmp_path):
    with pytest.raises(errors.UnsupportedTreeError, match=r"\('a\.b',\) and \('a', 'b'\)|"
                                                          r"\('a', 'b'\) and \('a\.b',\)"):
        ocp.save_pytree(tmp_path / "c", {"a.b": 1, "a": {"b": 2}})
    for tree in ({1: 1, "1": 2}, {"a": 1, "a/": 2}, {"": 1, "/": 2}):
        with pytest.raises(errors.UnsupportedTreeError, match="same name"):
            ocp.save_pytree(tmp_path / "c", tree)
    assert not (tmp_path / "c").exists()


def test_existing_path_needs_overwrite(saved):
    path, tree = saved
    with pytest.raises(errors.CheckpointExistsError) as info:
        ocp.save_pytree(path, {"x": 1})
    assert isinstance(info.value, FileExistsError) and str(path) in str(info.value)
    assert ocp.load(path)["step"] == 3
    ocp.save_pytree(path, {"x": 1}, overwrite=True)
    assert ocp.load(path) == {"x": 1}
    assert sorted(os.listdir(path.parent)) == ["c"]


def test_load_errors_are_typed_and_say_what_to_do(saved, tmp_path):
    path, _ = saved
    with pytest.raises(errors.CheckpointNotFoundError):
        ocp.load(tmp_path / "nope")
    with pytest.raises(FileNotFoundError):
        ocp.load(tmp_path / "nope")
    with pytest.raises(errors.InvalidLayoutError, match=r"has checkpointables \['pytree'\]"):
        ocp.load(path, checkpointable_name=None)
    with pytest.raises(errors.InvalidLayoutError, match=r"inside a checkpoint: try the parent.*checkpointable_name=.pytree."):
        ocp.load(path / "pytree")
    with pytest.raises(errors.InvalidLayoutError, match="reserved"):
        ocp.load(path, checkpointable_name="metrics")
    tmp = tmp_path / "x.orbax-checkpoint-tmp"
    tmp.mkdir()
    with pytest.raises(errors.IncompleteCheckpointError):
        ocp.load(tmp)


def test_overwrite_swaps_old_and_new_in_one_step(saved, monkeypatch):
    from orbax_v1._storage import commit as _commit
    path, _ = saved
    probe_a, probe_b = path.parent / "probe_a", path.parent / "probe_b"
    probe_a.mkdir()
    probe_b.mkdir()
    if not _commit._exchange(str(probe_a), str(probe_b)):
        pytest.skip("this system cannot swap directories atomically")
    real_rename = os.rename

    def rename(src, dst):  # moving the old checkpoint aside would open a window
        assert not os.path.exists(dst), f"non-atomic replace of {dst}"
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    ocp.save_pytree(path, {"new": 1}, overwrite=True)
    assert ocp.load(path) == {"new": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == ["c", "probe_a", "probe_b"]
