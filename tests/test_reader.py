"""The read side of our own arrays: which chunks are read straight into the result,
which go through a temporary buffer, and that every path gives the exact values."""

import os

import jax
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, strategies as st
from jax.sharding import NamedSharding, PartitionSpec as P

import orbax_v1 as ocp
from orbax_v1 import _pytree_load, _pytree_save, _zarr, errors
from orbax_v1._storage import aligned as _aligned
from orbax_v1._storage import fileread as _fileread
from orbax_v1._storage import locate as _locate
from orbax_v1._storage import reader as _reader

DTYPES = [np.float32, np.int16, ml_dtypes.bfloat16, np.bool_, np.complex64, np.uint8]


@st.composite
def region_and_chunk(draw):
    rank = draw(st.integers(1, 3))
    region, start, chunks = [], [], []
    for _ in range(rank):
        a, n = draw(st.integers(0, 4)), draw(st.integers(1, 5))
        c = draw(st.integers(1, 6))
        region.append((a, a + n))
        start.append(draw(st.integers(max(0, a - c), a + n)))
        chunks.append(c)
    return tuple(region), start, tuple(chunks)


@given(region_and_chunk())
def test_contiguous_landing_agrees_with_brute_force(case):
    region, start, chunks = case
    flat = np.arange(np.prod([b - a for a, b in region])).reshape([b - a for a, b in region])
    inside = all(a <= s and s + c <= b for (a, b), s, c in zip(region, start, chunks))
    expected = False
    if inside:
        box = flat[tuple(slice(s - a, s - a + c) for (a, _), s, c in zip(region, start, chunks))]
        expected = bool(np.all(np.diff(box.ravel()) == 1))
    assert _reader._lands_contiguously(region, start, chunks) == expected


@pytest.fixture
def spy(monkeypatch):
    """Counts the chunk reads of each kind."""
    counts = {"direct": 0, "temporary": 0, "located": 0}
    real_into, real_then = _fileread.FileReader.read_into, _fileread.FileReader.read_then
    real_locate = _locate.locate_values

    def read_into(self, *a):
        counts["direct"] += 1
        return real_into(self, *a)

    def read_then(self, *a):
        counts["temporary"] += 1
        return real_then(self, *a)

    def locate(*a):
        counts["located"] += 1
        return real_locate(*a)

    monkeypatch.setattr(_fileread.FileReader, "read_into", read_into)
    monkeypatch.setattr(_fileread.FileReader, "read_then", read_then)
    monkeypatch.setattr(_locate, "locate_values", locate)
    return counts


def expected_paths(item, x, region) -> tuple[int, int]:
    """(direct, temporary) chunk reads a same-dtype read of `region` should make."""
    meta = tuple(_pytree_load.read_stored_tree(str(item)).layout["x"][2])
    located = _locate.locate_values(str(item))
    handle = _reader.StoredArray("x", x.shape, x.dtype, meta)
    direct = temporary = 0
    for index in handle.chunk_indices(region):
        if isinstance(located[_zarr.chunk_key("x", index).encode()], bytes):
            continue  # inline: copied from the tree, no file read
        start = [i * c for i, c in zip(index, meta)]
        if _reader._lands_contiguously(region, start, meta):
            direct += 1
        else:
            temporary += 1
    return direct, temporary


@pytest.mark.filterwarnings("ignore::numpy.exceptions.ComplexWarning")  # complex -> real casts
@given(shape=st.lists(st.integers(1, 24), min_size=1, max_size=3).map(tuple),
       dtype=st.sampled_from(DTYPES), cast=st.sampled_from(DTYPES))
def test_every_chunk_path_gives_exact_values(tmp_path_factory, monkeypatch, spy, shape, dtype,
                                             cast):
    monkeypatch.setattr(_pytree_save, "PACK_MAX_BYTES", 0)
    monkeypatch.setattr(_zarr, "CHUNK_TARGET_BYTES", 2048)  # some chunks out of line
    x = (np.random.default_rng(0).standard_normal(shape) * 50).astype(dtype)
    path = tmp_path_factory.mktemp("c")
    ocp.save_pytree(path / "c", {"x": x})
    item = path / "c" / "pytree"
    whole = tuple((0, d) for d in shape)

    spy.update(direct=0, temporary=0)
    out = ocp.load(path / "c")["x"]
    np.testing.assert_array_equal(out, x)
    assert out.dtype == x.dtype and out.flags.writeable
    assert out.ctypes.data % _aligned.ALIGN == 0
    assert (spy["direct"], spy["temporary"]) == expected_paths(item, x, whole)

    spy.update(direct=0, temporary=0)  # a cast reads every file chunk through a buffer
    out = ocp.load(path / "c", {"x": np.zeros(shape, cast)})["x"]
    np.testing.assert_array_equal(out, x.astype(cast))
    assert out.dtype == np.dtype(cast)
    if np.dtype(cast) != x.dtype:
        assert spy["direct"] == 0 and spy["temporary"] == sum(expected_paths(item, x, whole))

    mesh = jax.make_mesh((jax.device_count(),), ("d",))
    axis = max(range(len(shape)), key=lambda i: shape[i] % jax.device_count() == 0)
    spec = [None] * len(shape)
    if shape[axis] % jax.device_count() == 0:
        spec[axis] = "d"
    sharding = NamedSharding(mesh, P(*spec))
    spy.update(direct=0, temporary=0)
    got = ocp.load(path / "c", {"x": jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)})["x"]
    assert got.sharding == sharding
    for shard in got.addressable_shards:
        np.testing.assert_array_equal(np.asarray(shard.data), x[shard.index])
    regions = {_reader._region(i, shape) for i in sharding.devices_indices_map(shape).values()}
    paths = [expected_paths(item, x, r) for r in regions]
    assert (spy["direct"], spy["temporary"]) == tuple(map(sum, zip(*paths)))


