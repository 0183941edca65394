"""training.Checkpointer: saving a series of steps, policies, errors, listing, loading."""

import os
import threading

import numpy as np
import pytest

import orbax_v1 as ocp
from orbax_v1 import training
from orbax_v1.training import errors
from orbax_v1.training import preservation_policies as pp
from orbax_v1.training import save_decision_policies as sdp


def tree(step):
    return {"w": np.full(4, step, np.float32), "step": step}


def steps(ckptr):
    return [c.step for c in ckptr.checkpoints]


def test_saves_lists_and_loads(tmp_path):
    with training.Checkpointer(tmp_path, custom_metadata={"run": "a"}) as ckptr:
        assert ckptr.latest is None
        for step in range(3):
            assert ckptr.save_pytree(step, tree(step), metrics={"loss": 1.0 / (step + 1)},
                                     force=True)
        assert steps(ckptr) == [0, 1, 2]
        assert ckptr.latest.step == 2 and ckptr.latest.metrics == {"loss": 1 / 3}
        assert ckptr.latest.commit_timestamp is not None
        assert ckptr.load_pytree()["step"] == 2
        assert ckptr.load_pytree(1)["w"].tolist() == [1.0] * 4
        assert ckptr.load_pytree(ckptr.checkpoints[0])["step"] == 0
        meta = ckptr.metadata(1)
        assert meta.step == 1 and meta.metrics == {"loss": 0.5}
        assert meta.metadata["w"].shape == (4,)
        assert sorted(ckptr.checkpointables_metadata(2).metadata) == ["pytree"]
        assert ckptr.root_metadata().custom_metadata == {"run": "a"}
    assert sorted(os.listdir(tmp_path)) == ["0", "1", "2", "metadata"]
    # Each step is an ordinary checkpoint the free functions load.
    assert ocp.load(tmp_path / "2")["step"] == 2


def test_default_policy_saves_when_idle_and_never_goes_back(tmp_path):
    with training.Checkpointer(tmp_path) as ckptr:
        assert ckptr.should_save(5)
        assert ckptr.save_pytree(5, tree(5))
        assert not ckptr.should_save(5) and not ckptr.should_save(3)
        assert ckptr.save_pytree(3, tree(3)) is False  # older than latest: skipped
        assert ckptr.save_pytree(6, tree(6))
        assert steps(ckptr) == [5, 6]


def test_fixed_interval_and_latest_n_keep_the_newest(tmp_path):
    with training.Checkpointer(tmp_path, save_decision_policy=sdp.FixedIntervalPolicy(2),
                               preservation_policy=pp.LatestN(2)) as ckptr:
        saved = [s for s in range(9) if ckptr.save_pytree(s, tree(s))]
        assert saved == [0, 2, 4, 6, 8]
        assert steps(ckptr) == [6, 8]


def test_best_n_never_evicts_the_resume_point(tmp_path):
    best = pp.BestN(get_metric_fn=lambda m: m["loss"], reverse=True, n=1)
    with training.Checkpointer(tmp_path, preservation_policy=best) as ckptr:
        for step, loss in [(0, 1.0), (1, 5.0), (2, 6.0)]:
            ckptr.save_pytree(step, tree(step), metrics={"loss": loss}, force=True)
            assert ckptr.latest.step == step  # the newest always survives
        assert steps(ckptr) == [0, 2]


def test_existing_step_needs_force(tmp_path):
    with training.Checkpointer(tmp_path) as ckptr:
        ckptr.save_pytree(1, tree(1))
        with pytest.raises(errors.StepAlreadyExistsError, match="force=True") as info:
            ckptr.save_pytree(1, tree(7))
        assert isinstance(info.value, FileExistsError)
        assert ckptr.load_pytree(1)["step"] == 1
        assert ckptr.save_pytree(1, tree(7), force=True)
        assert ckptr.load_pytree(1)["step"] == 7 and steps(ckptr) == [1]


def test_step_already_exists_without_force(tmp_path):
    with training.Checkpointer(tmp_path, save_decision_policy=sdp.FixedIntervalPolicy(1)) as a:
        a.save_pytree(1, tree(1))
    os.makedirs(tmp_path / "2")  # a step directory another process committed meanwhile
    with training.Checkpointer(tmp_path, save_decision_policy=sdp.FixedIntervalPolicy(1)) as b:
        b._infos = b._infos[:1]  # this process has not seen step 2 yet
        with pytest.raises(errors.StepAlreadyExistsError, match="force=True"):
            b.save_pytree(2, tree(2))


def test_missing_steps_and_empty_roots(tmp_path):
    with training.Checkpointer(tmp_path) as ckptr:
        with pytest.raises(errors.StepNotFoundError, match="no checkpoints were found"):
            ckptr.load_pytree()
        ckptr.save_pytree(0, tree(0))
        with pytest.raises(errors.StepNotFoundError, match=r"step 4.*steps: \[0\]") as info:
            ckptr.load_pytree(4)
        assert isinstance(info.value, FileNotFoundError)
        with pytest.raises(errors.StepNotFoundError):
            ckptr.delete(4)


