"""``safepredict diagnose``: every check safepredict has, run on a checkpoint and a few images.

::

    from safepredict.diagnose import diagnose, write_report

    result = diagnose("output/model_final.pth", ["val/"], config="inference.yaml", lock="safepredict.lock")
    print(result.describe())           # ranked findings, worst first, each with evidence and fix
    write_report(result, "report.html")  # self-contained HTML with pictures

The checks, the ranking and every finding code are described in ``docs/diagnose.md``. ``Finding`` is
the one value the monitor reports too (:mod:`safepredict.findings`); ``CODES`` is diagnose's table of codes.
"""

from __future__ import annotations

from safepredict.diagnose.ranking import exit_code, rank
from safepredict.diagnose.report import render_html, write_report
from safepredict.diagnose.run import Diagnosis, diagnose
from safepredict.findings import DIAGNOSE_CODES as CODES
from safepredict.findings import Finding

__all__ = ["CODES", "Diagnosis", "Finding", "diagnose", "exit_code", "rank", "render_html", "write_report"]
