"""The monitor on real models: each framework fixture's predictions on fresh images of its data set.

The reference profile is captured on 200 images, then streams are replayed through the monitor:
500 healthy images (no finding allowed), the same predictions cut at a too-high threshold, and
images made noisy, low in contrast, grayscale (60 each), or handed over in the wrong channel order
(150); each bad stream is named within its first 50 images. About 930 CPU forward passes: minutes
on a busy 2-core machine.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from safepredict.demo.data import DatasetSpec, generate
from safepredict.detections import Detections
from safepredict.monitor import Finding, Monitor, ReferenceProfile

pytestmark = pytest.mark.slow

Pairs = list[tuple[np.ndarray, Detections]]


def _noise(img: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(7)
    return np.clip(img + rng.normal(0.0, 30.0, img.shape), 0, 255).astype(np.uint8)


def _low_contrast(img: np.ndarray) -> np.ndarray:
    f = img.astype(np.float32)
    return np.clip((f - f.mean()) * 0.3 + f.mean(), 0, 255).astype(np.uint8)


def _grayscale(img: np.ndarray) -> np.ndarray:
    return np.repeat(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)


@pytest.fixture(scope="module", params=["d2_fixture", "mmdet_fixture"], ids=["detectron2", "mmdet"])
def recorded(request, tmp_path_factory) -> dict:
    from safepredict.predictor import SafePredictor

    fixture = request.getfixturevalue(request.param)
    p = SafePredictor.from_checkpoint(fixture.checkpoint, monitor=False, class_names=fixture.class_names)
    root = tmp_path_factory.mktemp("monitor-images")

    def images(seed: int, n: int) -> list[Path]:
        ds = generate(root / str(seed), DatasetSpec(seed=seed, num_train=0, num_val=n))
        return sorted(ds.val_dir.glob("*.png"))

    def run(paths: list[Path], change: Callable[[np.ndarray], np.ndarray] | None = None, color: str = "RGB") -> Pairs:
        out = []
        for path in paths:
            rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            out.append(p.predict_candidates(change(rgb) if change else rgb, color=color))
        return out

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bad = images(303, 150)
        return {
            "predictor": p,
            "reference": run(images(101, 200)),
            "healthy": run(images(202, 500)),
            "noise": run(bad[:60], _noise),
            "low_contrast": run(bad[:60], _low_contrast),
            "grayscale": run(bad[:60], _grayscale),
            # RGB pixels declared as BGR: what the model and the monitor see when a caller swaps them.
            "swap_channels": run(bad, color="BGR"),
        }


@pytest.fixture(scope="module")
def profile(recorded) -> ReferenceProfile:
    p = recorded["predictor"]
    return ReferenceProfile.build(
        recorded["reference"],
        score_threshold=p.score_threshold,
        class_names=p.class_names,
        threshold_key=p.threshold_key,
    )


def _replay(
    recorded, stream: Pairs, reference: ReferenceProfile | None, threshold: float | None = None
) -> list[Finding]:
    p = recorded["predictor"]
    mon = Monitor(
        reference=reference,
        score_threshold=p.score_threshold if threshold is None else threshold,
        threshold_key=p.threshold_key,
        class_names=p.class_names,
        emit=False,
    )
    return mon.observe_many(stream)


def test_the_profile_describes_the_model(profile, recorded):
    assert profile.n_images == 200 and profile.threshold_key == recorded["predictor"].threshold_key
    assert profile.class_names == recorded["predictor"].class_names
    assert profile.max_score.quantile(0.5) > 0.9  # a well-trained fixture
    assert profile.inputs is not None and profile.chroma_hist is not None


@pytest.mark.parametrize("with_reference", [True, False])
def test_500_healthy_predictions_raise_nothing(recorded, profile, with_reference):
    findings = _replay(recorded, recorded["healthy"], profile if with_reference else None)
    assert findings == [], [f.describe() for f in findings]


def test_too_high_threshold_is_advised(recorded, profile):
    findings = _replay(recorded, recorded["healthy"][:200], profile, threshold=0.999)
    codes = {f.code for f in findings}
    assert {"monitor.threshold_mismatch", "monitor.empty_streak", "monitor.empty_rate"} <= codes
    streak = next(f for f in findings if f.code == "monitor.empty_streak")
    key = recorded["predictor"].threshold_key
    assert key and key in streak.message and streak.data["candidates_below"] > 0
    alone = _replay(recorded, recorded["healthy"][:50], None, threshold=0.999)
    assert alone and alone[0].code == "monitor.all_below_threshold"
    assert key in alone[0].message


@pytest.mark.parametrize(
    ("stream", "code"),
    [
        ("noise", "monitor.input_noise"),
        ("low_contrast", "monitor.input_contrast"),
        ("grayscale", "monitor.input_grayscale"),
        ("swap_channels", "monitor.input_channel_order"),
    ],
)
def test_bad_inputs_are_named(recorded, profile, stream, code):
    # At the first input test: image 50 (the channel order too, by the telling colours).
    codes = {f.code for f in _replay(recorded, recorded[stream][:50], profile)}
    assert code in codes, codes
