"""Robustness of `orbax_v1.training.Checkpointer`: SIGKILL mid-run, and a model-based test.

1. `test_sigkill_during_async_saves`: a child process runs a small training loop over one
   root (the preservation policy and save decision set-up drawn per trial), calling
   `save_pytree_async` every step with values that are a function of the step, and
   prints `committed <step>` only once that save's `.result()` returned True (right
   away, or after the next save call, which waits for it). The parent kills it with
   SIGKILL at a random moment (seeded: `CHECKPOINTER_CRASH_SEED` overrides; the seed is
   in every failure message), then checks, with a read-only Checkpointer first:

   * every listed step loads exactly `make_tree(step)` and lists `metrics_for(step)`;
   * the listed steps lie between what the policy must still keep and what may still be
     there: simulating the policy (plus "the newest is never deleted") over the steps
     known before the trial and the reported commits gives `state`, whose every step
     must be listed and outside of which only unreported commits (the save in flight
     when killed, or the one just before it) may be listed; simulating those too gives
     the minimum. With LatestN older committed steps are legitimately gone;
   * a read-only Checkpointer deletes no leftover; a writable one (opened by the
     parent in some trials, by the next child otherwise, so crash leftovers meet a
     running Checkpointer) leaves no `*.orbax-checkpoint-tmp*` entry behind.

2. `TestCheckpointerMachine`: a hypothesis `RuleBasedStateMachine` that saves (sync and
   async), replaces with force, deletes, reloads and closes/reopens, under a
   preservation policy drawn per run; a model in this file re-implements each policy's
   rule (plus "the newest committed step is never deleted"), applied after each commit.
   After every rule, once no save is pending, the listed steps, their metrics, the step
   directories on disk and the loaded values must match the model.

3. `test_saving_an_existing_step_raises_without_force`: the documented
   `StepAlreadyExistsError` for an existing step (the latest or an older one).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import tempfile
import textwrap
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from orbax_v1.training import Checkpointer, errors
from crash_helpers import call_with_timeout, run_and_kill, tree_problem
from orbax_v1.training import preservation_policies as pp
from orbax_v1.training import save_decision_policies as sdp

TMP_MARK = ".orbax-checkpoint-tmp"
TIMEOUT_S = 60

# ---------------------------------------------------------------- shared tree recipe

# Shared by the parent (exec'd below) and the child (pasted into its script).
TREE_SOURCE = textwrap.dedent("""
    import numpy as np
    import jax.numpy as jnp

    def make_tree(step, version=0):
        k = step * 7 + version
        return {
            "params": {
                "w": np.arange(6, dtype=np.float32).reshape(2, 3) * (k + 1) + 0.25,
                "b": np.full((3,), k, dtype=np.int64) - 5,
            },
            "jax": jnp.arange(4, dtype=jnp.int32) + 100 * k,
            "step": step,
            "version": version,
            "name": f"step-{step}-v{version}",
        }

    def metrics_for(step):
        return {"loss": 1.0 / (step + 1), "step": step}