def test_non_contiguous_regions_read_through_a_buffer(tmp_path, monkeypatch, spy):
    """Columns split across devices: each stored chunk lands as strided rows."""
    monkeypatch.setattr(_zarr, "CHUNK_TARGET_BYTES", 4096)
    x = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    ocp.save_pytree(tmp_path / "c", {"x": x})
    sharding = NamedSharding(jax.make_mesh((jax.device_count(),), ("d",)), P(None, "d"))
    got = ocp.load(tmp_path / "c", {"x": jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                                sharding=sharding)})["x"]
    np.testing.assert_array_equal(np.asarray(got), x)
    assert spy["temporary"] > 0 and spy["direct"] == 0


def test_small_arrays_never_locate_values(tmp_path, spy):
    ocp.save_pytree(tmp_path / "c", {f"p{i}": np.full(4, i, np.float32) for i in range(100)})
    ocp.load(tmp_path / "c")
    assert spy["located"] == 0
    ocp.save_pytree(tmp_path / "d", {"big": np.ones(5000), "big2": np.zeros(5000)})
    ocp.load(tmp_path / "d")
    assert spy["located"] == 1  # once per load, however many arrays


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _save_merged(item, tree) -> None:
    """Writes `tree` in the layout of a multi-process save: the root manifest is a
    TensorStore merge of the process database (its nodes in the root's own `d/`)."""
    item.mkdir(parents=True)
    the_plan = _pytree_save.snapshot(_pytree_save.plan(tree), copy=False)
    _pytree_save.write_local(str(item), the_plan)
    _pytree_save.write_global(str(item), the_plan, merge=True)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
@pytest.mark.parametrize("layout", ["single_process", "merged"])
def test_damaged_data_files_are_typed_errors_and_files_are_closed(tmp_path, monkeypatch, layout):
    monkeypatch.setattr(_zarr, "CHUNK_TARGET_BYTES", 8192)
    x = np.arange(10_000, dtype=np.float32)
    if layout == "merged":
        item = tmp_path / "c"
        _save_merged(item, {"x": x, "y": x + 1})
        load = lambda: ocp.load(item, checkpointable_name=None)  # noqa: E731
    else:
        ocp.save_pytree(tmp_path / "c", {"x": x, "y": x + 1})
        item = tmp_path / "c" / "pytree"
        load = lambda: ocp.load(tmp_path / "c")  # noqa: E731
    before = open_fds()
    np.testing.assert_array_equal(load()["y"], x + 1)
    assert open_fds() == before
    chunk = _locate.locate_values(str(item))[b"x/c/2"]
    with open(chunk.path, "r+b") as f:  # the last bytes of one chunk are gone
        f.truncate(chunk.offset + chunk.length - 1)
    # A single process's b+tree nodes follow its values in the same file, so they are
    # cut off too and TensorStore reports it; after a merge, our reader finds the
    # short value itself.
    found = "cut short" if layout == "merged" else "OUT_OF_RANGE"
    with pytest.raises(errors.CorruptCheckpointError, match=rf"\('x',\).*{found}"):
        load()
    assert open_fds() == before
    os.remove(chunk.path)
    with pytest.raises(errors.CorruptCheckpointError, match=r"\('x',\).*cannot be "):
        load()
    assert open_fds() == before


def test_a_cpu_jax_target_keeps_the_aligned_read_buffer(tmp_path, monkeypatch):
    """Page-aligned results let `jax.device_put` to a CPU device alias them: no copy."""
    ocp.save_pytree(tmp_path / "c", {"x": np.arange(1 << 16, dtype=np.float32)})
    buffers = []
    real = _reader.ArrayReader._read_region

    def read_region(self, *args):
        finish = real(self, *args)
        return lambda: buffers.append(finish()) or buffers[-1]

    monkeypatch.setattr(_reader.ArrayReader, "_read_region", read_region)
    x = ocp.load(tmp_path / "c", {"x": jax.ShapeDtypeStruct((1 << 16,), np.float32)})["x"]
    np.testing.assert_array_equal(np.asarray(x), np.arange(1 << 16, dtype=np.float32))
    assert [b.ctypes.data for b in buffers] == [x.unsafe_buffer_pointer()]
