"""Checkpoints in object stores: s3:// on a moto server, gs:// on fake-gcs-server.

Both emulators run as real servers on loopback ports (tests/emulators.py); TensorStore's
own `s3` and `gcs` drivers talk to them, as they would to the real services.
"""

import os
import pathlib
import time

import jax
import numpy as np
import pytest
from etils import epath
from jax.sharding import NamedSharding, PartitionSpec as P

import orbax_v1 as ocp
from orbax_v1 import _zarr, errors
from orbax_v1._storage import objectfile, objects


@pytest.fixture(params=["s3", "gcs"])
def bucket(request):
    return request.getfixturevalue(f"{request.param}_bucket")


def tree():
    mesh = jax.make_mesh((8,), ("d",))
    sharded = jax.device_put(np.arange(64 * 6, dtype=np.float32).reshape(64, 6),
                             NamedSharding(mesh, P("d")))
    return {"w": sharded, "b": np.arange(5, dtype=np.int16), "lr": 0.5, "step": 3,
            "name": "run", "nested": {"m": np.ones((3, 4), np.float64)}}


def assert_same(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        if isinstance(b, (str, int, float)):
            assert a == b and type(a) is type(b)
        else:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def keys(path):
    return objects.list_keys(path)


def test_save_and_load_round_trip(bucket):
    path = f"{bucket}/run/ckpt"
    want = tree()
    ocp.save_pytree(path, want)
    assert "commit_success.txt" in keys(path) and "pytree/_METADATA" in keys(path)
    assert_same(ocp.load(path), jax.tree.map(np.asarray, want))
    # onto another sharding, and with a cast, reading through TensorStore
    mesh = jax.make_mesh((4, 2), ("a", "b"))
    abstract = dict(want)
    abstract["w"] = jax.ShapeDtypeStruct((64, 6), np.float16,
                                         sharding=NamedSharding(mesh, P("a", "b")))
    got = ocp.load(path, abstract)
    assert got["w"].sharding == abstract["w"].sharding and got["w"].dtype == np.float16
    np.testing.assert_array_equal(np.asarray(got["w"]), np.asarray(want["w"], np.float16))
    meta = ocp.metadata(path).metadata
    assert meta["w"].shape == (64, 6) and meta["name"] == ocp.StringMetadata()


def test_every_path_type_reaches_the_bucket(bucket):
    for i, path in enumerate([f"{bucket}/a", epath.Path(f"{bucket}/b"), f"{bucket}//c/./"]):
        ocp.save_pytree(path, {"x": np.arange(3) + i})
    assert ocp.load(f"{bucket}/c")["x"].tolist() == [2, 3, 4]
    assert ocp.load(epath.Path(f"{bucket}/a"))["x"].tolist() == [0, 1, 2]


def test_large_values_are_cut_into_several_data_files(bucket, monkeypatch):
    monkeypatch.setattr(objectfile, "PART_BYTES", 256 << 10)
    monkeypatch.setattr(_zarr, "CHUNK_TARGET_BYTES", 64 << 10)  # 32 chunks, 8 parts
    big = np.random.default_rng(0).standard_normal((512, 1024)).astype(np.float32)  # 2 MiB
    ocp.save_pytree(f"{bucket}/big", {"big": big, "small": np.arange(4)})
    data_files = [k for k in keys(f"{bucket}/big") if "/ocdbt.process_0/d/" in k]
    assert len(data_files) >= 8, data_files
    got = ocp.load(f"{bucket}/big")
    np.testing.assert_array_equal(got["big"], big)
    np.testing.assert_array_equal(got["small"], np.arange(4))


def test_a_prefix_without_commit_file_never_loads(bucket):
    path = f"{bucket}/unfinished"
    ocp.save_pytree(path, {"x": np.arange(3)})
    objects.delete(f"{path}/commit_success.txt")
    with pytest.raises(errors.IncompleteCheckpointError, match="commit_success.txt"):
        ocp.load(path)
    with pytest.raises(errors.CheckpointExistsError, match="unfinished save"):
        ocp.save_pytree(path, {"x": np.arange(3)})
    ocp.save_pytree(path, {"y": np.arange(2)}, overwrite=True)
    assert ocp.load(path)["y"].tolist() == [0, 1]


def test_overwrite_leaves_nothing_of_the_old_checkpoint(bucket):
    path = f"{bucket}/over"
    ocp.save_pytree(path, {"old": np.arange(300, dtype=np.int64), "s": "old"})
    before = set(keys(path))
    with pytest.raises(errors.CheckpointExistsError):
        ocp.save_pytree(path, {"new": np.arange(2)})
    assert set(keys(path)) == before
    ocp.save_pytree(path, {"new": np.arange(2)}, overwrite=True)
    after = keys(path)
    assert not [k for k in after if "old" in k or k.endswith("_strings.json")], after
    assert not set(k for k in before if "/d/" in k) & set(after)
    assert list(ocp.load(path)) == ["new"]


def test_checkpointables_and_the_direct_layout(bucket):
    ocp.save_checkpointables(f"{bucket}/step", {"state": {"a": np.arange(3)},
                                                "meta": {"note": "hi"}})
    got = ocp.load_checkpointables(f"{bucket}/step")
    assert got["meta"] == {"note": "hi"} and got["state"]["a"].tolist() == [0, 1, 2]
    assert ocp.load(f"{bucket}/step", checkpointable_name="state")["a"].tolist() == [0, 1, 2]
    with pytest.raises(errors.InvalidLayoutError, match="checkpointable_name='state'"):
        ocp.load(f"{bucket}/step")


def test_checkpointer_on_a_remote_root(bucket):
    root = f"{bucket}/run"
    policy = ocp.training.preservation_policies.LatestN(2)
    with ocp.training.Checkpointer(root, preservation_policy=policy) as ckptr:
        for step in range(4):
            ckptr.save_pytree_async(step, {"x": np.full(3, step)}, force=True)
        ckptr.wait()
        assert [c.step for c in ckptr.checkpoints] == [2, 3]
        assert ckptr.latest.step == 3
        assert ckptr.load_pytree()["x"].tolist() == [3, 3, 3]
    assert not [k for k in keys(root) if k.startswith(("0/", "1/"))]
    # A step a crashed save left (no commit file) is neither listed nor kept.
    objects.write_bytes(f"{root}/7/pytree/_METADATA", b"{}")
    with ocp.training.Checkpointer(root, read_only=True) as reader:
        assert [c.step for c in reader.checkpoints] == [2, 3]
    assert any(k.startswith("7/") for k in keys(root))
    with ocp.training.Checkpointer(root) as ckptr:
        assert [c.step for c in ckptr.checkpoints] == [2, 3]
        assert ckptr.load_pytree(2)["x"].tolist() == [2, 2, 2]
    assert not any(k.startswith("7/") for k in keys(root))


def test_unknown_schemes_are_errors_and_write_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for path in ["hdfs://cluster/x", "memory://x", "az://container/x", "s3://", "gs:///x",
                 pathlib.Path("gs://bucket/x"), "s3://bucket/../x"]:
        with pytest.raises(errors.UnsupportedPathError):
            ocp.save_pytree(path, {"x": np.arange(3)})
        with pytest.raises(errors.UnsupportedPathError):
            ocp.load(path)
        with pytest.raises(errors.UnsupportedPathError):
            ocp.training.Checkpointer(path)
    assert os.listdir(tmp_path) == []
    assert issubclass(errors.UnsupportedPathError, ValueError)


def test_a_missing_bucket_is_a_typed_error_soon(s3_server, gcs_server, monkeypatch):
    import emulators
    for name, server, env in [("s3", s3_server, emulators.s3_env),
                              ("gs", gcs_server, emulators.gcs_env)]:
        for var, value in env(server.endpoint).items():
            monkeypatch.setenv(var, value)
        path = f"{name}://no-such-bucket-{name}/x"
        start = time.monotonic()
        with pytest.raises(errors.CheckpointError, match=f"no-such-bucket-{name}"):
            ocp.save_pytree(path, {"x": np.arange(3)})
        with pytest.raises(errors.CheckpointError, match=f"no-such-bucket-{name}"):
            ocp.load(path)
        assert time.monotonic() - start < 60


def test_a_store_that_stops_mid_save_fails_it_in_bounded_time(fresh_s3_server, monkeypatch):
    import emulators
    monkeypatch.setattr(objectfile, "PART_BYTES", 1 << 20)
    emulators.create_s3_bucket(fresh_s3_server.endpoint, "going-away")
    ocp.save_pytree("s3://going-away/kept", {"x": np.arange(3)})
    big = {f"x{i}": np.full((512, 1024), i, np.float32) for i in range(24)}  # 48 MiB
    start = time.monotonic()
    response = ocp.save_pytree_async("s3://going-away/new", big)
    time.sleep(0.3)
    fresh_s3_server.kill()
    with pytest.raises(errors.StorageError, match="s3://going-away/new"):
        response.result()
    assert time.monotonic() - start < 60
    with pytest.raises(errors.StorageError, match="s3://going-away/new"):
        ocp.save_pytree("s3://going-away/new", {"x": np.arange(3)}, overwrite=True)


def test_missing_credentials_are_a_typed_error_soon(monkeypatch, tmp_path):
    import emulators
    server = emulators.start_s3(unauthenticated_requests=2)  # start-up probe, bucket
    try:
        for var, value in emulators.s3_env(server.endpoint).items():
            monkeypatch.setenv(var, value)
        emulators.create_s3_bucket(server.endpoint, "needs-credentials")
        for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
        start = time.monotonic()
        with pytest.raises(errors.StorageError, match="s3://needs-credentials/x"):
            ocp.save_pytree("s3://needs-credentials/x", {"x": np.arange(3)})
        with pytest.raises(errors.StorageError, match="s3://needs-credentials/x"):
            ocp.load("s3://needs-credentials/x")
        assert time.monotonic() - start < 60
    finally:
        server.stop()


def test_an_emulator_host_tensorstore_cannot_see_is_an_error(monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "localhost:4443")
    monkeypatch.delenv("TENSORSTORE_GCS_HTTP_URL", raising=False)
    with pytest.raises(errors.StorageError, match="TENSORSTORE_GCS_HTTP_URL=http://localhost:4443"):
        ocp.save_pytree("gs://some-bucket/x", {"x": np.arange(3)})


def test_configured_fields_reach_the_kvstore(s3_server, monkeypatch):
    import emulators
    for var, value in emulators.s3_env(s3_server.endpoint).items():
        if var != "AWS_ENDPOINT_URL_S3":
            monkeypatch.setenv(var, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    emulators.create_s3_bucket(s3_server.endpoint, "configured-bucket")
    ocp.storage.configure("s3://configured-bucket", {"endpoint": s3_server.endpoint})
    try:
        assert ocp.storage.kvstore_spec("s3://configured-bucket/x")["endpoint"] == (
            s3_server.endpoint)
        ocp.save_pytree("s3://configured-bucket/x", {"x": np.arange(3)})
        assert ocp.load("s3://configured-bucket/x")["x"].tolist() == [0, 1, 2]
        assert "endpoint" not in ocp.storage.kvstore_spec("s3://other-bucket/x")
    finally:
        ocp.storage.configure("s3://configured-bucket", None)
    with pytest.raises(errors.UnsupportedPathError):
        ocp.storage.configure("/local/dir", {})
