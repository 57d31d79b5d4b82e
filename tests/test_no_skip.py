"""The no-skip hooks (tests/_no_skip.py) on a probe file: every kind of skip fails under SAFEPREDICT_NO_SKIP=1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

PROBES = {
    "test_probe_runtime.py": """\
import pytest

def test_skips():
    pytest.skip("not here")

@pytest.mark.skipif(True, reason="never")
def test_marked():
    pass

def test_imports():
    pytest.importorskip("no_such_module_for_safepredict")

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_failure():
    assert False

def test_passes():
    pass
""",
    "test_probe_module.py": """\
import pytest
pytest.importorskip("no_such_module_for_safepredict")

def test_never_collected():
    pass
""",
}


def _run(tmp_path: Path, probe: str, no_skip: bool) -> str:
    (tmp_path / probe).write_text(PROBES[probe])
    env = {k: v for k, v in os.environ.items() if k != "SAFEPREDICT_NO_SKIP"}
    if no_skip:
        env["SAFEPREDICT_NO_SKIP"] = "1"
    env["PYTHONPATH"] = str(TESTS) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "_no_skip",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            str(tmp_path / probe),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip().splitlines()[-1]


def test_every_skip_fails_under_no_skip(tmp_path: Path) -> None:
    # The three skips inside tests fail (the skipif mark, skipped at setup, as an error); xfail and pass stay.
    assert _run(tmp_path, "test_probe_runtime.py", no_skip=True).startswith("2 failed, 1 passed, 1 xfailed, 1 error")
    # A module skipped at collection is a collection error, which stops the whole run.
    assert _run(tmp_path, "test_probe_module.py", no_skip=True).startswith("1 error")


def test_without_it_skips_are_skips(tmp_path: Path) -> None:
    assert _run(tmp_path, "test_probe_runtime.py", no_skip=False).startswith("1 passed, 3 skipped, 1 xfailed")
    assert _run(tmp_path, "test_probe_module.py", no_skip=False).startswith("1 skipped")
