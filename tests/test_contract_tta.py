"""Test-time augmentation in the contract: whether training-time evaluation used TTA, and what a
predictor does about it (it runs one pass per image, and says so).

Real configs: the trained fixtures' own (Detectron2 ``TEST.AUG.ENABLED`` switched on; an mmdet test
pipeline made a ``TestTimeAug`` the way ``tools/test.py --tta`` does it) and mmdet's RetinaNet config,
which declares a ``tta_model``/``tta_pipeline`` for ``tools/test.py --tta``.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import attrs
import numpy as np
import pytest

from safepredict import SafePredictor, read_contract
from safepredict.contract import TestTimeAugmentation, diff
from safepredict.frameworks.base import config_value


def _records(caplog: pytest.LogCaptureFixture, code: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "safepredict_code", None) == code]


# --------------------------------------------------------------------------- Detectron2


@pytest.fixture(scope="module")
def d2_tta_config(d2_fixture, tmp_path_factory) -> Path:
    """The fixture's training config with TEST.AUG.ENABLED, as tools/train_net.py then also evaluates."""
    from safepredict.frameworks.detectron2.contract import load_config

    cfg, _ = load_config(d2_fixture.config)
    cfg.defrost()
    cfg.TEST.AUG.ENABLED = True
    cfg.TEST.AUG.MIN_SIZES = (96, 112, 128)
    cfg.TEST.AUG.MAX_SIZE = 200
    path = tmp_path_factory.mktemp("d2tta") / "config.yaml"
    path.write_text(cfg.dump())
    return path


def test_detectron2_zoo_config_with_test_aug() -> None:
    """Detectron2's own accuracy-test config evaluates with TTA (its expected results include bbox_TTA)."""
    import detectron2

    zoo = Path(detectron2.__file__).parent / "model_zoo" / "configs"
    path = zoo / "quick_schedules" / "mask_rcnn_R_50_FPN_inference_acc_test.yaml"
    contract = read_contract(path)
    assert contract.tta == TestTimeAugmentation(enabled=True, min_sizes=(700, 800), max_size=4000, flip=True)
    assert contract.key("tta.min_sizes") == "TEST.AUG.MIN_SIZES"


def test_detectron2_contract_reads_test_aug(d2_fixture, d2_tta_config) -> None:
    plain, tta = read_contract(d2_fixture.config), read_contract(d2_tta_config)
    assert plain.tta.enabled is False and plain.key("tta.enabled") == "TEST.AUG.ENABLED"
    assert tta.tta == TestTimeAugmentation(enabled=True, min_sizes=(96, 112, 128), max_size=200, flip=True)
    assert "test-time augmentation: on" in tta.describe() and "96/112/128" in tta.describe()
    assert "test-time augmentation: off" in plain.describe()
    assert tta != plain  # TTA is a setting of the evaluation

    (d,) = diff(tta, plain)  # an inference config without TTA against a training that evaluated with it
    assert (d.key, d.framework_key, d.training, d.inference) == ("tta.enabled", "TEST.AUG.ENABLED", True, False)
    assert d.severity == "warning" and "TEST.AUG.ENABLED = True" in d.fix and "without TTA" in d.fix
    # The copies are compared only where both sides augment.
    fewer = attrs.evolve(tta, tta=attrs.evolve(tta.tta, min_sizes=(112,)))
    assert [d.key for d in diff(tta, fewer)] == ["tta.min_sizes"]
    assert [d.key for d in diff(attrs.evolve(plain, tta=fewer.tta), plain)] == ["tta.enabled"]


def test_detectron2_predictor_warns_and_runs_one_pass(d2_fixture, d2_tta_config, tmp_path, caplog) -> None:
    checkpoint = tmp_path / "model_final.pth"
    shutil.copy(d2_fixture.checkpoint, checkpoint)
    caplog.set_level(logging.WARNING, logger="safepredict")
    with pytest.warns(UserWarning, match="test-time augmentation"):
        augmented = SafePredictor.from_checkpoint(checkpoint, training_config=d2_tta_config, monitor=False)
    (record,) = _records(caplog, "contract.tta")
    assert "one pass per image" in record.getMessage() and "bbox_TTA" in record.getMessage()
    (d,) = [d for d in augmented.discrepancies if d.key == "tta.enabled"]
    assert d.training is True and d.inference is False and d.inference_source.startswith("SafePredictor")

    plain = SafePredictor.from_checkpoint(checkpoint, training_config=d2_fixture.config, monitor=False)
    assert plain.discrepancies == ()
    for path in d2_fixture.dataset.val_images[:2]:  # the single pass is the plain evaluation's
        a, b = augmented.predict(path), plain.predict(path)
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.scores, b.scores)


def test_detectron2_inference_config_with_tta_is_named(d2_fixture, d2_tta_config, tmp_path, caplog) -> None:
    checkpoint = tmp_path / "model_final.pth"
    shutil.copy(d2_fixture.checkpoint, checkpoint)
    shutil.copy(d2_fixture.config, tmp_path / "config.yaml")
    caplog.set_level(logging.WARNING, logger="safepredict")
    p = SafePredictor(str(d2_tta_config), checkpoint=checkpoint, monitor=False)
    (d,) = p.discrepancies
    assert (d.key, d.training, d.inference) == ("tta.enabled", False, True)
    assert "training evaluated without TTA" in d.fix
    (record,) = _records(caplog, "contract.tta")
    assert "TEST.AUG.ENABLED" in record.getMessage()


