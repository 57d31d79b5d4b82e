"""safepredict: a trained detector behaves at inference exactly as at training-time evaluation.

The public surface is small and imported lazily, so ``import safepredict`` stays fast and works
with no framework (and no torch) installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from safepredict._lazy import lazy_attributes
from safepredict._version import installed_version
from safepredict.errors import (
    CheckpointMismatchError,
    ConfigError,
    ContractMismatchError,
    EnvironmentMismatchError,
    FrameworkNotInstalled,
    InputError,
    IntegrityError,
    LockError,
    LockFormatError,
    LockVersionError,
    SafePredictError,
    SafePredictWarning,
    TrainingArtifactNotFound,
    UnsupportedModelError,
    UnsupportedOutputError,
    UntrustedCodeError,
)

# name -> module that defines it; resolved on first attribute access.
_LAZY = {
    "SafePredictor": "safepredict.predictor",
    "Detections": "safepredict.detections",
    "TrainingContract": "safepredict.contract",
    "Discrepancy": "safepredict.contract",
    "read_contract": "safepredict.frameworks.artifact",
    "SafeInferencer": "safepredict.frameworks.mmdet.inferencer",
}

__all__ = [
    "CheckpointMismatchError",
    "ConfigError",
    "ContractMismatchError",
    "Detections",
    "Discrepancy",
    "EnvironmentMismatchError",
    "FrameworkNotInstalled",
    "InputError",
    "IntegrityError",
    "LockError",
    "LockFormatError",
    "LockVersionError",
    "SafeInferencer",
    "SafePredictError",
    "SafePredictWarning",
    "SafePredictor",
    "TrainingArtifactNotFound",
    "TrainingContract",
    "UnsupportedModelError",
    "UnsupportedOutputError",
    "UntrustedCodeError",
    "__version__",
    "read_contract",
]

if TYPE_CHECKING:
    from safepredict.contract import Discrepancy, TrainingContract
    from safepredict.detections import Detections
    from safepredict.frameworks.artifact import read_contract
    from safepredict.frameworks.mmdet.inferencer import SafeInferencer
    from safepredict.predictor import SafePredictor


_lazy = lazy_attributes(__name__, _LAZY)


def __getattr__(name: str) -> Any:
    if name == "__version__":  # from the distribution's metadata, read only when asked for
        globals()[name] = installed_version()
        return globals()[name]
    return _lazy(name)


def __dir__() -> list[str]:
    return sorted(__all__)
