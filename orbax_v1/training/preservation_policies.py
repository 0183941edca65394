"""Which committed checkpoints to keep.

A policy has `should_preserve(checkpoints, *, context) -> list[bool]` over the committed
checkpoints in step order (`PolicyCheckpointInfo`: step, time, metrics). Whatever a
policy says, the `Checkpointer` never deletes the newest committed checkpoint, and
deletes only after a new checkpoint has committed.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs

from orbax_v1.training.save_decision_policies import PolicyCheckpointInfo


@attrs.frozen(kw_only=True)
class PreservationContext:
    pass


class PreservationPolicy(Protocol):
    def should_preserve(self, checkpoints: Sequence[PolicyCheckpointInfo], *,
                        context: PreservationContext) -> list[bool]: ...


@attrs.frozen
class PreserveAll:
    def should_preserve(self, checkpoints, *, context) -> list[bool]:
        return [True] * len(checkpoints)


@attrs.frozen
class LatestN:
    """Keeps the newest `n` (all if `n` is None)."""

    n: int | None = None

    def should_preserve(self, checkpoints, *, context) -> list[bool]:
        if self.n is None:
            return [True] * len(checkpoints)
        first_kept = len(checkpoints) - self.n
        return [i >= first_kept for i in range(len(checkpoints))]


@attrs.frozen
class EveryNSeconds:
    """Keeps the first, then each one at least `interval_secs` after the last one kept."""

    interval_secs: float

    def should_preserve(self, checkpoints, *, context) -> list[bool]:
        keep, last = [], None
        for info in checkpoints:
            ok = last is None or (info.time - last).total_seconds() >= self.interval_secs
            keep.append(ok)
            if ok:
                last = info.time
        return keep


@attrs.frozen
class EveryNSteps:
    """Keeps steps that are multiples of `interval_steps`."""

    interval_steps: int = attrs.field(validator=attrs.validators.gt(0))

    def should_preserve(self, checkpoints, *, context) -> list[bool]:
        return [info.step % self.interval_steps == 0 for info in checkpoints]


@attrs.frozen
class CustomSteps:
    """Keeps exactly the given steps."""

    steps: Sequence[int]

    def should_preserve(self, checkpoints, *, context) -> list[bool]:
        wanted = set(self.steps)
        return [info.step in wanted for info in checkpoints]


@attrs.frozen(kw_only=True)
class BestN:
    """Keeps the `n` best by `get_metric_fn(metrics)`.

    Checkpoints are sorted by metric (descending if `reverse`) and the last `n` kept,
    so `reverse=False` keeps the largest values and `reverse=True` the smallest (a
    loss). Checkpoints without metrics are kept if `keep_checkpoints_without_metrics`.
    """

    get_metric_fn: Callable[[dict[str, Any]], float]
    reverse: bool = False
    n: int | None = None
    keep_checkpoints_without_metrics: bool = True

    def should_preserve(self, checkpoints, *, context) -> list[bool]:
        with_metrics = [i for i, c in enumerate(checkpoints) if c.metrics is not None]
        keep = [c.metrics is None and self.keep_checkpoints_without_metrics for c in checkpoints]
        if self.n is None or len(with_metrics) <= self.n:
            for i in with_metrics:
                keep[i] = True
            return keep
        ranked = sorted(with_metrics, key=lambda i: self.get_metric_fn(checkpoints[i].metrics),
                        reverse=self.reverse)
        for i in ranked[len(ranked) - self.n:] if self.n else []:
            keep[i] = True
        return keep


@attrs.frozen
class LatestDuration:
    """Keeps checkpoints younger than `duration`."""

    duration: datetime.timedelta

    def should_preserve(self, checkpoints, *, context) -> list[bool]:
        now = datetime.datetime.now(datetime.timezone.utc)
        return [now - c.time <= self.duration for c in checkpoints]


@attrs.frozen
class AnyPreservationPolicy:
    """Keeps a checkpoint if any of `policies` keeps it."""

    policies: Sequence[Any]

    def should_preserve(self, checkpoints, *, context) -> list[bool]:
        keep = [False] * len(checkpoints)
        for policy in self.policies:
            keep = [a or b for a, b in zip(keep, policy.should_preserve(checkpoints,
                                                                          context=context))]
        return keep
