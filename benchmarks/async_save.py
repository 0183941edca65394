"""How long an async save blocks the training loop, next to a plain host copy.

    python benchmarks/async_save.py [--scale 1.0] [--repeats 3]

Workloads: (b) ~1 GiB over ~300 transformer-shaped jax arrays (float32 and bfloat16) on
one device; (d) 2 GiB as 8 arrays sharded over 8 CPU devices (4x2 mesh). For each
library: blocking time (until the async call returns), total time (until committed),
and the time of a plain device-to-host copy of the same arrays (the floor). Medians over
--repeats interleaved runs. Real Orbax is measured in the same run when installed.
Target: blocking <= 1.5x the plain host copy.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import argparse  # noqa: E402
import gc  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import orbax_v1  # noqa: E402

try:
    import orbax.checkpoint.experimental.v1 as real_orbax
except ImportError:
    try:
        import orbax.checkpoint.v1 as real_orbax  # newer releases
    except ImportError:
        real_orbax = None


def workload_b(scale: float) -> dict:
    rng = np.random.default_rng(0)
    layers, d = max(1, int(24 * scale)), 1024
    tree = {}
    for i in range(layers):
        dt = jnp.float32 if i % 2 else jnp.bfloat16
        tree[f"layer_{i}"] = {
            name: jnp.asarray(rng.standard_normal(shape, dtype=np.float32), dtype=dt)
            for name, shape in [("qkv", (d, 3 * d)), ("out", (d, d)), ("up", (d, 4 * d)),
                                ("down", (4 * d, d))]}
        tree[f"layer_{i}"].update({f"norm{j}": jnp.ones(d) for j in range(8)})
    return tree


def workload_d(scale: float) -> dict:
    n = jax.device_count()  # 8 CPU devices here; on an accelerator, however many it has
    mesh = jax.make_mesh((4, 2) if n == 8 else (n, 1), ("data", "model"))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data", "model"))
    rows = max(8, int(2 ** 30 * 2 * scale) // (8 * 4 * 4096) // 8 * 8)
    make = jax.jit(lambda k: jax.random.normal(k, (rows, 4096)), out_shardings=sharding)
    return {f"w{i}": make(jax.random.key(i)) for i in range(8)}


def nbytes(tree) -> int:
    return sum(x.nbytes for x in jax.tree.leaves(tree))


def host_copy(tree):
    return jax.tree.map(lambda x: np.array(x, copy=True), tree)


def measure(save_async, path, tree):
    gc.collect()
    start = time.perf_counter()
    response = save_async(path, tree)
    blocked = time.perf_counter() - start
    response.result()
    return blocked, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="bd")
    args = parser.parse_args()
    libs = {"orbax_v1": lambda p, t: orbax_v1.save_pytree_async(p, t)}
    if real_orbax is not None:
        libs["orbax 0.12"] = lambda p, t: real_orbax.save_async(p, t)
    root = tempfile.mkdtemp()
    print(f"devices: {jax.devices()}")
    print("| workload | data | host copy s | library | blocking s | blocking / copy | total s |")
    print("|---|---|---|---|---|---|---|")
    try:
        for name in args.only:
            tree = workload_b(args.scale) if name == "b" else workload_d(args.scale)
            jax.block_until_ready(tree)
            copies, results = [], {lib: ([], []) for lib in libs}
            for r in range(args.repeats):
                gc.collect()
                start = time.perf_counter()
                copied = host_copy(tree)
                copies.append(time.perf_counter() - start)
                del copied
                for lib, save_async in libs.items():
                    path = os.path.join(root, f"{name}-{lib.replace(' ', '_')}-{r}")
                    blocked, total = measure(save_async, path, tree)
                    results[lib][0].append(blocked)
                    results[lib][1].append(total)
                    shutil.rmtree(path)
            copy = statistics.median(copies)
            for lib, (blocked, total) in results.items():
                b = statistics.median(blocked)
                print(f"| {name} | {nbytes(tree) / 2**30:.2f} GiB | {copy:.3f} | {lib} | {b:.3f} "
                      f"| {b / copy:.2f}x | {statistics.median(total):.3f} |", flush=True)
            del tree
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
