"""Several processes saving one checkpoint together.

Every process writes its own shards; the primary process (index 0) creates the
temporary directory, writes what is shared and commits once every process is done.
Between those steps the processes meet at *phases* through JAX's distributed
key-value store (`jax.distributed.initialize`): each publishes "ok" or its error and
waits for the others, so a failure anywhere fails the save everywhere, and a process
that never arrives fails it after `TIMEOUT_SECS`, naming the missing processes.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from collections.abc import Callable
from typing import Any

import jax

from orbax_v1 import errors

TIMEOUT_SECS = 1200.0


def _timeout_secs() -> float:
    """`ORBAX_V1_SYNC_TIMEOUT_SECS` if set (read at each operation, never at import)."""
    return float(os.environ.get("ORBAX_V1_SYNC_TIMEOUT_SECS", TIMEOUT_SECS))
_operation_ids = itertools.count()


class ProcessSyncError(errors.CheckpointError, RuntimeError):
    """Another process failed, or did not arrive in time, during a multi-process save."""


def process_index() -> int:
    return jax.process_index()


def process_count() -> int:
    return jax.process_count()


def is_primary() -> bool:
    return jax.process_index() == 0


def _client():
    from jax._src import distributed  # the only way to reach the key-value store
    client = distributed.global_state.client
    if client is None:
        raise ProcessSyncError(
            f"{jax.process_count()} processes but no jax.distributed client: call "
            "jax.distributed.initialize() in every process before saving.")
    return client


class Phases:
    """The meeting points of one multi-process operation (no-ops in a single process)."""

    def __init__(self, what: str, timeout_secs: float | None = None):
        self.what = what
        self.count = process_count()
        self.index = process_index()
        self.primary = self.index == 0
        self.timeout = _timeout_secs() if timeout_secs is None else timeout_secs
        digest = hashlib.sha256(what.encode()).hexdigest()[:16]
        # Every process runs the same operations in the same order (SPMD), so the
        # n-th operation has the same id everywhere.
        self._prefix = f"orbax_v1/{next(_operation_ids)}-{digest}"

    def run(self, phase: str, fn: Callable[[], Any] | None = None, *,
            primary_only: bool = False) -> Any:
        """Runs `fn` (here, or only on the primary), then waits for every process."""
        result, failure = None, None
        if fn is not None and (self.primary or not primary_only):
            try:
                result = fn()
            except Exception as e:  # noqa: BLE001 - published to the peers, then re-raised
                failure = e
        if self.count > 1:
            self._meet(phase, failure)
        if failure is not None:
            raise failure
        return result

    def _meet(self, phase: str, failure: BaseException | None) -> None:
        client = _client()
        key = f"{self._prefix}/{phase}/"
        status = "ok" if failure is None else f"{type(failure).__name__}: {failure}"[:2000]
        client.key_value_set(f"{key}{self.index}", status)
        deadline = time.monotonic() + self.timeout
        pause = 0.002
        while True:
            arrived = {int(k.rsplit("/", 1)[1]): v for k, v in client.key_value_dir_get(key)}
            failed = {i: v for i, v in arrived.items() if v != "ok" and i != self.index}
            if failed and failure is None:
                detail = "; ".join(f"process {i}: {v}" for i, v in sorted(failed.items()))
                raise ProcessSyncError(f"{self.what}: failed in phase {phase!r} on {detail}")
            if len(arrived) >= self.count:
                return
            if time.monotonic() > deadline:
                missing = sorted(set(range(self.count)) - set(arrived))
                raise ProcessSyncError(
                    f"{self.what}: processes {missing} did not reach phase {phase!r} within "
                    f"{self.timeout:g} s")
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
