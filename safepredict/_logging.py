"""One place that emits safepredict's warnings: the ``safepredict`` logger and the warning category."""

from __future__ import annotations

import logging
import warnings
from typing import Any

from safepredict.errors import SafePredictWarning

logger = logging.getLogger("safepredict")


def warn(message: str, *, code: str, stacklevel: int = 3, **extra: Any) -> None:
    """Log ``message`` at WARNING with structured ``extra`` fields and raise a SafePredictWarning.

    ``code`` is a stable short name for the condition (``"contract.ignored"``,
    ``"monitor.empty_streak"``...) that programs and tests can match on.
    """
    logger.warning(message, extra={"safepredict_code": code, **{f"safepredict_{k}": v for k, v in extra.items()}})
    warnings.warn(message, SafePredictWarning, stacklevel=stacklevel)
