"""How ``diagnose`` ranks its findings, and the exit code they give.

Worst first: by severity, then by the measured effect on the detections (``impact``, 0 to 1), then
by how directly the kind of finding explains garbage output (the order of
:data:`safepredict.findings.DIAGNOSE_CODES`: a checkpoint that does not fit beats everything else).
"""

from __future__ import annotations

from collections.abc import Iterable

from safepredict.findings import DIAGNOSE_CODES, SEVERITIES, Finding

__all__ = ["exit_code", "rank", "worst"]

_SEVERITY_RANK = {severity: i for i, severity in enumerate(SEVERITIES)}
_CODE_ORDER = {code: i for i, code in enumerate(DIAGNOSE_CODES)}


def _key(finding: Finding) -> tuple[int, float, int]:
    impact = finding.impact if finding.impact is not None else 0.0
    # A monitor code has no place in the table: it ranks after every diagnose code of its severity.
    return (_SEVERITY_RANK[finding.severity], -impact, _CODE_ORDER.get(finding.code, len(_CODE_ORDER)))


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
