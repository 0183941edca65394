"""Save/load times of orbax_v1 next to the real orbax-checkpoint (if installed).

    python benchmarks/save_load.py [--scale 0.25] [--repeats 3] [--only c]

Workloads (sizes scale with --scale; 1.0 = the issue's sizes):
  a: one float32 array of 1 GiB
  b: ~1 GiB over ~300 transformer-shaped arrays (float32 and bfloat16)
  c: 10,000 float32 arrays of 16 elements plus 100 Python scalars
Prints one table: medians over --repeats interleaved runs, warm page cache.
This is a script, not a test: run it on request.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import tempfile
import time

import jax.numpy as jnp
import numpy as np

import orbax_v1

try:
    import orbax.checkpoint.experimental.v1 as real_orbax
except ImportError:  # the bench extra is not installed
    real_orbax = None


def workload(name: str, scale: float) -> dict:
    rng = np.random.default_rng(0)
    if name == "a":
        n = int((1 << 30) * scale) // 4
        return {"x": rng.standard_normal(n, dtype=np.float32)}
    if name == "b":
        layers, d = max(1, int(24 * scale)), 1024
        tree = {}
        for i in range(layers):
            dt = np.float32 if i % 2 else jnp.bfloat16
            tree[f"layer_{i}"] = {
                "qkv": rng.standard_normal((d, 3 * d), dtype=np.float32).astype(dt),
                "out": rng.standard_normal((d, d), dtype=np.float32).astype(dt),
                "up": rng.standard_normal((d, 4 * d), dtype=np.float32).astype(dt),
                "down": rng.standard_normal((4 * d, d), dtype=np.float32).astype(dt),
                **{f"norm{j}": np.ones(d, np.float32) for j in range(8)},
            }
        return tree
    n = max(1, int(10_000 * scale))
    tree = {f"p{i}": rng.standard_normal(16, dtype=np.float32) for i in range(n)}
    tree.update({f"s{i}": float(i) for i in range(100)})
    return tree


def nbytes(tree: dict) -> int:
    total = 0
    for v in tree.values():
        total += nbytes(v) if isinstance(v, dict) else np.asarray(v).nbytes
    return total


def time_it(fn, *args) -> float:
    gc.collect()
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def run(name: str, scale: float, repeats: int, root: str) -> list[str]:
    tree = workload(name, scale)
    size = nbytes(tree)
    libs = {"orbax_v1": (lambda p: orbax_v1.save_pytree(p, tree),
                         lambda p: orbax_v1.load(p))}
    if real_orbax is not None:
        libs["orbax 0.12"] = (lambda p: real_orbax.save(p, tree),
                              lambda p: real_orbax.load(p))
    times = {lib: {"save": [], "load": []} for lib in libs}
    for r in range(repeats):
        for lib, (save, load) in libs.items():  # interleaved
            path = os.path.join(root, f"{name}-{lib.replace(' ', '_')}-{r}")
            times[lib]["save"].append(time_it(save, path))
            times[lib]["load"].append(time_it(load, path))
            shutil.rmtree(path)
    rows = []
    for lib in libs:
        s, l = (statistics.median(times[lib][k]) for k in ("save", "load"))
        rows.append(f"| {name} | {lib} | {size / 2**20:,.0f} MiB | {s:.3f} | {size / s / 1e9:.2f} "
                    f"| {l:.3f} | {size / l / 1e9:.2f} |")
    if len(libs) == 2:
        ours, theirs = (times[lib] for lib in libs)
        rows.append(f"| {name} | ratio (orbax / ours) | | "
                    f"{statistics.median(theirs['save']) / statistics.median(ours['save']):.1f}x | "
                    f"| {statistics.median(theirs['load']) / statistics.median(ours['load']):.1f}x | |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=0.25)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="abc")
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args()
    root = tempfile.mkdtemp(dir=args.dir)
    try:
        print("| workload | library | data | save s | save GB/s | load s | load GB/s |")
        print("|---|---|---|---|---|---|---|")
        for name in args.only:
            for row in run(name, args.scale, args.repeats, root):
                print(row, flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if real_orbax is None:
        print("(real orbax-checkpoint not installed: pip install -e '.[bench]' to compare)")


if __name__ == "__main__":
    main()
