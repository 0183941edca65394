"""Interop on gs:// (fake-gcs-server): what real Orbax 0.12.8 writes there loads here
exactly, and what we write there loads in real Orbax (v1 and v0 APIs).

Real Orbax reaches the bucket through etils.epath (gcsfs) for directories and
TensorStore for arrays; we through TensorStore alone.
"""

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import compat_v0
import orbax_v1
from orbax_v1 import _zarr
from orbax_v1._storage import objectfile, objects

pytestmark = [pytest.mark.interop,
              pytest.mark.filterwarnings("ignore:Use `(save|load)` instead:DeprecationWarning")]

ocp = pytest.importorskip("orbax.checkpoint")
ocp_v1 = pytest.importorskip("orbax.checkpoint.experimental.v1")


def tree():
    mesh = jax.make_mesh((8,), ("d",))
    return {
        "w": jax.device_put(np.arange(16 * 6, dtype=np.float32).reshape(16, 6),
                            NamedSharding(mesh, P("d"))),
        "b": {"c": np.arange(5, dtype=np.int32), "h": np.ones(4, jax.numpy.bfloat16)},
        "big": np.linspace(0, 1, 70_000, dtype=np.float32).reshape(700, 100),
    }


def assert_same(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_what_real_orbax_writes_on_gcs_loads_here(gcs_bucket):
    want = tree()
    ocp_v1.save_pytree(f"{gcs_bucket}/theirs_v1", want)
    names = orbax_v1.storage.subdirs(f"{gcs_bucket}/theirs_v1")
    assert orbax_v1.storage.is_committed(f"{gcs_bucket}/theirs_v1")
    (name,) = [n for n in names if n in ("pytree", "state")]  # 0.12.8 names it one of them
    assert_same(orbax_v1.load(f"{gcs_bucket}/theirs_v1", checkpointable_name=name), want)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                           sharding=getattr(x, "sharding", None)),
                            want)
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(f"{gcs_bucket}/theirs_v0", want)
    ckptr.wait_until_finished()
    ckptr.close()
    assert_same(compat_v0.StandardCheckpointer().restore(f"{gcs_bucket}/theirs_v0"), want)
    got = orbax_v1.load(f"{gcs_bucket}/theirs_v0", abstract, checkpointable_name=None)
    assert got["w"].sharding == want["w"].sharding
    assert_same(got, want)


def test_what_we_write_on_gcs_loads_in_real_orbax(gcs_bucket, monkeypatch):
    monkeypatch.setattr(objectfile, "PART_BYTES", 64 << 10)  # several data files
    monkeypatch.setattr(_zarr, "CHUNK_TARGET_BYTES", 32 << 10)
    want = tree()
    orbax_v1.save_pytree(f"{gcs_bucket}/ours_v1", want)
    assert len([k for k in objects.list_keys(f"{gcs_bucket}/ours_v1") if "/d/" in k]) > 2
    got = ocp_v1.load_pytree(f"{gcs_bucket}/ours_v1", checkpointable_name="pytree")
    assert_same(got, want)
    saver = compat_v0.StandardCheckpointer()
    saver.save(f"{gcs_bucket}/ours_v0", want)
    saver.wait_until_finished()
    ckptr = ocp.StandardCheckpointer()
    assert_same(ckptr.restore(f"{gcs_bucket}/ours_v0"), want)
    ckptr.close()