""")
_ns: dict = {}
exec(TREE_SOURCE, _ns)
make_tree = _ns["make_tree"]
metrics_for = _ns["metrics_for"]


def assert_step_loads(ckpt, step, version, ctx):
    got = call_with_timeout(lambda: ckpt.load_pytree(step), f"{ctx}: load_pytree({step})")
    problem = tree_problem(make_tree(step, version), got)
    assert problem is None, f"{ctx}: step {step} does not hold its saved values: {problem}"


def tmp_entries(root) -> set[str]:
    return {name for name in os.listdir(root) if TMP_MARK in name}


def step_dirs_on_disk(root) -> list[int]:
    return sorted(int(n) for n in os.listdir(root)
                  if n.isdigit() and os.path.isdir(os.path.join(root, n)))


# ================================================================ 1. SIGKILL test

CRASH_TRIALS = 20
MAX_KILL_DELAY_S = 0.5
STEPS_PER_TRIAL = 1000  # far more than a child gets through before it is killed

CHILD_SOURCE = TREE_SOURCE + textwrap.dedent("""
    import sys
    import orbax_v1
    from orbax_v1.training import Checkpointer
    from orbax_v1.training import preservation_policies as pp
    from orbax_v1.training import save_decision_policies as sdp

    root, start, count, preserve, decide, wait_mode, warmup = sys.argv[1:8]
    start, count = int(start), int(count)
    orbax_v1.save_pytree(warmup, make_tree(start))  # first-save costs paid before "ready"
    preservation = {"latest3": pp.LatestN(3), "all": pp.PreserveAll(),
                    "every4": pp.EveryNSteps(4)}[preserve]
    decision = sdp.FixedIntervalPolicy(1) if decide == "interval1" else None
    force = decide == "force"

    with Checkpointer(root, preservation_policy=preservation,
                      save_decision_policy=decision) as ckpt:
        print("ready", flush=True)
        previous = None
        for step in range(start, start + count):
            sum(i * i for i in range(3000))  # a little "training"
            response = ckpt.save_pytree_async(step, make_tree(step),
                                              metrics=metrics_for(step), force=force)
            if previous is not None:
                # The save call above waited for the previous save: it is done now.
                assert previous[1].result(timeout=0) is True, previous
                print(f"committed {previous[0]}", flush=True)
                previous = None
            if wait_mode == "result" or (wait_mode == "mixed" and step % 3 == 0):
                assert response.result(timeout=60) is True
                print(f"committed {step}", flush=True)
            else:
                previous = (step, response)
    print("finished", flush=True)
