"""The one error tree of safepredict, and its warning category.

::

    SafePredictError                 every error safepredict raises on purpose
    ├── InputError                   an image, path or argument safepredict cannot use
    ├── ConfigError                  a config that cannot be read or is missing
    │   └── TrainingArtifactNotFound  no training config could be found for a checkpoint
    ├── ContractMismatchError        inference settings that differ from training, refused
    ├── CheckpointMismatchError      weights that do not fit the architecture
    ├── UnsupportedOutputError       an output the model cannot produce (masks from boxes)
    ├── FrameworkNotInstalled        the framework an artifact needs is not importable
    ├── EnvironmentMismatchError     the running environment differs from the lock
    └── LockError                    a lockfile that cannot be read
        ├── LockFormatError          corrupt or malformed lockfile
        └── LockVersionError         a schema version this safepredict does not know

    SafePredictWarning (UserWarning) category of every warning safepredict emits

Each error carries structured fields (``expected``, ``found``, ``source``, ``fix``) besides
its message, so programs can act on it without parsing text.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CheckpointMismatchError",
    "ConfigError",
    "ContractMismatchError",
    "EnvironmentMismatchError",
    "FrameworkNotInstalled",
    "InputError",
    "LockError",
    "LockFormatError",
    "LockVersionError",
    "SafePredictError",
    "SafePredictWarning",
    "TrainingArtifactNotFound",
    "UnsupportedOutputError",
]


class SafePredictError(Exception):
    """Base of every error safepredict raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        expected: Any = None,
        found: Any = None,
        source: str | None = None,
        fix: str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.expected = expected
        self.found = found
        self.source = source
        self.fix = fix
        self.details = details

    def __str__(self) -> str:
        text = self.message
        if self.fix and self.fix not in text:
            text += f"\n  fix: {self.fix}"
        return text


class InputError(SafePredictError, ValueError):
    """An image, path or argument that safepredict cannot use."""


class ConfigError(SafePredictError):
    """A config that cannot be read, or one that is missing."""


class TrainingArtifactNotFound(ConfigError, FileNotFoundError):
    """No training config could be found for a checkpoint."""


class ContractMismatchError(SafePredictError):
    """Inference settings that differ from the training contract, refused."""


class CheckpointMismatchError(SafePredictError):
    """Weights that do not fit the architecture they are loaded into."""


class UnsupportedOutputError(SafePredictError):
    """An output the model cannot produce, such as masks from a box-only model."""


class FrameworkNotInstalled(SafePredictError, ImportError):
    """The framework an artifact needs is not importable here."""


class EnvironmentMismatchError(SafePredictError):
    """The running environment differs from the lock in a way that was declared fatal."""


class LockError(SafePredictError):
    """A lockfile that cannot be read."""


class LockFormatError(LockError):
    """A corrupt or malformed lockfile."""


class LockVersionError(LockError):
    """A lockfile schema version this safepredict does not know."""


class SafePredictWarning(UserWarning):
    """Category of every warning safepredict emits through :mod:`warnings`."""
