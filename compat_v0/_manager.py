"""`CheckpointManager`: v0's manager of a training run's steps, on orbax_v1.

Steps are saved by an `orbax_v1.training.Checkpointer` (step naming, save decision
and preservation policies, atomic commit, the background thread) in v0's layout: one
subdirectory per item (`default` for a single unnamed item), v0 handler names in
`_CHECKPOINT_METADATA`, `metrics/metrics` when `best_fn` is set, no `orbax.checkpoint`
marker. Saves are asynchronous unless `enable_async_checkpointing=False` (or legacy
synchronous checkpointers are given), as in v0.
"""

from __future__ import annotations

import logging

from collections.abc import Mapping, Sequence
from typing import Any

from etils import epath

import orbax_v1
from orbax_v1 import storage
from compat_v0 import _direct, _handlers, errors
from compat_v0 import _manager_options as mo
from compat_v0._checkpointers import AsyncCheckpointer, Checkpointer, finish_pending
from compat_v0._composite import CompositeCheckpointHandler
from compat_v0.args import CheckpointArgs, Composite
from compat_v0.options import unsupported
from orbax_v1 import training
from orbax_v1.training import preservation_policies as pp
from orbax_v1.training import save_decision_policies as sdp

DEFAULT_ITEM_NAME = "default"
METRIC_ITEM_NAME = "metrics"
_log = logging.getLogger("compat_v0")
_InvalidArgument = orbax_v1.errors.InvalidArgumentError


def _exclusive(**given: Any) -> None:
    pairs = [("checkpointers", "item_names"), ("checkpointers", "item_handlers"),
             ("checkpointers", "handler_registry"), ("item_handlers", "handler_registry"),
             ("item_names", "handler_registry")]
    for a, b in pairs:
        if given[a] is not None and given[b] is not None:
            raise _InvalidArgument(f"`{a}` and `{b}` cannot both be given to CheckpointManager.")


