"""Where `save_load.py` writes: a local directory, or a bucket on a local emulator.

The driver side (`backend_root`) starts fake-gcs-server or moto exactly as the tests
do, through `tests/emulators.py`, creates one bucket, hands back the root path and the
environment the worker processes need to reach it, and stops the server by pid when
the `with` block ends, however it ends (an error, Ctrl-C). The worker side (`floor`,
`count_objects`, `delete`) runs inside a worker process that has that environment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import sys
import tempfile
import time

BACKENDS = ("local", "gcs", "s3")
TESTS = pathlib.Path(__file__).resolve().parent.parent / "tests"
BUCKET = "orbax-bench"


@dataclasses.dataclass
class Root:
    backend: str
    path: str  # a local directory, gs://BUCKET or s3://BUCKET
    env: dict[str, str]  # added to the workers' environment
    about: str  # one line for the section's heading

    @property
    def remote(self) -> bool:
        return self.backend != "local"


def parse(backends: str) -> list[str]:
    names = [b.strip() for b in backends.split(",") if b.strip()]
    unknown = sorted(set(names) - set(BACKENDS))
    if unknown or not names:
        raise SystemExit(f"--backend: {', '.join(unknown) or 'nothing'} is not one of "
                         f"{', '.join(BACKENDS)}")
    return list(dict.fromkeys(names))


@contextlib.contextmanager
def backend_root(backend: str, local_dir: str | None):
    """Yields a `Root` for `backend`; the emulator (or temp dir) goes away on exit."""
    if backend == "local":
        root = tempfile.mkdtemp(dir=local_dir)
        try:
            yield Root(backend, root, {}, f"a local directory under {os.path.dirname(root)}")
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import emulators  # pylint: disable=import-outside-toplevel
    server = emulators.start_gcs() if backend == "gcs" else emulators.start_s3()
    try:
        if backend == "gcs":
            emulators.create_gcs_bucket(server.endpoint, BUCKET)
            # FSSPEC_GS_TOKEN=anon: gcsfs (real Orbax's directory backend) sends no
            # credentials, as tests/emulator_fixtures.py sets fsspec's gs config.
            env = {**emulators.gcs_env(server.endpoint), "FSSPEC_GS_TOKEN": "anon"}
            about = f"gs://{BUCKET} on fake-gcs-server (in memory) at {server.endpoint}"
        else:
            emulators.create_s3_bucket(server.endpoint, BUCKET)
            env = emulators.s3_env(server.endpoint)
            about = f"s3://{BUCKET} on moto's server at {server.endpoint}"
        scheme = "gs" if backend == "gcs" else "s3"
        yield Root(backend, f"{scheme}://{BUCKET}", env, f"{about}, pid {server.pid}")
        if not server.running():
            raise RuntimeError(f"the {backend} emulator died; its log:\n{server.log()}")
    finally:
        server.stop()


# ---------------------------------------------------------------- in a worker process

def _kvstore(path: str):
    import tensorstore as ts
    from orbax_v1 import storage
    return ts.KvStore.open(storage.kvstore_spec(path)).result()


def count_objects(path: str) -> int:
    return len(_kvstore(path).list().result())


def floor(path: str) -> dict:
    """A reference for loads (not a strict floor): every object under `path` fetched
    at once (one whole-object GET each, TensorStore's default request concurrency) into
    memory, in a fresh process; no parsing, no arrays. Listing them is not timed."""
    kv = _kvstore(path)
    keys = kv.list().result()
    start = time.perf_counter()
    reads = [kv.read(key) for key in keys]
    nbytes = sum(len(read.result().value) for read in reads)
    return {"floor": time.perf_counter() - start, "floor_bytes": nbytes}


def delete(path: str) -> dict:
    """Removes a checkpoint (ours or real Orbax's) so the emulator's memory is freed."""
    from orbax_v1 import storage
    storage.remove_checkpoint(path)
    return {}
