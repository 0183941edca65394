"""When to save: policies that look at the step, the time and the steps saved before.

A policy has `should_save(step, previous_steps, *, context) -> bool`, where `step` and
each of `previous_steps` is a `PolicyCheckpointInfo` (step, time, metrics).
"""

from __future__ import annotations

import datetime
from collections.abc import Container, Sequence
from typing import Any, Protocol

import attrs


@attrs.frozen
class PolicyCheckpointInfo:
    step: int
    time: datetime.datetime
    metrics: dict[str, Any] | None = None


@attrs.frozen(kw_only=True)
class DecisionContext:
    is_saving_in_progress: bool = False
    reached_preemption: bool = False


class SaveDecisionPolicy(Protocol):
    def should_save(self, step: PolicyCheckpointInfo,
                    previous_steps: Sequence[PolicyCheckpointInfo], *,
                    context: DecisionContext) -> bool: ...


@attrs.frozen
class FixedIntervalPolicy:
    """Saves every `interval` steps (`step % interval == 0`)."""

    interval: int = attrs.field(validator=attrs.validators.gt(0))

    def should_save(self, step, previous_steps, *, context) -> bool:
        return step.step % self.interval == 0


@attrs.frozen
class SpecificStepsPolicy:
    """Saves exactly at the given steps."""

    steps: Container[int]

    def should_save(self, step, previous_steps, *, context) -> bool:
        return step.step in self.steps


@attrs.frozen
class ContinuousCheckpointingPolicy:
    """Saves whenever no save is in flight, at most once per `minimum_interval_secs`."""

    minimum_interval_secs: float | None = None

    def should_save(self, step, previous_steps, *, context) -> bool:
        if context.is_saving_in_progress:
            return False
        if not previous_steps or self.minimum_interval_secs is None:
            return True
        elapsed = (step.time - previous_steps[-1].time).total_seconds()
        return elapsed >= self.minimum_interval_secs


@attrs.frozen
class PreemptionCheckpointingPolicy:
    """Saves at the step where JAX's preemption sync point says the job is preempted."""

    def should_save(self, step, previous_steps, *, context) -> bool:
        return context.reached_preemption


@attrs.frozen
class InitialSavePolicy:
    """Saves the first step of a run that has no checkpoint yet."""

    def should_save(self, step, previous_steps, *, context) -> bool:
        return not previous_steps


@attrs.frozen
class AnySavePolicy:
    """Saves if any of `policies` says so (checked in order)."""

    policies: Sequence[Any]

    def should_save(self, step, previous_steps, *, context) -> bool:
        return any(p.should_save(step, previous_steps, context=context) for p in self.policies)
