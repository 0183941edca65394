"""When a `CheckpointManager` saves: orbax_v1's policies under v0's module name."""

from orbax_v1.training.save_decision_policies import AnySavePolicy as AnySavePolicy
from orbax_v1.training.save_decision_policies import (
    ContinuousCheckpointingPolicy as ContinuousCheckpointingPolicy,
)
from orbax_v1.training.save_decision_policies import DecisionContext as DecisionContext
from orbax_v1.training.save_decision_policies import (
    FixedIntervalPolicy as FixedIntervalPolicy,
)
from orbax_v1.training.save_decision_policies import (
    InitialSavePolicy as InitialSavePolicy,
)
from orbax_v1.training.save_decision_policies import (
    PolicyCheckpointInfo as PolicyCheckpointInfo,
)
from orbax_v1.training.save_decision_policies import (
    PreemptionCheckpointingPolicy as PreemptionCheckpointingPolicy,
)
from orbax_v1.training.save_decision_policies import (
    SaveDecisionPolicy as SaveDecisionPolicy,
)
from orbax_v1.training.save_decision_policies import (
    SpecificStepsPolicy as SpecificStepsPolicy,
)

CheckpointInfo = PolicyCheckpointInfo

__all__ = [
    "AnySavePolicy",
    "CheckpointInfo",
    "ContinuousCheckpointingPolicy",
    "DecisionContext",
    "FixedIntervalPolicy",
    "InitialSavePolicy",
    "PolicyCheckpointInfo",
    "PreemptionCheckpointingPolicy",
    "SaveDecisionPolicy",
    "SpecificStepsPolicy",
]
