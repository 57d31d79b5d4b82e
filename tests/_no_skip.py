"""Under ``scripts/test.sh`` (SAFEPREDICT_NO_SKIP=1, CI) a skipped test is a failure.

The test command installs every framework and tool the tests use, so an ``importorskip`` that
fires there means a missing install step, not an optional feature: it must not pass as green.
Both places a skip can happen are covered: inside a test (``pytest.skip``, a ``skipif`` mark, an
``importorskip`` in a test or fixture) and at collection (a module-level ``importorskip`` skips
the whole file). Expected failures (``xfail``) are left alone. ``tests/conftest.py`` installs
these hooks; ``tests/test_no_skip.py`` runs them on a probe file.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

ON = "SAFEPREDICT_NO_SKIP"


def _fail(report: Any) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
    report.outcome = "failed"
    report.longrepr = f"skipped under {ON}=1 (scripts/test.sh installs everything): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Any:
    outcome = yield
    report = outcome.get_result()
    if os.environ.get(ON) == "1" and report.skipped and not hasattr(report, "wasxfail"):
        _fail(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: Any) -> Any:
    outcome = yield
    report = outcome.get_result()
    if os.environ.get(ON) == "1" and report.skipped:
        _fail(report)
