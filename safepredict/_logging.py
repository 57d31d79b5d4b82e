"""One place that emits safepredict's warnings: the ``safepredict`` logger and the warning category.

Warnings are rate-limited per ``code``: at most ``burst`` records per ``period`` seconds; past
that they are counted, not logged, and the next record of that code says how many were
suppressed. A storm (thousands of bad inputs) therefore stays readable in the log while
:func:`warning_counts` keeps every count.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from typing import Any

import attrs

from safepredict.errors import SafePredictWarning

logger = logging.getLogger("safepredict")

DEFAULT_BURST = 50
DEFAULT_PERIOD = 10.0


@attrs.define
class _CodeState:
    window_start: float
    in_window: int = 0
    pending: int = 0  # suppressed since the last record of this code
    emitted: int = 0
    suppressed: int = 0


_lock = threading.Lock()
_states: dict[str, _CodeState] = {}
_limits = {"burst": DEFAULT_BURST, "period": DEFAULT_PERIOD}


def configure_rate_limit(burst: int = DEFAULT_BURST, period: float = DEFAULT_PERIOD) -> None:
    """At most ``burst`` warnings of one code per ``period`` seconds reach the log."""
    if burst < 1 or period <= 0:
        raise ValueError(f"burst must be >= 1 and period > 0, got {burst}, {period}")
    with _lock:
        _limits.update(burst=burst, period=period)


def reset_rate_limits() -> None:
    """Forget every count and window (tests; a long-running service starting a new job)."""
    with _lock:
        _states.clear()


def warning_counts() -> dict[str, dict[str, int]]:
    """Per code: how many warnings were logged (``emitted``) and how many only counted (``suppressed``)."""
    with _lock:
        return {code: {"emitted": s.emitted, "suppressed": s.suppressed} for code, s in _states.items()}


def _admit(code: str) -> tuple[bool, int]:
    """Whether a warning of ``code`` may be logged now, and how many were suppressed before it."""
    now = time.monotonic()
    with _lock:
        state = _states.get(code)
        if state is None:
            state = _states[code] = _CodeState(window_start=now)
        if now - state.window_start >= _limits["period"]:
            state.window_start, state.in_window = now, 0
        if state.in_window >= _limits["burst"]:
            state.pending += 1
            state.suppressed += 1
            return False, 0
        state.in_window += 1
        state.emitted += 1
        pending, state.pending = state.pending, 0
        return True, pending


def warn(message: str, *, code: str, stacklevel: int = 3, **extra: Any) -> None:
    """Log ``message`` at WARNING with structured ``extra`` fields and raise a SafePredictWarning.

    ``code`` is a stable short name for the condition (``"contract.ignored"``,
    ``"monitor.empty_streak"``...) that programs and tests can match on.
    """
    admitted, suppressed = _admit(code)
    if not admitted:
        return
    if suppressed:
        message += f" ({suppressed} more warning(s) of this kind were suppressed since the last one)"
    fields = {f"safepredict_{k}": v for k, v in extra.items()}
    logger.warning(message, extra={"safepredict_code": code, "safepredict_suppressed": suppressed, **fields})
    warnings.warn(message, SafePredictWarning, stacklevel=stacklevel)
