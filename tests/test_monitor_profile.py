"""ReferenceProfile: what build() measures, and that save/load keeps it and refuses broken files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from _synthetic import SyntheticStream

from safepredict.detections import Detections
from safepredict.errors import LockFormatError, LockVersionError
from safepredict.monitor import ProfileBuilder, ReferenceProfile

NAMES = ("cat", "dog")


def _dets(scores, labels):
    n = len(scores)
    return Detections(boxes=np.tile([0, 0, 10, 10], (n, 1)), scores=scores, labels=labels)


def _image(value=(120, 100, 80)):
    img = np.zeros((32, 48, 3), np.uint8)
    img[:] = value
    return img


@pytest.fixture(scope="module")
def synthetic_profile() -> ReferenceProfile:
    stream = SyntheticStream(seed=3)
    return ReferenceProfile.build(
        stream.take(200), score_threshold=0.5, class_names=stream.class_names, threshold_key="KEY"
    )


def test_build_counts_empty_images_and_the_scores_below_the_threshold():
    samples = [
        (_image(), _dets([0.9, 0.3, 0.01], [0, 1, 1])),  # one detection, dog below
        (_image(), _dets([0.2, 0.1], [0, 0])),  # empty, candidates below
        (_image(), Detections.empty()),  # empty, nothing at all
        (_image(), _dets([0.8, 0.7], [1, 1])),
    ]
    p = ReferenceProfile.build(samples, score_threshold=0.5, class_names=NAMES)
    assert (p.n_images, p.n_empty, p.n_without_candidates) == (4, 2, 1)
    assert p.empty_rate == 0.5
    # Per-image proportions averaged over the 3 images with candidates.
    assert sum(p.candidate_score_hist) == pytest.approx(1.0)
    assert p.candidate_score_hist[0] == pytest.approx((1 / 3 + 0 + 0) / 3)  # 0.01 in bin [0, .05)
    # Best score per image: 0.9, 0.2, none, 0.8.
    assert p.max_score_hist[-1] == pytest.approx(0.25)
    assert p.max_score_hist[4] == pytest.approx(0.25)  # 0.2 in [0.2, 0.25)
    assert p.max_score.n == 3 and p.max_score.max == pytest.approx(0.9)
    # Class shares over images with detections: image 1 all cat, image 4 all dog.
    assert p.class_counts == (1, 2)
    assert p.class_share == pytest.approx((0.5, 0.5))
    assert p.inputs is not None and p.inputs["mean_r"].mean == pytest.approx(120)
    assert p.inputs["r_minus_b"].mean == pytest.approx(40)


def test_labels_outside_the_class_names_are_refused():
    with pytest.raises(ValueError, match="outside"):
        ReferenceProfile.build([(None, _dets([0.9], [5]))], score_threshold=0.5, class_names=NAMES)


def test_without_images_there_are_no_input_statistics():
    p = ReferenceProfile.build([(None, _dets([0.9], [0]))], score_threshold=0.5)
    assert p.inputs is None
    assert p.class_names is None and p.n_classes == 1


def test_nonfinite_scores_are_counted_not_binned():
    p = ReferenceProfile.build([(None, _dets([np.nan, 0.9], [0, 0]))], score_threshold=0.5)
    assert p.n_nonfinite_images == 1
    assert p.candidates_per_image.mean == 1


def test_an_empty_builder_cannot_build():
    with pytest.raises(ValueError):
        ProfileBuilder(score_threshold=0.5).build()


def test_save_load_round_trip(tmp_path, synthetic_profile):
    path = synthetic_profile.save(tmp_path / "p.json")
    loaded = ReferenceProfile.load(path)
    assert loaded == synthetic_profile
    assert loaded.inputs is not None and synthetic_profile.inputs is not None
    assert loaded.inputs.keys() == synthetic_profile.inputs.keys()
    assert loaded.inputs["contrast"] == synthetic_profile.inputs["contrast"]
    assert loaded.inputs["contrast"].quantiles == synthetic_profile.inputs["contrast"].quantiles
    # Strict JSON: no NaN tokens, even where a summary has no values.
    text = path.read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


def test_nan_summaries_survive_json(tmp_path):
    p = ReferenceProfile.build([(None, Detections.empty())], score_threshold=0.5)
    assert math.isnan(p.max_score.mean)
    loaded = ReferenceProfile.load(p.save(tmp_path / "p.json"))
    assert math.isnan(loaded.max_score.mean) and loaded.max_score.n == 0


def test_unknown_schema_version_is_a_version_error(tmp_path, synthetic_profile):
    data = synthetic_profile.to_json()
    data["schema_version"] = 99
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    with pytest.raises(LockVersionError) as err:
        ReferenceProfile.load(path)
    assert err.value.found == 99


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda d: "not json {",
        lambda d: json.dumps([1, 2]),
        lambda d: json.dumps({**d, "max_score_hist": d["max_score_hist"][:-1]}),
        lambda d: json.dumps({k: v for k, v in d.items() if k != "n_images"}),
        lambda d: json.dumps({**d, "max_score": {"n": 1}}),
        lambda d: json.dumps({**d, "class_names": ["only-one"]}),
    ],
)
def test_corrupt_profiles_are_format_errors(tmp_path, synthetic_profile, corrupt):
    path = tmp_path / "p.json"
    path.write_text(corrupt(synthetic_profile.to_json()))
    with pytest.raises(LockFormatError):
        ReferenceProfile.load(path)


def test_describe_says_what_was_captured(synthetic_profile):
    text = synthetic_profile.describe()
    assert "200 images" in text and "KEY" in text and "red" in text and "brightness" in text


def test_the_swapped_signature_survives_json_and_old_profiles_still_load(tmp_path, synthetic_profile):
    builder = ProfileBuilder(score_threshold=0.5, class_names=NAMES)
    for scores, labels in (([0.9, 0.8], [0, 1]), ([0.95], [1])):
        dets = _dets(scores, labels)
        builder.add(_image(), dets)
        builder.add_swapped(_dets(scores, [1 - x for x in labels]), given=dets)
    p = builder.build()
    assert p.swapped_class_share == pytest.approx((0.75, 0.25))
    assert p.swap_pairs == (0, 1, 2, 0)  # same boxes: cat -> dog once, dog -> cat twice
    loaded = ReferenceProfile.load(p.save(tmp_path / "p.json"))
    assert loaded == p and loaded.inputs is not None and "colour_vote" in loaded.inputs
    assert "red and blue swapped" in p.describe()
    # A profile written before these fields existed reads as one without a swapped signature.
    old = synthetic_profile.to_json()
    for key in ("swapped_class_share", "swapped_n_images_with_detections", "swap_pairs", "source"):
        old.pop(key)
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert ReferenceProfile.load(tmp_path / "old.json").swapped_class_share is None
