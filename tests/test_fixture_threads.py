"""A fixture is what trained it: everything that changes the weights is in its cache key, and the
suite's tests that read a trained model's outputs hold on a model trained with another thread count.

``safepredict demo`` (the README's first command) trains on 1 thread, ``scripts/test.sh`` on 2, so
after the README's two commands the cache holds two Detectron2 models that differ in their scores;
the second test here runs the model-dependent tests on the one the suite is not using (the demo's,
or one it trains itself when the demo has not run on this machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from safepredict.demo.fixtures import fixture_dir, get_fixture

REPO = Path(__file__).resolve().parents[1]

# The tests whose expectations come from a trained model's outputs: parity and thresholds on the
# Detectron2 fixture, the diagnose findings, the monitor on the fixture's own streams, and the
# messages docs/troubleshooting.md quotes.
MODEL_DEPENDENT = (
    "tests/test_predictor_detectron2.py",
    "tests/test_diagnose.py",
    "tests/test_monitor_fixture.py",
    "tests/test_docs.py::test_troubleshooting_quotes_what_safepredict_says_now",
)


def test_the_thread_count_is_part_of_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAFEPREDICT_TRAIN_THREADS_DETECTRON2", raising=False)
    monkeypatch.delenv("SAFEPREDICT_TRAIN_THREADS_MMDET", raising=False)
    one, two = fixture_dir("detectron2", threads=1), fixture_dir("detectron2", threads=2)
    assert one != two
    monkeypatch.setenv("SAFEPREDICT_TRAIN_THREADS", "2")
    assert fixture_dir("detectron2") == two and fixture_dir("mmdet") == fixture_dir("mmdet", threads=2)
    monkeypatch.setenv("SAFEPREDICT_TRAIN_THREADS_DETECTRON2", "1")  # one framework's own count wins
    assert fixture_dir("detectron2") == one and fixture_dir("mmdet") == fixture_dir("mmdet", threads=2)
    monkeypatch.delenv("SAFEPREDICT_TRAIN_THREADS")
    assert fixture_dir("mmdet") == fixture_dir("mmdet", threads=1)  # the trainers' default: 1


def _threads(fixture) -> int:
    return int(json.loads((fixture.output_dir / "fixture.json").read_text())["train_threads"])


@pytest.mark.slow
def test_model_dependent_tests_pass_on_a_fixture_trained_with_another_thread_count(d2_fixture) -> None:
    ours = _threads(d2_fixture)
    other = 1 if ours != 1 else 2
    fixture = get_fixture("detectron2", threads=other)  # cached by the demo after the README's first command
    assert _threads(fixture) == other and fixture.output_dir != d2_fixture.output_dir
    env = {**os.environ, "SAFEPREDICT_TRAIN_THREADS_DETECTRON2": str(other)}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *MODEL_DEPENDENT],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=3000,
    )
    tail = (out.stdout + out.stderr)[-8000:]
    assert out.returncode == 0, f"on the {other}-thread fixture {fixture.output_dir}:\n{tail}"
    assert " passed" in out.stdout and " failed" not in out.stdout, tail
