"""Which steps a `CheckpointManager` keeps: orbax_v1's policies under v0's module name."""

from orbax_v1.training.preservation_policies import (
    AnyPreservationPolicy as AnyPreservationPolicy,
)
from orbax_v1.training.preservation_policies import BestN as BestN
from orbax_v1.training.preservation_policies import CustomSteps as CustomSteps
from orbax_v1.training.preservation_policies import EveryNSeconds as EveryNSeconds
from orbax_v1.training.preservation_policies import EveryNSteps as EveryNSteps
from orbax_v1.training.preservation_policies import LatestDuration as LatestDuration
from orbax_v1.training.preservation_policies import LatestN as LatestN
from orbax_v1.training.preservation_policies import (
    PreservationContext as PreservationContext,
)
from orbax_v1.training.preservation_policies import (
    PreservationPolicy as PreservationPolicy,
)
from orbax_v1.training.preservation_policies import PreserveAll as PreserveAll
from orbax_v1.training.save_decision_policies import (
    PolicyCheckpointInfo as PolicyCheckpointInfo,
)

__all__ = [
    "AnyPreservationPolicy",
    "BestN",
    "CustomSteps",
    "EveryNSeconds",
    "EveryNSteps",
    "LatestDuration",
    "LatestN",
    "PolicyCheckpointInfo",
    "PreservationContext",
    "PreservationPolicy",
    "PreserveAll",
]
