"""`compat_v0.checkpoint_manager`: the manager, its options and its errors (v0 module)."""

from compat_v0._direct import RootMetadata as RootMetadata
from compat_v0._direct import StepMetadata as StepMetadata
from compat_v0._manager import DEFAULT_ITEM_NAME as DEFAULT_ITEM_NAME
from compat_v0._manager import METRIC_ITEM_NAME as METRIC_ITEM_NAME
from compat_v0._manager import CheckpointManager as CheckpointManager
from compat_v0._manager_options import (
    CheckpointManagerOptions as CheckpointManagerOptions,
)
from compat_v0.errors import StepAlreadyExistsError as StepAlreadyExistsError

__all__ = [
    "DEFAULT_ITEM_NAME",
    "METRIC_ITEM_NAME",
    "CheckpointManager",
    "CheckpointManagerOptions",
    "RootMetadata",
    "StepAlreadyExistsError",
    "StepMetadata",
]
