"""The small JSON files of a checkpoint: their names, contents and reading.

`_CHECKPOINT_METADATA` (step level), the pytree `_METADATA`, `_sharding`,
`array_metadatas/process_<i>` and `_strings.json`, in the bytes real Orbax writes.
The bytes themselves are written and read by the storage package.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jax
import numpy as np

from orbax_v1 import errors
from orbax_v1._storage import paths
from orbax_v1._storage.files import read_json, write_bytes, write_json  # noqa: F401 - re-exported
from orbax_v1._storage.format import (  # noqa: F401 - re-exported
    ARRAY_METADATAS, CHECKPOINT_METADATA, COMMIT_SUCCESS, PYTREE_METADATA, SHARDING, STRINGS,
    V1_MARKER)


def checkpoint_metadata_json(item_handlers: Any, custom_metadata: Any,
                             init_timestamp_nsecs: int) -> dict:
    """`_CHECKPOINT_METADATA` with the keys in the order real Orbax writes them."""
    return {
        "item_handlers": item_handlers,
        "metrics": {},
        "performance_metrics": {},
        "init_timestamp_nsecs": init_timestamp_nsecs,
        "commit_timestamp_nsecs": time.time_ns(),
        "custom_metadata": {} if custom_metadata is None else custom_metadata,
    }


def read_checkpoint_metadata(directory: str) -> dict:
    """The step-level metadata; `{}` when the file is missing (real Orbax treats it so)."""
    path = paths.join(directory, CHECKPOINT_METADATA)
    try:
        data = read_json(path, what="Checkpoint metadata")
    except FileNotFoundError:
        return {}
    if not isinstance(data, dict):
        raise errors.CorruptCheckpointError(
            f"Checkpoint metadata at {path} is not a JSON object: {data!r:.100}")
    return data


def sharding_key(param: str) -> str:
    return base64.urlsafe_b64encode(param.encode()).decode()


def sharding_json(sharding: jax.sharding.Sharding) -> str | None:
    """One `_sharding` value (a JSON string) for the shardings real Orbax records."""
    if isinstance(sharding, jax.sharding.NamedSharding):
        mesh = sharding.mesh
        ids = jax.tree.map(lambda d: {"id": int(d.id)}, mesh.devices.tolist())
        spec = [list(p) if isinstance(p, tuple) else p for p in sharding.spec]
        data = {"sharding_type": "NamedSharding", "shape": list(mesh.devices.shape),
                "axis_names": list(mesh.axis_names),
                "axis_types": [str(t) for t in getattr(mesh, "axis_types", ())],
                "partition_spec": spec, "device_mesh": {"mesh": ids}}
    elif isinstance(sharding, jax.sharding.SingleDeviceSharding):
        data = {"sharding_type": "SingleDeviceSharding",
                "device_str": str(next(iter(sharding.device_set)))}
    else:
        return None
    return json.dumps(data)


def sharding_from_json(text: str) -> jax.sharding.Sharding | None:
    """The saved sharding, if its devices exist here; None otherwise (never an error)."""
    try:
        data = json.loads(text)
        devices = {d.id: d for d in jax.devices()}
        if data.get("sharding_type") == "SingleDeviceSharding":
            wanted = data["device_str"].replace("TFRT_CPU_", "cpu:")
            found = [d for d in jax.local_devices() if str(d) == wanted]
            return jax.sharding.SingleDeviceSharding(found[0]) if found else None
        if data.get("sharding_type") == "NamedSharding":
            ids = jax.tree.map(lambda e: e["id"], data["device_mesh"]["mesh"],
                               is_leaf=lambda e: isinstance(e, dict))
            id_array = np.asarray(ids)
            if not all(int(i) in devices for i in id_array.flat):
                return None
            mesh_devices = np.vectorize(lambda i: devices[int(i)], otypes=[object])(id_array)
            kinds = [getattr(jax.sharding.AxisType, str(t).rpartition(".")[2], None)
                     for t in data.get("axis_types") or ()]
            extra = {"axis_types": tuple(kinds)} if kinds and None not in kinds else {}
            mesh = jax.sharding.Mesh(mesh_devices, tuple(data["axis_names"]), **extra)
            spec = [tuple(p) if isinstance(p, list) else p for p in data["partition_spec"]]
            return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*spec))
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    return None
