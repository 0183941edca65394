"""compat_v0: run Orbax v0 call sites unchanged, on the public orbax_v1 API.

    import compat_v0 as ocp          # instead of: import orbax.checkpoint as ocp

    mngr = ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(max_to_keep=3))
    mngr.save(step, args=ocp.args.StandardSave(state))
    state = mngr.restore(mngr.latest_step(), args=ocp.args.StandardRestore(abstract_state))

Checkpoints are written in real Orbax v0's layout (real v0 restores them) and every
root real v0 wrote restores here. What is supported, field by field: docs/migration.md.
"""

from compat_v0 import args as args
from compat_v0 import checkpoint_manager as checkpoint_manager
from compat_v0 import checkpoint_managers as checkpoint_managers
from compat_v0 import errors as errors
from compat_v0 import handlers as handlers
from compat_v0 import options as options
from compat_v0 import step as step
from compat_v0 import test_utils as test_utils
from compat_v0 import tree as tree
from compat_v0 import type_handlers as type_handlers
from compat_v0 import utils as utils
from compat_v0._checkpointers import AsyncCheckpointer as AsyncCheckpointer
from compat_v0._checkpointers import Checkpointer as Checkpointer
from compat_v0._checkpointers import PyTreeCheckpointer as PyTreeCheckpointer
from compat_v0._checkpointers import StandardCheckpointer as StandardCheckpointer
from compat_v0._manager import CheckpointManager as CheckpointManager
from compat_v0._manager_options import (
    CheckpointManagerOptions as CheckpointManagerOptions,
)
from compat_v0.handlers import ArrayCheckpointHandler as ArrayCheckpointHandler
from compat_v0.handlers import CheckpointHandler as CheckpointHandler
from compat_v0.handlers import CompositeCheckpointHandler as CompositeCheckpointHandler
from compat_v0.handlers import JsonCheckpointHandler as JsonCheckpointHandler
from compat_v0.handlers import PyTreeCheckpointHandler as PyTreeCheckpointHandler
from compat_v0.handlers import StandardCheckpointHandler as StandardCheckpointHandler
from compat_v0.options import AsyncOptions as AsyncOptions
from compat_v0.options import FileOptions as FileOptions
from compat_v0.options import MultiprocessingOptions as MultiprocessingOptions
from compat_v0.type_handlers import ArrayRestoreArgs as ArrayRestoreArgs
from compat_v0.type_handlers import RestoreArgs as RestoreArgs
from compat_v0.type_handlers import SaveArgs as SaveArgs

PLACEHOLDER = ...

__all__ = [
    "PLACEHOLDER",
    "ArrayCheckpointHandler",
    "ArrayRestoreArgs",
    "AsyncCheckpointer",
    "AsyncOptions",
    "CheckpointHandler",
    "CheckpointManager",
    "CheckpointManagerOptions",
    "Checkpointer",
    "CompositeCheckpointHandler",
    "FileOptions",
    "JsonCheckpointHandler",
    "MultiprocessingOptions",
    "PyTreeCheckpointHandler",
    "PyTreeCheckpointer",
    "RestoreArgs",
    "SaveArgs",
    "StandardCheckpointHandler",
    "StandardCheckpointer",
    "args",
    "checkpoint_manager",
    "checkpoint_managers",
    "errors",
    "handlers",
    "options",
    "step",
    "test_utils",
    "tree",
    "type_handlers",
    "utils",
]
