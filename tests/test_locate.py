"""Locating values in OCDBT databases: every key, inline or out of line, in single- and
multi-level trees and in merged databases, and no path outside the database."""

import os

import numpy as np
import pytest
import tensorstore as ts
from hypothesis import given, strategies as st

import orbax_v1 as ocp
from orbax_v1._storage import locate as _locate


def ocdbt_spec(path, *, node_bytes=100_000_000, inline_bytes=16) -> dict:
    """A writable database, configured so that databases can be merged (as the engine does)."""
    return {"driver": "ocdbt",
            "base": {"driver": "file", "path": str(path) + "/",
                     "file_io_locking": {"mode": "non_atomic"}},
            "manifest": {"driver": "file", "path": str(path) + "/"}, "assume_config": True,
            "config": {"max_inline_value_bytes": inline_bytes,
                       "max_decoded_node_bytes": node_bytes, "manifest_kind": "single"}}


def write_db(path, values: dict[bytes, bytes], context=None, **config) -> None:
    kv = ts.KvStore.open(ocdbt_spec(path, **config), context=context).result()
    txn = ts.Transaction()
    for key, value in values.items():
        kv.with_transaction(txn).write(key, value).result()
    txn.commit_async().result()


def merge(children, parent, context, **config) -> None:
    out = ts.KvStore.open(ocdbt_spec(parent, **config), context=context).result()
    txn = ts.Transaction(atomic=True)
    for child in children:
        kv = ts.KvStore.open(ocdbt_spec(child, **config), context=context).result()
        kv.experimental_copy_range_to(out.with_transaction(txn)).result()
    txn.commit_async().result()


def stored(path) -> dict[bytes, bytes]:
    """Every key and value, as TensorStore itself reads them."""
    kv = ts.KvStore.open({"driver": "ocdbt", "base": {"driver": "file",
                                                      "path": str(path) + "/"}}).result()
    return {k: kv.read(k).result().value for k in kv.list().result()}


def resolve(located: dict) -> dict[bytes, bytes]:
    out = {}
    for key, where in located.items():
        if isinstance(where, bytes):
            out[key] = where
        else:
            with open(where.path, "rb") as f:
                f.seek(where.offset)
                out[key] = f.read(where.length)
    return out


def root_height(path) -> int:
    base = ts.KvStore.open({"driver": "file", "path": str(path) + "/"}).result()
    return ts.ocdbt.dump(base).result()["versions"][-1]["root_height"]


values = st.dictionaries(
    st.binary(min_size=1, max_size=12),
    st.binary(max_size=64), min_size=1, max_size=40)


@given(values)
def test_single_level_tree(tmp_path_factory, kvs):
    path = tmp_path_factory.mktemp("db")
    write_db(path, kvs)
    assert root_height(path) == 0
    located = _locate.locate_values(str(path))
    assert resolve(located) == kvs == stored(path)
    if any(len(v) > 16 for v in kvs.values()):  # out of line, in the database's files
        assert any(isinstance(w, _locate.Extent) for w in located.values())


@given(values.filter(lambda d: len(d) > 12))
def test_multi_level_tree_keys_are_prefixed_on_the_way_down(tmp_path_factory, kvs):
    path = tmp_path_factory.mktemp("db")
    write_db(path, {b"common/prefix/" + k: v for k, v in kvs.items()}, node_bytes=120)
    assert root_height(path) > 0
    assert resolve(_locate.locate_values(str(path))) == stored(path)


def test_merged_databases_nested_two_deep(tmp_path):
    """A merge of a merge: references carry each child database's directory."""
    context = ts.Context()
    config = dict(node_bytes=300, inline_bytes=8)
    expected = {}
    for name in ("a", "b"):
        kvs = {f"{name}/k{i:03d}".encode(): bytes([i]) * (i % 40) for i in range(60)}
        expected.update(kvs)
        write_db(tmp_path / "mid" / name if name == "a" else tmp_path / name, kvs, context,
                 **config)
    merge([tmp_path / "mid" / "a"], tmp_path / "mid", context, **config)
    merge([tmp_path / "mid", tmp_path / "b"], tmp_path, context, **config)
    located = _locate.locate_values(str(tmp_path))
    assert resolve(located) == expected == stored(tmp_path)
    dirs = {os.path.relpath(os.path.dirname(w.path), tmp_path)
            for w in located.values() if isinstance(w, _locate.Extent)}
    assert dirs == {os.path.join("mid", "a", "d"), os.path.join("b", "d")}


def test_a_saved_checkpoint_points_into_the_per_process_database(tmp_path):
    ocp.save_pytree(tmp_path / "c", {"x": np.arange(5000, dtype=np.float32)})
    item = tmp_path / "c" / "pytree"
    located = _locate.locate_values(str(item))
    assert resolve(located) == stored(item)
    chunk = located[b"x/c/0"]
    assert isinstance(chunk, _locate.Extent) and chunk.length == 20000
    assert os.path.relpath(chunk.path, item).startswith("ocdbt.process_0" + os.sep)


def test_an_emptied_database_has_no_values_and_a_missing_one_is_an_error(tmp_path):
    write_db(tmp_path / "db", {b"x": b"y" * 100})
    kv = ts.KvStore.open(ocdbt_spec(tmp_path / "db")).result()
    del kv[b"x"]
    assert _locate.locate_values(str(tmp_path / "db")) == {}
    with pytest.raises(ValueError, match="Manifest not found"):
        _locate.locate_values(str(tmp_path))


@pytest.mark.parametrize("escape", ["../outside", "%2E%2E/outside", "/etc/passwd", ".",
                                    "d/../../outside"])
def test_references_outside_the_database_are_refused(tmp_path, monkeypatch, escape):
    write_db(tmp_path / "db", {b"x": b"y" * 100})
    real_dump = _locate._dump

    class Rewritten:
        def __init__(self, future):
            self._future = future

        def result(self):
            node = self._future.result()
            for entry in node.get("entries", []):
                if "indirect_value" in entry:
                    entry["indirect_value"] = f"value::{escape}:0:3"
            return node

    monkeypatch.setattr(_locate, "_dump", lambda *a: Rewritten(real_dump(*a)))
    with pytest.raises(_locate.BadReferenceError, match="outside the database"):
        _locate.locate_values(str(tmp_path / "db"))


@pytest.mark.parametrize("reference", ["value:a:b:1", "value::d/x:-1:3", "value::d/x:1:z",
                                       "btreenode::d/x:0:3"])
def test_malformed_references_are_refused(tmp_path, reference):
    refs = _locate._References(str(tmp_path))
    with pytest.raises(_locate.BadReferenceError, match="malformed"):
        refs.parse(reference, "value")
