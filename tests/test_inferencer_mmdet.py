"""SafeInferencer against MMDetection's own DetInferencer on the trained mmdet fixture.

Same constructor and call, the same output dict (``predictions``, ``visualization``), the same files
under ``out_dir``, identical predictions; underneath, a SafePredictor (weights-only checkpoint read,
the contract, the monitor). ``DetInferencer`` itself cannot read an mmengine checkpoint on torch >= 2.6
unless ``weights_only`` is forced off (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``); SafeInferencer does not.
"""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from safepredict import IntegrityError, SafeInferencer


@pytest.fixture(scope="module")
def images(mmdet_fixture, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for path in mmdet_fixture.dataset.val_images[:5]:
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="module")
def theirs(mmdet_fixture) -> Any:
    """mmdet's DetInferencer on the checkpoint alone (its embedded config), weights_only forced off."""
    from mmdet.apis import DetInferencer

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
        return DetInferencer(weights=str(mmdet_fixture.checkpoint), device="cpu", show_progress=False)


@pytest.fixture(scope="module")
def ours(mmdet_fixture) -> SafeInferencer:
    import torch

    calls: list[Any] = []
    load = torch.load

    def recording(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("weights_only"))
        return load(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", raising=False)
        mp.setattr(torch, "load", recording)
        inferencer = SafeInferencer(weights=str(mmdet_fixture.checkpoint), device="cpu", show_progress=False)
    assert calls and all(c is True for c in calls), calls  # every read of the checkpoint is weights-only
    return inferencer


def test_a_drop_in_for_det_inferencer(ours) -> None:
    from mmdet.apis import DetInferencer

    assert isinstance(ours, DetInferencer)
    assert SafeInferencer.__call__ is DetInferencer.__call__  # the same call, argument for argument
    theirs_init = list(inspect.signature(DetInferencer.__init__).parameters.values())
    ours_init = list(inspect.signature(SafeInferencer.__init__).parameters.values())
    assert [(p.name, p.default) for p in ours_init[: len(theirs_init)]] == [(p.name, p.default) for p in theirs_init]


def test_identical_predictions_on_a_folder(ours, theirs, images) -> None:
    expected = theirs(str(images), batch_size=1)
    seen = ours.monitor.snapshot()["images_total"]
    got = ours(str(images), batch_size=2)  # each image still runs alone: batch_size only groups them
    assert set(got) == set(expected) == {"predictions", "visualization"}
    assert got["visualization"] == expected["visualization"] == []
    assert len(got["predictions"]) == len(expected["predictions"]) == 5
    assert sum(len(p["scores"]) for p in expected["predictions"]) > 0
    for mine, reference in zip(got["predictions"], expected["predictions"], strict=True):
        assert set(mine) == set(reference) == {"labels", "scores", "bboxes"}
    assert got["predictions"] == expected["predictions"]  # identical, to the last bit of every float
    assert ours.monitor.snapshot()["images_total"] == seen + 5  # the monitor watched every image


def test_arrays_datasamples_and_visualisation(ours, theirs, mmdet_fixture) -> None:
    bgr = [cv2.imread(str(p)) for p in mmdet_fixture.dataset.val_images[5:7]]
    expected = theirs(bgr, return_datasamples=True, return_vis=True)
    got = ours(bgr, return_datasamples=True, return_vis=True)
    for mine, reference in zip(got["predictions"], expected["predictions"], strict=True):
        assert type(mine) is type(reference)
        for field in ("labels", "scores", "bboxes"):
            np.testing.assert_array_equal(
                getattr(mine.pred_instances, field).numpy(), getattr(reference.pred_instances, field).numpy()
            )
    assert len(got["visualization"]) == len(expected["visualization"]) == 2
    for mine, reference in zip(got["visualization"], expected["visualization"], strict=True):
        np.testing.assert_array_equal(mine, reference)  # the same boxes drawn in the same palette


def test_out_dir_gets_the_same_files(ours, theirs, images, tmp_path) -> None:
    theirs(str(images), out_dir=str(tmp_path / "theirs"), no_save_pred=False)
    ours(str(images), out_dir=str(tmp_path / "ours"), no_save_pred=False)
    mine = sorted(p.relative_to(tmp_path / "ours") for p in (tmp_path / "ours").rglob("*") if p.is_file())
    reference = sorted(p.relative_to(tmp_path / "theirs") for p in (tmp_path / "theirs").rglob("*") if p.is_file())
    assert mine == reference and len(mine) == 10  # preds/*.json and vis/*.png, one each per image
    for name in (p for p in mine if p.suffix == ".json"):
        assert json.loads((tmp_path / "ours" / name).read_text()) == json.loads(
            (tmp_path / "theirs" / name).read_text()
        )
    for name in (p for p in mine if p.suffix == ".png"):
        np.testing.assert_array_equal(
            cv2.imread(str(tmp_path / "ours" / name)), cv2.imread(str(tmp_path / "theirs" / name))
        )


def test_model_is_the_inference_config_diffed_against_training(ours, mmdet_fixture, images, tmp_path) -> None:
    """``model=`` a config: DetInferencer builds everything from it; SafeInferencer diffs it against the
    training config and honours its post-processing, so with only the threshold changed both agree."""
    from mmdet.apis import DetInferencer
    from mmengine.config import Config

    from safepredict.frameworks.base import set_config_value

    cfg = Config.fromfile(str(mmdet_fixture.config))
    key = ours.contract.key("score_threshold")
    lower = ours.contract.score_threshold / 2
    set_config_value(cfg, key, lower)
    path = tmp_path / "inference_config.py"
    cfg.dump(str(path))
    with pytest.warns(UserWarning, match="score_threshold: using your inference value"):
        mine = SafeInferencer(str(path), str(mmdet_fixture.checkpoint), "cpu", show_progress=False, monitor=False)
    (d,) = mine.discrepancies
    assert (d.key, d.framework_key, d.inference) == ("score_threshold", key, lower)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
        reference = DetInferencer(str(path), str(mmdet_fixture.checkpoint), "cpu", show_progress=False)
    assert mine(str(images))["predictions"] == reference(str(images))["predictions"]


def test_the_contract_and_the_lock_are_underneath(ours, mmdet_fixture, tmp_path) -> None:
    from safepredict.lock import write_lock

    assert ours.contract.class_names == mmdet_fixture.class_names and ours.discrepancies == ()
    assert ours.model is ours.predictor.model
    # A lock written for other content at the weights' path: refused before the checkpoint is deserialised.
    weights = tmp_path / "epoch.pth"
    weights.write_bytes(b"the weights the lock was written for")
    lock = tmp_path / "safepredict.lock"
    write_lock(lock, weights=weights)
    shutil.copy(mmdet_fixture.checkpoint, weights)
    with pytest.raises(IntegrityError, match="differ from the lock"):
        SafeInferencer(weights=str(weights), device="cpu", lock=str(lock), show_progress=False)


def test_a_checkpoint_that_does_not_fit_is_refused(ours, mmdet_fixture, tmp_path) -> None:
    """Strict load: a training config with another class count is refused, not run with random weights."""
    from mmengine.config import Config

    from safepredict import CheckpointMismatchError
    from safepredict.frameworks.base import set_config_value

    cfg = Config.fromfile(str(mmdet_fixture.config))
    set_config_value(cfg, ours.contract.key("num_classes"), 80)
    path = tmp_path / "eighty_classes.py"
    cfg.dump(str(path))
    trained = len(mmdet_fixture.class_names)
    with pytest.raises(CheckpointMismatchError, match=f"checkpoint has {trained} classes, config has 80"):
        SafeInferencer(weights=str(mmdet_fixture.checkpoint), device="cpu", training_config=str(path), monitor=False)


def test_model_names_missing_weights_and_text_prompts_are_refused_with_a_fix(ours, images) -> None:
    from safepredict import InputError

    with pytest.raises(InputError, match="text prompts"):
        ours(str(images), texts="red")  # open-vocabulary prompts: a closed-set detector has none

    with pytest.raises(InputError, match="weights="):
        SafeInferencer("rtmdet-s")
    with pytest.raises(InputError, match="metafile model names"):
        SafeInferencer("rtmdet-s", weights="x.pth")
