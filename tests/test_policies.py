"""Save decision and preservation policies, as tables of inputs and expected outputs."""

import datetime

import pytest

from orbax_v1.training import preservation_policies as pp
from orbax_v1.training import save_decision_policies as sdp

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


def info(step, secs=0.0, metrics=None):
    return sdp.PolicyCheckpointInfo(step, T0 + datetime.timedelta(seconds=secs), metrics)


IDLE = sdp.DecisionContext(is_saving_in_progress=False)
BUSY = sdp.DecisionContext(is_saving_in_progress=True)


@pytest.mark.parametrize("policy, step, previous, context, expected", [
    (sdp.FixedIntervalPolicy(5), info(10), [], IDLE, True),
    (sdp.FixedIntervalPolicy(5), info(11), [], IDLE, False),
    (sdp.SpecificStepsPolicy([3, 7]), info(7), [], IDLE, True),
    (sdp.SpecificStepsPolicy([3, 7]), info(8), [], IDLE, False),
    (sdp.ContinuousCheckpointingPolicy(), info(1), [info(0)], IDLE, True),
    (sdp.ContinuousCheckpointingPolicy(), info(1), [info(0)], BUSY, False),
    (sdp.ContinuousCheckpointingPolicy(minimum_interval_secs=10), info(5, 9), [info(0, 0)], IDLE,
     False),
    (sdp.ContinuousCheckpointingPolicy(minimum_interval_secs=10), info(5, 10), [info(0, 0)],
     IDLE, True),
    (sdp.ContinuousCheckpointingPolicy(minimum_interval_secs=10), info(5), [], IDLE, True),
    (sdp.InitialSavePolicy(), info(4), [], IDLE, True),
    (sdp.InitialSavePolicy(), info(4), [info(0)], IDLE, False),
    (sdp.PreemptionCheckpointingPolicy(), info(4), [], IDLE, False),
    (sdp.PreemptionCheckpointingPolicy(), info(4), [],
     sdp.DecisionContext(reached_preemption=True), True),
    (sdp.AnySavePolicy([sdp.FixedIntervalPolicy(5), sdp.InitialSavePolicy()]), info(3), [],
     IDLE, True),
    (sdp.AnySavePolicy([sdp.FixedIntervalPolicy(5), sdp.InitialSavePolicy()]), info(3),
     [info(0)], IDLE, False),
])
def test_save_decisions(policy, step, previous, context, expected):
    assert policy.should_save(step, previous, context=context) is expected


STEPS = [info(s, secs=10 * s, metrics={"loss": loss}) for s, loss in
         [(0, 5.0), (1, 3.0), (2, 4.0), (3, 1.0), (4, 2.0)]]
CTX = pp.PreservationContext()


@pytest.mark.parametrize("policy, kept", [
    (pp.PreserveAll(), [0, 1, 2, 3, 4]),
    (pp.LatestN(2), [3, 4]),
    (pp.LatestN(None), [0, 1, 2, 3, 4]),
    (pp.LatestN(0), []),
    (pp.EveryNSteps(2), [0, 2, 4]),
    (pp.EveryNSeconds(25), [0, 3]),
    (pp.CustomSteps([1, 4, 9]), [1, 4]),
    (pp.BestN(get_metric_fn=lambda m: m["loss"], reverse=True, n=2), [3, 4]),  # lowest loss
    (pp.BestN(get_metric_fn=lambda m: m["loss"], reverse=False, n=2), [0, 2]),  # highest
    (pp.BestN(get_metric_fn=lambda m: m["loss"], n=None), [0, 1, 2, 3, 4]),
    (pp.BestN(get_metric_fn=lambda m: m["loss"], n=0), []),
    (pp.AnyPreservationPolicy([pp.LatestN(1), pp.CustomSteps([0])]), [0, 4]),
])
def test_preservation(policy, kept):
    keep = policy.should_preserve(STEPS, context=CTX)
    assert [c.step for c, k in zip(STEPS, keep) if k] == kept


def test_best_n_and_checkpoints_without_metrics():
    steps = STEPS + [info(5), info(6, metrics={"loss": 0.5})]
    best = pp.BestN(get_metric_fn=lambda m: m["loss"], reverse=True, n=1)
    keep = best.should_preserve(steps, context=CTX)
    assert [c.step for c, k in zip(steps, keep) if k] == [5, 6]
    strict = pp.BestN(get_metric_fn=lambda m: m["loss"], reverse=True, n=1,
                      keep_checkpoints_without_metrics=False)
    keep = strict.should_preserve(steps, context=CTX)
    assert [c.step for c, k in zip(steps, keep) if k] == [6]


def test_invalid_intervals_are_refused():
    with pytest.raises(ValueError):
        sdp.FixedIntervalPolicy(0)
    with pytest.raises(ValueError):
        pp.EveryNSteps(0)
