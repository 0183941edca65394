"""Every checkpoint real Orbax wrote in ../shared/orbax-corpus loads, or fails typed.

Each holds {'a': int32[0..7], 'b': {'c': int32[1, 2, 3]}} (composite ones also a JSON
checkpointable). Intact ones must load exactly; damaged ones must raise a typed error
quickly; the ones without `_METADATA` (which real Orbax cannot load) are rebuilt
from the array names in the store.
"""

import pathlib

import numpy as np
import pytest

import orbax_v1 as ocp
from orbax_v1 import errors

from conftest import CORPUS

EXPECTED = {"a": np.arange(8, dtype=np.int32), "b": {"c": np.array([1, 2, 3], np.int32)}}


def _cases():
    if not CORPUS.is_dir():
        return []
    return sorted(p.relative_to(CORPUS) for p in CORPUS.glob("*/*/*/*") if p.is_dir())


def _load(path: pathlib.Path):
    """v0 direct checkpoints hold the pytree directly; composite ones under 'state'."""
    direct = "direct_checkpoint" in path.parts
    return ocp.load(path, checkpointable_name=None if direct else "state")


def _assert_expected(tree):
    assert set(tree) == {"a", "b"} and set(tree["b"]) == {"c"}
    for got, want in ((tree["a"], EXPECTED["a"]), (tree["b"]["c"], EXPECTED["b"]["c"])):
        got = np.asarray(got)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_the_corpus_is_complete(corpus):
    assert len(_cases()) >= 40


@pytest.mark.parametrize("case", _cases(), ids=str)
def test_corpus_checkpoint(corpus, case):
    path = corpus / case
    if "critical_metadata_alterations" in case.parts and "non_critical" not in str(case):
        # Array data is gone (no manifest.ocdbt, or no d/): a typed error naming the leaf.
        with pytest.raises(errors.CorruptCheckpointError, match=r"\('a',\)|\('b', 'c'\)"):
            _load(path)
    elif case.name == "deleted_checkpointable":
        with pytest.raises(errors.InvalidLayoutError, match="'state'"):
            _load(path)
    else:
        _assert_expected(_load(path))


def test_corpus_metadata_matches_values(corpus):
    path = corpus / "v1_checkpoints/composite_checkpoint/checkpoint_metadata_present"
    meta = ocp.metadata(path / "pytree_checkpointable_has_metadata", checkpointable_name="state")
    assert meta.metadata["a"].shape == (8,) and meta.metadata["a"].dtype == np.int32
    assert meta.metadata["b"]["c"].shape == (3,)
    assert meta.custom_metadata == {"custom": "meta"}


def _composite_cases():
    return [c for c in _cases() if "composite_checkpoint" in c.parts]


@pytest.mark.parametrize("case", _composite_cases(), ids=str)
def test_corpus_composite_load_checkpointables(corpus, case):
    path = corpus / case
    critical = "critical_metadata_alterations" in case.parts and "non_critical" not in str(case)
    if critical or case.name == "dummy_checkpointable_added":
        # Damaged data, or a checkpointable whose files are garbage: typed, names the part.
        with pytest.raises(errors.CorruptCheckpointError, match=r"\('a',\)|\('b', 'c'\)|dummy"):
            ocp.load_checkpointables(path)
        if case.name == "dummy_checkpointable_added":  # the intact parts still load
            out = ocp.load_checkpointables(path, {"state": None, "metadata": None})
            _assert_expected(out["state"])
        return
    out = ocp.load_checkpointables(path)
    assert out["metadata"] == {"metadata": "json_data"}
    if case.name == "deleted_checkpointable":
        assert sorted(out) == ["metadata"]
        return
    assert sorted(out) == ["metadata", "state"]
    _assert_expected(out["state"])
    meta = ocp.checkpointables_metadata(path)
    assert sorted(meta.metadata) == ["metadata", "state"]
    assert meta.metadata["state"]["a"].shape == (8,)
