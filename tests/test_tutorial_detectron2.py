"""Detectron2's own tutorial flow: ``DefaultTrainer(cfg)`` without ``default_setup``, then a predictor on
the same ``cfg``.

The tutorial (Detectron2's Colab notebook) trains with ``cfg.DATASETS.TEST = ()``, never calls
``default_setup`` (so nothing writes ``OUTPUT_DIR/config.yaml``), then sets ``cfg.MODEL.WEIGHTS`` to
``model_final.pth`` and a score threshold, and builds ``DefaultPredictor(cfg)``. Followed here step by
step on the synthetic data set, with a real short training run in a subprocess (trainers set up
process-wide loggers and registries), and ``SafePredictor(cfg)`` where the tutorial has
``DefaultPredictor(cfg)``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from safepredict import SafePredictor, TrainingArtifactNotFound
from safepredict.bundle import CLASSES_FILENAME, LOCK_FILENAME
from safepredict.lock import read_lock
from safepredict.monitor.profile import PROFILE_FILENAME

TUTORIAL = """
import json, os, sys
from pathlib import Path

import cv2
import torch
from detectron2.engine import DefaultPredictor, DefaultTrainer

from safepredict import SafePredictor
from safepredict.demo.data import generate
from safepredict.demo.train_detectron2 import Detectron2Recipe, build_config, register
from safepredict.frameworks.detectron2.hook import SafePredictHook

# As the test process (conftest): one intra-op thread, or two compete with the machine's other work.
torch.set_num_threads(int(os.environ.get("SAFEPREDICT_TORCH_THREADS", "1")))
dataset = generate(Path(sys.argv[1]))
names = register(dataset)
cfg = build_config(dataset, Path(sys.argv[2]), Detectron2Recipe(max_iter=int(sys.argv[3])), names)
cfg.defrost()
cfg.DATASETS.TEST = ()                      # as the tutorial: no validation set
os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)  # and no default_setup
trainer = DefaultTrainer(cfg)
trainer.register_hooks([SafePredictHook()])
trainer.resume_or_load(resume=False)
trainer.train()

# Inference, as the tutorial goes on: the same cfg, the final weights, a threshold of its own.
cfg.MODEL.WEIGHTS = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0  # the tutorial's 0.7 suits its trained model, not a few iterations
predictor = DefaultPredictor(cfg)
safe = SafePredictor(cfg)
out = []
for path in dataset.val_images[:4]:
    image = cv2.imread(str(path))
    theirs, ours = predictor(image)["instances"].to("cpu"), safe(image)["instances"]
    out.append({
        "theirs": [theirs.pred_boxes.tensor.tolist(), theirs.scores.tolist(), theirs.pred_classes.tolist()],
        "ours": [ours.pred_boxes.tensor.tolist(), ours.scores.tolist(), ours.pred_classes.tolist()],
    })
print("RESULT " + json.dumps({
    "images": out,
    "class_names": list(safe.class_names or ()),
    "threshold": safe.score_threshold,
    "discrepancies": [d.key for d in safe.discrepancies],
}))
"""

ITERATIONS = 8


@pytest.mark.slow
def test_tutorial_flow_trains_and_predicts_with_the_same_cfg(d2_fixture, tmp_path) -> None:
    out = tmp_path / "output"
    done = subprocess.run(
        [sys.executable, "-c", TUTORIAL, str(d2_fixture.dataset.root), str(out), str(ITERATIONS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])

    # The hook wrote config.yaml as default_setup would have: the training config, read back.
    config = out / "config.yaml"
    assert config.is_file()
    from safepredict.frameworks.detectron2.contract import load_config, read_contract

    written, _ = load_config(config)
    assert written.SOLVER.MAX_ITER == ITERATIONS and tuple(written.DATASETS.TEST) == ()
    assert read_contract(config) == read_contract(d2_fixture.config)  # same recipe but the schedule
    # No validation set: the lock (pinning the config too) and the class names, no profile, and it says so.
    assert (out / LOCK_FILENAME).is_file() and not (out / PROFILE_FILENAME).exists()
    assert json.loads((out / CLASSES_FILENAME).read_text())["class_names"] == list(d2_fixture.class_names)
    assert "no validation set" in done.stderr
    pinned = {f.role: f.path for f in read_lock(out / LOCK_FILENAME).environment.files}
    assert pinned == {"weights": "model_final.pth", "config": "config.yaml"}

    # SafePredictor(cfg) on the tutorial's cfg gives DefaultPredictor's detections, at the user's threshold.
    assert result["threshold"] == 0.0 and "score_threshold" in result["discrepancies"]
    assert result["class_names"] == list(d2_fixture.class_names)
    assert sum(len(image["ours"][1]) for image in result["images"]) > 0
    for image in result["images"]:
        (their_boxes, their_scores, their_classes), (boxes, scores, classes) = image["theirs"], image["ours"]
        assert classes == their_classes
        np.testing.assert_allclose(np.array(boxes).reshape(-1, 4), np.array(their_boxes).reshape(-1, 4), atol=1e-3)
        np.testing.assert_allclose(scores, their_scores, atol=1e-5)


def test_without_config_yaml_the_error_names_training_config_cfg(d2_fixture, tmp_path) -> None:
    """The tutorial without the hook: no config.yaml beside model_final.pth. The fix names the cfg."""
    from detectron2.engine import DefaultPredictor

    from safepredict.frameworks.detectron2.contract import load_config

    checkpoint = tmp_path / "model_final.pth"
    shutil.copy(d2_fixture.checkpoint, checkpoint)
    cfg, _ = load_config(d2_fixture.config)
    cfg.defrost()
    cfg.MODEL.WEIGHTS = str(checkpoint)
    with pytest.raises(TrainingArtifactNotFound) as caught:
        SafePredictor(cfg, monitor=False)
    assert "SafePredictor(cfg, training_config=cfg)" in caught.value.fix
    assert "SafePredictHook" in caught.value.fix

    # What the fix says works, and is DefaultPredictor(cfg).
    safe = SafePredictor(cfg, training_config=cfg, monitor=False)
    assert safe.discrepancies == ()
    default = DefaultPredictor(cfg)
    for path in d2_fixture.dataset.val_images[:3]:
        image = cv2.imread(str(path))
        ours, theirs = safe(image)["instances"], default(image)["instances"].to("cpu")
        assert ours.pred_classes.tolist() == theirs.pred_classes.tolist()
        np.testing.assert_allclose(ours.pred_boxes.tensor.numpy(), theirs.pred_boxes.tensor.numpy(), atol=1e-3)
        np.testing.assert_allclose(ours.scores.numpy(), theirs.scores.numpy(), atol=1e-5)
