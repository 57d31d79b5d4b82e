"""The whole config diff: keys outside the contract that an inference config changes are named.

The model is built from the training config, so such a change has no effect; the user is told
which key, both values, both sources, and its category.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from safepredict import SafePredictor
from safepredict.contract import config_diff
from safepredict.frameworks.artifact import discover


def _messages(caplog, code):
    return [r.getMessage() for r in caplog.records if getattr(r, "safepredict_code", None) == code]


def test_config_diff_names_every_changed_key_outside_the_covered_ones():
    training = {"A.B": 1, "A.C": [1, 2], "P.Q[0].r": "x", "SOLVER.LR": 0.1, "KEEP": 3}
    inference = {"A.B": 2, "A.C": (1, 2), "P.Q[0].r": "y", "SOLVER.LR": 0.2, "NEW": 1}
    found = {
        d.key: d
        for d in config_diff(
            training,
            inference,
            covered={"P.Q"},
            category_of=lambda k: "other" if k.startswith("SOLVER") else "architecture",
            training_source="train.yaml",
            inference_source="infer.yaml",
        )
    }
    assert set(found) == {"A.B", "SOLVER.LR", "KEEP", "NEW"}  # lists equal tuples; P.Q[0].r is covered
    assert (found["A.B"].training, found["A.B"].inference, found["A.B"].severity) == (1, 2, "warning")
    assert found["SOLVER.LR"].severity == "info" and found["SOLVER.LR"].category == "other"
    assert "absent from your config" in found["KEEP"].message
    assert "absent from training" in found["NEW"].message


def test_detectron2_fc_dim_in_an_inference_config_is_named(d2_fixture, tmp_path, caplog):
    from detectron2.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(str(d2_fixture.config))
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 1024
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 77
    cfg.SOLVER.BASE_LR = 0.5
    path = tmp_path / "inference.yaml"
    path.write_text(cfg.dump())

    artifact = discover(d2_fixture.checkpoint, config=path)
    found = {d.key: d for d in artifact.config_differences}
    fc = found["MODEL.ROI_BOX_HEAD.FC_DIM"]
    assert (fc.training, fc.inference, fc.category) == (256, 1024, "architecture")
    assert fc.inference_source == str(path)
    assert found["MODEL.RPN.POST_NMS_TOPK_TEST"].category == "postprocessing"
    assert found["SOLVER.BASE_LR"].category == "other" and found["SOLVER.BASE_LR"].severity == "info"
    assert artifact.discrepancies == ()  # no contract field differs

    caplog.set_level(logging.INFO, logger="safepredict")
    with pytest.warns(Warning):
        p = SafePredictor.from_checkpoint(d2_fixture.checkpoint, config=path, monitor=False)
    said = _messages(caplog, "contract.config_key")
    assert any(m.startswith("MODEL.ROI_BOX_HEAD.FC_DIM: ignoring 1024") for m in said), said
    assert not any("SOLVER.BASE_LR" in m for m in said)  # training-only keys are not warnings
    # Built from training: the same detections as without the inference config.
    plain = SafePredictor.from_checkpoint(d2_fixture.checkpoint, monitor=False)
    image = d2_fixture.dataset.val_images[0]
    np.testing.assert_array_equal(p.predict(image).boxes, plain.predict(image).boxes)


def test_mmdet_rpn_test_setting_in_an_inference_config_is_named(mmdet_fixture, tmp_path, caplog):
    from mmengine.config import Config

    cfg = Config.fromfile(str(mmdet_fixture.config))
    cfg.model.test_cfg.rpn.nms_pre = 123
    cfg.model.roi_head.bbox_head.fc_out_channels = 2048
    path = tmp_path / "inference_cfg.py"
    cfg.dump(str(path))

    found = {d.key: d for d in discover(mmdet_fixture.checkpoint, config=path).config_differences}
    rpn = found["model.test_cfg.rpn.nms_pre"]
    assert rpn.inference == 123 and rpn.category == "postprocessing"
    assert found["model.roi_head.bbox_head.fc_out_channels"].category == "architecture"

    caplog.set_level(logging.WARNING, logger="safepredict")
    with pytest.warns(Warning):
        SafePredictor.from_checkpoint(mmdet_fixture.checkpoint, config=path, monitor=False)
    said = _messages(caplog, "contract.config_key")
    assert any(m.startswith("model.test_cfg.rpn.nms_pre: ignoring 123") for m in said), said
