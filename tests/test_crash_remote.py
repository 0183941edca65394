"""Crash safety on an object store: saves to s3:// killed with SIGKILL at random moments.

The child of tests/test_crash.py saves to a moto S3 server instead of a local disk (the
environment it inherits points TensorStore at the emulator). An object store has no
rename, so a save writes in place and `commit_success.txt` last; an overwrite first
removes the old checkpoint's commit file, then its objects. After each kill:

* every save the child reported committed loads exactly;
* the target of an overwrite loads exactly the old or the new save, or raises a typed
  `CheckpointError` (nothing loadable), never a mixture and never a hang;
* the save in flight in a fresh directory loads exactly or raises a typed error;
* a sentinel checkpoint committed before any trial always loads intact.

Seeded; the seed and the kill delay are in every failure message.
"""

from __future__ import annotations

import random
import signal

import pytest

import orbax_v1
from orbax_v1 import errors
from crash_helpers import run_and_kill, tree_problem
from test_crash import CHILD_SOURCE, load_outcome, make_tree, matching_index

TRIALS = 10
MAX_KILL_DELAY_S = 0.6
CHILD_TIMEOUT_S = 90
SENTINEL_INDEX = 99


@pytest.fixture
def child(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD_SOURCE)
    return script


def kill_a_child(tmp_path, script, mode, target, trial, rng, ctx):
    """Runs the child's saves (`mode`) to `target` until a random SIGKILL; returns the
    first save's number, those it reported committed, and the failure context."""
    start, delay = (trial + 1) * 1000, rng.uniform(0.05, MAX_KILL_DELAY_S)
    ctx = f"{ctx} trial={trial} kill_after={delay:.3f}s"
    rc, committed, err = run_and_kill([script, mode, target, start, 1000],
                                      tmp_path / "child.err", kill_after_s=delay,
                                      timeout_s=CHILD_TIMEOUT_S, ctx=ctx)
    ctx += f" committed={committed}"
    assert rc == -signal.SIGKILL, f"{ctx}: child was not killed mid-run (rc={rc})\n{err}"
    return start, committed, ctx


def assert_exact(path, index, ctx):
    kind, got = load_outcome(path)
    assert kind == "ok", f"{ctx}: {path} (save {index}) should load but raised {got!r}"
    problem = tree_problem(make_tree(index), got)
    assert problem is None, f"{ctx}: {path} does not hold save {index}: {problem}"


@pytest.mark.parametrize("seed", [20261204])
def test_kill_during_overwrite_saves_to_s3(tmp_path, s3_bucket, child, seed):
    rng = random.Random(seed)
    sentinel, target = f"{s3_bucket}/sentinel", f"{s3_bucket}/target"
    orbax_v1.save_pytree(sentinel, make_tree(SENTINEL_INDEX))
    orbax_v1.save_pytree(target, make_tree(0))
    current = 0
    outcomes = []
    for trial in range(TRIALS):
        start, committed, ctx = kill_a_child(tmp_path, child, "overwrite", target, trial, rng,
                                             f"seed={seed} old={current}")
        old = committed[-1] if committed else current
        new = start + len(committed)
        kind, got = load_outcome(target)
        if kind == "ok":
            current = matching_index(got, [old, new])
            assert current is not None, (
                f"{ctx}: {target} loads neither save {old} nor save {new}: "
                f"{tree_problem(make_tree(old), got) if old is not None else got}")
            outcomes.append("old" if current == old else "new")
        else:
            assert isinstance(got, (errors.IncompleteCheckpointError,
                                    errors.CheckpointNotFoundError)), f"{ctx}: {got!r}"
            current = None
            outcomes.append("nothing")
        assert_exact(sentinel, SENTINEL_INDEX, ctx)
    print("outcomes:", outcomes)


@pytest.mark.parametrize("seed", [4122026])
def test_kill_during_fresh_saves_to_s3(tmp_path, s3_bucket, child, seed):
    rng = random.Random(seed)
    root, sentinel = f"{s3_bucket}/fresh", f"{s3_bucket}/sentinel"
    orbax_v1.save_pytree(sentinel, make_tree(SENTINEL_INDEX))
    for trial in range(TRIALS):
        start, committed, ctx = kill_a_child(tmp_path, child, "fresh", root, trial, rng,
                                             f"seed={seed}")
        for index in committed:
            assert_exact(f"{root}/ck_{index}", index, ctx)
        in_flight = f"{root}/ck_{start + len(committed)}"
        kind, got = load_outcome(in_flight)
        if kind == "ok":
            assert tree_problem(make_tree(start + len(committed)), got) is None, ctx
        else:
            assert isinstance(got, (errors.IncompleteCheckpointError,
                                    errors.CheckpointNotFoundError)), f"{ctx}: {got!r}"
        assert_exact(sentinel, SENTINEL_INDEX, ctx)
