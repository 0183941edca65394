"""Interop with the real `orbax-checkpoint` (0.12.8), in both directions.

1. Real Orbax writes (v1 `save_checkpointables`/`save`, v0 `StandardCheckpointer`,
   v0 `PyTreeCheckpointer` in every storage mode, v1 under a `Context` with other array
   options, sharded arrays on 8 CPU devices) and `orbax_v1` loads.
2. `orbax_v1.save_pytree` writes and real Orbax loads (v1 `load`, v1 `metadata`, v0
   `PyTreeCheckpointer.restore`), including a sharded 8-device array.

Values are compared bit for bit and dtypes exactly; leaf types (np.ndarray vs
jax.Array vs Python scalar) are checked too. Real Orbax has no record of tuples, int
dict keys or NamedTuples (they come back as lists, str keys and dicts), so where real
Orbax wrote the checkpoint or reads it, the expected tree is put through `orbax_view`.

The whole module is skipped when orbax-checkpoint (the `test` extra) is not installed.
"""

from __future__ import annotations

import os

# Must happen before jax is first imported (tests/conftest.py may already do this).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import collections  # noqa: E402
import json  # noqa: E402
import warnings  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from jax.sharding import Mesh, NamedSharding, SingleDeviceSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

ocp0 = pytest.importorskip("orbax.checkpoint")
ocp1 = pytest.importorskip("orbax.checkpoint.experimental.v1")

import orbax_v1  # noqa: E402

pytestmark = [
    pytest.mark.interop,
    # Real Orbax is chatty (sharding-file warnings, deprecations); none of it matters here.
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

needs_8_devices = pytest.mark.skipif(
    jax.device_count() != 8,
    reason="needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8 "
           "must be set before jax is imported")

NT = collections.namedtuple("NT", ["a", "b"])


# ----------------------------------------------------------------------------------
# Comparison helpers
# ----------------------------------------------------------------------------------

def _bits(x) -> bytes:
    return np.ascontiguousarray(np.asarray(x)).tobytes()


def assert_leaf_equal(got, want, where="<root>"):
    """Exact: same leaf kind, same dtype, same shape, same bits."""
    if isinstance(want, jax.Array):
        assert isinstance(got, jax.Array), f"{where}: want jax.Array, got {type(got)}"
    elif isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray) and not isinstance(got, jax.Array), (
            f"{where}: want np.ndarray, got {type(got)}")
    if isinstance(want, (jax.Array, np.ndarray)):
        assert got.dtype == want.dtype, f"{where}: dtype {got.dtype} != {want.dtype}"
        assert got.shape == want.shape, f"{where}: shape {got.shape} != {want.shape}"
        g, w = np.asarray(got), np.asarray(want)
        if w.dtype.type.__module__ == "ml_dtypes":  # bfloat16, float8, int4: numpy's NaN
            g, w = g.astype(np.float32), w.astype(np.float32)  # logic needs a native dtype
        np.testing.assert_array_equal(g, w, err_msg=where)
        # NaN payloads, -0.0, sub-byte types: compare the bits too.
        assert _bits(g) == _bits(w), f"{where}: bits differ"
        return
    if isinstance(want, (bool, int, float, complex, str, bytes)) or want is None:
        assert type(got) is type(want), f"{where}: type {type(got)} != {type(want)}"
        if isinstance(want, float) and np.isnan(want):
            assert np.isnan(got), where
        else:
            assert got == want, f"{where}: {got!r} != {want!r}"
        return
    if isinstance(want, np.generic):
        assert type(got) is type(want), f"{where}: type {type(got)} != {type(want)}"
        assert _bits(got) == _bits(want), f"{where}: {got!r} != {want!r}"
        return
    if want is orbax_v1.PLACEHOLDER:
        assert got is orbax_v1.PLACEHOLDER, where
        return
    raise AssertionError(f"{where}: unexpected expected-leaf {type(want)}")


def assert_tree_equal(got, want, where="<root>"):
    """Exact structure (container types, key types, order of sequences) and leaves."""
    if isinstance(want, dict):
        assert isinstance(got, dict), f"{where}: want dict, got {type(got)}"
        assert set(got) == set(want), f"{where}: keys {sorted(map(repr, got))} != " \
                                      f"{sorted(map(repr, want))}"
        for k in want:
            assert_tree_equal(got[k], want[k], f"{where}[{k!r}]")
    elif isinstance(want, (list, tuple)):
        assert type(got) is type(want), f"{where}: {type(got)} != {type(want)}"
        assert len(got) == len(want), f"{where}: len {len(got)} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_tree_equal(g, w, f"{where}[{i}]")
    else:
        assert_leaf_equal(got, want, where)


def host_view(tree):
    """What orbax_v1.load gives with no abstract tree: every array in host memory."""
    return jax.tree.map(lambda x: np.asarray(x) if isinstance(x, jax.Array) else x, tree)


