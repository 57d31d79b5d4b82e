"""What ``safepredict diagnose`` reports: a ranked Finding value with its evidence, fix and severity.

Every finding has a stable ``code`` (documented under that name in ``docs/diagnose.md``), the
``subject`` it is about (the contract field, package or probe: ``"input_format"``,
``"pixel_mean"``, ``"score_threshold"``, ``"packages.torch"``), a sentence for people, the
evidence in words *and* as numbers, and the fix. Findings are ranked by severity first, then by
the measured effect on the detections (``impact``, 0 to 1), then by how directly the kind of
finding explains garbage output (a checkpoint that does not fit beats everything else).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

__all__ = ["CODES", "SEVERITIES", "Finding", "exit_code", "jsonable", "rank", "worst"]

SEVERITIES = ("error", "warning", "info")
_SEVERITY_RANK = {"error": 0, "warning": 1, "info": 2}

# Every code diagnose can report, in tie-break order, with its one-line meaning (docs/diagnose.md has
# a section per code, anchored by the code with dots turned into dashes).
CODES: dict[str, str] = {
    "checkpoint.architecture": "the checkpoint's weights do not fit the model the training config builds",
    "contract.architecture": "your inference config builds another model than the checkpoint was trained as",
    "probe.channel_order": "the model is more confident on the images with red and blue swapped",
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
_CODE_ORDER = {code: i for i, code in enumerate(CODES)}


def _check_code(instance: Any, attribute: Any, value: str) -> None:
    if value not in CODES:
        raise ValueError(f"unknown finding code {value!r}; known: {', '.join(CODES)}")


def _frozen_data(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


def anchor(code: str) -> str:
    """The section of ``docs/diagnose.md`` that explains ``code`` (``diagnose.md#probe-channel_order``)."""
    return "docs/diagnose.md#" + code.replace(".", "-")


@attrs.frozen
class Finding:
    """One ranked answer of ``diagnose``: what is wrong (or fine), the evidence, and the fix.

    ``impact`` is the measured effect on the detections between 0 (none) and 1 (all lost or
    changed); None where nothing could be measured. ``data`` holds the numbers behind
    ``evidence`` for programs (``--json``).
    """

    code: str = attrs.field(validator=_check_code)
    severity: str = attrs.field(validator=attrs.validators.in_(SEVERITIES))
    subject: str
    title: str
    evidence: str
    fix: str = ""
    impact: float | None = None
    data: dict[str, Any] = attrs.field(factory=dict, converter=_frozen_data, eq=False, hash=False)

    @property
    def docs(self) -> str:
        return anchor(self.code)

    def describe(self) -> str:
        """The finding in words: severity, code, subject, title, evidence and fix on their own lines."""
        lines = [f"[{self.severity}] {self.code} ({self.subject}): {self.title}"]
        lines.extend("  " + line for line in self.evidence.splitlines())
        if self.fix:
            lines.append(f"  fix: {self.fix}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "subject": self.subject,
            "title": self.title,
            "evidence": self.evidence,
            "fix": self.fix,
            "impact": self.impact,
            "docs": self.docs,
            "data": jsonable(self.data),
        }


def jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _key(finding: Finding) -> tuple[int, float, int]:
    impact = finding.impact if finding.impact is not None else 0.0
    return (_SEVERITY_RANK[finding.severity], -impact, _CODE_ORDER[finding.code])


def rank(findings: Iterable[Finding]) -> list[Finding]:
    """Worst first: severity, then measured impact, then how directly the kind explains bad output."""
    return sorted(findings, key=_key)


def worst(findings: Iterable[Finding]) -> str | None:
    """The worst severity among ``findings`` (None when there are none)."""
    severities = {f.severity for f in findings}
    for severity in SEVERITIES:
        if severity in severities:
            return severity
    return None


def exit_code(findings: Iterable[Finding]) -> int:
    """0 when nothing worse than information was found, 1 for a warning or an error (see safepredict.cli)."""
    return 1 if worst(findings) in ("error", "warning") else 0
