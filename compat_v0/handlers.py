"""`compat_v0.handlers`: the v0 handler classes and `DefaultCheckpointHandlerRegistry`."""

from __future__ import annotations

from typing import Any

import orbax_v1
from compat_v0._composite import CompositeCheckpointHandler
from compat_v0._handlers import (
    ArrayCheckpointHandler,
    CheckpointHandler,
    JsonCheckpointHandler,
    PyTreeCheckpointHandler,
    StandardCheckpointHandler,
    handler_class_for,
)
from compat_v0.args import CheckpointArgs

__all__ = [
    "ArrayCheckpointHandler",
    "CheckpointHandler",
    "CheckpointHandlerRegistry",
    "CompositeCheckpointHandler",
    "DefaultCheckpointHandlerRegistry",
    "JsonCheckpointHandler",
    "PyTreeCheckpointHandler",
    "StandardCheckpointHandler",
]


class DefaultCheckpointHandlerRegistry:
    """Which handler each item uses: `registry.add('state', ocp.args.StandardSave)`.

    Give it to `CheckpointManager(directory, handler_registry=registry)` so items restore
    with the right handler before anything was saved in this process.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str | None, type], CheckpointHandler] = {}

    def add(self, item: str | None, args: Any, handler: Any = None) -> None:
        args_cls = args if isinstance(args, type) else type(args)
        if not (isinstance(args_cls, type) and issubclass(args_cls, CheckpointArgs)):
            raise orbax_v1.errors.InvalidArgumentError(
                f"args must be a CheckpointArgs class or instance, got {args!r}.")
        if (item, args_cls) in self._entries:
            raise orbax_v1.errors.InvalidArgumentError(
                f"Entry for item={item!r} and args={args_cls.__name__} already exists in the "
                "registry.")
        if handler is None:
            handler = self._same_item_handler(item, args_cls) or handler_class_for(args_cls)()
        elif isinstance(handler, type):
            handler = handler()
        if not isinstance(handler, CheckpointHandler):
            raise orbax_v1.errors.InvalidArgumentError(
                f"handler must be a compat_v0 CheckpointHandler, got {handler!r}.")
        self._entries[(item, args_cls)] = handler

    def _same_item_handler(self, item, args_cls) -> CheckpointHandler | None:
        for (name, _), handler in self._entries.items():
            if name == item and isinstance(handler, handler_class_for(args_cls)):
                return handler
        return None

    def get(self, item: str | None, args: Any) -> CheckpointHandler:
        args_cls = args if isinstance(args, type) else type(args)
        try:
            return self._entries[(item, args_cls)]
        except KeyError:
            raise orbax_v1.errors.MissingCheckpointablesError(
                f"No entry for item={item!r} and args={args_cls.__name__} in the registry."
            ) from None

    def has(self, item: str | None, args: Any) -> bool:
        args_cls = args if isinstance(args, type) else type(args)
        return (item, args_cls) in self._entries

    def get_all_entries(self) -> dict[tuple[str | None, type], CheckpointHandler]:
        return dict(self._entries)

    def by_item(self) -> dict[str, CheckpointHandler]:
        """The handler of each named item (entries for item None are not tied to a name)."""
        return {name: h for (name, _), h in self._entries.items() if name is not None}


CheckpointHandlerRegistry = DefaultCheckpointHandlerRegistry