def orbax_view(tree):
    """What real Orbax gives back for `tree` (it records no container types).

    Non-empty tuples -> lists, NamedTuples -> dicts, dict keys -> str, numpy scalars ->
    Python scalars. Empty tuples, lists and dicts keep their type ('Tuple' etc. is
    recorded for empty nodes).
    """
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return {f: orbax_view(v) for f, v in zip(tree._fields, tree)}
    if isinstance(tree, dict):
        return {str(k): orbax_view(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        if not tree:
            return type(tree)()
        return [orbax_view(v) for v in tree]
    if isinstance(tree, np.generic):
        return tree.item()
    return tree


def _rand_array(rng, shape, dtype):
    """Random contents covering the whole bit range (so NaNs, infs, -0.0 for floats)."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(np.bool_)
    if dtype.name in ("int4", "uint4", "int2", "uint2"):  # sub-byte: any byte is not valid
        info = ml_dtypes.iinfo(dtype)
        return rng.integers(info.min, info.max + 1, shape).astype(dtype)
    n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    return np.frombuffer(rng.bytes(n), np.uint8).view(dtype).reshape(shape).copy()


def _dtype_tree(rng, dtype):
    tree = {"d0": _rand_array(rng, (), dtype), "d1": _rand_array(rng, (5,), dtype),
            "d2": _rand_array(rng, (3, 7), dtype)}
    # A jax.Array leaf too, unless jax would narrow the dtype (64-bit types without x64).
    if jax.dtypes.canonicalize_dtype(dtype) == np.dtype(dtype):
        tree["jax"] = jnp.asarray(_rand_array(rng, (2, 4), dtype))
    return tree


def _mixed_tree(rng):
    """A tree real Orbax's v1 save accepts: every leaf kind it supports."""
    return {
        "f32": rng.standard_normal((3, 4)).astype(np.float32),
        "bf16": np.array([1.5, -2.25, 3.0, -0.0, np.inf], dtype=jnp.bfloat16),
        "i8": np.array([-128, -1, 0, 1, 127], np.int8),
        "u16": np.array([0, 1, 65535, 7], np.uint16),
        "bool": np.array([True, False, True]),
        "c64": np.array([1 + 2j, -3.5j, np.inf - 1j], np.complex64),
        "f64": np.array([np.pi, 1e300, -np.inf, np.nan, 5e-324]),
        "zero_d": np.array(7.5, np.float32),
        "zero_d_int": np.array(-3, np.int64),
        # Over 1 KiB, so the data lands in OCDBT data files rather than inline.
        "big": np.arange(64 * 48, dtype=np.float32).reshape(64, 48) * 0.5,
        "jax_i32": jnp.arange(6, dtype=jnp.int32).reshape(2, 3),
        "jax_bf16": jnp.array([1.0, -2.5, 3.25], dtype=jnp.bfloat16),
        "jax_f32_0d": jnp.array(2.5, jnp.float32),
        "py_int": 42,
        "py_bigint": -(2 ** 40) - 1,
        "py_float": 2.5,
        "py_neg_float": -1e-300,
        "py_bool": True,
        "py_int64_max": 2 ** 63 - 1,
        "py_int64_min": -(2 ** 63),
        "py_nan": float("nan"),
        "py_neg_inf": float("-inf"),
        "text": "hello, wörld",
        "empty_text": "",
        # All fill value: a writer may skip such chunks; the reader must still fill them.
        "zeros": np.zeros((4, 4), np.float32),
        "jax_zeros": jnp.zeros((3,), jnp.int8),
        "nested": {
            "list": [np.array([1, 2], np.int16), {"x": 3, "y": "s2"}, 0.125],
            "dict": {"deep": {"deeper": np.ones((2, 2), np.uint8)}},
            "tuple": (np.array([9], np.int32), 7),
        },
        "none": None,
        "empty_dict": {},
        "empty_list": [],
    }


def _sharding_ids(sharding) -> np.ndarray:
    return np.vectorize(lambda d: d.id)(sharding.mesh.devices)


# ----------------------------------------------------------------------------------
# 1. Real Orbax writes -> orbax_v1 loads
# ----------------------------------------------------------------------------------

def test_real_v1_save_checkpointables_we_load(tmp_path):
    tree = _mixed_tree(np.random.default_rng(0))
    p = tmp_path / "ckpt"
    ocp1.save_checkpointables(p, {"pytree": tree}, custom_metadata={"epoch": 3, "t": [1, "x"]})
    # It is the layout we expect to be reading.
    assert (p / "orbax.checkpoint").exists() and (p / "pytree" / "_METADATA").exists()

    want = orbax_view(tree)
    assert_tree_equal(orbax_v1.load(p), host_view(want))
    assert_tree_equal(orbax_v1.load(p, checkpointable_name="pytree"), host_view(want))
    assert_tree_equal(orbax_v1.load_pytree(p), host_view(want))

    # Metadata: shapes/dtypes of every array, custom metadata and timestamps.
    meta = orbax_v1.metadata(p)
    assert meta.custom_metadata == {"epoch": 3, "t": [1, "x"]}
    step = json.loads((p / "_CHECKPOINT_METADATA").read_text())
    assert meta.commit_timestamp_nsecs == step["commit_timestamp_nsecs"]
    assert meta.init_timestamp_nsecs == step["init_timestamp_nsecs"]
    for name in ("f32", "bf16", "i8", "u16", "bool", "c64", "f64", "zero_d", "big",
                 "jax_i32", "jax_bf16"):
        m = meta.metadata[name]
        assert tuple(m.shape) == tree[name].shape, name
        assert np.dtype(m.dtype) == tree[name].dtype, name
    # ... and the metadata tree is a valid abstract tree that loads everything as saved.
    assert_tree_equal(orbax_v1.load(p, meta.metadata), want)
    assert_tree_equal(orbax_v1.load(p, meta), want)


def test_real_v1_save_named_checkpointables_we_load(tmp_path):
    rng = np.random.default_rng(1)
    tree = {"w": rng.standard_normal((4, 5)).astype(np.float32),
            "b": jnp.arange(5, dtype=jnp.bfloat16), "step": 7}
    # v1 `save` with an explicit name gives the same layout as save_checkpointables.
    ocp1.save(tmp_path / "a", tree, checkpointable_name="pytree")
    assert_tree_equal(orbax_v1.load(tmp_path / "a"), host_view(tree))
    # The 0.12 default name is 'state'.
    ocp1.save(tmp_path / "b", tree)
    assert (tmp_path / "b" / "state").is_dir()
    assert_tree_equal(orbax_v1.load(tmp_path / "b", checkpointable_name="state"), host_view(tree))
    # Several checkpointables: each loads by its name.
    ocp1.save_checkpointables(tmp_path / "c", {"params": tree, "opt": {"m": np.zeros(3)}})
    assert_tree_equal(orbax_v1.load(tmp_path / "c", checkpointable_name="params"), host_view(tree))
    assert_tree_equal(orbax_v1.load(tmp_path / "c", checkpointable_name="opt"), host_view({"m": np.zeros(3)}))


def test_real_v1_we_load_with_abstract_tree(tmp_path):
    rng = np.random.default_rng(2)
    tree = {"a": rng.standard_normal((4, 3)).astype(np.float32),
            "j": jnp.arange(12, dtype=jnp.float32).reshape(4, 3),
            "i": 5, "f": 0.5, "s": "str", "skip": np.ones(3, np.int8)}
    p = tmp_path / "ckpt"
    ocp1.save_checkpointables(p, {"pytree": tree})
    abstract = {
        "a": np.zeros((4, 3), np.float64),                  # numpy leaf: cast dtype
        "j": jax.ShapeDtypeStruct((4, 3), jnp.bfloat16,
                                  sharding=SingleDeviceSharding(jax.devices()[0])),
        "i": 0, "f": 0.0, "s": str,
        "skip": orbax_v1.PLACEHOLDER,
    }
    out = orbax_v1.load(p, abstract)
    assert out["j"].sharding == abstract["j"].sharding
    assert_tree_equal(out, {
        "a": tree["a"].astype(np.float64),
        "j": tree["j"].astype(jnp.bfloat16),
        "i": 5, "f": 0.5, "s": "str", "skip": orbax_v1.PLACEHOLDER})
    # Partial load of a subtree.
    out = orbax_v1.load(p, {"a": np.ndarray, "s": str}, partial_load=True)
    assert_tree_equal(out, {"a": tree["a"], "s": "str"})


# A dtype matrix (several shapes, full-range random bits) through real v1 save.
_DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
           np.uint32, np.uint64, np.float16, jnp.bfloat16, np.float32, np.float64,
           np.complex64, np.complex128, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2]


@pytest.mark.parametrize("dtype", _DTYPES + [ml_dtypes.int4],
                         ids=lambda d: np.dtype(d).name)
def test_real_v1_dtype_matrix_we_load(tmp_path, dtype):
    rng = np.random.default_rng(3)
    tree = _dtype_tree(rng, dtype)
    p = tmp_path / "ckpt"
    ocp1.save_checkpointables(p, {"pytree": tree})
    assert_tree_equal(orbax_v1.load(p), host_view(tree))


def test_real_v0_standard_checkpointer_we_load(tmp_path):
    tree = _mixed_tree(np.random.default_rng(4))
    # StandardSave rejects str leaves.
    tree.pop("text")
    tree.pop("empty_text")
    tree["nested"]["list"][1].pop("y")
    p = tmp_path / "std"
    ckptr = ocp0.StandardCheckpointer()
    ckptr.save(p, tree, custom_metadata={"who": "v0"})
    ckptr.wait_until_finished()
    ckptr.close()
    step = json.loads((p / "_CHECKPOINT_METADATA").read_text())
    assert isinstance(step["item_handlers"], str)  # a direct (flat) v0 checkpoint

    want = orbax_view(tree)
    assert_tree_equal(orbax_v1.load(p, checkpointable_name=None), host_view(want))
    meta = orbax_v1.metadata(p, checkpointable_name=None)
    assert meta.custom_metadata == {"who": "v0"}
    assert tuple(meta.metadata["big"].shape) == (64, 48)
    assert_tree_equal(orbax_v1.load(p, meta.metadata, checkpointable_name=None), want)


_PYTREE_CHECKPOINTER_MODES = [
    dict(use_ocdbt=False),                          # per-array directories, zarr2
    dict(use_ocdbt=False, use_zarr3=True),          # per-array directories, zarr3
    dict(use_ocdbt=False, use_compression=False),
    dict(use_zarr3=False),                          # OCDBT + zarr2 (v0's default)
    dict(use_zarr3=True),                           # OCDBT + zarr3
    dict(use_zarr3=False, use_compression=False),
    dict(use_zarr3=True, use_compression=False),
]


@pytest.mark.parametrize("kwargs", _PYTREE_CHECKPOINTER_MODES,
                         ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_real_v0_pytree_checkpointer_we_load(tmp_path, kwargs):
    tree = _mixed_tree(np.random.default_rng(5))
    p = tmp_path / "v0"
    ocp0.PyTreeCheckpointer(**kwargs).save(p, tree)
    meta = json.loads((p / "_METADATA").read_text())
    assert meta["use_ocdbt"] == kwargs.get("use_ocdbt", True)
    assert meta["use_zarr3"] == kwargs.get("use_zarr3", False)
    if not kwargs.get("use_ocdbt", True):
        assert (p / "big").is_dir()  # really one directory per array
    want = orbax_view(tree)
    assert_tree_equal(orbax_v1.load(p, checkpointable_name=None), host_view(want))
    assert_tree_equal(orbax_v1.load(p, orbax_v1.metadata(p, checkpointable_name=None),
                                    checkpointable_name=None), want)


@pytest.mark.parametrize("use_zarr3,use_ocdbt,use_compression", [
    (False, True, True), (True, False, True), (False, False, True), (True, True, False),
    (False, False, False)])
def test_real_v1_context_array_options_we_load(tmp_path, use_zarr3, use_ocdbt,
                                               use_compression):
    tree = _mixed_tree(np.random.default_rng(6))
    p = tmp_path / "ckpt"
    ctx = ocp1.Context()
    ctx.array.saving.use_zarr3 = use_zarr3
    ctx.array.saving.use_ocdbt = use_ocdbt
    ctx.array.saving.use_compression = use_compression
    with ctx:
        ocp1.save_checkpointables(p, {"pytree": tree})
    meta = json.loads((p / "pytree" / "_METADATA").read_text())
    assert (meta["use_zarr3"], meta["use_ocdbt"]) == (use_zarr3, use_ocdbt)
    assert_tree_equal(orbax_v1.load(p), host_view(orbax_view(tree)))


def test_real_v1_small_chunks_and_storage_dtype_we_load(tmp_path):
    """chunk_byte_size gives several chunks per array (zarr3 sharding_indexed with
    inner chunks smaller than the outer ones); storage dtype casts on disk."""
    rng = np.random.default_rng(7)
    tree = {"a": rng.standard_normal((16, 12)).astype(np.float32),
            "j": jnp.asarray(rng.integers(-1000, 1000, (8, 6)).astype(np.int32))}
    p = tmp_path / "chunks"
    ctx = ocp1.Context()
    ctx.array.saving.storage_options.chunk_byte_size = 64
    with ctx:
        ocp1.save_checkpointables(p, {"pytree": tree})
    md = ocp1.metadata(p, checkpointable_name="pytree").metadata
    assert md["j"].storage_metadata.chunk_shape != (8, 6)  # really chunked
    assert_tree_equal(orbax_v1.load(p), host_view(tree))

    p = tmp_path / "cast"
    ctx = ocp1.Context()
    ctx.array.saving.storage_options.dtype = jnp.bfloat16
    with ctx:
        ocp1.save_checkpointables(p, {"pytree": {"j": jnp.arange(8, dtype=jnp.float32)}})
    assert_tree_equal(orbax_v1.load(p), host_view({"j": jnp.arange(8, dtype=jnp.bfloat16)}))


@needs_8_devices
def test_real_v1_sharded_we_load(tmp_path):
    mesh = jax.make_mesh((4, 2), ("x", "y"))
    s_xy = NamedSharding(mesh, P("x", "y"))
    s_x = NamedSharding(mesh, P("x", None))          # replicated over 'y'
    a_np = np.arange(64, dtype=np.float32).reshape(8, 8) - 20.5
    b_np = np.arange(32).reshape(8, 4).astype(jnp.bfloat16)
    c_np = np.random.default_rng(8).integers(-99, 99, (16, 6)).astype(np.int32)
    tree = {
        "a": jax.device_put(a_np, s_xy),
        "b": jax.device_put(b_np, s_x),
        "c": jax.device_put(c_np, NamedSharding(mesh, P(None, "y"))),
        "rep": jax.device_put(np.arange(5, dtype=np.int16), NamedSharding(mesh, P())),
        "one": jax.device_put(np.array([1.5, 2.5], np.float32), jax.devices()[5]),
        # A mesh over a permuted subset of the devices, with Auto axis types.
        "sub": jax.device_put(np.arange(12, dtype=np.float32).reshape(4, 3), NamedSharding(
            Mesh(np.array(jax.devices())[[7, 5, 6, 4]].reshape(2, 2), ("u", "v")),
            P("v", None))),
    }
    p = tmp_path / "sharded"
    ocp1.save_checkpointables(p, {"pytree": tree})

    # No target: host arrays, whatever the saving topology.
    assert_tree_equal(orbax_v1.load(p), host_view(tree))
    # The metadata tree as target: the saved sharding (mesh shape, axis names, device ids).
    out = orbax_v1.load(p, orbax_v1.metadata(p))
    assert_tree_equal(out, tree)
    for k in tree:
        assert out[k].sharding == tree[k].sharding, k
        if isinstance(tree[k].sharding, NamedSharding):
            np.testing.assert_array_equal(_sharding_ids(out[k].sharding),
                                          _sharding_ids(tree[k].sharding))
    assert out["one"].devices() == {jax.devices()[5]}
    # Our metadata reports the saved shardings.
    meta = orbax_v1.metadata(p).metadata
    for k in tree:
        assert meta[k].kind == "jax" and meta[k].sharding == tree[k].sharding, k
        assert tuple(meta[k].shape) == tree[k].shape and meta[k].dtype == tree[k].dtype, k

    # Resharded: a different mesh and spec, and a dtype cast.
    mesh2 = jax.make_mesh((2, 4), ("p", "q"))
    s2 = NamedSharding(mesh2, P("q", None))
    s3 = NamedSharding(mesh2, P("p"))
    abstract = {
        "a": jax.ShapeDtypeStruct((8, 8), jnp.float32, sharding=s2),
        "b": jax.ShapeDtypeStruct((8, 4), jnp.float32, sharding=NamedSharding(mesh2, P("p", "q"))),
        "c": jax.ShapeDtypeStruct((16, 6), jnp.int32, sharding=NamedSharding(mesh2, P("q", "p"))),
        "rep": jax.ShapeDtypeStruct((5,), jnp.int16, sharding=NamedSharding(mesh2, P())),
        "one": jax.ShapeDtypeStruct((2,), tree["one"].dtype, sharding=s3),
        "sub": jax.ShapeDtypeStruct((4, 3), jnp.float32, sharding=s2),
    }
    out = orbax_v1.load(p, abstract)
    for k, sds in abstract.items():
        assert out[k].sharding == sds.sharding, k
        assert out[k].dtype == sds.dtype, k
    assert_tree_equal(out, {
        "a": jax.device_put(a_np, s2),
        "b": jnp.asarray(b_np.astype(np.float32)),
        "c": jnp.asarray(c_np), "rep": jnp.arange(5, dtype=jnp.int16),
        "one": tree["one"], "sub": jnp.asarray(np.asarray(tree["sub"]))})
    # Each shard holds the right slice.
    for shard in out["a"].addressable_shards:
        np.testing.assert_array_equal(np.asarray(shard.data), a_np[shard.index])


def test_real_v1_storage_layout_variants_we_load(tmp_path):
    """Many leaves, tiny OCDBT data files, '.' and '/' in keys."""
    rng = np.random.default_rng(9)
    many = {f"k{i}": np.full((3,), i, np.int32) for i in range(300)}
    ocp1.save_checkpointables(tmp_path / "many", {"pytree": many})
    assert_tree_equal(orbax_v1.load(tmp_path / "many"), host_view(many))

    tree = {f"a{i}": rng.standard_normal((32, 32)) for i in range(6)}
    tree.update({"a/b": np.array([1, 2], np.int32), "k.dot": np.array([3], np.uint64),
                 "ünï": {"x y": 1.5}})
    ctx = ocp1.Context()
    ctx.array.saving.ocdbt_target_data_file_size = 1024
    with ctx:
        ocp1.save_checkpointables(tmp_path / "small_files", {"pytree": tree})
    assert len(list((tmp_path / "small_files" / "pytree" / "ocdbt.process_0" / "d")
                    .iterdir())) > 6
    assert_tree_equal(orbax_v1.load(tmp_path / "small_files"), host_view(tree))


@needs_8_devices
def test_real_sharded_other_writers_we_load(tmp_path):
    """v0 StandardCheckpointer and v1 non-OCDBT with sub-shard chunks, sharded arrays."""
    mesh = jax.make_mesh((4, 2), ("x", "y"))
    a = jax.device_put(np.arange(64, dtype=np.float32).reshape(8, 8) - 3.5,
                       NamedSharding(mesh, P("x", "y")))
    b = jax.device_put(np.arange(16, dtype=np.int32).reshape(8, 2),
                       NamedSharding(mesh, P("x", None)))
    tree = {"a": a, "b": b}

    ckptr = ocp0.StandardCheckpointer()
    ckptr.save(tmp_path / "v0", tree)
    ckptr.wait_until_finished()
    ckptr.close()
    assert_tree_equal(orbax_v1.load(tmp_path / "v0", checkpointable_name=None), host_view(tree))
    out = orbax_v1.load(tmp_path / "v0", orbax_v1.metadata(tmp_path / "v0",
                                                           checkpointable_name=None),
                        checkpointable_name=None)
    assert_tree_equal(out, tree)
    assert out["a"].sharding == a.sharding and out["b"].sharding == b.sharding

    ctx = ocp1.Context()
    ctx.array.saving.use_ocdbt = False
    ctx.array.saving.storage_options.chunk_byte_size = 16  # (2, 4) shards -> (2, 2) chunks
    with ctx:
        ocp1.save_checkpointables(tmp_path / "v1", {"pytree": tree})
    zarr_json = json.loads((tmp_path / "v1" / "pytree" / "a" / "zarr.json").read_text())
    assert zarr_json["codecs"][0]["configuration"]["chunk_shape"] == [2, 2]
    assert_tree_equal(orbax_v1.load(tmp_path / "v1"), host_view(tree))
    out = orbax_v1.load(tmp_path / "v1", orbax_v1.metadata(tmp_path / "v1"))
    assert_tree_equal(out, tree)
    assert out["a"].sharding == a.sharding
    s = NamedSharding(mesh, P("y", "x"))
    out = orbax_v1.load(tmp_path / "v1", {
        "a": jax.ShapeDtypeStruct((8, 8), jnp.float32, sharding=s),
        "b": jax.ShapeDtypeStruct((8, 2), jnp.int32, sharding=NamedSharding(mesh, P(("x", "y"), None)))})
    assert_tree_equal(out, tree)
    assert out["a"].sharding == s and out["b"].sharding.spec == P(("x", "y"), None)


def test_real_training_checkpointer_and_v0_manager_we_load(tmp_path):
    """Step directories: v1 training.Checkpointer (v0 composite layout, item 'state')
    and v0 CheckpointManager (item 'default')."""
    tree = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "j": jnp.ones(4, jnp.bfloat16),
            "step": 3}
    with ocp1.training.Checkpointer(tmp_path / "train") as ck:
        ck.save_pytree(3, tree, metrics={"loss": 1.0})
    assert_tree_equal(orbax_v1.load(tmp_path / "train" / "3", checkpointable_name="state"), host_view(tree))

    with ocp0.CheckpointManager(tmp_path / "mgr") as mgr:
        mgr.save(5, args=ocp0.args.StandardSave(tree))
        mgr.wait_until_finished()
    assert_tree_equal(orbax_v1.load(tmp_path / "mgr" / "5", checkpointable_name="default"), host_view(tree))


@pytest.mark.parametrize("option", [
    "no_sharding_file", "no_array_metadatas", "replica_parallel",
    "replica_parallel_separate_folder"])
@needs_8_devices
def test_real_v1_write_options_we_load(tmp_path, option):
    """Writer options that change which files exist or how replicated arrays are split."""
    mesh = jax.make_mesh((4, 2), ("x", "y"))
    tree = {"rep": jax.device_put(np.arange(4096, dtype=np.float32).reshape(64, 64),
                                  NamedSharding(mesh, P())),
            "half": jax.device_put(np.arange(4096, dtype=np.int32).reshape(64, 64),
                                   NamedSharding(mesh, P("x"))),
            "np": np.arange(3.0)}
    ctx = ocp1.Context()
    saving = ctx.array.saving
    if option == "no_sharding_file":
        saving.enable_write_sharding_file = False
    elif option == "no_array_metadatas":
        saving.array_metadata_store = None
    else:
        saving.use_replica_parallel = True
        saving.min_slice_bytes_for_replica_parallel = 1
        saving.enable_replica_parallel_separate_folder = option.endswith("separate_folder")
    p = tmp_path / option
    with ctx:
        ocp1.save_checkpointables(p, {"pytree": tree})
    assert_tree_equal(orbax_v1.load(p), host_view(tree))  # no target: host arrays
    out = orbax_v1.load(p, orbax_v1.metadata(p))  # the metadata tree: as saved
    if option == "no_sharding_file":
        # No saved sharding: jax.Array leaves come back on the default device.
        assert_tree_equal(out, {"rep": jnp.asarray(np.asarray(tree["rep"])),
                                "half": jnp.asarray(np.asarray(tree["half"])),
                                "np": tree["np"]})
        assert out["rep"].devices() == {jax.devices()[0]}
    else:
        assert_tree_equal(out, tree)
        assert out["rep"].sharding == tree["rep"].sharding
        assert out["half"].sharding == tree["half"].sharding


_TOPOLOGY_SCRIPT = r"""
import os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
import numpy as np, jax, jax.numpy as jnp
import orbax.checkpoint.experimental.v1 as ocp1
import orbax_v1
assert jax.device_count() == 1
real_written, ours_written = sys.argv[1], sys.argv[2]
a_np = np.arange(64, dtype=np.float32).reshape(8, 8) - 20.5
b_np = np.arange(32).reshape(8, 4).astype(jnp.bfloat16)
dev0 = jax.sharding.SingleDeviceSharding(jax.devices()[0])
for p in (real_written, ours_written):
    # orbax_v1, no abstract tree: host arrays (the saving topology is not needed).
    out = orbax_v1.load(p)
    for k, want in (("a", a_np), ("b", b_np)):
        assert type(out[k]) is np.ndarray, (p, k)
        assert out[k].dtype == want.dtype, (p, k)
        assert out[k].tobytes() == want.tobytes(), (p, k)
    # The metadata tree as target: the saved 8-device mesh does not exist -> device 0.
    out = orbax_v1.load(p, orbax_v1.metadata(p))
    for k, want in (("a", a_np), ("b", b_np)):
        assert isinstance(out[k], jax.Array) and out[k].sharding == dev0, (p, k)
        assert np.asarray(out[k]).tobytes() == want.tobytes(), (p, k)
    # Both libraries, with an abstract tree for this topology.
    abstract = {"a": jax.ShapeDtypeStruct((8, 8), jnp.float32, sharding=dev0),
                "b": jax.ShapeDtypeStruct((8, 4), jnp.bfloat16, sharding=dev0)}
    for out in (orbax_v1.load(p, abstract),
                ocp1.load(p, abstract, checkpointable_name="pytree")):
        assert out["a"].sharding == dev0 and out["b"].dtype == jnp.bfloat16, p
        np.testing.assert_array_equal(np.asarray(out["a"]), a_np)
        assert np.asarray(out["b"]).tobytes() == b_np.tobytes(), p
print("TOPOLOGY-OK")
"""


@needs_8_devices
def test_sharded_checkpoints_load_on_another_topology(tmp_path):
    """Saved on 8 devices (by real Orbax, and by us); loaded in a 1-device process."""
    import subprocess
    import sys

    mesh = jax.make_mesh((4, 2), ("x", "y"))
    tree = {"a": jax.device_put(np.arange(64, dtype=np.float32).reshape(8, 8) - 20.5,
                                NamedSharding(mesh, P("x", "y"))),
            "b": jax.device_put(np.arange(32).reshape(8, 4).astype(jnp.bfloat16),
                                NamedSharding(mesh, P("x", None)))}
    ocp1.save_checkpointables(tmp_path / "real", {"pytree": tree})
    orbax_v1.save_pytree(tmp_path / "ours", tree)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    res = subprocess.run([sys.executable, "-c", _TOPOLOGY_SCRIPT, str(tmp_path / "real"),
                          str(tmp_path / "ours")], env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and "TOPOLOGY-OK" in res.stdout, res.stdout + res.stderr[-4000:]


# Dict keys that are awkward as OCDBT/zarr paths: the param name is the keys joined by
# '.', used as the kvstore path of the array.
_AWKWARD_KEYS = ["/a", "a//b", ".", "..", " ", "_METADATA", "manifest.ocdbt", "d", "c",
                 "%2F", "a\nb", "ü/ß"]


@pytest.mark.parametrize("key", _AWKWARD_KEYS + [
    "", "/", "a/",
    "a//", "//"])
def test_real_v1_awkward_keys_we_load(tmp_path, key):
    tree = {key: np.arange(3, dtype=np.int32), "x": np.ones(4, np.float32),
            "x/c": np.zeros(2, np.int8),       # inside x's chunk key space
            "nested": {key: 2.5}}
    ocp1.save_checkpointables(tmp_path / "ckpt", {"pytree": tree})
    assert_tree_equal(orbax_v1.load(tmp_path / "ckpt"), host_view(tree))


# ----------------------------------------------------------------------------------
# 2. orbax_v1 writes -> real Orbax loads
# ----------------------------------------------------------------------------------

def _our_tree(rng):
    tree = _mixed_tree(rng)
    tree.update({
        "empty": np.zeros((0, 3), np.float32),    # real Orbax refuses to write these
        "np_f32_scalar": np.float32(3.5),         # ... and these
        "np_i8_scalar": np.int8(-3),
        "int_keys": {1: np.ones(2, np.float32), 2: "two"},
        "nt": NT(np.arange(3, dtype=np.int32), 2.0),
        "tup": (np.array([1, 2], np.int16), 3, (4.5, "t")),
        "empty_tuple": (),
        "a/b": np.array([5, 6], np.int32),        # '/' in a key
        "ünï": np.array([1.0], np.float16),
    })
    return tree


def test_we_save_real_v1_loads(tmp_path):
    tree = _our_tree(np.random.default_rng(10))
    p = tmp_path / "ours"
    orbax_v1.save_pytree(p, tree, custom_metadata={"epoch": 3})
    want = orbax_view(tree)
    assert_tree_equal(ocp1.load(p, checkpointable_name="pytree"), want)
    # AUTO resolution finds it too (the only checkpointable).
    assert_tree_equal(ocp1.load(p), want)
    # And so does the load_pytree alias.
    assert_tree_equal(ocp1.load_pytree(p, checkpointable_name="pytree"), want)
    # The layout is recognised as a v1 checkpoint with one checkpointable, `pytree`.
    assert ocp1.is_orbax_checkpoint(p)
    assert list(ocp1.checkpointables_metadata(p).metadata) == ["pytree"]
    loaded = ocp1.load_checkpointables(p)
    assert list(loaded) == ["pytree"]
    assert_tree_equal(loaded["pytree"], want)


def test_we_save_real_v1_metadata(tmp_path):
    tree = _our_tree(np.random.default_rng(11))
    # Real Orbax's metadata() cannot describe a Python bool scalar, even in its own
    # checkpoints ("Unsupported dtype: bool"; it then returns metadata=None), so leave
    # that leaf out here. Loading one works (test above).
    tree.pop("py_bool")
    p = tmp_path / "ours"
    orbax_v1.save_pytree(p, tree, custom_metadata={"epoch": 3, "l": [1, None]})
    meta = ocp1.metadata(p, checkpointable_name="pytree")
    assert meta.custom_metadata == {"epoch": 3, "l": [1, None]}
    step = json.loads((p / "_CHECKPOINT_METADATA").read_text())
    assert meta.init_timestamp_nsecs == step["init_timestamp_nsecs"]
    assert meta.commit_timestamp_nsecs == step["commit_timestamp_nsecs"]
    ours = orbax_v1.metadata(p)
    assert meta.init_timestamp_nsecs == ours.init_timestamp_nsecs
    assert meta.commit_timestamp_nsecs == ours.commit_timestamp_nsecs

    md = meta.metadata
    assert md is not None
    assert jax.tree.structure(md) == jax.tree.structure(orbax_view(jax.tree.map(
        lambda x: 0, tree)))
    arrays = {k: v for k, v in tree.items() if isinstance(v, (np.ndarray, jax.Array))}
    for name, value in arrays.items():
        assert tuple(md[name].shape) == value.shape, name
        assert np.dtype(md[name].dtype) == value.dtype, name
    assert type(md["big"]).__name__ == "NumpyMetadata"
    assert type(md["jax_i32"]).__name__ == "ArrayMetadata"
    assert md["jax_i32"].storage_metadata.write_shape == (2, 3)
    assert md["py_int"] == 0 and type(md["py_int"]) is int
    assert md["py_float"] == 0.0 and type(md["py_float"]) is float
    assert md["text"] == "string"
    # Real Orbax's own metadata is a valid abstract tree over our checkpoint.
    out = ocp1.load(p, meta, checkpointable_name="pytree")
    assert_tree_equal(out, orbax_view(tree))


def test_we_save_real_v1_loads_with_abstract_tree(tmp_path):
    rng = np.random.default_rng(12)
    tree = {"a": rng.standard_normal((4, 3)).astype(np.float32),
            "j": jnp.arange(12, dtype=jnp.float32).reshape(4, 3),
            "i": 5, "s": "str", "skip": np.ones(3, np.int8)}
    p = tmp_path / "ours"
    orbax_v1.save_pytree(p, tree)
    abstract = {
        "a": np.zeros((4, 3), np.float64),
        "j": jax.ShapeDtypeStruct((4, 3), jnp.bfloat16,
                                  sharding=SingleDeviceSharding(jax.devices()[0])),
        "i": 0, "s": "", "skip": ocp1.PLACEHOLDER,
    }
    out = ocp1.load(p, abstract, checkpointable_name="pytree")
    assert_tree_equal(out["a"], tree["a"].astype(np.float64))
    assert_tree_equal(out["j"], tree["j"].astype(jnp.bfloat16))
    assert out["i"] == 5 and out["s"] == "str" and out["skip"] is ocp1.PLACEHOLDER


@pytest.mark.parametrize("dtype", _DTYPES, ids=lambda d: np.dtype(d).name)
def test_we_save_dtype_matrix_real_v1_loads(tmp_path, dtype):
    rng = np.random.default_rng(13)
    tree = _dtype_tree(rng, dtype)
    p = tmp_path / "ours"
    orbax_v1.save_pytree(p, tree)
    assert_tree_equal(ocp1.load(p, checkpointable_name="pytree"), tree)


def test_we_save_real_v0_pytree_checkpointer_restores(tmp_path):
    """The pytree directory we write is also a valid v0 PyTree checkpoint."""
    tree = _mixed_tree(np.random.default_rng(14))
    p = tmp_path / "ours"
    orbax_v1.save_pytree(p, tree)
    want = orbax_view(tree)
    assert_tree_equal(ocp0.PyTreeCheckpointer().restore(p / "pytree"), want)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        restored = ocp0.StandardCheckpointer().restore(p / "pytree")
    assert_tree_equal(restored, want)


@needs_8_devices
def test_we_save_sharded_real_v1_loads(tmp_path):
    mesh = jax.make_mesh((4, 2), ("x", "y"))
    a_np = np.arange(64, dtype=np.float32).reshape(8, 8) * 1.25 - 7
    b_np = np.random.default_rng(15).integers(-50, 50, (8, 4)).astype(jnp.bfloat16)
    c_np = np.arange(48, dtype=np.int32).reshape(16, 3)
    tree = {
        "a": jax.device_put(a_np, NamedSharding(mesh, P("x", "y"))),
        "b": jax.device_put(b_np, NamedSharding(mesh, P("x", None))),   # replicated on y
        "c": jax.device_put(c_np, NamedSharding(mesh, P(("x", "y"), None))),
        "rep": jax.device_put(np.arange(5, dtype=np.int16), NamedSharding(mesh, P())),
        "sub": jax.device_put(np.arange(12, dtype=np.float32).reshape(4, 3), NamedSharding(
            Mesh(np.array(jax.devices())[[7, 5, 6, 4]].reshape(2, 2), ("u", "v")),
            P("v", None))),
        "zero_size": jax.device_put(np.zeros((8, 0), np.int32), NamedSharding(mesh, P("x", "y"))),
        "bool": jax.device_put(np.arange(16).reshape(8, 2) % 3 == 0,
                               NamedSharding(mesh, P("x", "y"))),
    }
    p = tmp_path / "ours_sharded"
    orbax_v1.save_pytree(p, tree)

    # Real Orbax, no abstract tree: uses our _sharding file.
    out = ocp1.load(p, checkpointable_name="pytree")
    assert_tree_equal(out, tree)
    for k in tree:
        assert out[k].sharding == tree[k].sharding, k
        np.testing.assert_array_equal(_sharding_ids(out[k].sharding),
                                      _sharding_ids(tree[k].sharding))

    # Real Orbax, abstract ShapeDtypeStruct with a different sharding (and a cast).
    mesh2 = jax.make_mesh((2, 4), ("p", "q"))
    abstract = {
        "a": jax.ShapeDtypeStruct((8, 8), jnp.float32, sharding=NamedSharding(mesh2, P(None, "q"))),
        "b": jax.ShapeDtypeStruct((8, 4), jnp.float32, sharding=NamedSharding(mesh2, P("q", "p"))),
        "c": jax.ShapeDtypeStruct((16, 3), jnp.int32, sharding=NamedSharding(mesh2, P("p", None))),
        "rep": jax.ShapeDtypeStruct((5,), jnp.int16,
                                    sharding=SingleDeviceSharding(jax.devices()[3])),
        "sub": jax.ShapeDtypeStruct((4, 3), jnp.float32,
                                    sharding=NamedSharding(mesh2, P(None, None))),
        "zero_size": jax.ShapeDtypeStruct((8, 0), jnp.int32,
                                          sharding=NamedSharding(mesh2, P("p"))),
        "bool": jax.ShapeDtypeStruct((8, 2), jnp.bool_, sharding=NamedSharding(mesh2, P("q"))),
    }
    out = ocp1.load(p, abstract, checkpointable_name="pytree")
    for k, sds in abstract.items():
        assert out[k].sharding == sds.sharding, k
    assert_tree_equal(out, {"a": jnp.asarray(a_np), "b": jnp.asarray(b_np.astype(np.float32)),
                            "c": jnp.asarray(c_np), "rep": jnp.arange(5, dtype=jnp.int16),
                            "sub": jnp.asarray(np.asarray(tree["sub"])),
                            "zero_size": jnp.zeros((8, 0), jnp.int32),
                            "bool": jnp.asarray(np.asarray(tree["bool"]))})
    for shard in out["a"].addressable_shards:
        np.testing.assert_array_equal(np.asarray(shard.data), a_np[shard.index])

    # Real Orbax's metadata sees the saved sharding and per-shard write shape.
    md = ocp1.metadata(p, checkpointable_name="pytree").metadata
    assert md["a"].shape == (8, 8) and md["a"].dtype == np.float32
    assert md["a"].storage_metadata.write_shape == (2, 4)
    assert md["c"].storage_metadata.write_shape == (2, 3)
    assert tuple(md["a"].sharding_metadata.partition_spec) == ("x", "y")


def test_we_save_large_and_many_real_v1_loads(tmp_path):
    """An array over 64 MiB (we split it into several chunks), and many small leaves."""
    big = {"big": np.arange(17 * 1024 * 1024, dtype=np.float32)}
    orbax_v1.save_pytree(tmp_path / "big", big)
    out = ocp1.load(tmp_path / "big", checkpointable_name="pytree")
    assert out["big"].dtype == np.float32 and out["big"].shape == big["big"].shape
    np.testing.assert_array_equal(out["big"], big["big"])

    many = {f"k{i}": {"v": np.full((3,), i, np.int32), "s": f"s{i}", "i": i}
            for i in range(300)}
    orbax_v1.save_pytree(tmp_path / "many", many)
    assert_tree_equal(ocp1.load(tmp_path / "many", checkpointable_name="pytree"), many)


def test_we_save_real_v1_partial_load(tmp_path):
    tree = {"a": np.ones(2), "b": {"c": 3, "d": np.arange(4, dtype=np.int8)}}
    orbax_v1.save_pytree(tmp_path / "ours", tree)
    ctx = ocp1.Context()
    ctx.pytree.loading.partial_load = True
    with ctx:
        out = ocp1.load(tmp_path / "ours", {"b": {"d": np.zeros(4, np.int8)}},
                        checkpointable_name="pytree")
    assert_tree_equal(out, {"b": {"d": tree["b"]["d"]}})


@pytest.mark.parametrize("key", _AWKWARD_KEYS + [
    "", "/", "a/", "a//"])
def test_we_save_awkward_keys_real_v1_loads(tmp_path, key):
    tree = {key: np.arange(3, dtype=np.int32), "x": np.ones(4, np.float32),
            "x/c": np.zeros(2, np.int8), "nested": {key: 2.5}}
    orbax_v1.save_pytree(tmp_path / "ckpt", tree)
    # Ours first: a failing real-Orbax load leaves background asyncio tasks behind.
    assert_tree_equal(orbax_v1.load(tmp_path / "ckpt"), host_view(tree))
    assert_tree_equal(ocp1.load(tmp_path / "ckpt", checkpointable_name="pytree"), tree)
