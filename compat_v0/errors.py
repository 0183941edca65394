"""Errors `compat_v0` raises on purpose.

Each derives from an `orbax_v1.errors` class and from the builtin real Orbax v0 raises
in the same situation, so `except ValueError:` written against v0 keeps working.
"""

from __future__ import annotations

from orbax_v1 import errors as _errors
from orbax_v1.training import errors as _training_errors

__all__ = [
    "DestinationExistsError",
    "StepAlreadyExistsError",
    "StepNotFoundError",
    "TreeMismatchError",
    "UnsupportedOptionError",
]


class UnsupportedOptionError(_errors.InvalidArgumentError):
    """An option, argument field or handler setting compat_v0 cannot honour.

    The message names the field. A `ValueError` (and `TypeError`): v0 code that
    validated its options with `except ValueError` still sees it.
    """


class StepAlreadyExistsError(_training_errors.StepAlreadyExistsError, ValueError):
    """`CheckpointManager.save` of a step that exists (v0 raises a `ValueError`)."""


class StepNotFoundError(_training_errors.StepNotFoundError):
    """No committed checkpoint at that step (a `FileNotFoundError`)."""


class DestinationExistsError(_errors.CheckpointExistsError, ValueError):
    """`Checkpointer.save` onto an existing path without `force=True`.

    Real v0 raises `ValueError('Destination ... already exists.')`; this is also a
    `FileExistsError`.
    """


class TreeMismatchError(_errors.TreeMismatchError, KeyError):
    """The restore target names leaves the checkpoint does not hold.

    Also a `KeyError`, as the Flax/Orbax guides catch it, and a `ValueError`, as real
    Orbax 0.12 raises it. Pass `restore_kwargs={'transforms': {}}` (legacy form) to
    take those leaves from the target instead.
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
