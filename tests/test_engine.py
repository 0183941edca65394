"""The array engine: both read paths agree, chunking, damaged data, in-flight bounds."""

import os
import shutil

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import orbax_v1 as ocp
from orbax_v1 import _pytree_save, _zarr, errors
from orbax_v1._storage import reader as _reader


def tree():
    rng = np.random.default_rng(1)
    return {
        "f32": rng.standard_normal((6, 8)).astype(np.float32),
        "bf16": rng.standard_normal((8, 4)).astype(ml_dtypes.bfloat16),
        "i64": rng.integers(-5, 5, (3, 5)),
        "b": rng.integers(0, 2, 7).astype(bool),
        "c": (rng.standard_normal(4) + 1j).astype(np.complex64),
        "empty": np.zeros((0, 3), np.float32),
        "scalar": 3.5,
        "np_scalar": np.int16(-2),
        "j": jnp.arange(16, dtype=jnp.float32).reshape(8, 2),
    }


@pytest.fixture(params=["packed reads", "single-chunk reads", "chunked reads",
                        "tensorstore reads"])
def read_path(request, monkeypatch):
    """Each way an array can be read (the same files, written once per test)."""
    if request.param != "packed reads":  # no small-array pack
        monkeypatch.setattr(_pytree_save, "PACK_MAX_BYTES", 0)
    if request.param == "chunked reads":  # many chunks, a small in-flight window
        monkeypatch.setattr(_reader, "IN_FLIGHT_BYTES", 64)
        monkeypatch.setattr(_zarr, "CHUNK_TARGET_BYTES", 32)
    if request.param == "tensorstore reads":  # as for arrays another writer wrote
        monkeypatch.setattr(_reader.ArrayReader, "_stored", lambda self, param: None)
    return request.param


def test_both_read_paths_agree(tmp_path, read_path):
    t = tree()
    ocp.save_pytree(tmp_path / "c", t)
    out = ocp.load(tmp_path / "c")
    for k in t:
        np.testing.assert_array_equal(np.asarray(out[k]), np.asarray(t[k]), err_msg=k)
        assert np.asarray(out[k]).dtype == np.asarray(t[k]).dtype, k
    assert out["f32"].flags.writeable
    cast = ocp.load(tmp_path / "c", {**jax.tree.map(lambda _: ..., t),
                                      "f32": np.zeros((6, 8), ml_dtypes.bfloat16)})
    np.testing.assert_array_equal(cast["f32"], t["f32"].astype(ml_dtypes.bfloat16))
    if jax.device_count() >= 8:
        mesh = jax.make_mesh((4, 2), ("x", "y"))
        s = NamedSharding(mesh, P("x", "y"))
        sharded = ocp.load(tmp_path / "c", {**jax.tree.map(lambda _: ..., t),
                                             "j": jax.ShapeDtypeStruct((8, 2), jnp.float32,
                                                                       sharding=s)})
        assert sharded["j"].sharding == s
        for shard in sharded["j"].addressable_shards:
            np.testing.assert_array_equal(np.asarray(shard.data), np.asarray(t["j"])[shard.index])


def _truncate_data_files(checkpoint):
    for data_dir in (checkpoint / "pytree" / "d", checkpoint / "pytree" / "ocdbt.process_0" / "d"):
        for f in os.listdir(data_dir):
            with open(data_dir / f, "r+b") as fh:
                fh.truncate(3)


def test_damaged_data_is_a_typed_error(tmp_path, read_path):
    ocp.save_pytree(tmp_path / "c", {"x": np.arange(1000.0)})  # > 1 KiB: not inlined
    ocp.save_pytree(tmp_path / "t", {"x": np.arange(3.0)})  # tiny: inlined, in the pack
    for checkpoint in (tmp_path / "t", tmp_path / "c"):
        _truncate_data_files(checkpoint)
        with pytest.raises(errors.CorruptCheckpointError, match=r"\('x',\)"):
            ocp.load(checkpoint)


def test_missing_data_files_are_a_typed_error(tmp_path, read_path):
    ocp.save_pytree(tmp_path / "c", {"x": np.arange(1000.0)})  # > 1 KiB: not inlined
    shutil.rmtree(tmp_path / "c" / "pytree" / "ocdbt.process_0" / "d")
    shutil.rmtree(tmp_path / "c" / "pytree" / "d")
    with pytest.raises(errors.CorruptCheckpointError, match=r"\('x',\)"):
        ocp.load(tmp_path / "c")


def test_chunks_follow_shards_and_never_straddle_them():
    assert _zarr.chunk_shape((4, 6), 4, target=1 << 20) == (4, 6)
    assert _zarr.chunk_shape((0, 5), 4) == (1, 5)
    for shape in [(1024, 1024, 64), (3 * 5 * 7 * 11 * 13, 64), (2 ** 28,), (2 * 1000003, 8)]:
        chunks = _zarr.chunk_shape(shape, 4, target=16 << 20)
        assert all(w % c == 0 for w, c in zip(shape, chunks)), (shape, chunks)
        if shape[0] != 2 * 1000003:
            assert np.prod(chunks) * 4 <= 16 << 20, (shape, chunks)
    # A large prime dimension stays whole rather than becoming millions of tiny chunks.
    assert _zarr.chunk_shape((1000003,), 4, target=1024) == (1000003,)
    assert _zarr.chunk_shape((2 * 1000003, 8), 4, target=1024) == (1000003, 1)


def test_the_small_array_pack_never_shadows_a_user_key(tmp_path):
    tree = {"": {"orbax_v1_pack": np.arange(3)}, "x": np.ones(2)}  # param '.orbax_v1_pack'
    ocp.save_pytree(tmp_path / "c", tree)
    out = ocp.load(tmp_path / "c")
    np.testing.assert_array_equal(out[""]["orbax_v1_pack"], np.arange(3))
    np.testing.assert_array_equal(out["x"], np.ones(2))


def test_small_arrays_come_from_the_pack(tmp_path, monkeypatch):
    ocp.save_pytree(tmp_path / "c", {f"p{i}": np.full(4, i, np.float32) for i in range(50)})
    reads = []
    real_read = _reader.ArrayReader._kvstore

    def counting_kvstore(self):
        kv = real_read(self)

        class Counting:
            def read(self, key):
                reads.append(key)
                return kv.read(key)
        return Counting()

    monkeypatch.setattr(_reader.ArrayReader, "_kvstore", counting_kvstore)
    out = ocp.load(tmp_path / "c")
    assert reads == [_pytree_save.PACK_KEY]
    assert all(out[f"p{i}"].tolist() == [i] * 4 for i in range(50))
