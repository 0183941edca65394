"""Crash safety: saves killed with SIGKILL at random moments never leave a bad checkpoint.

A child process imports orbax_v1, prints `ready`, then saves small trees in a loop and
prints `committed <index>` after each `save_pytree` returns. The parent sleeps a random
time (seeded, printed in every failure message) and kills the child with SIGKILL. Then:

* every save the child reported committed loads with exactly the values it wrote;
* the save that was in flight either does not load (a typed `CheckpointError`, no hang)
  or loads exactly the values that save would have written, never anything else;
* a sentinel checkpoint committed beside them before any trial always loads intact;
* every leftover `*.orbax-checkpoint-tmp*` entry refuses to load with
  `IncompleteCheckpointError`;
* overwrite=True saves killed mid-way: the path loads either the previous checkpoint's
  values or the new one's. The path may be missing only in the window between the two
  renames of `_commit._replace` (old moved aside, new not yet renamed in), and then only
  if the moved-aside `<path>.orbax-checkpoint-tmp-replaced-<ns>` directory still holds
  the old checkpoint intact (checked by copying it to a non-temporary name and loading
  it). `test_kill_between_overwrite_renames` hits that window deterministically.

Every leaf of the tree depends on the save's index, so a mix of two saves' files
would not compare equal to either.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import textwrap

import pytest

import orbax_v1
from orbax_v1 import errors
from crash_helpers import call_with_timeout, run_and_kill, tree_problem

TMP_SUFFIX = ".orbax-checkpoint-tmp"
REPLACED_MARK = TMP_SUFFIX + "-replaced-"
TRIALS = 20
MAX_KILL_DELAY_S = 0.25
CHILD_TIMEOUT_S = 60

# Shared by the parent (exec'd below) and the child (pasted into its script), so both
# agree on what save number `i` writes.
TREE_SOURCE = textwrap.dedent("""
    import numpy as np
    import jax.numpy as jnp

    def make_tree(i):
        return {
            "params": {
                "w": np.arange(12, dtype=np.float32).reshape(3, 4) * (i + 1) + 0.25,
                "b": np.full((5,), i, dtype=np.int64) - 3,
            },
            "jax": jnp.arange(8, dtype=jnp.int32) + 100 * i,
            "step": i,
            "lr": 0.5 + i,
            "flag": bool(i % 2),
            "name": f"save-{i}",
            "np_scalar": np.int32(7 * i + 1),
            "items": [np.array([i, -i], dtype=np.int32), f"item-{i}"],
        }
""")
_ns: dict = {}
exec(TREE_SOURCE, _ns)
make_tree = _ns["make_tree"]

CHILD_SOURCE = TREE_SOURCE + textwrap.dedent("""
    import os, signal, sys
    import orbax_v1

    mode, target_dir, start, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

    if mode == "kill-between-renames":
        # Dies (SIGKILL, no cleanup) right after `target_dir` has been renamed aside,
        # before the new checkpoint is renamed into place.
        real_rename = os.rename
        def rename(src, dst, *args, **kwargs):
            real_rename(src, dst, *args, **kwargs)
            if os.path.abspath(src) == os.path.abspath(target_dir) and "-replaced-" in str(dst):
                os.kill(os.getpid(), signal.SIGKILL)
        os.rename = rename

    print("ready", flush=True)
    for i in range(start, start + count):
        if mode == "fresh":
            orbax_v1.save_pytree(os.path.join(target_dir, f"ck_{i}"), make_tree(i))
        else:  # "overwrite", "kill-between-renames": every save replaces target_dir
            orbax_v1.save_pytree(target_dir, make_tree(i), overwrite=True)
        print(f"committed {i}", flush=True)
