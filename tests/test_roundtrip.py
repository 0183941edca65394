"""Save then load gives back exactly what was saved: values, dtypes, container types."""

import collections
import math

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import orbax_v1 as ocp

Point = collections.namedtuple("Point", ["x", "y"])

DTYPES = [np.float16, np.float32, np.float64, ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn,
          ml_dtypes.float8_e5m2, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
          np.uint32, np.uint64, np.bool_, np.complex64, np.complex128]


def assert_same(a, b, where="root"):
    """Exact equality: container types, keys, dtypes, shapes, bitwise values (NaN too).

    `a` is what was saved, `b` what `load` gave with no abstract tree: a saved
    `jax.Array` comes back as a host `np.ndarray` (the documented no-target rule).
    """
    if isinstance(a, jax.Array):
        assert type(b) is np.ndarray, f"{where}: saved jax.Array loaded as {type(b)}"
    else:
        assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: length"
        if hasattr(a, "_fields"):
            assert a._fields == b._fields
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, (np.ndarray, jax.Array, np.generic)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        assert a.tobytes() == b.tobytes(), f"{where}: values differ"
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def arrays():
    """Arrays of every dtype with arbitrary bit patterns (NaN payloads, -0.0, subnormals)."""
    def build(dtype_and_shape):
        dtype, shape = dtype_and_shape
        n = int(np.prod(shape)) * dtype.itemsize
        raw = st.binary(min_size=n, max_size=n).map(lambda b: np.frombuffer(b, np.uint8))
        if dtype == np.bool_:
            return raw.map(lambda u: (u & 1).astype(bool).reshape(shape))
        return raw.map(lambda u: u.view(dtype).reshape(shape).copy())
    shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)
    return st.tuples(st.sampled_from(DTYPES).map(np.dtype), shapes).flatmap(build)


def leaves():
    return st.one_of(
        arrays(),
        arrays().map(jnp.asarray),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.text(max_size=20),
        st.none(),
        st.sampled_from([np.float32(1.5), np.int16(-3), np.bool_(True), np.uint8(7)]),
        st.just({}), st.just([]), st.just(()),
    )


# Text keys never look like ints and never hold '.', so no two leaves share a stored
# name (collisions are rejected on purpose; see test_colliding_names_are_rejected).
keys = st.one_of(st.text(min_size=1, max_size=8).filter(lambda s: "." not in s and not s.isdigit()),
                 st.integers(0, 50))


def trees():
    return st.recursive(
        leaves(),
        lambda kids: st.one_of(
            st.dictionaries(keys, kids, min_size=1, max_size=4),
            st.lists(kids, min_size=1, max_size=3),
            st.lists(kids, min_size=1, max_size=3).map(tuple),
            st.tuples(kids, kids).map(lambda t: Point(*t)),
        ),
        max_leaves=12,
    ).filter(lambda t: isinstance(t, (dict, list, tuple)) and len(t) > 0)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # jnp.asarray
@given(tree=trees())
def test_random_trees_round_trip_exactly(tmp_path_factory, tree):
    path = tmp_path_factory.mktemp("rt") / "ckpt"
    ocp.save_pytree(path, tree)
    assert_same(tree, ocp.load(path))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(), (0,), (3, 0), (5,), (4, 3)])
def test_every_dtype_and_shape(tmp_path, dtype, shape):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 10).astype(dtype)
    tree = {"np": x, "jax": jnp.asarray(x)}
    ocp.save_pytree(tmp_path / "c", tree)
    assert_same(tree, ocp.load(tmp_path / "c"))


def test_structures_real_orbax_loses(tmp_path):
    tree = {"tup": (np.arange(3), (1, 2.5)), "nt": Point(np.ones(2), "s"), 7: {"a.b": 1},
            "x/y": np.int32(4), "empty": ({}, [], ()), "none": None,
            "od": collections.OrderedDict([("z", 1), ("a", 2)])}
    ocp.save_pytree(tmp_path / "c", tree)
    assert_same(tree, ocp.load(tmp_path / "c"))


def test_large_array_is_split_into_chunks(tmp_path, monkeypatch):
    from orbax_v1 import _zarr
    monkeypatch.setattr(_zarr, "CHUNK_TARGET_BYTES", 1024)
    x = np.arange(6 * 7 * 11, dtype=np.float64).reshape(6, 7, 11)
    ocp.save_pytree(tmp_path / "c", {"x": x})
    assert_same({"x": x}, ocp.load(tmp_path / "c"))


def test_sharded_array_round_trips_on_its_mesh(tmp_path):
    if jax.device_count() < 8:
        pytest.skip("needs 8 devices")
    mesh = jax.make_mesh((4, 2), ("data", "model"))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data", "model"))
    x = jax.device_put(np.arange(64, dtype=np.float32).reshape(8, 8), sharding)
    ocp.save_pytree(tmp_path / "c", {"x": x})
    y = ocp.load(tmp_path / "c", ocp.metadata(tmp_path / "c"))["x"]  # the saved sharding
    assert y.sharding == sharding
    np.testing.assert_array_equal(np.asarray(y), np.asarray(x))


@given(st.dictionaries(st.text(max_size=6), st.sampled_from(["arr", "str", "none", "list"]),
                       min_size=1, max_size=6))
def test_tree_metadata_text_is_the_json_real_orbax_expects(tmp_path_factory, spec):
    """`tree_metadata` is written from a template (for speed); it must parse to exactly
    the entries Orbax's format has, whatever the keys hold (quotes, controls, unicode)."""
    import json
    import os
    make = {"arr": lambda: np.ones(2, np.float32), "str": lambda: "s", "none": lambda: None,
            "list": lambda: [np.zeros(1), {}]}
    tree = {"t": {k: make[kind]() for k, kind in spec.items()},
            "j": jax.device_put(np.arange(8.0).reshape(4, 2), jax.sharding.NamedSharding(
                jax.make_mesh((4,), ("d",)), jax.sharding.PartitionSpec("d")))}
    path = tmp_path_factory.mktemp("m") / "c"
    try:
        ocp.save_pytree(path, tree)
    except ocp.errors.UnsupportedTreeError:  # keys that collide on disk ('' and '/'):
        return  # refused at save, as test_roundtrip's collision tests require
    with open(os.path.join(path, "pytree", "_METADATA")) as f:
        got = json.load(f)["tree_metadata"]
    expected = {}

    def add(keys, key_types, value_type, write_shape=None):
        value = {"value_type": value_type,
                 "skip_deserialize": value_type in ("None", "Dict", "List")}
        if write_shape is not None:
            value["write_shape"] = write_shape
        expected[repr(tuple(keys))] = {
            "key_metadata": [{"key": k, "key_type": t} for k, t in zip(keys, key_types)],
            "value_metadata": value}

    for k, kind in spec.items():
        if kind == "list":
            add(("t", k, "0"), (2, 2, 1), "np.ndarray")
            add(("t", k, "1"), (2, 2, 1), "Dict")
        else:
            add(("t", k), (2, 2), {"arr": "np.ndarray", "str": "string", "none": "None"}[kind])
    add(("j",), (2,), "jax.Array", [1, 2])
    assert got == expected
