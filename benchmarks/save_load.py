"""Save and load: orbax_v1 next to the real orbax-checkpoint, one table per backend.

    python benchmarks/save_load.py [--scale S] [--repeats 3] [--only abcd]
                                   [--libs orbax_v1,orbax] [--backend local,gcs,s3]

Workloads (sizes scale with --scale; 1.0 = the sizes of issue 4, the default for
`local`; on object stores the default is 0.5, so that (a), (b) and (d) are 256 MiB to
1 GiB there: 512 MiB, ~0.42 GiB and 1 GiB):
  a: one float32 array of 1 GiB
  b: ~1 GiB over ~300 transformer-shaped arrays (float32 and bfloat16)
  c: 10,000 float32 arrays of 16 elements plus 100 Python scalars
  d: 2 GiB as 8 float32 arrays sharded over 8 CPU devices (4x2 mesh)
Backends (--backend, a comma list, one table each; default local):
  local: a temporary directory (under --dir if given).
  gcs: gs://orbax-bench on fake-gcs-server (in memory, HTTP on 127.0.0.1); both libraries
       (real Orbax reaches it through gcsfs for files and TensorStore for arrays).
  s3: s3://orbax-bench on moto's server; orbax_v1 only (real Orbax cannot write s3://).
The script starts each emulator itself, as the tests do (tests/emulators.py), passes the
clients' environment to the workers, and stops it by pid at the end, also on an error or
Ctrl-C; each checkpoint is deleted from it after its run. The emulators share this
machine's cores with the workers, so remote numbers are for comparing the libraries,
not for predicting a real bucket's speed.
Each save and each load runs in a fresh process (so peak RSS is its own), interleaving
the two libraries, and the table shows medians. Loads use each library's defaults; for (d) both
load onto the saved 4x2 sharding. Locally, "cold" loads first evict the checkpoint's files from
the page cache (posix_fadvise DONTNEED, which needs no privilege and touches nothing
else); "again" is a second load right after the cold one, in the same process; "warm"
loads first read every file of the checkpoint once (untimed), so that the page cache
holds all of it. (Our cold loads read uncached data with O_DIRECT and do not fill the
page cache, so for us "again" is another cold read; real Orbax's cold load fills the
cache, so for it "again" is about "warm".) On an object store no page cache stands
between the loader and the data, so there is one load column: the first load of a
fresh process. RSS growth is the peak resident memory during
the call minus the resident memory just before it, sampled every 2 ms; for loads it is
the first load of a fresh process, before the allocator holds any freed memory.
The ratio rows compare medians, then each library's best run (the fastest of its
repeats, on a machine whose memory or disk speed varies from run to run). Locally, the
"floor" row is the least any loader could take cold here: our checkpoint's files, evicted,
read with O_DIRECT into fresh memory in a fresh process, and nothing else. On an object
store the "raw GETs" row is a reference, not a floor: every object of our checkpoint
fetched at once (one whole-object GET each, TensorStore's default request concurrency)
in a fresh process, no parsing; a loader that bounds its reads can beat it.
This is a script, not a test: run it on request.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import object_stores

LIBS = ("orbax_v1", "orbax")
REMOTE_LIBS = {"gcs": LIBS, "s3": ("orbax_v1",)}  # real Orbax cannot write s3://


# ---------------------------------------------------------------- the worker process

def _workload(name: str, scale: float):
    import jax
    import jax.numpy as jnp
    import numpy as np
    rng = np.random.default_rng(0)
    if name == "a":
        return {"x": rng.standard_normal(int((1 << 30) * scale) // 4, dtype=np.float32)}
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
    if name == "c":
        n = max(1, int(10_000 * scale))
        tree = {f"p{i}": rng.standard_normal(16, dtype=np.float32) for i in range(n)}
        tree.update({f"s{i}": float(i) for i in range(100)})
        return tree
    mesh = jax.make_mesh((4, 2), ("data", "model"))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data", "model"))
    rows = max(8, int((1 << 30) * 2 * scale) // (8 * 4 * 8192) // 8 * 8)
    make = jax.jit(lambda k: jax.random.normal(k, (rows, 8192)), out_shardings=sharding)
    return {f"w{i}": make(jax.random.key(i)) for i in range(8)}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _measure(fn):
    """(seconds, peak RSS growth in bytes) of fn(), starting with no dirty pages to flush."""
    import gc
    gc.collect()
    os.sync()  # so one run's writeback does not slow the next one down
    time.sleep(1)
    base, peak, done = _rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    peak[0] = max(peak[0], _rss())
    del result
    return seconds, max(0, peak[0] - base)


def _evict(path: str) -> None:
    for root, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _api(lib: str):
    if lib == "orbax_v1":
        import orbax_v1 as api
        return api, lambda path, tree: api.save_pytree(path, tree)
    import orbax.checkpoint.experimental.v1 as api
    return api, lambda path, tree: api.save(path, tree)


def worker(name: str, lib: str, scale: float, path: str, phase: str) -> dict:
    """One phase in a fresh process: 'save' builds the workload and saves it; 'load'
    loads it cold (files evicted from the page cache), again, and warm (files cached),
    or, on an object store, once; 'floor' times the floor row; 'delete' removes it."""
    remote = path.startswith(("gs://", "s3://"))
    if phase == "floor":
        return object_stores.floor(path) if remote else floor(path)
    if phase == "delete":
        return object_stores.delete(path)
    import jax
    api, save = _api(lib)
    if phase == "save":
        tree = _workload(name, scale)
        jax.block_until_ready(tree)
        nbytes = sum(x.nbytes for x in jax.tree.leaves(tree) if hasattr(x, "nbytes"))
        save_s, save_rss = _measure(lambda: save(path, tree))
        files = (object_stores.count_objects(path) if remote
                 else sum(len(f) for _, _, f in os.walk(path)))
        return {"bytes": nbytes, "save": save_s, "save_rss": save_rss, "files": files}
    abstract = None
    if name == "d":  # restore onto the saved 4x2 sharding, with both libraries
        mesh = jax.make_mesh((4, 2), ("data", "model"))
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data", "model"))
        meta = _workload_shapes(name, scale)
        abstract = {k: jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)
                    for k, (shape, dtype) in meta.items()}
    if remote:
        load_s, load_rss = _measure(lambda: api.load(path, abstract))
        return {"load": load_s, "load_rss": load_rss}
    _evict(path)
    cold_s, cold_rss = _measure(lambda: api.load(path, abstract))
    again_s, _ = _measure(lambda: api.load(path, abstract))
    _read_files(path)
    warm_s, _ = _measure(lambda: api.load(path, abstract))
    return {"cold": cold_s, "cold_rss": cold_rss, "again": again_s, "warm": warm_s}


def floor(path: str) -> dict:
    """The cold-read floor of a checkpoint's files on this machine, in a fresh process:
    evicted, then read with O_DIRECT (16 MiB reads on 4 threads) into fresh memory of
    their size, as a load must; no parsing, no arrays. No loader can go below it."""
    import mmap
    from concurrent.futures import ThreadPoolExecutor
    _evict(path)
    files = [os.path.join(root, n) for root, _, names in os.walk(path) for n in names]
    piece = 16 << 20
    start = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        for name in files:
            size = os.path.getsize(name)
            if size == 0:
                continue
            buf = mmap.mmap(-1, size)  # page-aligned, fresh
            buf.madvise(mmap.MADV_HUGEPAGE)  # as numpy does for big arrays
            try:
                fd = os.open(name, os.O_RDONLY | os.O_DIRECT)
            except OSError:
                fd = os.open(name, os.O_RDONLY)
            view = memoryview(buf)
            try:  # O_DIRECT may refuse the unaligned tail: read it through the cache
                tail = size // 4096 * 4096
                list(pool.map(lambda o: os.preadv(fd, [view[o:min(o + piece, tail)]], o),
                              range(0, tail, piece)))
                if tail < size:
                    with open(name, "rb") as f:
                        f.seek(tail)
                        view[tail:] = f.read()
            finally:
                os.close(fd)
                view.release()
            buf.close()
    return {"floor": time.perf_counter() - start}


def _read_files(path: str) -> None:
    for root, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                while f.read(64 << 20):
                    pass


def _workload_shapes(name: str, scale: float) -> dict:
    import numpy as np
    rows = max(8, int((1 << 30) * 2 * scale) // (8 * 4 * 8192) // 8 * 8)
    return {f"w{i}": ((rows, 8192), np.float32) for i in range(8)}


# ---------------------------------------------------------------- the driver

GIB = 2 ** 30


def _run_worker(name, lib, scale, path, root) -> dict:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "JAX_PLATFORMS": "cpu", **root.env}
    phases = ["save", "load"] + (["floor"] if lib == "orbax_v1" else [])
    if root.remote:  # the last process also removes the checkpoint from the emulator
        phases[-1] += ",delete"
    result = {}
    for phase in phases:
        out = subprocess.run([sys.executable, __file__, "--worker", name, lib, str(scale), path,
                              phase], capture_output=True, text=True, env=env, timeout=1800)
        if out.returncode != 0:
            raise RuntimeError(f"{lib} {phase} of ({name}) on {root.backend} failed:\n"
                               f"{out.stderr[-3000:]}")
        result.update(json.loads(out.stdout.strip().splitlines()[-1]))
    return result


def _local_rows(name: str, med: dict, best: dict) -> None:
    for lib, m in med.items():
        size = m["bytes"]
        print(f"| {name} | {lib} | {size / GIB:.3f} GiB | {m['save']:.3f} "
              f"({size / m['save'] / 1e9:.2f}) | {m['cold']:.3f} | {m['again']:.3f} "
              f"| {m['warm']:.3f} "
              f"({size / m['warm'] / 1e9:.2f}) | {m['save_rss'] / GIB:.3f} GiB "
              f"({m['save_rss'] / size:.0%}) | {m['cold_rss'] / GIB:.3f} GiB "
              f"({m['cold_rss'] / size:.2f}x) | {m['files']:.0f} |", flush=True)
    if "orbax_v1" in med:
        print(f"| {name} | floor: O_DIRECT read of our files | | | "
              f"{med['orbax_v1']['floor']:.3f} | | | | | |", flush=True)
    if len(med) == 2:
        for label, table in (("**orbax / ours**", med), ("orbax / ours, best runs", best)):
            ours, theirs = table["orbax_v1"], table["orbax"]
            ratios = " | ".join(f"**{theirs[k] / ours[k]:.1f}x**"
                                for k in ("save", "cold", "again", "warm"))
            print(f"| {name} | {label} | | {ratios} | | | |", flush=True)


def _remote_rows(name: str, med: dict, best: dict) -> None:
    for lib, m in med.items():
        size = m["bytes"]
        print(f"| {name} | {lib} | {size / GIB:.3f} GiB | {m['save']:.3f} "
              f"({size / m['save'] / 1e9:.2f}) | {m['load']:.3f} "
              f"({size / m['load'] / 1e9:.2f}) | {m['save_rss'] / GIB:.3f} GiB "
              f"({m['save_rss'] / size:.0%}) | {m['load_rss'] / GIB:.3f} GiB "
              f"({m['load_rss'] / size:.2f}x) | {m['files']:.0f} |", flush=True)
    if "orbax_v1" in med:
        m = med["orbax_v1"]
        print(f"| {name} | raw GETs of our objects, all at once | | | {m['floor']:.3f} "
              f"({m['floor_bytes'] / m['floor'] / 1e9:.2f}) | | | |", flush=True)
    if len(med) == 2:
        for label, table in (("**orbax / ours**", med), ("orbax / ours, best runs", best)):
            ours, theirs = table["orbax_v1"], table["orbax"]
            ratios = " | ".join(f"**{theirs[k] / ours[k]:.1f}x**" for k in ("save", "load"))
            print(f"| {name} | {label} | | {ratios} | | | |", flush=True)


def _section(root, libs: tuple, args) -> None:
    """One backend's table: every workload, `--repeats` interleaved runs of each library."""
    scale = args.scale if args.scale is not None else (0.5 if root.remote else 1.0)
    print(f"\n### {root.backend}: {root.about} (--scale {scale:g})\n")
    if root.remote:
        print("Loads: one column, the first load of a fresh process (no page cache "
              "between the loader and an object store: no cold/again/warm). "
              "Target: load RSS growth at most 1.1x the data.\n")
        print("| workload | library | data | save s (GB/s) | load s (GB/s) "
              "| save RSS growth | load RSS growth / data | objects |")
        print("|---|---|---|---|---|---|---|---|")
    else:
        print("| workload | library | data | save s (GB/s) | load cold s | load again s "
              "| load warm s (GB/s) | save RSS growth | load RSS growth / data | files |")
        print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.only:
        runs = {lib: [] for lib in libs}
        for r in range(args.repeats):
            for lib in libs:
                path = f"{root.path}/{name}-{lib}-{r}"
                runs[lib].append(_run_worker(name, lib, scale, path, root))
                if not root.remote:
                    shutil.rmtree(path, ignore_errors=True)
        med = {lib: {k: statistics.median(x[k] for x in rs) for k in rs[0]}
               for lib, rs in runs.items()}
        best = {lib: {k: min(x[k] for x in rs) for k in rs[0]} for lib, rs in runs.items()}
        (_remote_rows if root.remote else _local_rows)(name, med, best)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=None,
                        help="workload size factor (default: 1.0 local, 0.5 on object stores)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="abcd")
    parser.add_argument("--dir", default=None, help="where to write locally (default: a temp dir)")
    parser.add_argument("--libs", default=",".join(LIBS),
                        help="comma-separated: orbax_v1 (ours), orbax (the real one)")
    parser.add_argument("--backend", default="local",
                        help="comma-separated: local, gcs, s3 (local emulators for the last two)")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        name, lib, scale, path, phases = args.worker
        out = {}
        for phase in phases.split(","):
            out.update(worker(name, lib, float(scale), path, phase))
        print(json.dumps(out))
        return
    backends = object_stores.parse(args.backend)
    libs = tuple(lib for lib in LIBS if lib in args.libs.split(","))
    try:
        import orbax.checkpoint  # noqa: F401
    except ImportError:
        libs = tuple(lib for lib in libs if lib != "orbax")
    for backend in backends:
        section_libs = tuple(lib for lib in libs if lib in REMOTE_LIBS.get(backend, LIBS))
        with object_stores.backend_root(backend, args.dir) as root:
            _section(root, section_libs, args)
        if section_libs != libs:
            print(f"(real Orbax cannot write {backend}://: orbax_v1 only)")
    if "orbax" not in libs and "orbax" in args.libs.split(","):
        print("(real orbax-checkpoint not installed: pip install -e '.[bench]' to compare)")


if __name__ == "__main__":
    main()
