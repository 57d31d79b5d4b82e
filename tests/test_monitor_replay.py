"""Golden replay: capture beside the lock, replay, and report what moved (against a stand-in predictor)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import types
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from safepredict.detections import Detections
from safepredict.errors import InputError, LockVersionError
from safepredict.monitor import commands
from safepredict.monitor.replay import (
    GOLDEN_DIRNAME,
    ReplayTolerance,
    capture_and_replay,
    capture_golden,
    locked_weights,
    replay_golden,
)

# Per image (by the stem of the source file): rows of x1, y1, x2, y2, score, label.
TABLE = {
    "a": [[10, 10, 50, 60, 0.95, 0], [70, 20, 90, 40, 0.81, 1], [5, 5, 15, 15, 0.52, 2], [1, 1, 9, 9, 0.2, 0]],
    "b": [[30, 30, 80, 80, 0.88, 1]],
    "c": [],
}


class StandIn:
    """Answers predict_candidates from TABLE; ``change`` rewrites the rows to simulate drift."""

    score_threshold = 0.5

    def __init__(self, change: Callable[[str, list[list[float]]], list[list[float]]] | None = None) -> None:
        self.change = change
        self.names: dict[str, str] = {}  # golden file name -> source stem, learned at capture

    def predict_candidates(self, path):
        path = Path(path)
        key = path.read_text().strip()  # the images are text files naming their row set
        rows = [list(r) for r in TABLE[key]]
        if self.change is not None:
            rows = self.change(key, rows)
        arr = np.asarray(rows, dtype=np.float32).reshape(-1, 6)
        return None, Detections(boxes=arr[:, :4], scores=arr[:, 4], labels=arr[:, 5].astype(int))


@pytest.fixture
def golden(tmp_path) -> Path:
    sources = []
    for key in TABLE:
        p = tmp_path / "src" / f"{key}.png"
        p.parent.mkdir(exist_ok=True)
        p.write_text(key)
        sources.append(p)
    lock = tmp_path / "model" / "safepredict.lock"
    lock.parent.mkdir()
    capture_golden(StandIn(), sources, lock)
    return lock


def _replay(lock: Path, change=None, **kw):
    return replay_golden(StandIn(change), lock, emit=False, **kw)


def test_capture_writes_images_and_detections_beside_the_lock(golden):
    folder = golden.parent / GOLDEN_DIRNAME
    doc = json.loads((folder / "golden.json").read_text())
    assert [e["file"] for e in doc["images"]] == ["000.png", "001.png", "002.png"]
    assert (folder / "000.png").read_text() == "a"
    # Kept down to threshold - margin (0.4): the 0.2 candidate is not stored.
    assert [round(r[4], 2) for r in doc["images"][0]["detections"]] == [0.95, 0.81, 0.52]
    assert doc["score_threshold"] == 0.5


def test_unchanged_replay_is_ok(golden):
    report = _replay(golden)
    assert report.ok and report.images == 3 and report.detections == 4
    assert report.max_box_delta == 0.0 and report.max_score_delta == 0.0
    assert "everything replays" in report.describe()


def _shift(dx: float) -> Callable:
    return lambda key, rows: [[r[0] + dx, r[1], r[2] + dx, r[3], r[4], r[5]] for r in rows]


def test_small_numeric_noise_is_tolerated(golden):
    report = _replay(golden, lambda k, rows: [[*r[:4], r[4] + 0.005, r[5]] for r in _shift(0.4)(k, rows)])
    assert report.ok
    assert report.max_box_delta == pytest.approx(0.4, abs=1e-4)
    assert report.max_score_delta == pytest.approx(0.005, abs=1e-4)


def test_moved_boxes_and_changed_scores_are_drift(golden):
    moved = _replay(golden, _shift(3.0))
    assert {d.kind for d in moved.drifts} == {"moved"} and len(moved.drifts) == 4
    assert moved.drifts[0].box_delta == pytest.approx(3.0)
    rescored = _replay(golden, lambda k, rows: [[*r[:4], r[4] - 0.1, r[5]] for r in rows])
    kinds = sorted(d.kind for d in rescored.drifts)
    # 0.95, 0.81, 0.88 are rescored; 0.52 drops to 0.42: gone from above the threshold, still matched.
    assert kinds == ["rescored"] * 4


def test_missing_and_extra_detections(golden):
    def change(key, rows):
        if key == "a":
            rows = rows[1:]  # the 0.95 detection is gone
        if key == "c":
            rows = [[0, 0, 20, 20, 0.9, 2]]  # something new
        return rows

    report = _replay(golden, change)
    kinds = {(d.image, d.kind) for d in report.drifts}
    assert kinds == {("000.png", "missing"), ("002.png", "extra")}
    assert "fix:" in report.describe()


def test_detections_on_the_threshold_edge_may_vanish(golden):
    # The 0.52 detection sits within threshold + score tolerance of 0.5: it may flip.
    report = _replay(
        golden, lambda k, rows: [r for r in rows if r[4] != pytest.approx(0.52)], tolerance=ReplayTolerance(score=0.03)
    )
    assert report.ok


def test_changed_or_missing_golden_images(golden):
    folder = golden.parent / GOLDEN_DIRNAME
    (folder / "001.png").write_text("a")
    (folder / "002.png").unlink()
    kinds = {(d.image, d.kind) for d in _replay(golden).drifts}
    assert kinds == {("001.png", "image_changed"), ("002.png", "image_missing")}


def test_missing_or_unknown_golden_sets(tmp_path, golden):
    with pytest.raises(InputError):
        _replay(tmp_path / "elsewhere" / "safepredict.lock")
    path = golden.parent / GOLDEN_DIRNAME / "golden.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "schema_version": 7}))
    with pytest.raises(LockVersionError):
        _replay(golden)


def test_drift_is_logged_as_an_error(golden, caplog):
    with caplog.at_level(logging.WARNING, logger="safepredict"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = replay_golden(StandIn(_shift(5.0)), golden)
    assert not report.ok
    rec = next(r for r in caplog.records if getattr(r, "safepredict_code", None) == "monitor.replay_drift")
    assert rec.safepredict_severity == "error" and rec.safepredict_evidence["drifts"] == 4


def test_replay_without_a_lock_says_where_the_set_lives():
    with pytest.raises(InputError, match="stored beside the lock"):
        replay_golden(StandIn(), None)


def test_capture_and_replay_reports_the_fresh_set(tmp_path):
    img = tmp_path / "a.png"
    img.write_text("a")
    report = capture_and_replay(StandIn(), [img], tmp_path / "safepredict.lock")
    assert report.ok and report.images == 1 and report.golden == tmp_path / GOLDEN_DIRNAME / "golden.json"
    # A pipeline that does not reproduce itself is reported at once (here: every box moves between runs).
    moving = StandIn()
    calls = iter(range(100))
    moving.change = lambda key, rows: _shift(3.0 * next(calls))(key, rows)
    assert not capture_and_replay(moving, [img], tmp_path / "other" / "safepredict.lock").ok


def test_locked_weights_are_the_ones_the_lock_pins(tmp_path):
    from safepredict.errors import SafePredictError
    from safepredict.lock import write_lock

    weights = tmp_path / "run" / "model_final.pth"
    weights.parent.mkdir()
    weights.write_bytes(b"weights")
    lock = tmp_path / "run" / "safepredict.lock"
    write_lock(lock, weights=weights)
    assert locked_weights(lock) == weights
    bare = tmp_path / "bare.lock"
    write_lock(bare)
    with pytest.raises(SafePredictError, match="pins no weights"):
        locked_weights(bare)


# -- CLI -------------------------------------------------------------------------------------------


class _CliStandIn(StandIn):
    change_for_cli: Callable | None = None

    @classmethod
    def from_checkpoint(cls, checkpoint, config=None, **kwargs):
        assert kwargs == {"monitor": False}
        return cls(cls.change_for_cli)


@pytest.fixture
def cli_predictor(monkeypatch):
    module = types.ModuleType("safepredict.predictor")
    module.SafePredictor = _CliStandIn  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "safepredict.predictor", module)
    monkeypatch.setattr(_CliStandIn, "change_for_cli", None)
    return _CliStandIn


def test_golden_command_captures_and_replays(tmp_path, cli_predictor, capsys):
    img = tmp_path / "b.png"
    img.write_text("b")
    lock = tmp_path / "safepredict.lock"
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["golden", "ckpt.pth", str(img), "--lock", str(lock)])
    assert args.func(args) == 0
    assert "everything replays" in capsys.readouterr().out
    # The check extension: --replay re-runs it; a drifted model exits 1.
    cli_predictor.change_for_cli = _shift(4.0)
    ns = argparse.Namespace(lock=str(lock), weights="ckpt.pth", config=None, replay=True)
    assert commands._replay_run(ns, None) == 1
    assert "moved" in capsys.readouterr().out
    assert commands._replay_run(argparse.Namespace(replay=False), None) is None


def test_check_offers_replay():
    from safepredict.cli import build_parser

    for _ in range(2):  # registering twice (two parsers in one process) must not break either
        parser = build_parser(["check"])
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        args = sub.choices["check"].parse_args(["--replay"])
        assert args.replay is True
