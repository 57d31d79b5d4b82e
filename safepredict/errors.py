"""The one error tree of safepredict, and its warning category.

::

    SafePredictError                 every error safepredict raises on purpose
    ├── InputError                   an image, path or argument safepredict cannot use
    ├── ConfigError                  a config that cannot be read or is missing
    │   ├── TrainingArtifactNotFound  no training config could be found for a checkpoint
    │   └── UntrustedCodeError       an artifact that would run code; loaded only when trusted
    ├── ContractMismatchError        inference settings that differ from training, refused
    ├── CheckpointMismatchError      weights that do not fit the architecture
    ├── UnsupportedOutputError       an output the model cannot produce (masks from boxes)
    ├── UnsupportedModelError        a model family safepredict does not run (yet): panoptic, ...
    ├── FrameworkNotInstalled        the framework an artifact needs is not importable
    ├── EnvironmentMismatchError     the running environment differs from the lock
    ├── IntegrityError               a model file whose sha256 differs from the lock, refused unread
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
    "IntegrityError",
    "LockError",
    "LockFormatError",
    "LockVersionError",
    "SafePredictError",
    "SafePredictWarning",
    "TrainingArtifactNotFound",
    "UnsupportedModelError",
    "UnsupportedOutputError",
    "UntrustedCodeError",
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

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only fields do not survive Exception's default pickling (it replays args only);
        # errors raised in worker processes (SafePredictor.predict_many, Ray actors) must.
        fields = {k: getattr(self, k) for k in ("expected", "found", "source", "fix", "details")}
        return (_rebuild, (type(self), self.message, fields))


def _rebuild(cls: type[SafePredictError], message: str, fields: dict[str, Any]) -> SafePredictError:
    return cls(message, **fields)


class InputError(SafePredictError, ValueError):
    """An image, path or argument that safepredict cannot use."""


class ConfigError(SafePredictError):
    """A config that cannot be read, or one that is missing."""


class TrainingArtifactNotFound(ConfigError, FileNotFoundError):
    """No training config could be found for a checkpoint."""


class UntrustedCodeError(ConfigError):
    """A config or checkpoint that would run code when loaded, refused until it is trusted.

    ``source`` names the file (or ``checkpoint X: meta.cfg``) and ``details`` holds
    ``{"line": N, "construct": "..."}`` where a line is known; ``fix`` says how to trust it.
    """


class ContractMismatchError(SafePredictError):
    """Inference settings that differ from the training contract, refused."""


class CheckpointMismatchError(SafePredictError):
    """Weights that do not fit the architecture they are loaded into."""


class UnsupportedOutputError(SafePredictError):
    """An output the model cannot produce, such as masks from a box-only model."""


class UnsupportedModelError(SafePredictError):
    """A model family safepredict does not run (semantic/panoptic segmentation, ...): named, with what is supported."""


class FrameworkNotInstalled(SafePredictError, ImportError):
    """The framework an artifact needs is not importable here."""


class EnvironmentMismatchError(SafePredictError):
    """The running environment differs from the lock in a way that was declared fatal."""


class IntegrityError(SafePredictError):
    """A weights or config file whose sha256 differs from the lock: refused before it is deserialised."""


class LockError(SafePredictError):
    """A lockfile that cannot be read."""


class LockFormatError(LockError):
    """A corrupt or malformed lockfile."""


class LockVersionError(LockError):
    """A lockfile schema version this safepredict does not know."""


class SafePredictWarning(UserWarning):
    """Category of every warning safepredict emits through :mod:`warnings`."""
