"""Errors of `orbax_v1.training` (all are `orbax_v1.errors.CheckpointError`s)."""

from orbax_v1 import errors as _errors


class StepAlreadyExistsError(_errors.CheckpointExistsError):
    """The step already has a checkpoint (a `FileExistsError`); pass force=True to replace."""


class StepNotFoundError(_errors.CheckpointNotFoundError):
    """No committed checkpoint at that step (a `FileNotFoundError`)."""


class ReadOnlyError(_errors.CheckpointError, PermissionError):
    """The Checkpointer was opened read-only."""


class CheckpointerClosedError(_errors.CheckpointError, RuntimeError):
    """The Checkpointer was closed."""
