"""The cyclic garbage collector is paused while a save or load walks a tree, and is
left exactly as the caller had it afterwards, whatever happens."""

import gc
import threading

import numpy as np
import pytest

import orbax_v1 as ocp
from orbax_v1 import _gcpause, _pytree


@pytest.fixture(autouse=True)
def restore_gc():
    was = gc.isenabled()
    yield
    gc.enable() if was else gc.disable()


def test_paused_nests_and_resumes_only_at_the_end():
    gc.enable()
    with _gcpause.paused():
        assert not gc.isenabled()
        with _gcpause.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_the_caller_turned_off_stays_off():
    gc.disable()
    with _gcpause.paused():
        pass
    assert not gc.isenabled()


def test_resumes_after_an_exception():
    gc.enable()
    with pytest.raises(ValueError), _gcpause.paused():
        raise ValueError("boom")
    assert gc.isenabled()


def test_overlapping_pauses_in_two_threads_resume_once_both_end():
    gc.enable()
    inside, release = threading.Event(), threading.Event()

    def other():
        with _gcpause.paused():
            inside.set()
            release.wait(10)

    t = threading.Thread(target=other)
    t.start()
    inside.wait(10)
    with _gcpause.paused():
        pass
    assert not gc.isenabled()  # the other thread's pause is still running
    release.set()
    t.join()
    assert gc.isenabled()


def test_save_and_load_run_paused_and_resume(tmp_path, monkeypatch):
    gc.enable()
    seen = []
    real_flatten = _pytree.flatten  # called inside the (paused) plan
    monkeypatch.setattr(_pytree, "flatten",
                        lambda tree: seen.append(gc.isenabled()) or real_flatten(tree))
    ocp.save_pytree(tmp_path / "c", {"a": np.ones(3)})
    assert seen == [False] and gc.isenabled()
    np.testing.assert_array_equal(ocp.load(tmp_path / "c")["a"], np.ones(3))
    assert gc.isenabled()
