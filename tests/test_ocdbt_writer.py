"""Our own OCDBT writer: byte-exact with TensorStore's nodes, readable by TensorStore,
bounded buffers, O_DIRECT or not, and write failures that surface and leave nothing."""

import errno
import os

import numpy as np
import pytest
import tensorstore as ts
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import orbax_v1 as ocp
from orbax_v1 import _zarr, errors
from orbax_v1._storage import aligned as _aligned
from orbax_v1._storage import datafile as _datafile
from orbax_v1._storage import writer as _writer
from orbax_v1._storage import ocdbt as _ocdbt

keys = st.text("ab/c0.", min_size=1, max_size=12).map(str.encode)
values = st.one_of(st.binary(max_size=40), st.binary(min_size=1020, max_size=1030),
                   st.binary(min_size=3000, max_size=5000))
databases = st.dictionaries(keys, values, min_size=1, max_size=30)


def test_crc32c_check_value():
    assert _ocdbt.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert _ocdbt.crc32c(b"") == 0


def test_varint():
    assert _ocdbt.varint(0) == b"\0" and _ocdbt.varint(127) == b"\x7f"
    assert _ocdbt.varint(100_000_000) == bytes.fromhex("80c2d72f")


@given(st.lists(st.integers(0, 2**64 - 1)))
def test_varints_is_varint_of_each_value(values):
    assert _ocdbt.varints(values) == b"".join(map(_ocdbt.varint, values))


@given(st.lists(st.binary(max_size=20), min_size=1, max_size=40, unique=True))
def test_key_columns_row_compare_and_key_by_key_agree(keys):
    """Zero-padded rows must not make a key that ends in b'\\0' look like a prefix."""
    keys = sorted(keys)
    fast = _ocdbt._key_columns(keys)
    real_limit = _ocdbt._KEY_MATRIX_BYTES
    try:
        _ocdbt._KEY_MATRIX_BYTES = 0  # force the key-by-key path
        assert _ocdbt._key_columns(keys) == fast
    finally:
        _ocdbt._KEY_MATRIX_BYTES = real_limit
    prefix = [0, *(len(os.path.commonprefix([a, b])) for a, b in zip(keys, keys[1:]))]
    assert fast == (_ocdbt.varints(prefix[1:]),
                    _ocdbt.varints([len(k) - p for k, p in zip(keys, prefix)]),
                    b"".join(k[p:] for k, p in zip(keys, prefix)))


def test_a_single_process_root_manifest_shares_the_process_database(tmp_path):
    """Nothing is merged or copied: the root's `d/` stays empty, and TensorStore reads
    every key through the root manifest."""
    ocp.save_pytree(tmp_path / "c", {"x": np.arange(3000.0), "y": np.ones(3)})
    item = tmp_path / "c" / "pytree"
    assert os.listdir(item / "d") == []
    root = ts.KvStore.open({"driver": "ocdbt", "base": f"file://{item}/"}).result()
    child = ts.KvStore.open({"driver": "ocdbt",
                             "base": f"file://{item}/ocdbt.process_0/"}).result()
    keys = root.list().result()
    assert keys == child.list().result() and b"x/c/0" in keys
    for key in keys:
        assert root.read(key).result().value == child.read(key).result().value


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(db=databases)
def test_leaf_nodes_match_tensorstore_byte_for_byte(tmp_path_factory, db):
    """TensorStore writes a database (uncompressed nodes); our encoding of the same
    entries, at the offsets it chose, is the very same bytes."""
    path = str(tmp_path_factory.mktemp("ts"))
    kv = ts.KvStore.open({"driver": "ocdbt", "base": f"file://{path}/", "assume_config": True,
                          "config": {"max_inline_value_bytes": 1024, "compression": None,
                                     "max_decoded_node_bytes": 100_000_000}}).result()
    txn = ts.Transaction()
    for k, v in db.items():
        kv.with_transaction(txn).write(k, v)
    txn.commit_async().result()
    base = ts.KvStore.open(f"file://{path}/").result()
    location = ts.ocdbt.dump(base).result()["versions"][-1]["root"]["location"]
    _, _, data_file, offset, length = location.split(":")
    node = ts.ocdbt.dump(base, location).result()
    assert node["height"] == 0
    entries, value_files = [], set()
    for e in node["entries"]:
        if "inline_value" in e:
            entries.append(_ocdbt.Entry(e["key"], len(e["inline_value"]),
                                        inline=e["inline_value"]))
        else:
            *_, value_file, value_offset, value_length = e["indirect_value"].split(":")
            value_files.add(value_file)
            entries.append(_ocdbt.Entry(e["key"], int(value_length), int(value_offset)))
    assume(len(value_files) <= 1)  # we write every value into one data file
    with open(os.path.join(path, data_file), "rb") as f:
        f.seek(int(offset))
        encoded = _ocdbt.leaf_node(entries, value_files.pop() if value_files else "")
        assert encoded == f.read(int(length))


