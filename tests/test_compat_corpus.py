"""The real Orbax v0 checkpoints of ../shared/orbax-corpus restore with v0 calls here.

Intact ones restore exactly, with and without a target; ones whose array data is gone
raise a typed error (`CorruptCheckpointError`, a `ValueError`).
"""

import jax
import numpy as np
import pytest
from conftest import CORPUS

import compat_v0 as ocp
import orbax_v1

EXPECTED = {"a": np.arange(8, dtype=np.int32), "b": {"c": np.array([1, 2, 3], np.int32)}}


def _cases():
    if not CORPUS.is_dir():
        return []
    return sorted(p.relative_to(CORPUS) for p in CORPUS.glob("v0_checkpoints/*/*/*")
                  if p.is_dir())


def _restore(path, target=None):
    if "direct_checkpoint" in path.parts:
        return ocp.PyTreeCheckpointer().restore(path, item=target)
    args = None if target is None else ocp.args.Composite(
        state=ocp.args.StandardRestore(target), metadata=None)
    restored = ocp.Checkpointer(ocp.CompositeCheckpointHandler()).restore(path, args=args)
    assert restored.metadata == {"metadata": "json_data"}
    return restored.state


def _assert_expected(tree):
    assert jax.tree.structure(tree) == jax.tree.structure(EXPECTED)
    for got, want in zip(jax.tree.leaves(tree), jax.tree.leaves(EXPECTED)):
        assert np.asarray(got).dtype == want.dtype
        np.testing.assert_array_equal(np.asarray(got), want)


@pytest.mark.parametrize("case", _cases(), ids=str)
def test_v0_corpus_checkpoint_restores(corpus, case):
    path = corpus / case
    if "critical_metadata_alterations" in case.parts:
        with pytest.raises(orbax_v1.errors.CorruptCheckpointError):
            _restore(path)
        return
    _assert_expected(_restore(path))
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, EXPECTED)
    _assert_expected(_restore(path, target))