""")


def keep_rule(preserve: str):
    """The preservation rule, re-implemented: steps -> the steps kept (newest always)."""
    def keep(steps):
        steps = sorted(steps)
        if not steps:
            return set()
        if preserve == "latest3":
            kept = set(steps[-3:])
        elif preserve == "every4":
            kept = {s for s in steps if s % 4 == 0}
        else:
            kept = set(steps)
        return kept | {steps[-1]}
    return keep


def run_child(script, root, start, count, preserve, decide, wait_mode, *, kill_after_s, ctx):
    """Runs the child; SIGKILLs it `kill_after_s` after it says ready.

    Returns (returncode, committed steps in order, stderr text).
    """
    return run_and_kill([script, root, start, count, preserve, decide, wait_mode,
                         f"{script}.{start}.warmup"], f"{script}.{start}.stderr",
                        kill_after_s=kill_after_s, timeout_s=TIMEOUT_S, ctx=ctx)


@pytest.fixture
def crash_seed():
    return int(os.environ.get("CHECKPOINTER_CRASH_SEED",
                              random.SystemRandom().randrange(2**32)))


def test_sigkill_during_async_saves(tmp_path, crash_seed):
    seed = crash_seed
    rng = random.Random(seed)
    script = tmp_path / "child.py"
    script.write_text(CHILD_SOURCE)
    root = tmp_path / "run"
    known: set[int] = set()  # the steps listed after the previous trial
    verified: set[int] = set()  # steps already loaded and compared once
    leftovers: set[str] = set()  # tmp entries left for the next child to clean
    log = []
    for trial in range(CRASH_TRIALS):
        start = (trial + 1) * 10_000
        preserve = rng.choice(["latest3", "latest3", "all", "every4"])
        decide = rng.choice(["interval1", "force"])
        wait_mode = rng.choice(["result", "next", "mixed"])
        delay = rng.choice([rng.uniform(0, 0.03), rng.uniform(0, MAX_KILL_DELAY_S),
                            rng.uniform(0.1, MAX_KILL_DELAY_S)])
        ctx = (f"seed={seed} trial={trial} policy={preserve} decide={decide} "
               f"wait={wait_mode} kill_after={delay:.3f}s")
        rc, reported, err = run_child(script, root, start, STEPS_PER_TRIAL, preserve, decide,
                                      wait_mode, kill_after_s=delay, ctx=ctx)
        ctx += f" reported={reported[:3]}..{reported[-3:]} ({len(reported)})"
        assert rc == -signal.SIGKILL, f"{ctx}: child was not killed mid-run (rc={rc})\n{err}"
        assert reported == list(range(start, start + len(reported))), ctx

        # The child's Checkpointer (opened before "ready") removed the previous leftovers.
        assert not leftovers & tmp_entries(root), (
            f"{ctx}: the child's Checkpointer left the previous crash's leftovers "
            f"{sorted(leftovers & tmp_entries(root))}")

        before_ro = tmp_entries(root)
        with Checkpointer(root, read_only=True) as ro:
            listed = [c.step for c in ro.checkpoints]
            ctx += f" listed={listed}"
            assert tmp_entries(root) == before_ro, f"{ctx}: a read-only open deleted leftovers"
            assert listed == sorted(set(listed)), ctx
            assert (ro.latest.step if ro.latest else None) == (listed[-1] if listed else None)

            # Between what the policy must keep and what may still be there.
            keep = keep_rule(preserve)
            state = set(known)
            for step in reported:  # each reported save finished, its pruning included
                state = keep(state | {step})
            unreported = sorted(s for s in listed if s >= start and s not in reported)
            last = reported[-1] if reported else start - 1
            assert set(unreported) <= {last + 1, last + 2}, (
                f"{ctx}: listed steps {unreported} were never started before the kill")
            minimum = set(state)
            for step in unreported:  # committed, their pruning maybe cut short
                minimum = keep(minimum | {step})
            missing = sorted(minimum - set(listed))
            assert not missing, f"{ctx}: committed steps the policy keeps are gone: {missing}"
            extra = sorted(set(listed) - state - set(unreported))
            assert not extra, (
                f"{ctx}: steps listed that were never committed or should have been "
                f"deleted before the kill: {extra}")
            if reported or unreported:
                assert listed[-1] == max(reported + unreported), ctx

            for info in ro.checkpoints:
                assert info.metrics == metrics_for(info.step), (
                    f"{ctx}: step {info.step} metrics {info.metrics!r}")
            new = [s for s in listed if s not in verified]
            old = [s for s in listed if s in verified]
            to_load = new + rng.sample(old, min(3, len(old)))
            if trial == CRASH_TRIALS - 1:
                to_load = listed
            for step in to_load:
                assert_step_loads(ro, step, 0, ctx)
            verified |= set(new)

        known = set(listed)
        leftovers = tmp_entries(root)
        if trial == CRASH_TRIALS - 1 or rng.random() < 0.5:
            # A writable Checkpointer cleans the crash's leftovers and lists the same.
            with Checkpointer(root) as rw:
                assert [c.step for c in rw.checkpoints] == listed, ctx
                remaining = tmp_entries(root)
                assert not remaining, f"{ctx}: leftovers after reopen: {sorted(remaining)}"
            leftovers = set()
        deleting = sum("-deleting-" in name for name in before_ro)
        log.append(f"{preserve}:{len(reported)}+{len(unreported)}:"
                   f"{len(before_ro) - deleting}s{deleting}d")
    print(f"seed={seed}: trials (policy:reported+unreported:leftovers of saves/deletions) "
          f"{log}")


# ================================================================ 2. model-based test

def _policy_from_spec(spec):
    kind = spec[0]
    if kind == "PreserveAll":
        return pp.PreserveAll()
    if kind == "LatestN":
        return pp.LatestN(spec[1])
    if kind == "EveryNSteps":
        return pp.EveryNSteps(spec[1])
    if kind == "CustomSteps":
        return pp.CustomSteps(sorted(spec[1]))
    if kind == "BestN":
        return pp.BestN(get_metric_fn=lambda m: m["loss"], n=spec[1], reverse=spec[2])
    raise AssertionError(spec)


def _model_keep(spec, entries: dict) -> set[int]:
    """The steps `spec` keeps among `entries` (step -> (version, metrics)), newest always."""
    steps = sorted(entries)
    if not steps:
        return set()
    kind = spec[0]
    if kind == "PreserveAll":
        kept = set(steps)
    elif kind == "LatestN":
        kept = set(steps[-spec[1]:])
    elif kind == "EveryNSteps":
        kept = {s for s in steps if s % spec[1] == 0}
    elif kind == "CustomSteps":
        kept = {s for s in steps if s in spec[1]}
    elif kind == "BestN":
        _, n, reverse = spec
        without = {s for s in steps if entries[s][1] is None}
        scored = sorted((entries[s][1]["loss"], s) for s in steps if s not in without)
        # reverse=True keeps the n smallest values (a loss); reverse=False the n largest.
        best = scored[:n] if reverse else scored[max(0, len(scored) - n):]
        kept = without | {s for _, s in best}
    else:
        raise AssertionError(spec)
    return kept | {steps[-1]}


POLICY_SPECS = st.one_of(
    st.just(("PreserveAll",)),
    st.tuples(st.just("LatestN"), st.integers(1, 3)),
    st.tuples(st.just("EveryNSteps"), st.integers(1, 4)),
    st.tuples(st.just("CustomSteps"), st.frozensets(st.integers(0, 40), max_size=8)),
    st.tuples(st.just("BestN"), st.integers(1, 3), st.booleans()),
)


class CheckpointerMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.root = tempfile.mkdtemp(prefix="ckpt-machine-")
        self.ckpt = None
        self.spec = None
        self.entries: dict[int, tuple[int, dict | None]] = {}  # committed and kept
        self.pending = None  # (step, version, metrics, response) of an unawaited save
        self.next_step = 0
        self.version = 0
        self.checked: set[tuple[int, int]] = set()  # (step, version) loaded via self.ckpt

    def _open(self):
        self.ckpt = Checkpointer(self.root, preservation_policy=_policy_from_spec(self.spec),
                                 save_decision_policy=sdp.FixedIntervalPolicy(1))
        self.checked = set()

    @initialize(spec=POLICY_SPECS)
    def start(self, spec):
        self.spec = spec
        self._open()

    def teardown(self):
        try:
            if self.ckpt is not None:
                self.ckpt.close()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    # ---- the model
    def _commit(self, step, version, metrics):
        self.entries[step] = (version, metrics)
        kept = _model_keep(self.spec, self.entries)
        self.entries = {s: e for s, e in self.entries.items() if s in kept}

    def _settle_pending(self):
        """The Checkpointer waited for the pending save (a save/delete/close call did)."""
        if self.pending is not None:
            step, version, metrics, response = self.pending
            self.pending = None
            assert response.done(), f"save of step {step} still running after a waiting call"
            assert response.result(timeout=0) is True
            self._commit(step, version, metrics)

    def _new_save_args(self, data):
        step = self.next_step + data.draw(st.integers(0, 2), label="gap")
        self.next_step = step + 1
        self.version += 1
        metrics = data.draw(st.one_of(
            st.none(), st.integers(0, 9).map(lambda x: {"loss": x + step / 1000})),
            label="metrics")
        return step, self.version, metrics

    # ---- rules
    @rule(data=st.data())
    def save(self, data):
        step, version, metrics = self._new_save_args(data)
        saved = call_with_timeout(
            lambda: self.ckpt.save_pytree(step, make_tree(step, version), metrics=metrics),
            f"save_pytree({step})")
        assert saved is True
        self._settle_pending()
        self._commit(step, version, metrics)

    @rule(data=st.data(), wait_now=st.booleans())
    def save_async(self, data, wait_now):
        step, version, metrics = self._new_save_args(data)
        response = call_with_timeout(
            lambda: self.ckpt.save_pytree_async(step, make_tree(step, version),
                                                metrics=metrics),
            f"save_pytree_async({step})")
        self._settle_pending()
        if wait_now:
            assert response.result(timeout=TIMEOUT_S) is True
            self._commit(step, version, metrics)
        else:
            self.pending = (step, version, metrics, response)

    @precondition(lambda self: self.pending is not None)
    @rule()
    def result(self):
        step, version, metrics, response = self.pending
        self.pending = None
        assert response.result(timeout=TIMEOUT_S) is True
        self._commit(step, version, metrics)

    @rule(data=st.data())
    def save_force_existing(self, data):
        if not self.entries and self.pending is None:
            return
        candidates = sorted(self.entries) + ([self.pending[0]] if self.pending else [])
        step = data.draw(st.sampled_from(candidates), label="existing step")
        self.version += 1
        version = self.version
        metrics = data.draw(st.one_of(
            st.none(), st.integers(0, 9).map(lambda x: {"loss": x + step / 1000})),
            label="metrics")
        saved = call_with_timeout(
            lambda: self.ckpt.save_pytree(step, make_tree(step, version), metrics=metrics,
                                          force=True),
            f"save_pytree({step}, force=True)")
        assert saved is True
        self._settle_pending()
        # A step the pending save just committed may have been pruned right away.
        self._commit(step, version, metrics)

    @precondition(lambda self: self.entries or self.pending is not None)
    @rule(data=st.data(), use_async=st.booleans())
    def save_existing_without_force(self, data, use_async):
        # With a save pending, only its step is sure to exist (or be in flight) throughout:
        # that save's pruning may be deleting the others right now.
        candidates = [self.pending[0]] if self.pending is not None else sorted(self.entries)
        step = data.draw(st.sampled_from(candidates), label="existing step")
        save = self.ckpt.save_pytree_async if use_async else self.ckpt.save_pytree
        with pytest.raises(errors.StepAlreadyExistsError):
            save(step, make_tree(step, 999))

    @rule(data=st.data())
    def delete(self, data):
        candidates = set(self.entries)
        if self.pending is not None:
            # delete() waits for the pending save first: the model commits it first too.
            pending_model = dict(self.entries)
            pending_model[self.pending[0]] = self.pending[1:3]
            candidates = _model_keep(self.spec, pending_model)
        if not candidates:
            with pytest.raises(errors.StepNotFoundError):
                self.ckpt.delete(self.next_step + 100)
            self._settle_pending()
            return
        step = data.draw(st.sampled_from(sorted(candidates)), label="step to delete")
        call_with_timeout(lambda: self.ckpt.delete(step), f"delete({step})")
        self._settle_pending()
        del self.entries[step]

    @rule()
    def delete_missing(self):
        with pytest.raises(errors.StepNotFoundError):
            self.ckpt.delete(self.next_step + 1000)
        self._settle_pending()

    @rule()
    def reload(self):
        call_with_timeout(self.ckpt.reload, "reload()")

    @rule()
    def close_and_reopen(self):
        call_with_timeout(self.ckpt.close, "close()")
        self._settle_pending()
        with pytest.raises(errors.CheckpointerClosedError):
            self.ckpt.save_pytree(self.next_step, make_tree(self.next_step))
        self._open()

    # ---- invariants
    @invariant()
    def listing_matches_model(self):
        if self.ckpt is None:
            return
        infos = self.ckpt.checkpoints
        listed = [c.step for c in infos]
        if self.pending is not None:
            # Mid-save: only steps the model has, or the pending one, may be listed.
            allowed = set(self.entries) | {self.pending[0]}
            assert set(listed) <= allowed, f"listed {listed}, model {sorted(allowed)}"
            return
        expected = sorted(self.entries)
        assert listed == expected, f"listed {listed}, model {expected} ({self.spec})"
        for info in infos:
            assert info.metrics == self.entries[info.step][1], (
                f"step {info.step}: metrics {info.metrics!r}, saved {self.entries[info.step][1]!r}")
        assert (self.ckpt.latest.step if infos else None) == (expected[-1] if expected else None)
        assert step_dirs_on_disk(self.root) == expected, "step directories on disk differ"
        assert not tmp_entries(self.root), f"leftovers: {sorted(tmp_entries(self.root))}"
        for step in expected:
            version = self.entries[step][0]
            if (step, version) not in self.checked or step == expected[-1]:
                assert_step_loads(self.ckpt, step, version, f"model {self.spec}")
                self.checked.add((step, version))
        if expected:
            latest = call_with_timeout(self.ckpt.load_pytree, "load_pytree()")
            assert tree_problem(make_tree(expected[-1], self.entries[expected[-1]][0]),
                                latest) is None


TestCheckpointerMachine = CheckpointerMachine.TestCase
TestCheckpointerMachine.settings = settings(
    max_examples=25, stateful_step_count=12, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# ================================================================ 3. existing steps

def test_saving_an_existing_step_raises_without_force(tmp_path):
    """Saving a step that already exists raises StepAlreadyExistsError (force=True replaces)."""
    with Checkpointer(tmp_path / "run",
                      save_decision_policy=sdp.FixedIntervalPolicy(1)) as ckpt:
        assert ckpt.save_pytree(1, make_tree(1)) is True
        assert ckpt.save_pytree(2, make_tree(2)) is True
        for step in (2, 1):  # the latest step, then an older one
            with pytest.raises(errors.StepAlreadyExistsError):
                ckpt.save_pytree(step, make_tree(step, 5))
            with pytest.raises(errors.StepAlreadyExistsError):
                ckpt.save_pytree_async(step, make_tree(step, 5))
            assert tree_problem(make_tree(step), ckpt.load_pytree(step)) is None
        assert ckpt.save_pytree(1, make_tree(1, 5), force=True) is True
        assert tree_problem(make_tree(1, 5), ckpt.load_pytree(1)) is None
        assert [c.step for c in ckpt.checkpoints] == [1, 2]


# ================================================================ 4. reload() during a save

def test_reload_while_a_save_commits_and_prunes(tmp_path):
    """`reload()` called while this Checkpointer's own async save commits and prunes.

    It must not raise, and once the save is waited for, `checkpoints` lists exactly the
    committed step directories.
    """
    root = tmp_path / "run"
    errors_seen, mismatches = [], []
    deadline = time.monotonic() + 3
    with Checkpointer(root, save_decision_policy=sdp.FixedIntervalPolicy(1),
                      preservation_policy=pp.LatestN(2)) as ckpt:
        for step in range(100):
            if time.monotonic() > deadline:
                break
            response = ckpt.save_pytree_async(step, {"a": np.arange(3) + step})
            while not response.done():
                try:
                    ckpt.reload()
                except Exception as e:  # noqa: BLE001 - collected, asserted below
                    errors_seen.append(f"step {step}: {e!r}")
            assert response.result(timeout=TIMEOUT_S) is True
            listed = [c.step for c in ckpt.checkpoints]
            if listed != step_dirs_on_disk(root):
                mismatches.append(f"step {step}: listed {listed}, on disk "
                                  f"{step_dirs_on_disk(root)}")
                ckpt.reload()
    assert not errors_seen, (f"reload() raised {len(errors_seen)} times while a save "
                             f"committed/pruned, e.g. {errors_seen[:3]}")
    assert not mismatches, f"listing differs from disk after the save: {mismatches[:3]}"


def test_reload_racing_a_commit_keeps_the_committed_step(tmp_path, monkeypatch):
    """reload() scans, the background save commits, then reload() stores its scan.

    The interleaving is forced by letting the save finish between reload()'s directory
    scan and the moment it stores the result (no code path of the package is replaced:
    the scan's own result is returned). The committed step must stay listed.
    """
    from orbax_v1.training import _steps

    root = tmp_path / "run"
    with Checkpointer(root, save_decision_policy=sdp.FixedIntervalPolicy(1)) as ckpt:
        assert ckpt.save_pytree(1, make_tree(1)) is True
        real_find_all = _steps.find_all
        responses = []

        def find_all_then_let_the_save_finish(*args, **kwargs):
            steps = real_find_all(*args, **kwargs)
            if responses:
                try:  # let step 2 commit now, if the Checkpointer lets it (a
                    responses[0].result(timeout=1.0)  # serialized reload() does not)
                except TimeoutError:
                    pass
            return steps

        monkeypatch.setattr(_steps, "find_all", find_all_then_let_the_save_finish)
        responses.append(ckpt.save_pytree_async(2, make_tree(2)))
        ckpt.reload()
        monkeypatch.setattr(_steps, "find_all", real_find_all)
        ckpt.wait()
        assert step_dirs_on_disk(root) == [1, 2]
        assert [c.step for c in ckpt.checkpoints] == [1, 2], (
            "reload() racing the background commit dropped step 2 from the listing")
        assert ckpt.latest.step == 2
