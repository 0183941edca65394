"""`Checkpointer`: one object for a training run's series of checkpoints.

Each step is a checkpoint directory `<root>/<step name>/` written with
`save_checkpointables` (plus a `metrics` item when metrics are given). Saves go
through the library's background thread; one save is in flight at a time; the
preservation policy runs only after a step has committed and never deletes the newest.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Mapping
from typing import Any

import attrs

from orbax_v1 import _api, _background, _checkpointables, _layout, _multihost
from orbax_v1._builtin_handlers import MetricsHandler, PyTreeHandler
from orbax_v1._storage import files, paths
from orbax_v1._types import CheckpointMetadata as _FreeCheckpointMetadata
from orbax_v1.training import _steps, errors
from orbax_v1.training import preservation_policies as pp
from orbax_v1.training import save_decision_policies as sdp

PYTREE = "pytree"


@attrs.frozen(kw_only=True)
class CheckpointMetadata(_FreeCheckpointMetadata):
    """A step's metadata: the free function's fields plus `step` and `metrics`."""

    step: int
    metrics: dict | None = None

    @property
    def time(self) -> datetime.datetime | None:
        return self.commit_timestamp


@attrs.frozen(kw_only=True)
class RootMetadata:
    directory: str
    custom_metadata: Any = None


def _default_save_policy():
    return sdp.AnySavePolicy([sdp.InitialSavePolicy(), sdp.ContinuousCheckpointingPolicy(),
                              sdp.PreemptionCheckpointingPolicy()])


def _reached_preemption(step: int) -> bool:
    try:
        from jax.experimental import multihost_utils
        return bool(multihost_utils.reached_preemption_sync_point(step))
    except Exception:  # noqa: BLE001 - no preemption service outside a managed cluster
        return False


class Checkpointer:
    """Saves, lists, loads and prunes the checkpoints of one run under `root`.

    Args:
      root: the directory that holds one subdirectory per step.
      save_decision_policy: when `save_*` actually saves (default: the first step, then
        whenever no save is in flight). `force=True` saves regardless.
      preservation_policy: which committed steps to keep (default: all).
      step_name_format: `standard_name_format(...)`; default `<step>`.
      custom_metadata: JSON stored once for the whole run (`root_metadata()`).
      read_only: never write or delete anything.
      cleanup_tmp_directories: on open, delete what crashed saves left (directories in
        Orbax's temporary naming, nothing else). Only the primary process does this,
        so with several processes open every Checkpointer before the first save.
    """

    def __init__(self, root: Any, *, save_decision_policy: Any = None,
                 preservation_policy: Any = None,
                 step_name_format: _steps.NameFormat | None = None,
                 custom_metadata: Any = None, read_only: bool = False,
                 cleanup_tmp_directories: bool = True):
        self._root = _checkpointables.abspath(root)
        self._decide = save_decision_policy or _default_save_policy()
        self._preserve = preservation_policy or pp.PreserveAll()
        self._names = step_name_format or _steps.standard_name_format()
        self._read_only = read_only
        self._lock = threading.Lock()  # guards self._infos
        self._changing = threading.RLock()  # one scan, commit or deletion at a time
        self._pending: _background.AsyncResponse | None = None
        self._in_flight: sdp.PolicyCheckpointInfo | None = None
        self._closed = False
        if not read_only and _multihost.is_primary():
            files.make_dirs(self._root)
            if cleanup_tmp_directories:
                _steps.remove_temporary(self._root, self._names)
            if custom_metadata is not None:
                _steps.write_root_metadata(self._root, custom_metadata)
        self.reload()

    # ---- the series of steps ----
    @property
    def directory(self) -> str:
        return self._root

    def reload(self) -> None:
        """Rescans the root (for steps written by another process).

        Serialized with this object's own commits and deletions (`_changing`), so a
        scan never overwrites a newer listing.
        """
        with self._changing:
            infos = _steps.step_infos(self._root, self._names)
            with self._lock:
                self._infos = infos

    @property
    def checkpoints(self) -> list[CheckpointMetadata]:
        """The committed steps, ascending: step, path, commit time and metrics."""
        with self._lock:
            infos = list(self._infos)
        return [CheckpointMetadata(
            path=self._step_dir(i.step), metadata=None, step=i.step, metrics=i.metrics,
            commit_timestamp_nsecs=int(i.time.timestamp() * 1e9)) for i in infos]

    @property
    def latest(self) -> CheckpointMetadata | None:
        checkpoints = self.checkpoints
        return checkpoints[-1] if checkpoints else None

    def _step_dir(self, step: int) -> str:
        return paths.join(self._root, self._names.build_name(step))

    def should_save(self, step: int) -> bool:
        """Whether `save_*(step, ...)` would save (without `force`)."""
        with self._lock:
            infos = list(self._infos)
        in_flight = self._in_flight  # a save in progress counts as a previous step
        if in_flight is not None:
            infos.append(in_flight)
        if self._read_only or (infos and step <= infos[-1].step):
            return False
        now = datetime.datetime.now(datetime.timezone.utc)
        context = sdp.DecisionContext(is_saving_in_progress=self.is_saving_in_progress(),
                                      reached_preemption=_reached_preemption(step))
        return bool(self._decide.should_save(sdp.PolicyCheckpointInfo(step, now), infos,
                                             context=context))

    # ---- saving ----
    def save_checkpointables_async(self, step: int, checkpointables: Mapping[str, Any], *,
                                   metrics: Mapping[str, Any] | None = None,
                                   force: bool = False, custom_metadata: Any = None,
                                   handlers: Mapping[str, type] | None = None
                                   ) -> _background.AsyncResponse[bool]:
        """Saves `step` in the background once its data is in host memory.

        `.result()` is True once committed; the response is already done with False
        when the save decision policy skips the step. `handlers` maps names to handler
        classes that override the registry for this save. Raises at once (before writing)
        `StepAlreadyExistsError` for an existing step unless `force=True`, which also
        bypasses the save decision policy and replaces the step.
        """
        self._check_open()
        if self._read_only:
            raise errors.ReadOnlyError(f"Checkpointer at {self._root} is read-only.")
        path = self._step_dir(step)
        if not force and (files.exists(path) or step == self._in_flight_step):
            raise errors.StepAlreadyExistsError(
                f"Step {step} already exists at {path}: pass force=True to replace it.")
        if not force and not self.should_save(step):
            self._raise_background_error()
            return _background.completed(False, f"skipped save of step {step}")
        self.wait()  # one save at a time; surfaces the previous save's error
        exists = files.exists(path)
        items = dict(checkpointables)
        handler_types = dict(handlers or {})
        if metrics is not None:
            items["metrics"] = dict(metrics)
            handler_types["metrics"] = MetricsHandler
        commit = _checkpointables.prepare_save(
            path, items, overwrite=exists, custom_metadata=custom_metadata,
            handler_types=handler_types, copy=True, reserved_ok=True)

        def finish() -> bool:
            try:
                commit()
                self._committed(step)
            finally:
                self._in_flight = None
            return True

        self._in_flight = sdp.PolicyCheckpointInfo(
            step, datetime.datetime.now(datetime.timezone.utc), None)
        self._pending = _background.submit(finish, f"save of step {step} to {path}")
        return self._pending

    @property
    def _in_flight_step(self) -> int | None:
        in_flight = self._in_flight
        return None if in_flight is None else in_flight.step

    def save_pytree_async(self, step: int, pytree: Any, *, checkpointable_name: str = PYTREE,
                          **kwargs) -> _background.AsyncResponse[bool]:
        return self.save_checkpointables_async(
            step, {checkpointable_name: pytree}, handlers={checkpointable_name: PyTreeHandler},
            **kwargs)

    def save_checkpointables(self, step: int, checkpointables: Mapping[str, Any],
                             **kwargs) -> bool:
        """Saves `step` and returns once it is committed (True), or False if skipped."""
        return self.save_checkpointables_async(step, checkpointables, **kwargs).result()

    def save_pytree(self, step: int, pytree: Any, **kwargs) -> bool:
        return self.save_pytree_async(step, pytree, **kwargs).result()

    save = save_pytree
    save_async = save_pytree_async

    def _committed(self, step: int) -> None:
        """After `step` committed: record it, then delete what the policy does not keep."""
        with self._changing:
            info = _steps.step_info(self._root, self._names, step)
            with self._lock:
                infos = sorted([i for i in self._infos if i.step != step] + [info],
                               key=lambda i: i.step)
                self._infos = infos
            keep = list(self._preserve.should_preserve(infos,
                                                       context=pp.PreservationContext()))
            keep[-1] = True  # the newest committed step is never deleted
            for info_, kept in zip(infos, keep):
                if not kept:
                    self._delete_committed(info_.step)

    def _delete_committed(self, step: int) -> None:
        with self._changing:
            _steps.delete_step_dir(self._step_dir(step))
            with self._lock:
                self._infos = [i for i in self._infos if i.step != step]

    def delete(self, step: int) -> None:
        """Deletes a committed step (whatever the preservation policy says)."""
        self._check_open()
        if self._read_only:
            raise errors.ReadOnlyError(f"Checkpointer at {self._root} is read-only.")
        self.wait()
        if step not in {i.step for i in self._infos}:
            raise errors.StepNotFoundError(f"No checkpoint found at step {step} in {self._root}.")
        self._delete_committed(step)

    # ---- background state ----
    def is_saving_in_progress(self) -> bool:
        return self._pending is not None and not self._pending.done()

    def wait(self) -> None:
        """Waits for the save in flight; re-raises its error if it failed.

        An error already raised to the caller by that save's `.result()` is not raised
        a second time.
        """
        pending, self._pending = self._pending, None
        if pending is not None and not pending.seen:
            pending.result()

    def _raise_background_error(self) -> None:
        if self._pending is not None and self._pending.done():
            self.wait()

    def close(self) -> None:
        """Waits for pending saves (re-raising a failure); the object is then closed."""
        if self._closed:
            return
        self._closed = True
        self.wait()

    def _check_open(self) -> None:
        if self._closed:
            raise errors.CheckpointerClosedError(f"Checkpointer at {self._root} is closed.")

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ---- loading ----
    def _resolve(self, step: Any) -> int:
        if isinstance(step, CheckpointMetadata):
            step = step.step
        steps = [i.step for i in self._infos]
        if step is None:
            if not steps:
                raise errors.StepNotFoundError(
                    f"Specified step=None, but no checkpoints were found in {self._root}.")
            return steps[-1]
        if step not in steps:
            raise errors.StepNotFoundError(
                f"No checkpoint found at step {step} in {self._root}; steps: {steps}.")
        return step

    def load_pytree(self, step: Any = None, abstract_pytree: Any = None, *,
                    checkpointable_name: str | None = PYTREE, partial_load: bool = False) -> Any:
        """Loads one checkpointable of a step (`step=None`: the latest).

        A pytree loads as `orbax_v1.load` does; any other checkpointable (JSON data, a
        custom handler's object) as `load_checkpointables(step, {name: abstract})[name]`.
        """
        step_dir = self._step_dir(self._resolve(step))
        item_dir = paths.join(step_dir, checkpointable_name or "")
        if checkpointable_name is not None and not _layout.is_pytree_dir(
                item_dir) and files.is_dir(item_dir):
            return _api.load_checkpointables(
                step_dir, {checkpointable_name: abstract_pytree})[checkpointable_name]
        return _api.load(step_dir, abstract_pytree, checkpointable_name=checkpointable_name,
                         partial_load=partial_load)

    load = load_pytree

    def load_checkpointables(self, step: Any = None,
                             abstract_checkpointables: Mapping[str, Any] | None = None
                             ) -> dict[str, Any]:
        return _api.load_checkpointables(self._step_dir(self._resolve(step)),
                                         abstract_checkpointables)

    def metadata(self, step: Any = None, *, checkpointable_name: str | None = PYTREE
                 ) -> CheckpointMetadata:
        return self._with_step(step, lambda p: _api.metadata(
            p, checkpointable_name=checkpointable_name))

    def checkpointables_metadata(self, step: Any = None) -> CheckpointMetadata:
        return self._with_step(step, _api.checkpointables_metadata)

    def _with_step(self, step, read) -> CheckpointMetadata:
        step = self._resolve(step)
        free = read(self._step_dir(step))
        metrics = next((i.metrics for i in self._infos if i.step == step), None)
        return CheckpointMetadata(**attrs.asdict(free, recurse=False), step=step,
                                  metrics=metrics)

    def root_metadata(self) -> RootMetadata:
        return RootMetadata(directory=self._root,
                            custom_metadata=_steps.read_root_metadata(self._root))