""")


def load_outcome(path, timeout_s=30.0):
    """('ok', tree) or ('error', exception) for a typed `CheckpointError`.

    Any other exception propagates (fails the test); a load still running after
    `timeout_s` fails the test as a hang.
    """
    try:
        return "ok", call_with_timeout(lambda: orbax_v1.load(path), f"load({path})", timeout_s)
    except errors.CheckpointError as e:
        return "error", e


def assert_loads_exactly(path, index, ctx):
    kind, got = load_outcome(path)
    assert kind == "ok", f"{ctx}: {path} (save {index}) should load but raised {got!r}"
    problem = tree_problem(make_tree(index), got)
    assert problem is None, f"{ctx}: {path} does not hold save {index}: {problem}"


def matching_index(got, candidates):
    """The candidate save index whose tree `got` equals exactly, else None."""
    for index in candidates:
        if index is not None and tree_problem(make_tree(index), got) is None:
            return index
    return None


def assert_leftovers_never_load(directory, ctx):
    for name in sorted(os.listdir(directory)):
        if TMP_SUFFIX in name:
            kind, got = load_outcome(os.path.join(directory, name))
            assert isinstance(got, errors.IncompleteCheckpointError), (
                f"{ctx}: leftover {name} must raise IncompleteCheckpointError, got {kind} {got!r}")
            with pytest.raises(errors.IncompleteCheckpointError):
                orbax_v1.load(os.path.join(directory, name), checkpointable_name=None)


def load_moved_aside_copy(moved_aside, scratch):
    """Loads a `...-replaced-<ns>` directory via a copy with a non-temporary name."""
    copy = os.path.join(scratch, "moved-aside-copy")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(moved_aside, copy)
    try:
        return load_outcome(copy)
    finally:
        shutil.rmtree(copy, ignore_errors=True)


# ---------------------------------------------------------------- child process driver

def run_child(script, mode, target_dir, start, count, *, kill_after_s):
    """Runs the child; kills it with SIGKILL `kill_after_s` after it says ready.

    `kill_after_s=None` lets it run (or die) on its own. Returns
    (returncode, committed indices in order, stderr text).
    """
    return run_and_kill([script, mode, target_dir, start, count],
                        f"{script}.{mode}.{start}.stderr", kill_after_s=kill_after_s,
                        timeout_s=CHILD_TIMEOUT_S)


@pytest.fixture
def child_script(tmp_path):
    path = tmp_path / "child.py"
    path.write_text(CHILD_SOURCE)
    return str(path)


@pytest.fixture
def seed():
    return int(os.environ.get("CRASH_TEST_SEED", random.SystemRandom().randrange(2**32)))


SENTINEL_INDEX = 99_999


# ---------------------------------------------------------------- tests

def test_kill_during_fresh_saves(tmp_path, child_script, seed):
    rng = random.Random(seed)
    ckpts = tmp_path / "ckpts"
    sentinel = ckpts / "sentinel"
    orbax_v1.save_pytree(sentinel, make_tree(SENTINEL_INDEX))
    outcomes = []
    for trial in range(TRIALS):
        start = trial * 1000
        delay = rng.uniform(0, MAX_KILL_DELAY_S)
        ctx = f"seed={seed} trial={trial} kill_after={delay:.3f}s"
        rc, committed, err = run_child(child_script, "fresh", ckpts, start, 500,
                                       kill_after_s=delay)
        ctx += f" committed={committed}"
        assert rc == -signal.SIGKILL, f"{ctx}: child was not killed mid-run (rc={rc})\n{err}"
        assert committed == list(range(start, start + len(committed))), ctx

        for index in committed:
            assert_loads_exactly(ckpts / f"ck_{index}", index, ctx)
        in_flight = start + len(committed)
        kind, got = load_outcome(ckpts / f"ck_{in_flight}")
        if kind == "ok":
            problem = tree_problem(make_tree(in_flight), got)
            assert problem is None, f"{ctx}: in-flight ck_{in_flight} loads wrong values: {problem}"
        outcomes.append(f"{len(committed)}:{kind}")
        # Nothing past the in-flight save was started.
        assert not (ckpts / f"ck_{in_flight + 1}").exists(), ctx
        assert_loads_exactly(sentinel, SENTINEL_INDEX, ctx)
        assert_leftovers_never_load(ckpts, ctx)
    print(f"seed={seed}: in-flight save outcomes {outcomes}")


def test_kill_during_overwrite_saves(tmp_path, child_script, seed):
    rng = random.Random(seed)
    ckpts = tmp_path / "ckpts"
    sentinel = ckpts / "sentinel"
    target = ckpts / "target"
    orbax_v1.save_pytree(sentinel, make_tree(SENTINEL_INDEX))
    orbax_v1.save_pytree(target, make_tree(0))
    current = 0  # the save index `target` holds now (None: nothing at `target`)
    outcomes = []
    for trial in range(TRIALS):
        start = (trial + 1) * 1000
        delay = rng.uniform(0, MAX_KILL_DELAY_S)
        ctx = f"seed={seed} trial={trial} kill_after={delay:.3f}s old={current}"
        rc, committed, err = run_child(child_script, "overwrite", target, start, 500,
                                       kill_after_s=delay)
        ctx += f" committed={committed}"
        assert rc == -signal.SIGKILL, f"{ctx}: child was not killed mid-run (rc={rc})\n{err}"
        assert committed == list(range(start, start + len(committed))), ctx

        old = committed[-1] if committed else current  # last save known to be committed
        new = start + len(committed)  # the save in flight when killed
        kind, got = load_outcome(target)
        if kind == "ok":
            current = matching_index(got, [old, new])
            assert current is not None, (
                f"{ctx}: {target} loads neither save {old} nor save {new}: "
                f"{tree_problem(make_tree(old), got) if old is not None else got}")
            outcomes.append(f"{len(committed)}:" + ("old" if current == old else "new"))
        else:
            assert isinstance(got, errors.CheckpointNotFoundError) and not target.exists(), (
                f"{ctx}: {target} exists but does not load: {got!r}")
            if old is not None:
                # Only the window between the two renames leaves nothing at `target`;
                # the old checkpoint must then be intact in the moved-aside directory.
                moved = sorted((p for p in os.listdir(ckpts)
                                if p.startswith("target" + REPLACED_MARK)),
                               key=lambda p: int(p.rsplit("-", 1)[1]))
                assert moved, f"{ctx}: {target} is gone and no moved-aside copy exists"
                m_kind, m_got = load_moved_aside_copy(ckpts / moved[-1], tmp_path)
                assert m_kind == "ok", f"{ctx}: moved-aside {moved[-1]} is damaged: {m_got!r}"
                problem = tree_problem(make_tree(old), m_got)
                assert problem is None, f"{ctx}: moved-aside {moved[-1]} is not save {old}: {problem}"
            current = None
            outcomes.append(f"{len(committed)}:missing")
        assert_loads_exactly(sentinel, SENTINEL_INDEX, ctx)
        assert_leftovers_never_load(ckpts, ctx)
    print(f"seed={seed}: overwrite outcomes {outcomes}")


def test_kill_between_overwrite_renames(tmp_path, child_script):
    """SIGKILL right after the old checkpoint is renamed aside, before the new one lands.

    Asserted: the path loads the old or the new values; or nothing is at the path, the
    moved-aside directory still holds the old checkpoint intact (it never loads under
    its temporary name), and the new one waits complete in `<path>.orbax-checkpoint-tmp`
    (which never loads either).
    """
    ckpts = tmp_path / "ckpts"
    sentinel = ckpts / "sentinel"
    target = ckpts / "target"
    orbax_v1.save_pytree(sentinel, make_tree(SENTINEL_INDEX))
    orbax_v1.save_pytree(target, make_tree(1))
    rc, committed, err = run_child(child_script, "kill-between-renames", target, 2, 1,
                                   kill_after_s=None)
    if rc == 0:  # the implementation no longer moves the old checkpoint aside by rename
        assert committed == [2]
        assert_loads_exactly(target, 2, "child finished")
    else:
        assert rc == -signal.SIGKILL and committed == [], f"rc={rc} committed={committed}\n{err}"
        kind, got = load_outcome(target)
        if kind == "ok":
            assert matching_index(got, [1, 2]) is not None, tree_problem(make_tree(1), got)
        else:
            assert isinstance(got, errors.CheckpointNotFoundError), repr(got)
            assert not target.exists()
            moved = [p for p in os.listdir(ckpts) if p.startswith("target" + REPLACED_MARK)]
            assert len(moved) == 1, os.listdir(ckpts)
            m_kind, m_got = load_moved_aside_copy(ckpts / moved[0], tmp_path)
            assert m_kind == "ok", f"moved-aside old checkpoint is damaged: {m_got!r}"
            assert tree_problem(make_tree(1), m_got) is None, tree_problem(make_tree(1), m_got)
            # The complete new save is left under the temporary name; it too never loads.
            tmp_kind, tmp_got = load_moved_aside_copy(ckpts / ("target" + TMP_SUFFIX), tmp_path)
            assert tmp_kind == "ok" and tree_problem(make_tree(2), tmp_got) is None
    assert_loads_exactly(sentinel, SENTINEL_INDEX, "after kill between renames")
    assert_leftovers_never_load(ckpts, "after kill between renames")
