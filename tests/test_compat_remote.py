"""compat_v0 on object stores: v0 call sites with gs:// and s3:// directories."""

import numpy as np
import pytest

import compat_v0 as ocp
import orbax_v1
from orbax_v1._storage import objects


@pytest.fixture(params=["s3", "gcs"])
def bucket(request):
    return request.getfixturevalue(f"{request.param}_bucket")


def tree(step):
    return {"w": np.arange(6, dtype=np.float32).reshape(2, 3) + step, "n": step}


def test_checkpoint_manager_on_a_remote_root(bucket):
    root = f"{bucket}/run"
    options = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=True)
    with ocp.CheckpointManager(root, options=options) as mngr:
        for step in range(4):
            mngr.save(step, args=ocp.args.StandardSave(tree(step)))
        mngr.wait_until_finished()
        assert list(mngr.all_steps()) == [2, 3] and mngr.latest_step() == 3
        got = mngr.restore(3, args=ocp.args.StandardRestore(tree(0)))
        np.testing.assert_array_equal(got["w"], tree(3)["w"])
        assert str(mngr.directory) == root
    keys = objects.list_keys(root)
    assert not [k for k in keys if k.startswith(("0/", "1/"))]
    assert "3/commit_success.txt" in keys and "3/default/_METADATA" in keys
    assert "3/orbax.checkpoint" not in keys  # a v0 layout has no v1 marker
    with ocp.CheckpointManager(root, options=ocp.CheckpointManagerOptions(read_only=True)) as m:
        assert list(m.all_steps()) == [2, 3]
        assert m.restore(2)["n"] == 2


def test_composite_items_and_json_on_a_remote_root(bucket):
    root = f"{bucket}/items"
    with ocp.CheckpointManager(root, item_names=("state", "meta")) as mngr:
        mngr.save(1, args=ocp.args.Composite(state=ocp.args.StandardSave(tree(1)),
                                             meta=ocp.args.JsonSave({"lr": 0.1})))
        mngr.wait_until_finished()
        got = mngr.restore(1)
        assert got.meta == {"lr": 0.1} and got.state["n"] == 1


def test_checkpointers_on_a_remote_path(bucket):
    path = f"{bucket}/direct"
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(path, tree(5))
    ckptr.wait_until_finished()
    assert ckptr.restore(path)["n"] == 5
    with pytest.raises(FileExistsError):
        ckptr.save(path, tree(6))
    json_ckptr = ocp.Checkpointer(ocp.JsonCheckpointHandler())
    json_ckptr.save(f"{bucket}/json", {"a": 1})
    assert json_ckptr.restore(f"{bucket}/json") == {"a": 1}
    assert "commit_success.txt" in objects.list_keys(f"{bucket}/json")
    # an unfinished prefix is refused, as v0 refuses a temporary directory
    objects.delete(f"{path}/commit_success.txt")
    with pytest.raises(orbax_v1.errors.IncompleteCheckpointError):
        ckptr.restore(path)


def test_unknown_schemes_are_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(orbax_v1.errors.UnsupportedPathError):
        ocp.CheckpointManager("hdfs://cluster/run")
    with pytest.raises(orbax_v1.errors.UnsupportedPathError):
        ocp.StandardCheckpointer().save("az://c/x", tree(0))
    assert list(tmp_path.iterdir()) == []