def _write_database(directory, db, *, max_node_bytes=_ocdbt.MAX_DECODED_NODE_BYTES):
    writer = _writer.ArrayWriter(str(directory), 0)
    if max_node_bytes != _ocdbt.MAX_DECODED_NODE_BYTES:
        real = _ocdbt.leaf_groups
        _ocdbt.leaf_groups = lambda entries: real(entries, max_node_bytes)
    try:
        for k, v in db.items():
            writer.put(k.decode("latin-1"), v)
        writer.close()
    finally:
        if max_node_bytes != _ocdbt.MAX_DECODED_NODE_BYTES:
            _ocdbt.leaf_groups = real
    return os.path.join(str(directory), "ocdbt.process_0")


def _read_all(path):
    kv = ts.KvStore.open({"driver": "ocdbt", "base": f"file://{path}/"}).result()
    return {k: kv.read(k).result().value for k in kv.list().result()}


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(db=databases,
       max_node_bytes=st.sampled_from([_ocdbt.MAX_DECODED_NODE_BYTES, 300, 2000]))
def test_tensorstore_reads_what_we_write(tmp_path_factory, db, max_node_bytes):
    """Every key and value, through one leaf or several under an interior root."""
    path = _write_database(tmp_path_factory.mktemp("ours"), db, max_node_bytes=max_node_bytes)
    assert _read_all(path) == db
    manifest = ts.ocdbt.dump(ts.KvStore.open(f"file://{path}/").result()).result()
    assert manifest["config"]["max_inline_value_bytes"] == 1024
    root = manifest["versions"][-1]
    assert root["root"]["statistics"]["num_keys"] == len(db)
    assert root["root"]["statistics"]["num_indirect_value_bytes"] == sum(
        len(v) for v in db.values() if len(v) > 1024)


def test_a_key_written_twice_is_refused(tmp_path):
    writer = _writer.ArrayWriter(str(tmp_path), 0)
    writer.put("k", b"1")
    with pytest.raises(ValueError, match="written twice"):
        writer.put("k", b"2")


@pytest.mark.parametrize("chunk_bytes", [1 << 10, 5000, 1 << 20])
def test_arrays_straddle_small_buffers_exactly(tmp_path, monkeypatch, chunk_bytes):
    """Chunks larger and smaller than the buffers, strided row by row or copied whole."""
    monkeypatch.setattr(_datafile, "MAX_BUFFER_BYTES", 8192)
    monkeypatch.setattr(_datafile, "MIN_BUFFER_BYTES", 4096)
    monkeypatch.setattr(_zarr, "CHUNK_TARGET_BYTES", chunk_bytes)
    rng = np.random.default_rng(0)
    tree = {"rows": rng.standard_normal((64, 3000)).astype(np.float32),  # cut along axis 1
            "big_endian": np.arange(5000, dtype=">i4"),
            "cube": rng.integers(0, 255, (30, 40, 50), dtype=np.uint8)}
    ocp.save_pytree(tmp_path / "c", tree)
    out = ocp.load(tmp_path / "c")
    for k, v in tree.items():
        np.testing.assert_array_equal(out[k], v)


