"""TensorStore's ``s3`` and ``gcs`` kvstore drivers against real local emulators.

moto (S3) and fake-gcs-server (GCS) run as their own processes on loopback
(see emulators.py and emulator_fixtures.py). These tests use TensorStore
directly, not orbax_v1, so that they prove the storage layer and the
emulators, and what failures look like: a missing bucket, a server that dies
in the middle of a write, and a server that stops answering.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from typing import Callable

import numpy as np
import pytest
import tensorstore as ts

import emulators

# Few, short retries: a dead endpoint then fails in well under a second. The
# drivers' defaults (32 attempts, 1 s doubling to 32 s) would take ~15 minutes.
TIGHT_RETRIES = {"max_retries": 2, "initial_delay": "10ms", "max_delay": "50ms"}
BOUND_S = 5.0


@dataclasses.dataclass
class Target:
    """One bucket on one emulator: ``spec(**extra)`` gives its kvstore spec."""

    driver: str
    spec: Callable[..., dict]

    def tight_spec(self, **extra) -> dict:
        return self.spec(context={f"{self.driver}_request_retries": TIGHT_RETRIES}, **extra)


def _s3_target(server, url: str) -> Target:
    bucket = url.removeprefix("s3://")
    return Target("s3", lambda **extra: emulators.s3_spec(server.endpoint, bucket, **extra))


def _gcs_target(url: str) -> Target:
    bucket = url.removeprefix("gs://")
    return Target("gcs", lambda **extra: emulators.gcs_spec(bucket, **extra))


@pytest.fixture(params=["s3", "gcs"])
def target(request) -> Target:
    if request.param == "s3":
        return _s3_target(request.getfixturevalue("s3_server"),
                          request.getfixturevalue("s3_bucket"))
    return _gcs_target(request.getfixturevalue("gcs_bucket"))


def _open(spec: dict) -> ts.KvStore:
    return ts.KvStore.open(spec).result(timeout=BOUND_S)


def test_write_read_list_delete(target):
    kv = _open(target.spec())
    for key, value in ((b"a/x", b"0123456789"), (b"a/y", b"y"), (b"b/z", b"z")):
        kv.write(key, value).result()
    assert kv.read(b"a/x").result().value == b"0123456789"
    assert kv.read(b"nothing").result().state == "missing"
    # Byte ranges are Python slices; a negative start counts from the end.
    for byte_range, expected in ((slice(2, 5), b"234"), (slice(None, 3), b"012"),
                                 (slice(7, None), b"789"), (slice(-3, None), b"789")):
        assert kv.read(b"a/x", byte_range=byte_range).result().value == expected
    prefix = ts.KvStore.KeyRange(b"a/", b"a0")  # every key that starts with "a/"
    assert sorted(kv.list(prefix).result()) == [b"a/x", b"a/y"]
    assert sorted(kv.list(prefix, strip_prefix_length=2).result()) == [b"x", b"y"]
    kv.delete_range(prefix).result()
    assert kv.list().result() == [b"b/z"]


def test_path_is_a_key_prefix(target):
    _open(target.spec(path="dir/")).write(b"k", b"v").result()
    assert _open(target.spec()).list().result() == [b"dir/k"]


def test_ocdbt_on_object_store(target):
    spec = {"driver": "ocdbt", "base": target.spec(path="x/")}
    kv = _open(spec)
    kv.write(b"k1", b"v1").result()
    kv.write(b"k2", b"v2").result()
    again = _open(spec)  # a new open reads the manifest back from the bucket
    assert again.read(b"k1").result().value == b"v1"
    assert sorted(again.list().result()) == [b"k1", b"k2"]
    assert b"x/manifest.ocdbt" in _open(target.spec()).list().result()


def test_zarr3_on_ocdbt_round_trips(target):
    spec = {"driver": "zarr3", "kvstore": {"driver": "ocdbt", "base": target.spec(path="arr/")}}
    data = np.arange(24, dtype=np.float32).reshape(4, 6)
    array = ts.open(spec, create=True, dtype=ts.float32, shape=data.shape,
                    chunk_layout=ts.ChunkLayout(chunk_shape=[2, 3])).result()
    array.write(data).result()
    np.testing.assert_array_equal(ts.open(spec, open=True).result().read().result(), data)


def test_missing_bucket_fails_fast(target):
    kv = _open({**target.tight_spec(), "bucket": "no-such-bucket-here"})  # opening does no I/O
    start = time.monotonic()
    with pytest.raises(ValueError, match="NOT_FOUND"):
        kv.write(b"k", b"v").result(timeout=BOUND_S)
    # A read of a missing bucket is a missing key, not an error, on both.
    assert kv.read(b"k").result(timeout=BOUND_S).state == "missing"
    if target.driver == "s3":  # fake-gcs-server lists a missing bucket as empty
        with pytest.raises(ValueError, match="NoSuchBucket"):
            kv.list().result(timeout=BOUND_S)
    assert time.monotonic() - start < BOUND_S


@pytest.mark.parametrize("driver", ["s3", "gcs"])
def test_killed_server_fails_writes_in_bounded_time(driver, request):
    server = request.getfixturevalue(f"fresh_{driver}_server")
    if driver == "s3":
        emulators.create_s3_bucket(server.endpoint, "crash-test")
        target = _s3_target(server, "s3://crash-test")
    else:
        emulators.create_gcs_bucket(server.endpoint, "crash-test")
        target = _gcs_target("gs://crash-test")
    kv = _open(target.tight_spec())
    kv.write(b"before", b"ok").result(timeout=BOUND_S)
    in_flight = [kv.write(f"w{i}".encode(), bytes(256 << 10)) for i in range(16)]
    server.kill()
    start = time.monotonic()
    for future in in_flight:  # each one settles, one way or the other
        try:
            future.result(timeout=BOUND_S)
        except ValueError:
            pass
    with pytest.raises(ValueError, match="retry attempts failed"):
        kv.write(b"after", b"lost").result(timeout=BOUND_S)
    assert time.monotonic() - start < BOUND_S


_FROZEN_CHILD = """
import json, sys, time
import tensorstore as ts
s3_spec, gcs_spec = json.loads(sys.argv[1]), json.loads(sys.argv[2])
start = time.monotonic()
futures = [ts.KvStore.open(spec).result().write(b"k", b"v") for spec in (s3_spec, gcs_spec)]
errors = []
for future in futures:
    try:
        future.result(timeout=60)
        errors.append(None)
    except Exception as e:
        errors.append(str(e))
