"""The automatic reference on the real fixtures: found from the training config alone, built once, cached, used.

Each framework's fixture checkpoint has no bundle beside it. ``SafePredictor.from_checkpoint(path)``
finds the validation set its training config names (Detectron2: the COCO json the training run's
``log.txt`` read for evaluation; MMDetection: ``val_dataloader.dataset`` of the embedded config),
profiles it through the training pipeline (48 images, 48 of them also swapped), caches it by the
checkpoint's sha256, and the monitor then names, within 50 images, an RGB stream declared BGR and
grayscale, low-contrast and noisy streams. The diagnose channel-order probe decides on the same
model by class shares, where confidence cannot tell. About 250 forward passes per framework.
"""

from __future__ import annotations

import logging
import warnings

import cv2
import numpy as np
import pytest
from _synthetic import dataset_images, degraded

from safepredict import SafePredictor
from safepredict.monitor import Monitor

pytestmark = pytest.mark.slow

N = 50  # every fault must be named within this many images


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[np.ndarray]:
    """Fresh BGR images of the fixtures' data set, never seen by the models."""
    paths = dataset_images(tmp_path_factory.mktemp("images"), 303, N)
    return [cv2.imread(str(p)) for p in paths]


@pytest.fixture(scope="module", params=["d2_fixture", "mmdet_fixture"], ids=["detectron2", "mmdet"])
def built(request, references) -> dict:
    """The first SafePredictor with nothing but the checkpoint: it builds the automatic reference."""
    fixture = request.getfixturevalue(request.param)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("safepredict")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Detectron2's config records no class names: warned, not tested here
            predictor = SafePredictor.from_checkpoint(fixture.checkpoint)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return {"fixture": fixture, "predictor": predictor, "log": [r.getMessage() for r in records]}


def _fresh_monitor(p: SafePredictor) -> Monitor:
    """The predictor's monitor, emptied: each stream starts from the first image."""
    assert p.monitor is not None
    old = p.monitor
    p.monitor = Monitor(
        reference=old.reference,
        score_threshold=old.score_threshold,
        threshold_key=old.threshold_key,
        class_names=p.class_names,
        emit=False,
    )
    return p.monitor


def _codes(monitor: Monitor) -> set[str]:
    return set(monitor.snapshot()["findings_total"])


def test_the_reference_is_found_built_once_and_cached(built, references):
    p, fixture = built["predictor"], built["fixture"]
    assert p.monitor is not None
    ref = p.monitor.reference
    assert ref is not None, built["log"]
    assert ref.source.startswith("automatic") and ref.n_images == len(fixture.dataset.val_images)
    assert ref.class_names == fixture.class_names  # Detectron2: from the COCO json the training log names
    assert ref.swapped_class_share is not None and ref.score_threshold == p.score_threshold
    assert ref.inputs is not None and "colour_vote" in ref.inputs
    built_line = next(m for m in built["log"] if "automatic reference profile of" in m)
    assert "built in" in built_line and " s, once" in built_line  # the one-off cost is printed
    assert any(str(fixture.dataset.val_json) in m for m in built["log"])
    cached = sorted(references.glob("*.json"))
    assert any(path.name in built_line for path in cached)
    # A second predictor finds it in the cache: no forward pass, the same profile.
    again = SafePredictor.from_checkpoint(fixture.checkpoint, class_names=fixture.class_names)
    assert again.monitor is not None and again.monitor.reference == ref


def test_it_can_be_turned_off(built, monkeypatch):
    fixture = built["fixture"]
    names = fixture.class_names
    off = SafePredictor.from_checkpoint(fixture.checkpoint, class_names=names, auto_reference=False)
    assert off.monitor is not None and off.monitor.reference is None
    assert SafePredictor.from_checkpoint(fixture.checkpoint, class_names=names, monitor=False).monitor is None
    monkeypatch.setenv("SAFEPREDICT_AUTO_REFERENCE", "0")
    env_off = SafePredictor.from_checkpoint(fixture.checkpoint, class_names=names)
    assert env_off.monitor is not None and env_off.monitor.reference is None


