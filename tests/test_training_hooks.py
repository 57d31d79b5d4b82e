"""The training hooks write the safepredict bundle; a fresh SafePredictor finds and uses it.

Real short training runs (Detectron2 ``DefaultTrainer``, mmengine ``Runner`` with
``custom_hooks=[dict(type="SafePredictHook")]`` in the config), each in a subprocess as the
fixtures are (trainers set up process-wide loggers and registries).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from safepredict import SafePredictor
from safepredict.bundle import CLASSES_FILENAME, LOCK_FILENAME, find

TRAIN_D2 = """
import sys
from pathlib import Path
from safepredict.demo.data import generate
from safepredict.demo.train_detectron2 import Detectron2Recipe, train
from safepredict.frameworks.detectron2.hook import SafePredictHook
dataset = generate(Path(sys.argv[1]))
train(dataset, Path(sys.argv[2]), Detectron2Recipe(max_iter=20), hooks=[SafePredictHook(max_images=16, golden=3)])
"""

TRAIN_MMDET = """
import sys
from pathlib import Path
from safepredict.demo.data import generate
from safepredict.demo.train_mmdet import MMDetRecipe, train
dataset = generate(Path(sys.argv[1]))
train(
    dataset, Path(sys.argv[2]), MMDetRecipe(max_epochs=1),
    custom_hooks=[dict(type="SafePredictHook", max_images=16, golden=3)],
    custom_imports=["safepredict.frameworks.mmdet.hook"],
)
"""


def _train(script: str, data_root: Path, out: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", script, str(data_root), str(out)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _uses_the_bundle(checkpoint: Path, caplog) -> SafePredictor:
    caplog.set_level(logging.INFO, logger="safepredict")
    p = SafePredictor.from_checkpoint(checkpoint)
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert "using the lock beside the checkpoint" in said
    assert "using the reference profile beside the checkpoint" in said
    assert p.monitor is not None and p.monitor.reference is not None
    assert p._lock_path == checkpoint.parent / LOCK_FILENAME
    assert p.replay().ok  # the golden set replays where it was captured
    return p


@pytest.mark.slow
def test_detectron2_default_trainer_writes_the_bundle(d2_fixture, tmp_path, caplog):
    out = tmp_path / "run"
    _train(TRAIN_D2, d2_fixture.dataset.root, out)
    bundle = find(out / "model_final.pth")
    assert bundle.lock and bundle.profile and bundle.golden and bundle.classes, bundle.describe()
    assert json.loads((out / CLASSES_FILENAME).read_text())["class_names"] == list(d2_fixture.class_names)
    p = _uses_the_bundle(out / "model_final.pth", caplog)
    # config.yaml records no class names; the bundle does.
    assert p.class_names == d2_fixture.class_names
    assert "using the class names beside the checkpoint" in caplog.text


@pytest.mark.slow
def test_mmengine_runner_with_custom_hooks_writes_the_bundle(mmdet_fixture, tmp_path, caplog):
    out = tmp_path / "work_dir"
    _train(TRAIN_MMDET, mmdet_fixture.dataset.root, out)
    checkpoint = out / "epoch_1.pth"
    bundle = find(checkpoint)
    assert bundle.lock and bundle.profile and bundle.golden, bundle.describe()
    # The checkpoint's config carries custom_imports of safepredict's hook: the safe reader takes it.
    p = _uses_the_bundle(checkpoint, caplog)
    assert p.class_names == mmdet_fixture.class_names
