"""Reading and writing the small JSON files of a checkpoint, durably.

`_CHECKPOINT_METADATA` (step level), the pytree `_METADATA`, `_sharding`,
`array_metadatas/process_<i>` and `_strings.json`, in the bytes real Orbax writes.
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any

import jax
import numpy as np

from orbax_v1 import errors

CHECKPOINT_METADATA = "_CHECKPOINT_METADATA"
PYTREE_METADATA = "_METADATA"
SHARDING = "_sharding"
STRINGS = "_strings.json"
ARRAY_METADATAS = "array_metadatas"
V1_MARKER = "orbax.checkpoint"
COMMIT_SUCCESS = "commit_success.txt"


def write_bytes(path: str, data: bytes) -> None:
    """Writes a file and fsyncs it, so a later directory rename commits its content."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_json(path: str, obj: Any) -> None:
    write_bytes(path, json.dumps(obj).encode())


def read_json(path: str, *, what: str) -> Any:
    """Parses a JSON file; a damaged one is a `CorruptCheckpointError` naming it."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as e:
        raise errors.CorruptCheckpointError(f"{what} at {path} is unreadable: {e}") from e


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
    path = os.path.join(directory, CHECKPOINT_METADATA)
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