def test_delete_and_reload(tmp_path):
    with training.Checkpointer(tmp_path) as a:
        for s in range(3):
            a.save_pytree(s, tree(s), force=True)
        a.delete(1)
        assert steps(a) == [0, 2] and sorted(os.listdir(tmp_path)) == ["0", "2"]
        b = training.Checkpointer(tmp_path)
        b.save_pytree(3, tree(3))
        assert steps(a) == [0, 2]
        a.reload()
        assert steps(a) == [0, 2, 3]


def test_open_removes_only_temporary_directories(tmp_path):
    (tmp_path / "4.orbax-checkpoint-tmp").mkdir()
    (tmp_path / "5.orbax-checkpoint-tmp-1234").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "x.orbax-checkpoint-tmp.txt").write_text("a file, not a save")
    training.Checkpointer(tmp_path, read_only=True)
    assert len(os.listdir(tmp_path)) == 4  # read-only touches nothing
    with training.Checkpointer(tmp_path) as ckptr:
        assert steps(ckptr) == []
    assert sorted(os.listdir(tmp_path)) == ["notes", "x.orbax-checkpoint-tmp.txt"]


def test_read_only_refuses_writes(tmp_path):
    training.Checkpointer(tmp_path).save_pytree(0, tree(0))
    ro = training.Checkpointer(tmp_path, read_only=True)
    assert not ro.should_save(1)
    with pytest.raises(errors.ReadOnlyError):
        ro.save_pytree(1, tree(1), force=True)
    with pytest.raises(errors.ReadOnlyError):
        ro.delete(0)
    assert ro.load_pytree(0)["step"] == 0


def test_step_name_formats(tmp_path):
    fmt = training.standard_name_format(step_prefix="step", step_format_fixed_length=4)
    assert (fmt.build_name(23), fmt.parse("step_0023"), fmt.parse("step_12345")) == (
        "step_0023", 23, 12345)
    assert fmt.parse("0023") is None and fmt.parse("step_023") is None
    with training.Checkpointer(tmp_path, step_name_format=fmt) as ckptr:
        ckptr.save_pytree(7, tree(7))
        assert os.listdir(tmp_path) == ["step_0007"]
        assert steps(training.Checkpointer(tmp_path, step_name_format=fmt)) == [7]
    assert steps(training.Checkpointer(tmp_path)) == []  # another format sees no steps


def test_async_saves_are_one_at_a_time_and_continuous_policy_skips(tmp_path, monkeypatch):
    from orbax_v1 import _pytree_save
    gate = threading.Event()
    real_write = _pytree_save.write_local
    monkeypatch.setattr(_pytree_save, "write_local",
                        lambda *a, **k: (gate.wait(30), real_write(*a, **k)))
    with training.Checkpointer(tmp_path) as ckptr:  # default: continuous checkpointing
        first = ckptr.save_pytree_async(0, tree(0))
        assert ckptr.is_saving_in_progress()
        skipped = ckptr.save_pytree_async(1, tree(1))  # a save is in flight: skipped
        assert skipped.done() and skipped.result() is False
        gate.set()
        assert first.result(timeout=60) is True
        assert ckptr.save_pytree_async(2, tree(2)).result(timeout=60) is True
        assert steps(ckptr) == [0, 2]


def test_background_errors_surface_on_result_next_save_and_close(tmp_path, monkeypatch):
    from orbax_v1 import _pytree_save

    def boom(*a, **k):
        raise OSError("disk full")

    ckptr = training.Checkpointer(tmp_path, save_decision_policy=sdp.FixedIntervalPolicy(1))
    with monkeypatch.context() as m:
        m.setattr(_pytree_save, "write_local", boom)
        response = ckptr.save_pytree_async(0, tree(0))
        with pytest.raises(OSError, match="disk full"):
            response.result(timeout=60)
        ckptr.save_pytree_async(1, tree(1))
        with pytest.raises(OSError, match="disk full"):
            ckptr.save_pytree(2, tree(2))  # the next save reports the previous failure
        ckptr.save_pytree_async(3, tree(3))
        with pytest.raises(OSError, match="disk full"):
            ckptr.close()
    assert steps(training.Checkpointer(tmp_path)) == []
    assert os.listdir(tmp_path) == []
    with pytest.raises(errors.CheckpointerClosedError):
        ckptr.save_pytree(4, tree(4))


def test_close_waits_for_the_pending_save(tmp_path, monkeypatch):
    from orbax_v1 import _pytree_save
    real_write = _pytree_save.write_local
    gate = threading.Event()
    monkeypatch.setattr(_pytree_save, "write_local", lambda *a, **k: (gate.wait(30), real_write(*a, **k)))
    with training.Checkpointer(tmp_path) as ckptr:
        ckptr.save_pytree_async(0, tree(0))
        threading.Timer(0.2, gate.set).start()
    assert steps(training.Checkpointer(tmp_path)) == [0]


def test_caller_may_mutate_after_async_save_returns(tmp_path):
    state = {"w": np.zeros(1000, np.float32)}
    with training.Checkpointer(tmp_path) as ckptr:
        ckptr.save_pytree_async(0, state)
        state["w"][:] = 1.0
    assert training.Checkpointer(tmp_path).load_pytree(0)["w"].max() == 0.0
