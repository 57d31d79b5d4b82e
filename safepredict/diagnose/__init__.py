"""``safepredict diagnose``: every check safepredict has, run on a checkpoint and a few images.

::

    from safepredict.diagnose import diagnose, write_report

    result = diagnose("output/model_final.pth", ["val/"], config="inference.yaml", lock="safepredict.lock")
    print(result.describe())           # ranked findings, worst first, each with evidence and fix
    write_report(result, "report.html")  # self-contained HTML with pictures

The checks, the ranking and every finding code are described in ``docs/diagnose.md``.
"""

from __future__ import annotations

from safepredict.diagnose.findings import CODES, Finding, exit_code, rank
from safepredict.diagnose.report import render_html, write_report
from safepredict.diagnose.run import Diagnosis, diagnose

__all__ = ["CODES", "Diagnosis", "Finding", "diagnose", "exit_code", "rank", "render_html", "write_report"]
