"""Diagnose's findings about the environment: every lock entry that differs from the running one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from safepredict.findings import Finding

__all__ = ["environment_findings"]


def environment_findings(lock: str | os.PathLike[str], checkpoint: Path) -> tuple[list[Finding], dict[str, Any]]:
    """One finding per lock entry that differs from the running environment."""
    from safepredict.lock import check_lock

    report = check_lock(lock, weights=checkpoint)
    findings = []
    for m in report.mismatches:
        found = "absent" if m.found is None else m.found
        locked = "absent" if m.locked is None else m.locked
        findings.append(
            Finding(
                code="environment.mismatch",
                severity="error" if m.key == "files.weights" else "warning",
                subject=m.key,
                message=f"{m.key}: locked {locked}, running {found}",
                evidence=(
                    f"the lock {report.lock_path} says {m.key} = {locked} (rule {m.rule}: "
                    f"{m.requirement or m.rule}); here it is {found} ({m.source or 'running environment'}). "
                    f"Consequence: {m.consequence}"
                ),
                fix=m.fix,
                data=m.to_dict(),
            )
        )
    for u in report.unverified:
        findings.append(
            Finding(
                code="environment.unverified",
                severity="info",
                subject=u.key,
                message=f"{u.key} could not be checked here",
                evidence=u.describe(),
                data=u.to_dict(),
            )
        )
    return findings, report.to_dict()
