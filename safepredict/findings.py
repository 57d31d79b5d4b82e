"""One Finding value for everything safepredict reports: the runtime monitor and ``diagnose``.

A finding has a stable ``code`` that programs and tests match on, a ``severity``, a sentence for
people (``message``) and the numbers behind it (``data``). The monitor's findings stop there: they
are logged as they happen, the numbers going into the log record's ``extra``. ``diagnose`` adds
what its ranked list and report show: the ``subject`` a finding is about (the contract field,
package or probe: ``"input_format"``, ``"pixel_mean"``, ``"packages.torch"``), the ``evidence`` in
words, the ``fix``, and the measured ``impact`` on the detections. The ranking of diagnose's
findings lives with diagnose (:mod:`safepredict.diagnose.ranking`).

Codes are of two families, each checked when a finding is made: ``monitor.*`` (documented in
``docs/monitoring.md``) and the table :data:`DIAGNOSE_CODES` (a section each in ``docs/diagnose.md``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from safepredict._logging import warn

__all__ = ["DIAGNOSE_CODES", "MONITOR_CODE", "SEVERITIES", "Finding", "anchor", "jsonable"]

# Worst first: ranking and "the worst severity" read this order.
SEVERITIES = ("error", "warning", "info")

# The monitor names its findings freely under ``monitor.``; each is listed in docs/monitoring.md.
MONITOR_CODE = re.compile(r"monitor\.[a-z_]+")

# Every code diagnose can report, in tie-break order (how directly the kind of finding explains
# garbage output), with its one-line meaning. docs/diagnose.md has a section per code, anchored by
# the code with dots turned into dashes.
DIAGNOSE_CODES: dict[str, str] = {
    "checkpoint.architecture": "the checkpoint's weights do not fit the model the training config builds",
    "contract.architecture": "your inference config builds another model than the checkpoint was trained as",
    "probe.channel_order": "red and blue look swapped: the model's confidence or its labels say so",
    "contract.preprocessing": "your inference config preprocesses images differently from training",
    "contract.postprocessing": "your inference config post-processes differently from training evaluation",
    "contract.no_training_config": "no training config was found; your config was taken as the training config",
    "contract.trap": "a known trap inside the training config itself",
    "probe.normalisation": "how much the model depends on its training mean/std",
    "probe.resize": "how the model's confidence changes with the test size",
    "probe.threshold": "detections waiting just below the score threshold",
    "outputs.reference": "the model's outputs on these images differ from the reference profile's",
    "inputs.reference": "the images differ from the validation images of the reference profile",
    "training.undertrained": "the checkpoint was saved before the end of its training schedule",
    "environment.mismatch": "the running environment differs from the lock the model was validated with",
    "environment.unverified": "a locked entry that could not be checked here",
    "probe.failed": "a probe could not run",
}


def _check_code(instance: Any, attribute: Any, value: str) -> None:
    if value in DIAGNOSE_CODES or MONITOR_CODE.fullmatch(value):
        return
    raise ValueError(f"unknown finding code {value!r}; known: monitor.* and {', '.join(DIAGNOSE_CODES)}")


def _plain_dict(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


def anchor(code: str) -> str:
    """Where ``code`` is explained: its section of ``docs/diagnose.md``, or ``docs/monitoring.md``."""
    if MONITOR_CODE.fullmatch(code):
        return "docs/monitoring.md"
    return "docs/diagnose.md#" + code.replace(".", "-")


@attrs.frozen
class Finding:
    """One thing safepredict noticed: a stable code, a sentence for people, the numbers, and the fix.

    ``message`` is the one-line statement (the log message of a monitor finding, the title of a
    diagnose finding). ``data`` holds the measured values and the limits they were compared
    with, for programs (the log record's ``extra``, ``diagnose --json``). ``evidence`` is the
    same in words; ``impact`` the measured effect on the detections between 0 (none) and 1 (all
    lost or changed), None where nothing could be measured.
    """

    code: str = attrs.field(validator=_check_code)
    message: str
    severity: str = attrs.field(default="warning", validator=attrs.validators.in_(SEVERITIES))
    data: dict[str, Any] = attrs.field(factory=dict, converter=_plain_dict, eq=False, hash=False)
    subject: str = attrs.field(default="", kw_only=True)
    evidence: str = attrs.field(default="", kw_only=True)
    fix: str = attrs.field(default="", kw_only=True)
    impact: float | None = attrs.field(default=None, kw_only=True)

    @property
    def docs(self) -> str:
        return anchor(self.code)

    def describe(self) -> str:
        """The finding in words: severity, code, subject and message, then evidence and fix on their own lines.

        A finding with no evidence in words (the monitor's) shows its numbers on the first line.
        """
        head = f"[{self.severity}] {self.code}" + (f" ({self.subject})" if self.subject else "") + f": {self.message}"
        if not self.evidence and self.data:
            head += " (" + ", ".join(f"{k}={_short(v)}" for k, v in self.data.items()) + ")"
        lines = [head]
        lines.extend("  " + line for line in self.evidence.splitlines())
        if self.fix:
            lines.append(f"  fix: {self.fix}")
        return "\n".join(lines)

    def emit(self) -> None:
        """Log this finding on the ``safepredict`` logger and raise it as a SafePredictWarning."""
        # stacklevel 4: the warning points at whoever called the code that emits (Monitor.observe's caller).
        warn(self.message, code=self.code, severity=self.severity, evidence=self.data, stacklevel=4)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values; the message goes under ``title``, the name ``diagnose --json`` has always used."""
        return {
            "code": self.code,
            "severity": self.severity,
            "subject": self.subject,
            "title": self.message,
            "evidence": self.evidence,
            "fix": self.fix,
            "impact": self.impact,
            "docs": self.docs,
            "data": jsonable(self.data),
        }


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars, tuples and sets turned into plain JSON values (anything else as text)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
