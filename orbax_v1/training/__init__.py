"""orbax_v1.training: a `Checkpointer` for the series of checkpoints of a training run."""

from orbax_v1.training import errors as errors
from orbax_v1.training import preservation_policies as preservation_policies
from orbax_v1.training import save_decision_policies as save_decision_policies
from orbax_v1.training._checkpointer import CheckpointMetadata as CheckpointMetadata
from orbax_v1.training._checkpointer import Checkpointer as Checkpointer
from orbax_v1.training._checkpointer import RootMetadata as RootMetadata
from orbax_v1.training._steps import NameFormat as NameFormat
from orbax_v1.training._steps import standard_name_format as standard_name_format

__all__ = [
    "CheckpointMetadata",
    "Checkpointer",
    "NameFormat",
    "RootMetadata",
    "errors",
    "preservation_policies",
    "save_decision_policies",
    "standard_name_format",
]
