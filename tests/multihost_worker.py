"""One process of a multi-process test (run by tests/test_multihost.py, not by pytest).

    python multihost_worker.py SCENARIO NUM_PROCESSES PROCESS_ID PORT DIRECTORY

Each process has 8 // NUM_PROCESSES fake CPU devices, so the global mesh always has 8.
"""

import os
import sys

scenario, n, pid, port, directory = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    sys.argv[4], sys.argv[5]
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={8 // n}"
os.environ["JAX_PLATFORMS"] = "cpu"
if scenario == "timeout":
    os.environ["ORBAX_V1_SYNC_TIMEOUT_SECS"] = "3"

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

jax.distributed.initialize(f"localhost:{port}", num_processes=n, process_id=pid,
                           initialization_timeout=60)
import orbax_v1 as ocp  # noqa: E402

assert jax.device_count() == 8 and jax.process_count() == n


def expected():
    return {"w": np.arange(64 * 16, dtype=np.float32).reshape(64, 16),
            "b": np.arange(8, dtype=np.int32) * 3,
            "rep": np.linspace(0, 1, 24, dtype=np.float32).reshape(6, 4)}


def global_array(value, sharding):
    return jax.make_array_from_callback(value.shape, sharding, lambda idx: value[idx])


def check_local(name, array, value):
    for shard in array.addressable_shards:
        np.testing.assert_array_equal(np.asarray(shard.data), value[shard.index], err_msg=name)


mesh = jax.make_mesh((4, 2), ("data", "model"))
want = expected()
shardings = {"w": NamedSharding(mesh, P("data", "model")), "b": NamedSharding(mesh, P("data")),
             "rep": NamedSharding(mesh, P())}
path = os.path.join(directory, "ckpt")

if scenario in ("save", "failure", "timeout"):
    tree = {k: global_array(v, shardings[k]) for k, v in want.items()}
    tree.update(step=7, name="run")
    if scenario == "failure" and pid == n - 1:
        from orbax_v1 import _pytree_save

        def broken(*args, **kwargs):
            raise OSError(f"disk full on process {pid}")

        _pytree_save.write_local = broken
    if scenario == "timeout" and pid == n - 1:
        print("STAYS AWAY", flush=True)
        import time
        time.sleep(10)
        sys.exit(0)
    try:
        ocp.save_pytree(path, tree, custom_metadata={"processes": n})
    except Exception as e:  # noqa: BLE001 - the parent reads what each process saw
        print(f"SAVE FAILED {type(e).__name__}: {e}", flush=True)
        sys.exit(3)
    print("SAVED", flush=True)
elif scenario == "load":
    # Another mesh shape and another process count than the save.
    other = jax.make_mesh((2, 4), ("x", "y"))
    targets = {"w": NamedSharding(other, P("y", "x")), "b": NamedSharding(other, P("y")),
               "rep": NamedSharding(other, P("x", None))}
    abstract = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=targets[k])
                for k, v in want.items()}
    abstract.update(step=0, name="")
    out = ocp.load(path, abstract)
    for k in want:
        assert out[k].sharding == targets[k]
        check_local(k, out[k], want[k])
    assert out["step"] == 7 and out["name"] == "run"
    print("LOADED", flush=True)
