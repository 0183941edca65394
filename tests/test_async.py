"""Async saves and loads: the caller is free once data is on the host; errors surface."""

import asyncio
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import orbax_v1 as ocp
from orbax_v1 import errors


def test_caller_may_modify_delete_and_donate_after_return(tmp_path):
    host = np.arange(1000, dtype=np.float32)
    dev = jnp.arange(1000, dtype=jnp.float32)
    donated = jnp.ones(1000)
    response = ocp.save_pytree_async(tmp_path / "c", {"host": host, "dev": dev, "don": donated})
    host[:] = -1  # modify in place
    dev.delete()  # free the device buffer
    jax.jit(lambda x: x * 0, donate_argnums=0)(donated).block_until_ready()  # donate
    assert response.result(timeout=60) is None and response.done()
    out = ocp.load(tmp_path / "c")
    np.testing.assert_array_equal(out["host"], np.arange(1000, dtype=np.float32))
    np.testing.assert_array_equal(out["dev"], np.arange(1000, dtype=np.float32))
    np.testing.assert_array_equal(out["don"], np.ones(1000))


def test_accelerator_arrays_are_copied_on_device_and_donation_is_safe(tmp_path, monkeypatch):
    """On a GPU or TPU an async save copies arrays on the device and moves them to the
    host in the background. CPU arrays take the same path here, by pretending."""
    from jax.sharding import NamedSharding, PartitionSpec as P

    from orbax_v1 import _pytree_save
    monkeypatch.setattr(_pytree_save, "_on_accelerator", lambda v: isinstance(v, jax.Array))
    copies = []
    real_copy = _pytree_save.jnp.copy
    monkeypatch.setattr(_pytree_save.jnp, "copy", lambda x: copies.append(x.shape) or real_copy(x))
    mesh = jax.make_mesh((4, 2), ("a", "b"))
    sharding = NamedSharding(mesh, P("a", "b"))
    w = jax.device_put(np.arange(64 * 8, dtype=np.float32).reshape(64, 8), sharding)
    host = np.arange(5)
    response = ocp.save_pytree_async(tmp_path / "c", {"w": w, "host": host, "n": 3})
    assert copies == [(64, 8)]
    host[:] = -1
    jax.jit(lambda x: x * 0, donate_argnums=0)(w).block_until_ready()
    response.result(timeout=60)
    out = ocp.load(tmp_path / "c", ocp.metadata(tmp_path / "c").metadata)
    assert out["w"].sharding == sharding
    np.testing.assert_array_equal(np.asarray(out["w"]),
                                  np.arange(64 * 8, dtype=np.float32).reshape(64, 8))
    np.testing.assert_array_equal(out["host"], np.arange(5))
    assert out["n"] == 3


def test_errors_before_writing_raise_at_the_call(tmp_path):
    ocp.save_pytree(tmp_path / "c", {"x": 1})
    with pytest.raises(errors.CheckpointExistsError):
        ocp.save_pytree_async(tmp_path / "c", {"x": 2})
    with pytest.raises(errors.UnsupportedTreeError):
        ocp.save_pytree_async(tmp_path / "d", {"x": object()})


def test_background_errors_reraise_on_result(tmp_path, monkeypatch):
    from orbax_v1 import _pytree_save

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(_pytree_save, "write_local", boom)
    response = ocp.save_pytree_async(tmp_path / "c", {"x": np.ones(3)})
    with pytest.raises(OSError, match="disk full"):
        response.result(timeout=60)
    assert not (tmp_path / "c").exists()
    assert not list(tmp_path.iterdir()), "the temporary directory was left behind"


def test_result_timeout_raises_timeout_error(tmp_path, monkeypatch):
    from orbax_v1 import _pytree_save
    gate = threading.Event()
    real_write = _pytree_save.write_local
    monkeypatch.setattr(_pytree_save, "write_local", lambda *a, **k: (gate.wait(30), real_write(*a, **k)))
    response = ocp.save_pytree_async(tmp_path / "c", {"x": np.ones(3)})
    with pytest.raises(TimeoutError):
        response.result(timeout=0.05)
    assert not response.done()
    gate.set()
    response.result(timeout=60)
    assert ocp.load(tmp_path / "c")["x"].tolist() == [1.0, 1.0, 1.0]


def test_async_loads(tmp_path):
    ocp.save_checkpointables(tmp_path / "c", {"pytree": {"x": np.arange(3)}, "cfg": "s"})
    assert ocp.load_async(tmp_path / "c").result(timeout=60)["x"].tolist() == [0, 1, 2]
    out = ocp.load_checkpointables_async(tmp_path / "c").result(timeout=60)
    assert out["cfg"] == "s"
    with pytest.raises(errors.CheckpointNotFoundError):
        ocp.load_async(tmp_path / "nope").result(timeout=60)


def test_works_inside_a_running_event_loop(tmp_path):
    async def main():
        response = ocp.save_checkpointables_async(tmp_path / "c", {"pytree": {"x": np.ones(2)}})
        await asyncio.sleep(0)
        await asyncio.get_running_loop().run_in_executor(None, response.result, 60)
        return ocp.load(tmp_path / "c")

    assert asyncio.run(main())["x"].tolist() == [1.0, 1.0]


def test_unseen_background_failure_is_reported_at_exit(tmp_path):
    import subprocess
    import sys
    code = (
        "import numpy as np, orbax_v1\n"
        "from orbax_v1 import _pytree_save\n"
        "def boom(*a, **k): raise OSError('disk full')\n"
        "_pytree_save.write_local = boom\n"
        f"orbax_v1.save_pytree_async({str(tmp_path / 'c')!r}, {{'x': np.ones(2)}})\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0
    assert "FAILED in the background" in res.stderr and "disk full" in res.stderr


def test_pending_save_finishes_at_exit(tmp_path):
    import subprocess
    import sys
    code = (
        "import time, numpy as np, orbax_v1\n"
        "from orbax_v1 import _pytree_save\n"
        "real = _pytree_save.write_local\n"
        "_pytree_save.write_local = lambda *a, **k: (time.sleep(1), real(*a, **k))\n"
        f"orbax_v1.save_pytree_async({str(tmp_path / 'c')!r}, {{'x': np.ones(2)}})\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "finishing 1 pending background operation" in res.stderr
    assert ocp.load(tmp_path / "c")["x"].tolist() == [1.0, 1.0]
