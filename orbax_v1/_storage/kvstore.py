"""TensorStore key-value stores for checkpoint directories, local or in a bucket.

`base_spec` maps a resolved path to the kvstore real Orbax would use for it: the
`file` driver for a local directory, `gcs` for `gs://`, `s3` for `s3://`. Object
stores are configured by the conventions users already have, read when a path is
opened (never at import):

* S3: credentials from the AWS chain TensorStore follows (environment,
  `~/.aws/credentials`, instance metadata); the endpoint from `AWS_ENDPOINT_URL_S3`
  or `AWS_ENDPOINT_URL` (TensorStore does not read these itself, so they go into the
  spec); the region from `AWS_REGION` or `AWS_DEFAULT_REGION`.
* GCS: TensorStore's own variables (`TENSORSTORE_GCS_HTTP_URL`, application default
  credentials).

Requests to an object store are retried a bounded number of times
(`REMOTE_RETRIES`), so a missing bucket or a store that went away is an error within
seconds, never a hang.
"""

from __future__ import annotations

import json
import os
import threading

import tensorstore as ts

from orbax_v1 import _zarr, errors
from orbax_v1._storage import paths

# Bounded retries: a store that does not answer fails the operation within ~30 s.
REMOTE_RETRIES = {"max_retries": 6, "initial_delay": "0.1s", "max_delay": "5s"}
OCDBT_NODE_CACHE_BYTES = 100_000_000


def new_context() -> ts.Context:
    """A TensorStore context: no data cache (we never read twice), a small node cache,
    and bounded retries against object stores."""
    return ts.Context({
        "cache_pool": {"total_bytes_limit": 0},
        "cache_pool#ocdbt": {"total_bytes_limit": OCDBT_NODE_CACHE_BYTES},
        "file_io_concurrency": {"limit": 128},
        "s3_request_retries": REMOTE_RETRIES,
        "gcs_request_retries": REMOTE_RETRIES,
    })


def _check_gcs_emulator(path: str) -> None:
    """`STORAGE_EMULATOR_HOST` alone would send a save meant for an emulator to the real
    GCS: TensorStore reads only `TENSORSTORE_GCS_HTTP_URL` (once, when it first talks
    to GCS), and setting it for the whole process is not ours to do."""
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if emulator and not os.environ.get("TENSORSTORE_GCS_HTTP_URL"):
        url = emulator if "://" in emulator else f"http://{emulator}"
        raise errors.StorageError(
            f"{path}: STORAGE_EMULATOR_HOST={emulator} is set, but TensorStore reaches GCS "
            f"through TENSORSTORE_GCS_HTTP_URL only; set TENSORSTORE_GCS_HTTP_URL={url} "
            "(before the first GCS access) to use the emulator.")


def _s3_settings() -> dict:
    env = os.environ
    spec = {}
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        spec["endpoint"] = endpoint
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        spec["aws_region"] = region
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        # The chain's first link, named so that the rest (profile files, instance
        # metadata) is not searched.
        spec["aws_credentials"] = {"type": "environment"}
    return spec


_configured: dict[str, dict] = {}  # prefix -> spec fields (`orbax_v1.storage.configure`)
_configured_lock = threading.Lock()


def configure(prefix: str, fields: dict | None) -> None:
    """Spec fields added to the kvstore of every remote path under `prefix`."""
    reserved = {"driver", "bucket", "path"} & set(fields or ())
    if reserved:
        raise ValueError(f"configure() cannot change {sorted(reserved)} of {prefix}.")
    with _configured_lock:
        if fields is None:
            _configured.pop(prefix, None)
        else:
            _configured[prefix] = dict(fields)


def _configured_fields(path: str) -> dict:
    with _configured_lock:
        matches = [p for p in _configured if path == p or path.startswith(p.rstrip("/") + "/")]
        return dict(_configured[max(matches, key=len)]) if matches else {}


def base_spec(directory: str) -> dict:
    """The kvstore of the directory `directory` (keys are names relative to it)."""
    if not paths.is_remote(directory):
        return {"driver": "file", "path": directory.rstrip("/") + "/"}
    scheme, bucket, key = paths.split_remote(directory)
    prefix = key + "/" if key else ""
    if scheme == "gs":
        _check_gcs_emulator(directory)
        spec = {"driver": "gcs", "bucket": bucket, "path": prefix}
    else:
        spec = {"driver": "s3", "bucket": bucket, "path": prefix, **_s3_settings()}
    spec.update(_configured_fields(directory))
    return spec


def kvstore_spec(directory: str, *, use_ocdbt: bool, path: str | None = None) -> dict:
    """The kvstore of a pytree directory (OCDBT or plain files), at `path` within it."""
    base = base_spec(directory)
    if not use_ocdbt:
        if path is not None:
            base["path"] += _zarr.key_prefix(path)
        return base
    spec = {"driver": "ocdbt", "base": base, "cache_pool": "cache_pool#ocdbt"}
    if path is not None:
        spec["path"] = _zarr.key_prefix(path)
    return spec


def ocdbt_write_spec(directory: str) -> dict:
    """An OCDBT store to write into, configured as real Orbax configures its own."""
    spec = kvstore_spec(directory, use_ocdbt=True)
    if spec["base"]["driver"] == "file":
        spec["base"]["file_io_locking"] = {"mode": "non_atomic"}
    spec["manifest"] = base_spec(directory)
    spec["config"] = {"max_inline_value_bytes": 1024, "max_decoded_node_bytes": 100_000_000,
                      "manifest_kind": "single"}
    spec["assume_config"] = True
    return spec


def array_read_spec(directory: str, param: str, *, use_ocdbt: bool, use_zarr3: bool,
                    fill_missing: bool) -> dict:
    """TensorStore spec of one stored array, as `_METADATA` says it was written."""
    return {
        "driver": "zarr3" if use_zarr3 else "zarr",
        "kvstore": kvstore_spec(directory, use_ocdbt=use_ocdbt, path=param),
        "recheck_cached_data": False,
        "recheck_cached_metadata": False,
        "fill_missing_data_reads": fill_missing,
    }


_TS_ENV = ("TENSORSTORE_GCS_HTTP_URL", "GOOGLE_AUTH_TOKEN_FOR_TESTING",
           "GOOGLE_APPLICATION_CREDENTIALS", "AWS_PROFILE", "AWS_SESSION_TOKEN",
           "AWS_ACCESS_KEY_ID")
_open_lock = threading.Lock()
_open_stores: dict[str, ts.KvStore] = {}


def bucket_store(path: str) -> tuple[ts.KvStore, str]:
    """(the kvstore of the bucket holding remote `path`, the key of `path` in it).

    Stores are opened once per bucket and configuration, and reused."""
    scheme, bucket, key = paths.split_remote(path)
    spec = base_spec(path)
    spec["path"] = ""
    # TensorStore reads a few variables itself (the GCS endpoint, test tokens): a
    # change of them is a different store.
    cache_key = json.dumps([spec, [os.environ.get(v) for v in _TS_ENV]], sort_keys=True)
    with _open_lock:
        store = _open_stores.get(cache_key)
        if store is None:
            store = ts.KvStore.open(spec, context=new_context()).result()
            _open_stores[cache_key] = store
    return store, key