def test_buffers_are_few_and_small(tmp_path, monkeypatch):
    sizes = []
    real = _aligned.empty
    monkeypatch.setattr(_aligned, "empty",
                        lambda shape, dtype=np.uint8: sizes.append(shape[0]) or real(shape, dtype))
    x = np.ones(1 << 22, np.float32)  # 16 MiB
    ocp.save_pytree(tmp_path / "c", {"x": x})
    if _aligned.ALIGN in sizes:  # the one block that tries O_DIRECT
        sizes.remove(_aligned.ALIGN)
    assert len(sizes) == _datafile.BUFFERS
    assert sum(sizes) <= 0.04 * x.nbytes, sizes  # a save grows memory by a few percent
    np.testing.assert_array_equal(ocp.load(tmp_path / "c")["x"], x)


def test_large_values_start_on_aligned_offsets(tmp_path):
    x = np.arange(1 << 19, dtype=np.float32)  # 2 MiB
    ocp.save_pytree(tmp_path / "c", {"small": np.ones(700), "x": x})
    node = ts.ocdbt.dump(ts.KvStore.open(f"file://{tmp_path}/c/pytree/").result(),
                         ts.ocdbt.dump(ts.KvStore.open(f"file://{tmp_path}/c/pytree/").result()
                                       ).result()["versions"][-1]["root"]["location"]).result()
    offsets = {e["key"]: int(e["indirect_value"].split(":")[-2]) for e in node["entries"]
               if "indirect_value" in e}
    assert offsets[b"x/c/0"] % _aligned.ALIGN == 0, offsets


def test_without_o_direct_the_same_bytes_are_written(tmp_path, monkeypatch):
    """Where the filesystem refuses O_DIRECT (EINVAL), the page cache is used instead."""
    real_open = os.open

    def refusing_open(path, flags, *args):
        if flags & getattr(os, "O_DIRECT", 0):
            raise OSError(errno.EINVAL, "O_DIRECT not supported", path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(_datafile.os, "open", refusing_open)
    f = _datafile.DataFile(str(tmp_path / "f"), buffer_bytes=4096)
    assert not f.direct
    assert f.append(b"x" * 5000) == 0 and f.append(np.arange(3, dtype="<u2")) == 5000
    assert f.close() == 5006
    assert (tmp_path / "f").read_bytes() == b"x" * 5000 + np.arange(3, dtype="<u2").tobytes()


@pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="no O_DIRECT on this platform")
def test_o_direct_refused_on_write_falls_back_too(tmp_path, monkeypatch):
    """A filesystem may accept O_DIRECT at open and refuse the aligned write."""
    calls = []
    real_pwrite = os.pwrite

    def refusing_first_pwrite(fd, data, offset):
        calls.append(offset)
        if len(calls) == 1:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(_datafile.os, "pwrite", refusing_first_pwrite)
    f = _datafile.DataFile(str(tmp_path / "f"), buffer_bytes=4096)
    assert not f.direct
    f.append(b"y" * 6000)
    assert f.close() == 6000 and (tmp_path / "f").read_bytes() == b"y" * 6000


@pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="no O_DIRECT on this platform")
def test_o_direct_file_is_truncated_to_its_length(tmp_path):
    f = _datafile.DataFile(str(tmp_path / "f"), buffer_bytes=8192)
    f.append(b"abc")
    f.append(np.arange(3000, dtype=np.int32))
    assert f.close() == 12003 == os.path.getsize(tmp_path / "f")
    data = (tmp_path / "f").read_bytes()
    assert data[:3] == b"abc" and data[3:] == np.arange(3000, dtype="<i4").tobytes()


def test_a_failed_write_fails_the_save_and_commits_nothing(tmp_path, monkeypatch):
    def full_disk(fd, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_datafile, "_pwrite_all", full_disk)
    with pytest.raises(OSError, match="No space left"):
        ocp.save_pytree(tmp_path / "c", {"x": np.ones(1 << 20, np.float32)})
    assert not (tmp_path / "c").exists()
    with pytest.raises(errors.CheckpointNotFoundError):
        ocp.load(tmp_path / "c")
