"""Golden replay on a real Detectron2 model: stored beside a real lock, replayed at start-up."""

from __future__ import annotations

import logging
import warnings

import pytest

from safepredict import SafePredictor
from safepredict.lock import write_lock
from safepredict.monitor.replay import capture_golden


@pytest.fixture(scope="module")
def locked(d2_fixture, tmp_path_factory):
    lock = tmp_path_factory.mktemp("golden") / "safepredict.lock"
    write_lock(lock, weights=d2_fixture.checkpoint, config=d2_fixture.config)
    p = SafePredictor.from_checkpoint(d2_fixture.checkpoint, monitor=False, class_names=d2_fixture.class_names)
    capture_golden(p, d2_fixture.dataset.val_images[:4], lock)
    return lock


def test_same_model_same_environment_replays_clean(d2_fixture, locked):
    p = SafePredictor.from_checkpoint(
        d2_fixture.checkpoint, lock=locked, replay=True, monitor=False, class_names=d2_fixture.class_names
    )
    assert p.replay_report is not None
    assert p.replay_report.ok, p.replay_report.describe()
    assert p.replay_report.detections > 0


def test_changed_numerics_are_caught(d2_fixture, locked, caplog):
    """A deliberate change of test size stands in for an export or environment that alters numerics."""
    caplog.set_level(logging.WARNING, logger="safepredict")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = SafePredictor.from_checkpoint(
            d2_fixture.checkpoint,
            lock=locked,
            replay=True,
            monitor=False,
            overrides={"resize.min_size": 160, "resize.max_size": 300},
            class_names=d2_fixture.class_names,
        )
    assert p.replay_report is not None and not p.replay_report.ok
    assert any(getattr(r, "safepredict_code", None) == "monitor.replay_drift" for r in caplog.records)


def test_startup_check_against_a_lock_from_another_environment(d2_fixture, tmp_path):
    from safepredict import EnvironmentMismatchError, SafePredictWarning

    lock = tmp_path / "safepredict.lock"
    write_lock(lock, weights=d2_fixture.checkpoint, config=d2_fixture.config)
    text = lock.read_text()
    assert '[packages.torch]\nversion = "' in text
    start = text.index('[packages.torch]\nversion = "') + len('[packages.torch]\nversion = "')
    lock.write_text(text[:start] + "2.5.0" + text[text.index('"', start) :])
    with pytest.raises(EnvironmentMismatchError, match="torch"):
        SafePredictor.from_checkpoint(d2_fixture.checkpoint, lock=lock, on_env_mismatch="error", monitor=False)
    with pytest.warns(SafePredictWarning, match="torch"):
        SafePredictor.from_checkpoint(
            d2_fixture.checkpoint, lock=lock, monitor=False, class_names=d2_fixture.class_names
        )
