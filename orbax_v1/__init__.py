"""orbax_v1: save and load JAX pytrees in the real Orbax on-disk format, fast.

    import orbax_v1 as ocp
    ocp.save_pytree(path, state)
    state = ocp.load(path)
"""

from orbax_v1 import errors as errors
from orbax_v1 import handlers as handlers
from orbax_v1 import storage as storage
from orbax_v1 import training as training
from orbax_v1._api import checkpointables_metadata as checkpointables_metadata
from orbax_v1._api import load as load
from orbax_v1._api import load_async as load_async
from orbax_v1._api import load_checkpointables_async as load_checkpointables_async
from orbax_v1._api import load_pytree_async as load_pytree_async
from orbax_v1._api import save_checkpointables_async as save_checkpointables_async
from orbax_v1._api import save_pytree_async as save_pytree_async
from orbax_v1._background import AsyncResponse as AsyncResponse
from orbax_v1._api import load_checkpointables as load_checkpointables
from orbax_v1._api import load_pytree as load_pytree
from orbax_v1._api import metadata as metadata
from orbax_v1._api import pytree_metadata as pytree_metadata
from orbax_v1._api import save_checkpointables as save_checkpointables
from orbax_v1._api import save_pytree as save_pytree
from orbax_v1._types import PLACEHOLDER as PLACEHOLDER
from orbax_v1._types import ArrayMetadata as ArrayMetadata
from orbax_v1._types import CheckpointMetadata as CheckpointMetadata
from orbax_v1._types import ScalarMetadata as ScalarMetadata
from orbax_v1._types import StringMetadata as StringMetadata
from orbax_v1._builtin_handlers import ArrayHandler as ArrayHandler
from orbax_v1._builtin_handlers import JsonHandler as JsonHandler
from orbax_v1._builtin_handlers import PyTreeHandler as PyTreeHandler

__version__ = "0.1.0"

__all__ = [
    "PLACEHOLDER",
    "AsyncResponse",
    "load_async",
    "load_checkpointables_async",
    "load_pytree_async",
    "save_checkpointables_async",
    "save_pytree_async",
    "ArrayHandler",
    "JsonHandler",
    "PyTreeHandler",
    "checkpointables_metadata",
    "handlers",
    "load_checkpointables",
    "save_checkpointables",
    "ArrayMetadata",
    "CheckpointMetadata",
    "ScalarMetadata",
    "StringMetadata",
    "errors",
    "load",
    "load_pytree",
    "metadata",
    "pytree_metadata",
    "save_pytree",
    "storage",
    "training",
]