# --------------------------------------------------------------------------- MMDetection


def _zoo(name: str) -> Path:
    import mmdet

    return Path(mmdet.__file__).parent / ".mim" / "configs" / name


def test_mmdet_declared_tta_is_not_the_evaluations() -> None:
    """RetinaNet's config carries retinanet_tta.py (for tools/test.py --tta): declared, not evaluated."""
    from mmengine.config import Config

    path = _zoo("retinanet/retinanet_r50_fpn_1x_coco.py")
    contract = read_contract(path)
    cfg = Config.fromfile(str(path))
    scales = [t["scale"] for t in cfg.tta_pipeline[1]["transforms"][0]]
    assert contract.tta.enabled is False and contract.tta.declared is True
    assert contract.tta.min_sizes == tuple(min(s) for s in scales)
    assert contract.tta.max_size == max(max(s) for s in scales) and contract.tta.flip is True
    assert "tools/test.py --tta" in contract.notes["tta.enabled"]
    assert contract.tta == TestTimeAugmentation()  # off is off, whatever a separate run would do
    assert "off at evaluation" in contract.describe()

    # What tools/test.py --tta does to the config: the TTA pipeline becomes the test pipeline.
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    augmented = read_contract(cfg)
    assert augmented.tta.enabled is True and augmented.tta.min_sizes == contract.tta.min_sizes
    assert augmented.key("tta.enabled") == "test_dataloader.dataset.pipeline[1].type"
    # The contract's resize is the first copy's, the one the single pass runs, named by its own key.
    assert augmented.resize.scale == tuple(scales[0])
    assert augmented.key("resize.scale") == "test_dataloader.dataset.pipeline[1].transforms[0][0].scale"
    assert config_value(cfg, augmented.key("resize.scale")) == scales[0]
    (d,) = diff(augmented, contract)
    assert d.key == "tta.enabled" and d.framework_key == "test_dataloader.dataset.pipeline[1].type"


@pytest.fixture(scope="module")
def mmdet_tta_config(mmdet_fixture, tmp_path_factory) -> Path:
    """The fixture's training config with its test pipeline made a TestTimeAug (first copy: its own Resize)."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(mmdet_fixture.config))
    pipeline = cfg.test_dataloader.dataset.pipeline
    index = next(i for i, step in enumerate(pipeline) if step["type"] == "Resize")
    resize = pipeline[index]
    bigger = dict(resize, scale=tuple(int(v * 1.5) for v in resize["scale"]))
    cfg.test_dataloader.dataset.pipeline = [
        *pipeline[:index],
        dict(
            type="TestTimeAug",
            transforms=[
                [resize, bigger],
                [dict(type="RandomFlip", prob=1.0), dict(type="RandomFlip", prob=0.0)],
                *([step] for step in pipeline[index + 1 :]),
            ],
        ),
    ]
    path = tmp_path_factory.mktemp("mmtta") / "tta_config.py"
    cfg.dump(str(path))
    return path


def test_mmdet_predictor_on_a_tta_test_pipeline_runs_the_first_copy(mmdet_fixture, mmdet_tta_config, caplog) -> None:
    contract = read_contract(mmdet_tta_config)
    assert contract.tta.enabled is True and contract.tta.flip is True and len(contract.tta.min_sizes) == 2
    caplog.set_level(logging.WARNING, logger="safepredict")
    augmented = SafePredictor.from_checkpoint(mmdet_fixture.checkpoint, training_config=mmdet_tta_config, monitor=False)
    (record,) = _records(caplog, "contract.tta")
    assert "tools/test.py without --tta" in record.getMessage()
    assert any(d.key == "tta.enabled" for d in augmented.discrepancies)
    plain = SafePredictor.from_checkpoint(mmdet_fixture.checkpoint, monitor=False)
    assert augmented.contract.resize == plain.contract.resize
    for path in mmdet_fixture.dataset.val_images[:2]:
        a, b = augmented.predict(path), plain.predict(path)
        assert len(a) == len(b)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-5)


def test_diagnose_names_an_inference_config_with_tta(d2_fixture, d2_tta_config, capsys) -> None:
    """Nothing to measure (no predictor augments): the difference is a finding with its fix, unmeasured."""
    import json

    from safepredict.cli import main

    images = [str(p) for p in d2_fixture.dataset.val_images[:4]]
    main(["diagnose", str(d2_fixture.checkpoint), *images, "--config", str(d2_tta_config), "--json"])
    findings = json.loads(capsys.readouterr().out)["findings"]
    (tta,) = [f for f in findings if f["subject"] == "tta.enabled"]
    assert tta["code"] == "contract.preprocessing" and tta["severity"] == "warning"
    assert "TEST.AUG.ENABLED" in tta["title"] and "training evaluated without TTA" in tta["fix"]
    assert tta["data"]["training"] is False and tta["data"]["inference"] is True
    assert "not measured" not in tta["evidence"]  # not a measurement that failed: there is none to make