def test_rgb_declared_bgr_is_named_within_50_images(built, images):
    p = built["predictor"]
    monitor = _fresh_monitor(p)
    for bgr in images:
        p.predict(np.ascontiguousarray(bgr[:, :, ::-1]))  # RGB pixels, the default color="BGR"
    assert "monitor.input_channel_order" in _codes(monitor), monitor.snapshot()["findings_total"]
    assert monitor.snapshot()["images_total"] == N


@pytest.mark.parametrize("kind", ["grayscale", "low_contrast", "noise"])
def test_degraded_inputs_are_named_within_50_images(built, images, kind):
    p = built["predictor"]
    monitor = _fresh_monitor(p)
    for i, bgr in enumerate(images):
        p.predict(degraded(kind, bgr, seed=i))
    expected = {"grayscale": "monitor.input_grayscale", "low_contrast": "monitor.input_contrast"}
    codes = _codes(monitor)
    assert expected.get(kind, "monitor.input_noise") in codes, codes
    assert "monitor.input_channel_order" not in codes


def test_the_channel_order_finding_names_the_fix(built, images):
    p = built["predictor"]
    monitor = _fresh_monitor(p)
    findings = []
    for bgr in images:
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        loaded = p.load(rgb, "BGR")
        findings += monitor.observe(loaded.to("RGB"), p.predict_candidates(rgb)[1])
    hit = next(f for f in findings if f.code == "monitor.input_channel_order")
    assert "color='RGB'" in hit.message and "cv2.cvtColor" in hit.message
    ev = hit.data
    assert ev["colour_vote"] > 0 > ev["reference_colour_vote"]
    # Label-aware: the window's class shares are the swapped reference's, not the reference's.
    assert ev["class_js_swapped"] < ev["class_js"], ev
    assert "class shares" in hit.message


def test_diagnose_probe_decides_by_class_shares(built, tmp_path):
    """Files whose red and blue are swapped: the labels, against the automatic reference, say so."""
    from safepredict.diagnose.probes import SHARE_LOG_ODDS, channel_order_probe, run_pipeline

    p = built["predictor"]
    paths = dataset_images(tmp_path, 404, 24)
    swapped_dir = tmp_path / "swapped"
    swapped_dir.mkdir()
    for path in paths:
        cv2.imwrite(str(swapped_dir / path.name), cv2.imread(str(path))[:, :, ::-1])
    reference = p.monitor.reference if p.monitor is not None else None
    for folder, wrong in ((swapped_dir, True), (paths[0].parent, False)):
        loaded = [p.load(path) for path in sorted(folder.glob("*.png"))]
        base = run_pipeline(p, loaded, "as given")
        (finding,) = channel_order_probe(p, loaded, base, reference=reference).findings
        assert finding.data["objects_relabelled"] >= 0.3 * finding.data["objects_in_both"]
        odds = finding.data["class_evidence"]["log_odds_wrong_order"]
        # The labels alone decide, whatever the confidence says: 1000 to 1 either way.
        assert (odds >= SHARE_LOG_ODDS) if wrong else (odds <= -SHARE_LOG_ODDS), finding.data["class_evidence"]
        if wrong:
            assert finding.severity == "error", finding.describe()
            assert "cvtColor" in (finding.fix or "")
        else:
            assert finding.severity == "info" and "channel order is right" in finding.message, finding.describe()


def test_validation_sets_are_found_from_the_training_artifacts(built):
    from safepredict.autoref import find_validation_set

    p, fixture = built["predictor"], built["fixture"]
    found = find_validation_set(p)
    assert found is not None
    assert sorted(found.images) == sorted(fixture.dataset.val_images)
    assert found.class_names == fixture.class_names
    assert str(fixture.dataset.val_json) in found.source
