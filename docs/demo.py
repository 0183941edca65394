"""Save a small but realistic training state, load it back, and show what was written.

Run from the repository root (README.md has the one command that sets it up):
    python docs/demo.py [checkpoint-dir]
"""

import os
import shutil
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

import orbax_v1 as ocp


def make_state(seed: int = 0) -> dict:
    """A 2-layer transformer's params (float32 and bfloat16) and an Adam-like state."""
    rng = np.random.default_rng(seed)
    d_model, d_ff, vocab, layers = 64, 256, 512, 2

    def dense(*shape, dtype=jnp.float32):
        return jnp.asarray(rng.standard_normal(shape) / np.sqrt(shape[0]), dtype=dtype)

    params = {
        "embed": dense(vocab, d_model),
        "layers": [
            {"attn": {"qkv": dense(d_model, 3 * d_model, dtype=jnp.bfloat16),
                      "out": dense(d_model, d_model, dtype=jnp.bfloat16)},
             "mlp": {"up": dense(d_model, d_ff), "down": dense(d_ff, d_model)},
             "norm": {"scale": jnp.ones(d_model), "bias": jnp.zeros(d_model)}}
            for _ in range(layers)
        ],
    }
    opt_state = {"step": 1200, "mu": jax.tree.map(jnp.zeros_like, params),
                 "nu": jax.tree.map(jnp.zeros_like, params)}
    return {"params": params, "opt_state": opt_state, "learning_rate": 3e-4,
            "run_name": "demo-transformer"}


def trees_equal(saved, loaded) -> bool:
    """Same structure, dtypes and values; saved jax.Arrays load as host numpy arrays."""
    la, ta = jax.tree.flatten(saved)
    lb, tb = jax.tree.flatten(loaded)
    return ta == tb and all(
        (type(y) is np.ndarray if isinstance(x, jax.Array) else type(x) is type(y))
        and np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(x, y)
        for x, y in zip(la, lb))


def main(path: str) -> None:
    state = make_state()
    ocp.save_pytree(path, state, overwrite=True, custom_metadata={"note": "demo"})
    restored = ocp.load(path)
    assert trees_equal(state, restored), "restored state differs from the saved one"
    print(f"Saved and loaded {path}: restored state is identical.\n")

    print("Files written:")
    for root, _, files in sorted(os.walk(path)):
        for name in sorted(files):
            full = os.path.join(root, name)
            print(f"  {os.path.relpath(full, path):60s} {os.path.getsize(full):>9,d} B")

    meta = ocp.metadata(path)
    print(f"\nTree metadata (custom_metadata={meta.custom_metadata}):")
    total = 0
    for keypath, leaf in jax.tree_util.tree_flatten_with_path(meta.metadata)[0]:
        name = jax.tree_util.keystr(keypath)
        if isinstance(leaf, ocp.ArrayMetadata):
            total += leaf.nbytes
            print(f"  {name:50s} {str(leaf.shape):12s} {str(leaf.dtype):9s} {leaf.nbytes:>8,d} B")
        else:
            print(f"  {name:50s} {leaf}")
    print(f"  total array bytes: {total:,d}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        scratch = tempfile.mkdtemp()
        try:
            main(os.path.join(scratch, "demo_checkpoint"))
        finally:
            shutil.rmtree(scratch)
