"""On an accelerator: is an async save safe against donation, and how fast is each
device-to-host path? (Run where a GPU or TPU is present; CPU-only runs say so.)

    python benchmarks/gpu_async_probe.py [--gib 1.0]

1. Donation: save_async, then at once a jitted step that donates (overwrites) every
   saved buffer; then wait for the save and compare what loads with the values at the
   time of the call. Run for orbax_v1 and for real Orbax.
2. Device-to-host: time of np.array(x) per array (pageable), of copy_to_host_async on
   all then np.asarray, and of device_put to 'pinned_host' memory then np.asarray.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

import orbax_v1

try:
    import orbax.checkpoint.experimental.v1 as real_orbax
except ImportError:
    try:
        import orbax.checkpoint.v1 as real_orbax
    except ImportError:
        real_orbax = None


def make_tree(gib: float) -> dict:
    n = max(1, int(gib * 2**30 / (64 * 2**20)))  # 64 MiB arrays
    key = jax.random.key(0)
    return {f"w{i}": jax.random.normal(jax.random.fold_in(key, i), (4096, 4096))
            for i in range(n)}


@jax.jit
def _bump(tree):
    return jax.tree.map(lambda x: x * 2 + 1, tree)


bump_donating = jax.jit(lambda t: jax.tree.map(lambda x: x * 2 + 1, t), donate_argnums=0)


def donation(lib: str, save_async, load, root: str, gib: float) -> str:
    tree = make_tree(gib)
    jax.block_until_ready(tree)
    expected = jax.tree.map(np.asarray, tree)
    path = f"{root}/{lib}"
    start = time.perf_counter()
    response = save_async(path, tree)
    blocked = time.perf_counter() - start
    try:
        tree = bump_donating(tree)  # the next training step reuses the saved buffers
        jax.block_until_ready(tree)
        response.result()
    except Exception as e:  # noqa: BLE001 - reported
        return f"{lib}: blocked {blocked:.3f}s; save FAILED after donation: {type(e).__name__}: {str(e)[:200]}"
    got = load(path)
    same = all(np.array_equal(np.asarray(got[k]), expected[k]) for k in expected)
    return f"{lib}: blocked {blocked:.3f}s; saved values {'EXACT' if same else 'WRONG (donated data saved)'}"


def _fresh(gib: float) -> list:
    leaves = jax.tree.leaves(make_tree(gib))  # new buffers: jax caches a host copy
    jax.block_until_ready(leaves)
    return leaves


def _pageable(leaves):
    return [np.array(x) for x in leaves]


def _async_then_wait(leaves):
    for x in leaves:
        x.copy_to_host_async()
    return [np.asarray(x) for x in leaves]


def _pinned(leaves):
    pinned = [jax.device_put(x, x.sharding.with_memory_kind("pinned_host")) for x in leaves]
    return [np.asarray(p) for p in jax.block_until_ready(pinned)]


def _on_device(leaves):
    return jax.block_until_ready([jnp.copy(x) for x in leaves])


def transfers(gib: float) -> list[str]:
    out = []
    for name, fn in [("np.array per array (pageable)", _pageable),
                     ("copy_to_host_async on all, then np.asarray", _async_then_wait),
                     ("device_put to pinned_host, then np.asarray", _pinned),
                     ("on-device copy (jnp.copy)", _on_device)]:
        leaves = _fresh(gib)
        try:
            t = time.perf_counter()
            result = fn(leaves)
            out.append(f"{name}: {time.perf_counter() - t:.3f}s")
            del result
        except Exception as e:  # noqa: BLE001 - reported
            out.append(f"{name}: unavailable: {type(e).__name__}: {str(e)[:160]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=1.0)
    args = parser.parse_args()
    print("devices:", jax.devices(), "memories:",
          [m.kind for m in jax.devices()[0].addressable_memories()])
    root = tempfile.mkdtemp()
    try:
        print(donation("orbax_v1", orbax_v1.save_pytree_async, orbax_v1.load, root, args.gib))
        if real_orbax is not None:
            print(donation("orbax", real_orbax.save_async,
                           lambda p: real_orbax.load(p) if hasattr(real_orbax, "load")
                           else real_orbax.load_pytree(p), root, args.gib))
        for _ in range(2):
            for line in transfers(args.gib):
                print(line)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
