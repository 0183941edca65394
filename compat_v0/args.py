"""`compat_v0.args`: what to save or restore, and with which handler (v0 `ocp.args`).

Each class names its handler (`StandardSave` and `StandardRestore` go with
`StandardCheckpointHandler`, and so on), as in real Orbax. Fields compat_v0 cannot
honour raise `UnsupportedOptionError` naming the field when the args are built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from compat_v0.options import unsupported

__all__ = [
    "ArrayRestore",
    "ArraySave",
    "CheckpointArgs",
    "Composite",
    "JsonRestore",
    "JsonSave",
    "PyTreeRestore",
    "PyTreeSave",
    "StandardRestore",
    "StandardSave",
]


class CheckpointArgs:
    """Base class of every args class (v0 `ocp.args.CheckpointArgs`)."""


def _reject(cls_name: str, field: str, value: Any, default: Any, why: str) -> None:
    if value is not default and value != default:
        raise unsupported(cls_name, field, value, why)


@dataclasses.dataclass
class StandardSave(CheckpointArgs):
    item: Any
    save_args: Any = None
    custom_metadata: Any = None

    def __post_init__(self):
        _reject("StandardSave", "custom_metadata", self.custom_metadata, None,
                "pass custom_metadata= to CheckpointManager.save or Checkpointer.save; it "
                "is stored in the step's _CHECKPOINT_METADATA")


@dataclasses.dataclass
class StandardRestore(CheckpointArgs):
    item: Any = None
    strict: bool = True
    support_layout: bool = False
    fallback_sharding: Any = None

    def __post_init__(self):
        _reject("StandardRestore", "strict", self.strict, True,
                "padding or truncating arrays to another shape")
        _reject("StandardRestore", "support_layout", self.support_layout, False,
                "device memory layouts are not restored")
        _reject("StandardRestore", "fallback_sharding", self.fallback_sharding, None,
                "a saved sharding whose devices are absent loads on the default device; "
                "give the sharding in the target instead")


@dataclasses.dataclass
class PyTreeSave(CheckpointArgs):
    item: Any
    save_args: Any = None
    ocdbt_target_data_file_size: int | None = None
    custom_metadata: Any = None

    def __post_init__(self):
        _reject("PyTreeSave", "ocdbt_target_data_file_size", self.ocdbt_target_data_file_size,
                None, "orbax_v1 sizes the OCDBT data files itself")
        _reject("PyTreeSave", "custom_metadata", self.custom_metadata, None,
                "pass custom_metadata= to CheckpointManager.save or Checkpointer.save")


@dataclasses.dataclass
class PyTreeRestore(CheckpointArgs):
    item: Any = None
    restore_args: Any = None
    transforms: Any = None
    transforms_default_to_original: bool = True
    legacy_transform_fn: Any = None
    partial_restore: bool = False

    def __post_init__(self):
        if self.transforms not in (None, {}):
            raise unsupported("PyTreeRestore", "transforms", self.transforms,
                              "only the empty transform {} (leaves the checkpoint lacks come "
                              "from the target) is supported")
        _reject("PyTreeRestore", "transforms_default_to_original",
                self.transforms_default_to_original, True, "transforms are not supported")
        _reject("PyTreeRestore", "legacy_transform_fn", self.legacy_transform_fn, None,
                "transforms are not supported")


@dataclasses.dataclass
class JsonSave(CheckpointArgs):
    item: Any = None


@dataclasses.dataclass
class JsonRestore(CheckpointArgs):
    item: Any = None


@dataclasses.dataclass
class ArraySave(CheckpointArgs):
    item: Any
    save_args: Any = None


@dataclasses.dataclass
class ArrayRestore(CheckpointArgs):
    item: Any = None
    restore_args: Any = None


class Composite(CheckpointArgs, Mapping):
    """Named items: `Composite(state=StandardSave(x), meta=JsonSave(m))`.

    A read-only mapping with attribute access (`c.state`, `c['state']`); restores of
    several items return one.
    """

    def __init__(self, **items: Any):
        object.__setattr__(self, "_items", dict(items))

    def __getitem__(self, name: str) -> Any:
        return self._items[name]

    def __getattr__(self, name: str) -> Any:
        items = self.__dict__.get("_items", {})
        if name in items:
            return items[name]
        raise AttributeError(f"Composite has no item {name!r}; it has {sorted(items)}.")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Composite is read-only.")

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Composite) and self._items == other._items

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Composite({dict(sorted(self._items.items()))!r})"
