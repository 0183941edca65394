"""Checkpointable handlers: how each named part of a checkpoint is saved and loaded.

A handler is a class with a no-argument constructor that implements
`CheckpointableHandler`. Register your own with `register_handler` to save any object
(a data-iterator state, a tokenizer config) next to your pytrees:

    @orbax_v1.handlers.register_handler
    class IteratorStateHandler:
        def is_handleable(self, obj): return isinstance(obj, MyIterator)
        def is_abstract_handleable(self, abstract): return abstract is MyIterator or None
        def save(self, directory, obj): (directory / "state.json").write_text(obj.to_json())
        def load(self, directory, abstract=None):
            return MyIterator.from_json((directory / "state.json").read_text())
        def metadata(self, directory): return None

The handler's name is recorded in `_CHECKPOINT_METADATA.item_handlers`, and that name
decides which handler loads the checkpointable later, whatever the abstract value.
"""

from __future__ import annotations

import pathlib
from typing import Any, Protocol, runtime_checkable

import attrs

from orbax_v1 import errors


@runtime_checkable
class CheckpointableHandler(Protocol):
    """What a handler implements. Directories are `pathlib.Path`s.

    `save` gets a fresh, empty directory inside the checkpoint's temporary directory;
    whatever it writes is committed atomically with the rest of the checkpoint.
    """

    def save(self, directory: pathlib.Path, checkpointable: Any) -> None: ...

    def load(self, directory: pathlib.Path, abstract_checkpointable: Any = None) -> Any: ...

    def metadata(self, directory: pathlib.Path) -> Any: ...

    def is_handleable(self, checkpointable: Any) -> bool: ...

    def is_abstract_handleable(self, abstract_checkpointable: Any) -> bool | None: ...


def typestr(handler_type: type) -> str:
    """The name recorded for a handler: its `TYPESTR` attribute, else module.qualname."""
    return getattr(handler_type, "TYPESTR", None) or (
        f"{handler_type.__module__}.{handler_type.__qualname__}")


@attrs.frozen
class _Entry:
    handler_type: type
    name: str | None
    secondary_typestrs: tuple[str, ...]


class HandlerRegistry:
    """An ordered set of handlers; among capable unnamed handlers the last added wins."""

    def __init__(self) -> None:
        self._entries: list[_Entry] = []

    def add(self, handler_type: type, *, checkpointable_name: str | None = None,
            secondary_typestrs: tuple[str, ...] = ()) -> HandlerRegistry:
        if not isinstance(handler_type, type):
            raise errors.InvalidArgumentError(
                f"register a handler class, not {handler_type!r} ({type(handler_type).__name__}).")
        for entry in self._entries:
            if checkpointable_name is not None and entry.name == checkpointable_name:
                raise errors.InvalidArgumentError(
                    f"A handler is already registered for checkpointable_name="
                    f"{checkpointable_name!r}: {entry.handler_type.__qualname__}.")
            if checkpointable_name is None and entry.name is None and (
                    entry.handler_type is handler_type):
                raise errors.InvalidArgumentError(
                    f"{handler_type.__qualname__} is already registered.")
        self._entries.append(_Entry(handler_type, checkpointable_name, tuple(secondary_typestrs)))
        return self

    def named(self, name: str) -> type | None:
        return next((e.handler_type for e in self._entries if e.name == name), None)

    def by_typestr(self, recorded: str | None) -> type | None:
        """The handler whose name (or a secondary name) was recorded, newest first.

        Secondary names are matched on the class name too, so the same handler is found
        whichever module path a version of Orbax recorded it under.
        """
        if not recorded:
            return None
        tail = recorded.rpartition(".")[2]
        for entry in reversed(self._entries):
            names = (typestr(entry.handler_type),) + entry.secondary_typestrs
            if recorded in names or any("." not in n and n == tail for n in names):
                return entry.handler_type
        return None

    def capable(self, checkpointable: Any, *, abstract: bool = False) -> type | None:
        for entry in reversed(self._entries):
            if entry.name is not None:
                continue
            handler = entry.handler_type()
            ok = (handler.is_abstract_handleable(checkpointable) if abstract
                  else handler.is_handleable(checkpointable))
            if ok:
                return entry.handler_type
        return None

    def for_save(self, name: str, checkpointable: Any) -> type:
        found = self.named(name) or self.capable(checkpointable)
        if found is None:
            raise errors.UnsupportedTreeError(
                f"No registered handler can save checkpointable {name!r} of type "
                f"{type(checkpointable).__qualname__}; register one with "
                "orbax_v1.handlers.register_handler.")
        return found

    def for_load(self, name: str, recorded: str | None, abstract: Any) -> type | None:
        """The handler to load `name`: the recorded one first, unless `abstract` rules it out."""
        for candidate in (self.by_typestr(recorded), self.named(name)):
            if candidate is not None and (
                    abstract is None or candidate().is_abstract_handleable(abstract) is not False):
                return candidate
        if abstract is not None:
            return self.capable(abstract, abstract=True)
        return None


_GLOBAL = HandlerRegistry()


def global_registry() -> HandlerRegistry:
    """The registry every save and load consults."""
    return _GLOBAL


def register_handler(handler_type: type | None = None, *, checkpointable_name: str | None = None,
                     secondary_typestrs: tuple[str, ...] = ()):
    """Adds a handler class to the global registry; usable as a bare decorator."""

    def add(cls: type) -> type:
        _GLOBAL.add(cls, checkpointable_name=checkpointable_name,
                    secondary_typestrs=secondary_typestrs)
        return cls

    return add if handler_type is None else add(handler_type)