print(json.dumps({"errors": errors, "seconds": time.monotonic() - start}))
"""


def test_frozen_servers_time_out_with_a_low_speed_limit(s3_server, s3_bucket, gcs_server,
                                                       gcs_bucket):
    """A server that accepts but never answers: curl's low-speed limit ends each attempt.

    TENSORSTORE_CURL_LOW_SPEED_TIME_SECONDS (default 120) is read once, when
    TensorStore's HTTP transport is made, hence the child process.
    """
    one_try = {"max_retries": 1}
    specs = [emulators.s3_spec(s3_server.endpoint, s3_bucket.removeprefix("s3://"),
                               context={"s3_request_retries": one_try}),
             emulators.gcs_spec(gcs_bucket.removeprefix("gs://"),
                                context={"gcs_request_retries": one_try})]
    env = {**os.environ, "TENSORSTORE_CURL_LOW_SPEED_TIME_SECONDS": "1"}
    argv = [sys.executable, "-c", _FROZEN_CHILD, *map(json.dumps, specs)]
    with s3_server.stopped(), gcs_server.stopped():
        child = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    result = json.loads(child.stdout)
    assert all(error and "Timeout was reached" in error for error in result["errors"]), result
    assert result["seconds"] < 10, result


@pytest.mark.interop
@pytest.mark.filterwarnings("ignore:Use `(save|load)` instead:DeprecationWarning")
def test_real_orbax_saves_and_loads_on_fake_gcs(gcs_bucket):
    """orbax-checkpoint 0.12.8 on gs://: epath goes through gcsfs, arrays through TensorStore."""
    jax = pytest.importorskip("jax")
    ocp = pytest.importorskip("orbax.checkpoint")
    from orbax.checkpoint.experimental import v1 as ocp_v1  # pylint: disable=import-outside-toplevel

    tree = {"a": np.arange(6, dtype=np.float32).reshape(2, 3),
            "b": {"c": np.asarray(7, dtype=np.int32), "d": jax.numpy.ones(4, jax.numpy.bfloat16)}}

    def check(restored):
        jax.tree.map(lambda want, got: np.testing.assert_array_equal(np.asarray(got), want),
                     tree, restored)

    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(f"{gcs_bucket}/v0/ckpt", tree)
    checkpointer.wait_until_finished()
    check(checkpointer.restore(f"{gcs_bucket}/v0/ckpt"))
    checkpointer.close()

    ocp_v1.save_pytree(f"{gcs_bucket}/v1/ckpt", tree)
    check(ocp_v1.load_pytree(f"{gcs_bucket}/v1/ckpt"))
