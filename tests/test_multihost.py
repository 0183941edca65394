"""Several local processes joined by jax.distributed save one checkpoint together.

Each scenario starts N processes of tests/multihost_worker.py (8 devices in all) on
localhost, with timeouts everywhere.
"""

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import orbax_v1 as ocp

from conftest import REPO

WORKER = os.path.join(os.path.dirname(__file__), "multihost_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run(scenario: str, n: int, directory, timeout: float = 120) -> list[tuple[int, str]]:
    """Starts n processes; returns (exit code, output) of each, in process order."""
    port = str(free_port())
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, WORKER, scenario, str(n), str(i), port,
                               str(directory)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env) for i in range(n)]
    results = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=timeout)
            results.append((p.returncode, out))
    finally:
        for p in procs:
            p.kill()
    return results


def expected():
    return {"w": np.arange(64 * 16, dtype=np.float32).reshape(64, 16),
            "b": np.arange(8, dtype=np.int32) * 3,
            "rep": np.linspace(0, 1, 24, dtype=np.float32).reshape(6, 4)}


@pytest.mark.parametrize("savers, loaders", [(2, 4), (4, 2)])
def test_save_with_n_processes_load_with_m(tmp_path, savers, loaders):
    for code, out in run("save", savers, tmp_path):
        assert code == 0 and "SAVED" in out, out[-3000:]
    ckpt = tmp_path / "ckpt"
    names = sorted(os.listdir(ckpt / "pytree"))
    assert [n for n in names if n.startswith("ocdbt.process_")] == [
        f"ocdbt.process_{i}" for i in range(savers)]
    assert sorted(os.listdir(ckpt / "pytree" / "array_metadatas")) == [
        f"process_{i}" for i in range(savers)]
    assert not [n for n in os.listdir(tmp_path) if "orbax-checkpoint-tmp" in n]
    # Any single reader sees every array, without the saving topology.
    got = ocp.load(ckpt)
    for k, v in expected().items():
        np.testing.assert_array_equal(got[k], v)
    assert got["step"] == 7 and got["name"] == "run"
    assert ocp.metadata(ckpt).custom_metadata == {"processes": savers}
    # This process (8 devices, another mesh) reads just what each device needs.
    if jax.device_count() == 8:
        mesh = jax.make_mesh((8,), ("d",))
        w = ocp.load(ckpt, {"w": jax.ShapeDtypeStruct((64, 16), np.float32,
                                                      sharding=NamedSharding(mesh, P("d")))},
                     partial_load=True)["w"]
        np.testing.assert_array_equal(np.asarray(w), expected()["w"])
    # Another number of processes loads it onto its own mesh.
    for code, out in run("load", loaders, tmp_path):
        assert code == 0 and "LOADED" in out, out[-3000:]


def test_failure_in_one_process_fails_the_save_everywhere(tmp_path):
    results = run("failure", 2, tmp_path)
    assert all(code == 3 for code, _ in results), results
    assert "disk full on process 1" in results[1][1]
    assert "SAVE FAILED ProcessSyncError" in results[0][1] and "process 1" in results[0][1]
    assert "'write'" in results[0][1]
    assert os.listdir(tmp_path) == [], "a failed save left files behind"


def test_a_missing_process_times_out_naming_it(tmp_path):
    results = run("timeout", 2, tmp_path)
    code, out = results[0]
    assert code == 3, out[-3000:]
    assert "processes [1] did not reach phase 'create' within 3 s" in out
    assert os.listdir(tmp_path) == [], "the timed-out save left files behind"


def test_two_processes_save_to_s3_and_another_mesh_loads_it(s3_bucket):
    from orbax_v1._storage import objects
    for code, out in run("save", 2, s3_bucket):
        assert code == 0 and "SAVED" in out, out[-3000:]
    ckpt = f"{s3_bucket}/ckpt"
    names = objects.list_keys(ckpt)
    assert {n.split("/")[1] for n in names if n.startswith("pytree/ocdbt.process_")} == {
        "ocdbt.process_0", "ocdbt.process_1"}
    assert names.count("commit_success.txt") == 1
    got = ocp.load(ckpt)
    for k, v in expected().items():
        np.testing.assert_array_equal(got[k], v)
    mesh = jax.make_mesh((8,), ("d",))
    w = ocp.load(ckpt, {"w": jax.ShapeDtypeStruct((64, 16), np.float32,
                                                  sharding=NamedSharding(mesh, P(None, "d")))},
                 partial_load=True)["w"]
    np.testing.assert_array_equal(np.asarray(w), expected()["w"])
    for code, out in run("load", 4, s3_bucket):
        assert code == 0 and "LOADED" in out, out[-3000:]