class CheckpointManager:
    """Saves, lists, restores and prunes the steps of a run under `directory` (v0 API)."""

    def __init__(self, directory: epath.PathLike, checkpointers: Any = None,
                 options: mo.CheckpointManagerOptions | None = None,
                 metadata: Mapping[str, Any] | None = None, item_names: Sequence[str] | None = None,
                 item_handlers: Any = None, logger: Any = None, handler_registry: Any = None):
        options = options or mo.CheckpointManagerOptions()
        self._options = options
        if logger is not None:
            raise unsupported("CheckpointManager", "logger", logger, "no step logger")
        _exclusive(checkpointers=checkpointers, item_names=item_names,
                   item_handlers=item_handlers, handler_registry=handler_registry)
        self._composite = CompositeCheckpointHandler(*(item_names or ()),
                                                     handler_registry=handler_registry)
        self._default_item: bool | None = None if not item_names else False
        async_options = options.async_options
        self._async = options.enable_async_checkpointing
        self._timeout = async_options.timeout_secs if async_options else 1200
        self._callback = async_options.post_finalization_callback if async_options else None
        if checkpointers is not None:
            self._async = self._legacy_checkpointers(checkpointers)
        elif isinstance(item_handlers, _handlers.CheckpointHandler):
            if item_names is not None:
                raise _InvalidArgument("`item_names` and a single `item_handlers` cannot both be "
                                       "given to CheckpointManager.")
            self._default_item = True
            self._composite.lock(DEFAULT_ITEM_NAME, item_handlers)
        elif item_handlers is not None:
            self._default_item = False
            for name, handler in dict(item_handlers).items():
                self._composite.lock(name, handler)
        root = storage.resolve(directory)
        if not options.create and not options.read_only and not storage.is_dir(root):
            raise unsupported("CheckpointManagerOptions", "create", False,
                              f"{root} does not exist, and it is created on open; create it "
                              "first or pass create=True")
        self._names = mo.name_format(options)
        self._preserve = mo.preservation_policy(options)
        self._ckptr = training.Checkpointer(
            root, save_decision_policy=mo.save_decision_policy(options),
            preservation_policy=self._preserve, step_name_format=self._names,
            custom_metadata=metadata if options.save_root_metadata else None,
            read_only=options.read_only)
        self._directory = epath.Path(root)
        self._pending: tuple[int, Any, _direct.Once] | None = None

    def _legacy_checkpointers(self, checkpointers: Any) -> bool:
        """`CheckpointManager(dir, checkpointer)` or `(dir, {'name': checkpointer})`; async?"""
        if isinstance(checkpointers, Checkpointer):
            self._default_item = True
            self._composite.lock(DEFAULT_ITEM_NAME, checkpointers.handler)
            if isinstance(checkpointers, AsyncCheckpointer):
                self._timeout = checkpointers.timeout_secs
                return True
            return False
        if not isinstance(checkpointers, Mapping):
            raise _InvalidArgument(f"checkpointers must be a compat_v0 Checkpointer or a dict of "
                                   f"them, got {type(checkpointers).__name__}.")
        self._default_item = False
        for name, checkpointer in checkpointers.items():
            if not isinstance(checkpointer, Checkpointer):
                raise _InvalidArgument(f"checkpointers[{name!r}] is not a compat_v0 Checkpointer.")
            self._composite.lock(name, checkpointer.handler)
        asynchronous = [c for c in checkpointers.values() if isinstance(c, AsyncCheckpointer)]
        if asynchronous:  # as v0: the longest of their timeouts
            self._timeout = max(c.timeout_secs for c in asynchronous)
        return bool(asynchronous)

    # ---- the steps ----
    @property
    def directory(self) -> epath.Path:
        return self._directory

    def _step_dir(self, step: int, root: Any = None) -> str:
        return storage.join(root or self._directory, self._names.build_name(step))

    def all_steps(self, read: bool = False) -> Sequence[int]:
        """The committed steps (and the one being saved), ascending."""
        if read:
            self.reload()
        steps = {c.step for c in self._ckptr.checkpoints}
        if self._pending is not None and not self._pending[1].done():
            steps.add(self._pending[0])
        return sorted(steps)

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def best_step(self) -> int | None:
        """The step with the best `best_fn(metrics)` (the latest step without `best_fn`)."""
        if self._options.best_fn is None:
            return self.latest_step()
        scored = [(self._options.best_fn(c.metrics), c.step) for c in self._ckptr.checkpoints
                  if c.metrics is not None]
        if not scored:
            return None
        best = (min if self._options.best_mode == "min" else max)(scored, key=lambda t: t[0])
        return best[1]

    def reload(self) -> None:
        self._ckptr.reload()

    def reached_preemption(self, step: int) -> bool:
        try:
            from jax.experimental import multihost_utils
            return bool(multihost_utils.reached_preemption_sync_point(step))
        except Exception:  # noqa: BLE001 - no preemption service outside a managed cluster
            return False

    def should_save(self, step: int) -> bool:
        """Whether `save(step, ...)` would save (False if read-only or not after the latest)."""
        if self._options.read_only:
            _log.warning("%s is read only, save will be skipped", self._directory)
            return False
        return self._ckptr.should_save(step)

    # ---- saving ----
    def _decide_mode(self, args: Any) -> None:
        if self._default_item is None:
            self._default_item = not isinstance(args, Composite)

    def _check_args(self, items: Any, args: Any) -> None:
        if isinstance(items, CheckpointArgs):
            raise _InvalidArgument(
                "Found an instance of `CheckpointArgs` provided for `items`. This may be due to "
                "misuse of the newer API - make sure to specify the argument keyword (e.g. "
                "`args=args`).")
        if args is None:
            return
        if not isinstance(args, CheckpointArgs):
            raise _InvalidArgument(f"Expected args of type `CheckpointArgs`; found {type(args)}.")
        if self._default_item and isinstance(args, Composite):
            raise _InvalidArgument("Cannot provide `args` of type `Composite` when dealing with a "
                                   "single, unnamed (default) checkpointable object.")
        if not self._default_item and not isinstance(args, Composite):
            raise _InvalidArgument("Must provide `args` of type `Composite` when dealing with "
                                   "multiple checkpointable objects.")

    def _legacy_args(self, items: Any, kwargs: Any, *, save: bool) -> Composite:
        """`save(step, items, save_kwargs)` / `restore(step, items, restore_kwargs)` as args."""
        if self._default_item:
            items = {} if items is None else {DEFAULT_ITEM_NAME: items}
            kwargs = {} if not kwargs else {DEFAULT_ITEM_NAME: kwargs}
        items = {} if items is None else items
        kwargs = {} if kwargs is None else kwargs
        out = {}
        for name in list(items) + [n for n in kwargs if n not in items]:
            handler = self._composite.handlers.get(name)
            if handler is None:
                raise _InvalidArgument(
                    f'Unknown key "{name}": no handler is registered for it; pass args= '
                    "(e.g. args=ocp.args.Composite(...)) or configure item_handlers.")
            cls = handler.SAVE_ARGS if save else handler.RESTORE_ARGS
            out[name] = cls(items.get(name), **(kwargs.get(name) or {}))
        return Composite(**out)

    def save(self, step: int, items: Any = None, save_kwargs: Any = None, metrics: Any = None,
             force: bool | None = False, args: Any = None,
             custom_metadata: dict[str, Any] | None = None) -> bool:
        """Saves `step` if the policy says so (or `force`); returns whether it saved.

        Raises `StepAlreadyExistsError` (a `ValueError`) if the step exists, even with
        `force=True` (force only bypasses the save decision, as in v0).
        """
        if items is None and args is None:
            raise _InvalidArgument("Must provide `args` for `save`.")
        self._decide_mode(args)
        self._check_args(items, args)
        if not force and not self.should_save(step):
            return False
        self.wait_until_finished()
        if step in self.all_steps() or storage.exists(self._step_dir(step)):
            raise errors.StepAlreadyExistsError(f"Checkpoint for step {step} already exists.")
        if args is None:
            args = self._legacy_args(items, save_kwargs, save=True)
        elif self._default_item:
            args = Composite(**{DEFAULT_ITEM_NAME: args})
        values, v1_handlers = self._composite.prepare(args)
        if self._options.best_fn is not None and metrics is None:
            _log.warning("Requested `tracked_metric`; did not provide metrics.")
        if metrics is not None and self._options.best_fn is not None and (
                not self._options.prevent_write_metrics):
            values[METRIC_ITEM_NAME] = metrics
            v1_handlers[METRIC_ITEM_NAME] = _handlers.MetricsV1
        step_dir = self._step_dir(step)
        if not self._async:
            self._ckptr.save_checkpointables(step, values, handlers=v1_handlers, force=True,
                                             custom_metadata=custom_metadata)
            self._committed(step_dir)
            self._prune_newest()
            return True
        response = self._ckptr.save_checkpointables_async(
            step, values, handlers=v1_handlers, force=True, custom_metadata=custom_metadata)
        committed = _direct.Once(lambda: self._committed(step_dir))
        self._pending = (step, response, committed)
        response.on_complete(committed)
        return True

    def _prune_newest(self) -> None:
        """Deletes the newest step if the policy does not keep it (v0 does; v1 never does).

        orbax_v1's Checkpointer applies the same policy to every other step.
        """
        checkpoints = self._ckptr.checkpoints
        if self._options.read_only or not checkpoints:
            return
        infos = [sdp.PolicyCheckpointInfo(c.step, c.time, c.metrics) for c in checkpoints]
        keep = self._preserve.should_preserve(infos, context=pp.PreservationContext())
        if not keep[-1]:
            self._ckptr.delete(infos[-1].step)

    def _committed(self, step_dir: str) -> None:
        _direct.strip_marker(step_dir)
        if self._callback is not None and storage.is_dir(step_dir):
            self._callback()

    # ---- background state ----
    def is_saving_in_progress(self) -> bool:
        return self._pending is not None and not self._pending[1].done()

    def wait_until_finished(self) -> None:
        """Blocks until the save in flight committed; re-raises its error if it failed."""
        if finish_pending(self):
            self._ckptr.wait()
            self._prune_newest()
        self._ckptr.wait()

    def check_for_errors(self) -> None:
        """Re-raises the error of a finished background save, without blocking."""
        if self._pending is not None and self._pending[1].done():
            self.wait_until_finished()

    def close(self) -> None:
        self.wait_until_finished()
        self._ckptr.close()

    def __enter__(self) -> CheckpointManager:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ---- restoring and metadata ----
    def _existing_step_dir(self, step: int | None, directory: Any = None) -> tuple[int, str]:
        if directory is None:
            if step is None:
                step = self.latest_step()
            if self._pending is not None and self._pending[0] == step:
                self.wait_until_finished()
        elif step is None:
            found = [self._names.parse(n) for n in storage.subdirs(directory)]
            step = max((s for s in found if s is not None), default=None)
        if step is None:
            raise errors.StepNotFoundError(f"No steps found in {directory or self._directory}.")
        step_dir = self._step_dir(step, directory)
        if not storage.is_dir(step_dir):
            raise errors.StepNotFoundError(
                f"No checkpoint found at step {step} in {directory or self._directory}; steps: "
                f"{self.all_steps() if directory is None else '?'}.")
        return step, step_dir

    def restore(self, step: int | None, items: Any = None, restore_kwargs: Any = None,
                directory: epath.PathLike | None = None, args: Any = None) -> Any:
        """Restores `step` (None: the latest): one item, or a `Composite` of several."""
        step, step_dir = self._existing_step_dir(step, directory)
        if self._default_item is None:
            self._default_item = storage.is_dir(storage.join(step_dir, DEFAULT_ITEM_NAME))
        self._check_args(items, args)
        if args is None:
            args = self._legacy_args(items, restore_kwargs, save=False)
        elif self._default_item:
            args = Composite(**{DEFAULT_ITEM_NAME: args})
        if self._default_item and not args:
            args = Composite(**{DEFAULT_ITEM_NAME: None})
        restored = self._composite.restore_item(step_dir, None, args or None)
        if not self._default_item:
            return restored
        if restored.get(DEFAULT_ITEM_NAME) is None:
            raise _InvalidArgument(
                f"Unable to retrieve default item: {step_dir} has no item {DEFAULT_ITEM_NAME!r}.")
        return restored[DEFAULT_ITEM_NAME]

    def item_metadata(self, step: int) -> Any:
        """The metadata of each item (of the item itself for a single unnamed one)."""
        if step is None:
            raise _InvalidArgument("`step` must be provided. `item_metadata` only exists at the "
                                   "checkpoint step level, not the root level.")
        return self.metadata(step).item_metadata

    def metadata(self, step: int | None = None) -> Any:
        """`RootMetadata` (no step), or the step's `StepMetadata`."""
        if step is None:
            return _direct.RootMetadata(
                custom_metadata=self._ckptr.root_metadata().custom_metadata or {})
        step, step_dir = self._existing_step_dir(step)
        items = self._composite.metadata_of(step_dir, None)
        default = self._default_item
        if default is None:
            default = storage.is_dir(storage.join(step_dir, DEFAULT_ITEM_NAME))
        return _direct.step_metadata(step_dir, items.get(DEFAULT_ITEM_NAME) if default else items,
                                     metrics=self.metrics(step) or {})

    def metrics(self, step: int) -> Any:
        return next((c.metrics for c in self._ckptr.checkpoints if c.step == step), None)

    def delete(self, step: int) -> None:
        """Deletes a step (a no-op when read-only); `FileNotFoundError` if it does not exist."""
        if self._options.read_only:
            _log.warning("%s is read only, delete will be skipped", self._directory)
            return
        self.wait_until_finished()
        if step not in self.all_steps():
            raise errors.StepNotFoundError(f"Requested deleting a non-existent step: {step}.")
        self._ckptr.delete(step)
