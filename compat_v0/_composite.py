"""`CompositeCheckpointHandler`: several named items, one subdirectory each.

The handler of each item is "locked in" the first time it is known: given at
construction (`item_handlers`, a registry, legacy checkpointers), or taken from the
args of the first save or restore, as in real Orbax v0. An item with no known handler
restores with the handler recorded in the step's `_CHECKPOINT_METADATA`.
Used by `Checkpointer(CompositeCheckpointHandler(...))` and by `CheckpointManager`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orbax_v1
from compat_v0 import _direct, _handlers
from compat_v0.args import Composite
from compat_v0.options import unsupported

RESERVED = ("metrics",)


class CompositeCheckpointHandler(_handlers.CheckpointHandler):
    """Items by name: `CompositeCheckpointHandler('state', 'metadata')` or `(state=handler)`."""

    SAVE_ARGS = RESTORE_ARGS = Composite

    def __init__(self, *item_names: str, composite_options: Any = None,
                 handler_registry: Any = None, **items_and_handlers: Any):
        if composite_options is not None:
            raise unsupported("CompositeCheckpointHandler", "composite_options",
                              composite_options, "compat_v0 takes no composite options")
        self.item_names = list(item_names)
        self._handlers: dict[str, _handlers.CheckpointHandler] = {}
        if handler_registry is not None:
            for name, handler in handler_registry.by_item().items():
                self.lock(name, handler)
        for name, handler in items_and_handlers.items():
            if not isinstance(handler, _handlers.CheckpointHandler):
                raise orbax_v1.errors.InvalidArgumentError(
                    f"Item {name!r}: expected a compat_v0 CheckpointHandler, got "
                    f"{type(handler).__name__}.")
            self.lock(name, handler)

    # ---- which handler an item uses ----
    @property
    def handlers(self) -> dict[str, _handlers.CheckpointHandler]:
        return dict(self._handlers)

    def lock(self, name: str, handler: _handlers.CheckpointHandler) -> None:
        self._handlers[name] = handler
        if name not in self.item_names:
            self.item_names.append(name)

    def handler_for(self, name: str, args: Any) -> _handlers.CheckpointHandler | None:
        """The item's handler, locking it in from `args`; None if unknown and no args."""
        locked = self._handlers.get(name)
        if args is None:
            return locked
        if locked is not None:
            if not _handlers.accepts(locked, args):
                raise orbax_v1.errors.InvalidArgumentError(
                    f'Item "{name}" and args "{args!r:.200}" does not match with any registered '
                    f"handler! Registered handlers: {{{name!r}: {locked!r}}}.")
            return locked
        handler = _handlers.handler_for_args(args)
        self.lock(name, handler)
        return handler

    # ---- saving ----
    def prepare(self, args: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, type]]:
        """The values and orbax_v1 handler classes to save (an item whose args are None is skipped)."""
        if not isinstance(args, Composite):
            raise orbax_v1.errors.InvalidArgumentError(
                f"Expected args of type `Composite`; found {type(args).__name__}.")
        reserved = sorted(set(args) & set(RESERVED))
        if reserved:
            raise orbax_v1.errors.InvalidArgumentError(
                f"Some provided items have prohibited reserved names: {reserved}. Reserved "
                f"names: {list(RESERVED)}.")
        values, v1_handlers = {}, {}
        for name, item_args in args.items():
            if item_args is None:
                continue
            handler = self.handler_for(name, item_args)
            values[name] = handler.save_value(item_args)
            v1_handlers[name] = handler.V1
        if not values:
            raise orbax_v1.errors.InvalidArgumentError("Composite save with no items to save.")
        return values, v1_handlers

    def save_direct(self, path, args, *, overwrite, custom_metadata, asynchronous):
        values, v1_handlers = self.prepare(args)
        save = orbax_v1.save_checkpointables_async if asynchronous else (
            orbax_v1.save_checkpointables)
        return save(path, values, overwrite=overwrite, custom_metadata=custom_metadata,
                    handlers=v1_handlers)

    # ---- restoring ----
    def _item(self, step_dir: str, name: str, args: Any, recorded: Any) -> Any:
        handler = self.handler_for(name, args)
        if handler is None:
            typestr = recorded.get(name) if isinstance(recorded, dict) else None
            handler = _handlers.handler_for_recorded(typestr)
        if handler is None:  # an item real Orbax v1 or a custom handler wrote
            return orbax_v1.load_checkpointables(step_dir, {name: None})[name]
        return handler.restore_item(step_dir, name, args)

    def restore_item(self, path: str, name: str | None, args: Any) -> Composite:
        """Every item (args None), or those `args` names; a known item absent on disk is None."""
        recorded = _direct.read_step_metadata(path).get("item_handlers")
        present = _handlers.item_dirs(path)
        if args is None:
            names = sorted(set(present) | set(self._handlers))
            args = Composite(**dict.fromkeys(names))
        elif not isinstance(args, Composite):
            raise orbax_v1.errors.InvalidArgumentError(
                f"Expected args of type `Composite`; found {type(args).__name__}.")
        out = {}
        for item_name, item_args in args.items():
            if item_name not in present:
                if item_args is not None:
                    raise orbax_v1.errors.MissingCheckpointablesError(
                        f"Item {item_name!r} is not in the checkpoint at {path}; it has {present}.")
                out[item_name] = None
                continue
            out[item_name] = self._item(path, item_name, item_args, recorded)
        return Composite(**out)

    def metadata_of(self, path: str, name: str | None) -> Composite:
        """Each item's metadata; None for items whose handler has none (JSON) or is unknown."""
        recorded = _direct.read_step_metadata(path).get("item_handlers")
        present = _handlers.item_dirs(path)
        out = {}
        for item_name in sorted(set(present) | set(self._handlers)):
            handler = self._handlers.get(item_name) or _handlers.handler_for_recorded(
                recorded.get(item_name) if isinstance(recorded, dict) else None)
            present_here = item_name in present and handler is not None
            out[item_name] = handler.metadata_of(path, item_name) if present_here else None
        return Composite(**out)

    def __repr__(self) -> str:
        return f"CompositeCheckpointHandler({self._handlers!r})"
