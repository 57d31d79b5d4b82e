"""``safepredict profile`` and ``profile-show``, run against a stand-in with the predictor's profiling interface."""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path
from typing import ClassVar

import pytest
from _synthetic import SyntheticStream

from safepredict.errors import InputError
from safepredict.monitor import ReferenceProfile, commands


class _StandInPredictor:
    """Only what `safepredict profile` uses: from_checkpoint, predict_candidates and the threshold facts."""

    score_threshold = 0.5
    threshold_key = "MODEL.ROI_HEADS.SCORE_THRESH_TEST"
    class_names = SyntheticStream().class_names
    opened: ClassVar[list[tuple[Path, object]]] = []

    def __init__(self) -> None:
        self._pairs = iter(SyntheticStream(seed=5))
        self.seen: list[Path] = []

    @classmethod
    def from_checkpoint(cls, checkpoint, config=None, **kwargs):
        assert kwargs == {"monitor": False}  # profiling needs no monitor (nor an automatic reference)
        cls.opened.append((Path(checkpoint), config))
        return cls()

    def predict_candidates(self, image, color="BGR"):
        if isinstance(image, (str, Path)):
            self.seen.append(Path(image))
        return next(self._pairs)


@pytest.fixture
def predictor_module(monkeypatch):
    module = types.ModuleType("safepredict.predictor")
    module.SafePredictor = _StandInPredictor  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "safepredict.predictor", module)
    _StandInPredictor.opened.clear()
    return module


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    images = tmp_path / "val"
    (images / "sub").mkdir(parents=True)
    for i in range(6):
        (images / f"{i:03d}.png").write_bytes(b"")
    (images / "notes.txt").write_text("not an image")
    (images / "sub" / "x.JPG").write_bytes(b"")
    return images


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_profile_writes_next_to_the_checkpoint(tmp_path, folder, predictor_module, capsys):
    ckpt = tmp_path / "run" / "model_final.pth"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"")
    assert _run(["profile", str(ckpt), str(folder), "--config", "cfg.yaml"]) == 0
    profile = ReferenceProfile.load(ckpt.parent / "safepredict-profile.json")
    assert profile.n_images == 6 and profile.threshold_key == "MODEL.ROI_HEADS.SCORE_THRESH_TEST"
    assert profile.class_names == _StandInPredictor.class_names and profile.inputs is not None
    assert profile.swapped_class_share is not None  # some images went through swapped too
    assert _StandInPredictor.opened == [(ckpt, Path("cfg.yaml"))]
    assert "reference profile of 6 images" in capsys.readouterr().out


def test_profile_limit_recursive_and_output(tmp_path, folder, predictor_module):
    out = tmp_path / "p.json"
    assert _run(["profile", "ckpt.pth", str(folder), "--recursive", "-o", str(out)]) == 0
    assert ReferenceProfile.load(out).n_images == 7
    assert _run(["profile", "ckpt.pth", str(folder), "--limit", "2", "-o", str(out)]) == 0
    assert ReferenceProfile.load(out).n_images == 2


def test_find_images_is_sorted_and_refuses_empty_folders(tmp_path, folder):
    assert [p.name for p in commands.find_images(folder)] == [f"{i:03d}.png" for i in range(6)]
    with pytest.raises(InputError):
        commands.find_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError):
        commands.find_images(tmp_path / "empty")


def test_profile_show(tmp_path, capsys):
    path = ReferenceProfile.build(SyntheticStream(seed=1).take(20), score_threshold=0.5).save(tmp_path / "p.json")
    assert _run(["profile-show", str(path)]) == 0
    assert "reference profile of 20 images" in capsys.readouterr().out
    with pytest.raises(InputError):
        _run(["profile-show", str(tmp_path / "nope.json")])


def test_cli_offers_the_profile_commands():
    from safepredict.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {"profile", "profile-show"} <= set(sub.choices)
