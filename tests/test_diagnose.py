"""``safepredict diagnose`` on a real Detectron2 checkpoint: each seed mistake planted, named first.

Each mistake is made the way a user makes it: images written in the other channel order, an
inference config with ImageNet's mean/std or Detectron2's default test size or a 0.99 threshold,
a checkpoint without its config.yaml given a config with 80 classes or a ResNet-50, a lock from
another machine. The diagnosis runs the real model; the test reads only its ranked findings.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from safepredict.cli import main
from safepredict.diagnose import CODES, diagnose
from safepredict.diagnose.ranking import rank
from safepredict.findings import Finding

N_IMAGES = 8


def _training_cfg(fixture):
    from detectron2.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(str(fixture.config))
    cfg.MODEL.WEIGHTS = str(fixture.checkpoint)
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def write_inference_cfg(fixture, folder: Path, **changes) -> Path:
    """The training config with ``changes`` (``MODEL__PIXEL_MEAN=...``), as a user's inference yaml."""
    cfg = _training_cfg(fixture)
    for key, value in changes.items():
        node = cfg
        parts = key.split("__")
        for part in parts[:-1]:
            node = getattr(node, part)
        setattr(node, parts[-1], value)
    path = folder / "inference.yaml"
    path.write_text(cfg.dump())
    return path


def swapped_images(fixture, folder: Path) -> Path:
    """The first validation images written with red and blue swapped (an RGB array saved as if BGR)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in fixture.dataset.val_images[:N_IMAGES]:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        cv2.imwrite(str(folder / path.name), np.ascontiguousarray(bgr[:, :, ::-1]))
    return folder


def lonely_checkpoint(fixture, folder: Path) -> Path:
    """A copy of the checkpoint with no config.yaml beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model_final.pth"
    path.write_bytes(fixture.checkpoint.read_bytes())
    return path


def _images(fixture) -> list[str]:
    return [str(p) for p in fixture.dataset.val_images[:N_IMAGES]]


def _run_json(argv: list[str], capsys) -> tuple[int, dict]:
    code = main(["diagnose", *argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


# --------------------------------------------------------------------------- healthy


@pytest.fixture(scope="module")
def healthy(d2_fixture):
    return diagnose(d2_fixture.checkpoint, _images(d2_fixture), class_names=d2_fixture.class_names)


def test_healthy_model_exits_zero_with_information_only(healthy):
    assert healthy.exit_code == 0, healthy.describe()
    assert healthy.worst == "info"
    codes = {f.code for f in healthy.findings}
    assert {"probe.channel_order", "probe.normalisation", "probe.resize", "probe.threshold"} <= codes
    channel = healthy.by_code("probe.channel_order")[0]
    # The data set's classes are told by colour: the model must be sure the order as given is right.
    assert "channel order is right" in channel.message, channel.describe()
    assert channel.data["as_given"]["mean_top_score"] > channel.data["swapped"]["mean_top_score"]
    norm = healthy.by_code("probe.normalisation")[0]
    assert norm.data["effect"]["agreement"] < 1.0  # ImageNet statistics do change this model's outputs
    resize = healthy.by_code("probe.resize")[0]
    assert [p["size"] for p in resize.data["curve"]] == [56, 84, 112, 168, 224]
    text = healthy.describe()
    assert text.splitlines()[1] == "0 errors, 0 warnings, 4 infos"
    assert "docs: docs/diagnose.md#probe-channel_order" in text
    json.dumps(healthy.to_json())  # plain JSON, no numpy values


def test_threshold_advisor_on_the_real_candidates(healthy):
    """The advisor on the training pipeline's real candidates, asked about a threshold above them."""
    from safepredict.diagnose.probes import threshold_probe

    base = healthy.views[0]
    tops = base.top_scores()
    too_high = float(tops.max()) + 1e-4
    (finding,) = threshold_probe(base, too_high, "MODEL.ROI_HEADS.SCORE_THRESH_TEST").findings
    assert (finding.severity, finding.subject) == ("warning", "score_threshold"), finding.describe()
    assert finding.data["empty_images_with_candidates"] == len(tops)
    suggested = float(finding.fix.split("a threshold of ")[1].split(" ")[0])
    assert suggested <= float(tops.min())  # keeps every image's best candidate
    (fine,) = threshold_probe(base, base.threshold, "MODEL.ROI_HEADS.SCORE_THRESH_TEST").findings
    assert fine.severity == "info"


def test_probe_timings_stay_affordable(healthy):
    # 2 shared CPU cores: each probe on 8 small images must stay well under a minute.
    assert set(healthy.timings) >= {"load", "training pipeline", "channel order", "normalisation", "resize"}
    assert max(healthy.timings.values()) < 60, healthy.timings


# --------------------------------------------------------------------------- seed mistakes


def test_wrong_colour_order_is_the_top_finding(d2_fixture, tmp_path, capsys):
    folder = swapped_images(d2_fixture, tmp_path / "bgr")
    code, result = _run_json([str(d2_fixture.checkpoint), str(folder)], capsys)
    assert code == 1
    top = result["findings"][0]
    assert (top["code"], top["severity"], top["subject"]) == ("probe.channel_order", "error", "input_format"), top
    assert "RGB" in top["title"] and "cvtColor" in top["fix"]
    assert top["data"]["swapped"]["mean_top_score"] > top["data"]["as_given"]["mean_top_score"]


def test_imagenet_mean_std_is_the_top_finding(d2_fixture, tmp_path, capsys):
    config = write_inference_cfg(
        d2_fixture, tmp_path, MODEL__PIXEL_MEAN=[123.675, 116.28, 103.53], MODEL__PIXEL_STD=[58.395, 57.12, 57.375]
    )
    code, result = _run_json([str(d2_fixture.checkpoint), *_images(d2_fixture), "--config", str(config)], capsys)
    assert code == 1
    top = result["findings"][0]
    assert (top["code"], top["severity"], top["subject"]) == ("contract.preprocessing", "error", "normalisation"), top
    assert "MODEL.PIXEL_MEAN" in top["title"] and "MODEL.PIXEL_STD" in top["title"]
    assert top["impact"] > 0.05
    assert {d["key"] for d in top["data"]["discrepancies"]} == {"pixel_mean", "pixel_std"}
    # The user's whole pipeline (their mean/std forced through overrides=) is what the report draws.
    yours = result["probes"]["your_pipeline"]
    assert yours["label"] == "your config" and yours["effect"]["agreement"] == pytest.approx(1 - top["impact"])


def test_overridden_test_size_is_the_top_finding(d2_fixture, tmp_path, capsys):
    config = write_inference_cfg(d2_fixture, tmp_path, INPUT__MIN_SIZE_TEST=800, INPUT__MAX_SIZE_TEST=1333)
    code, result = _run_json([str(d2_fixture.checkpoint), *_images(d2_fixture), "--config", str(config)], capsys)
    assert code == 1
    top = result["findings"][0]
    assert (top["code"], top["subject"]) == ("contract.preprocessing", "resize"), top
    assert "INPUT.MIN_SIZE_TEST" in top["title"]
    assert "INPUT.MIN_SIZE_TEST = 112" in top["fix"]


def test_high_threshold_is_the_top_finding(d2_fixture, tmp_path, capsys):
    config = write_inference_cfg(d2_fixture, tmp_path, MODEL__ROI_HEADS__SCORE_THRESH_TEST=0.99)
    code, result = _run_json([str(d2_fixture.checkpoint), *_images(d2_fixture), "--config", str(config)], capsys)
    assert code == 1
    top = result["findings"][0]
    assert (top["code"], top["subject"]) == ("contract.postprocessing", "score_threshold"), top
    assert "0.99" in top["title"] and "MODEL.ROI_HEADS.SCORE_THRESH_TEST" in top["title"]
    assert top["data"]["detections_at_yours"] < top["data"]["detections_at_training"]


@pytest.mark.parametrize(
    ("changes", "subject", "words"),
    [
        ({"MODEL__ROI_HEADS__NUM_CLASSES": 80}, "num_classes", "set MODEL.ROI_HEADS.NUM_CLASSES=3"),
        ({"MODEL__RESNETS__DEPTH": 50, "MODEL__RESNETS__RES2_OUT_CHANNELS": 256}, "backbone", "ResNet-18"),
    ],
    ids=["80 classes", "ResNet-50 config"],
)
def test_architecture_mismatch_is_the_top_finding(d2_fixture, tmp_path, capsys, changes, subject, words):
    lonely = lonely_checkpoint(d2_fixture, tmp_path / "run")
    config = write_inference_cfg(d2_fixture, tmp_path, **changes)
    code, result = _run_json([str(lonely), *_images(d2_fixture), "--training-config", str(config)], capsys)
    assert code == 1
    top = result["findings"][0]
    assert (top["code"], top["severity"]) == ("checkpoint.architecture", "error"), top
    assert subject in top["subject"] and words in top["title"] and words in top["fix"]


def test_inference_config_with_80_classes_beside_the_training_config_is_named(d2_fixture, tmp_path):
    """config.yaml is beside the checkpoint, so SafePredictor is safe; the user's own code would not be."""
    config = write_inference_cfg(d2_fixture, tmp_path, MODEL__ROI_HEADS__NUM_CLASSES=80)
    result = diagnose(d2_fixture.checkpoint, _images(d2_fixture), config=config)
    top = result.top
    assert top is not None and (top.code, top.subject) == ("contract.architecture", "num_classes"), result.describe()
    assert "checkpoint has 3 classes, config has 80" in top.evidence  # what loading it into that model does


def test_lonely_checkpoint_with_only_an_inference_config_still_names_the_mismatch(d2_fixture, tmp_path):
    lonely = lonely_checkpoint(d2_fixture, tmp_path / "run")
    config = write_inference_cfg(d2_fixture, tmp_path, MODEL__ROI_HEADS__NUM_CLASSES=80)
    result = diagnose(lonely, _images(d2_fixture), config=config)
    assert [f.code for f in result.findings[:2]] == ["checkpoint.architecture", "contract.no_training_config"]


def test_changed_environment_is_the_top_finding(d2_fixture, tmp_path, capsys):
    import tomli_w
    import tomllib

    from safepredict.lock import write_lock
    from safepredict.lock.lockfile import HEADER

    lock = tmp_path / "safepredict.lock"
    write_lock(lock, weights=d2_fixture.checkpoint)
    doc = tomllib.loads(lock.read_text())
    doc["packages"]["torch"].pop("absent", None)
    doc["packages"]["torch"]["version"] = "2.13.0"
    lock.write_text(HEADER + tomli_w.dumps(doc))
    code, result = _run_json([str(d2_fixture.checkpoint), *_images(d2_fixture), "--lock", str(lock)], capsys)
    assert code == 1
    top = result["findings"][0]
    assert (top["code"], top["subject"]) == ("environment.mismatch", "packages.torch"), top
    assert "2.13.0" in top["title"] and "pip install 'torch==2.13.0'" in top["fix"]
    assert not [f for f in result["findings"] if f["severity"] in ("error", "warning") and f is not top]


def test_other_weights_than_the_lock_pinned_are_an_error(d2_fixture, tmp_path):
    from safepredict.lock import write_lock

    other = tmp_path / "other.pth"
    other.write_bytes(b"not the validated weights")
    lock = tmp_path / "safepredict.lock"
    write_lock(lock, weights=other)
    result = diagnose(d2_fixture.checkpoint, _images(d2_fixture)[:2], lock=lock, probes=False)
    top = result.top
    assert top is not None and (top.code, top.severity, top.subject) == (
        "environment.mismatch",
        "error",
        "files.weights",
    )


# --------------------------------------------------------------------------- other checks


def test_early_checkpoint_is_named(d2_fixture, tmp_path):
    import torch

    folder = tmp_path / "early"
    folder.mkdir()
    state = torch.load(d2_fixture.checkpoint, map_location="cpu", weights_only=False)
    state["iteration"] = 29  # 30 of the 300 iterations
    torch.save(state, folder / "model_0000029.pth")
    (folder / "config.yaml").write_bytes(d2_fixture.config.read_bytes())
    result = diagnose(folder / "model_0000029.pth", _images(d2_fixture)[:2], probes=False)
    found = result.by_code("training.undertrained")
    assert found and found[0].severity == "warning" and found[0].data["done"] == 29, result.describe()
    assert result.exit_code == 1


def test_darker_images_than_the_reference_are_named(d2_fixture, tmp_path):
    from safepredict.diagnose.probes import build_predictor
    from safepredict.monitor import ReferenceProfile

    predictor = build_predictor(d2_fixture.checkpoint, class_names=d2_fixture.class_names)
    profile = ReferenceProfile.build(
        (predictor.predict_candidates(p) for p in d2_fixture.dataset.val_images),
        score_threshold=predictor.score_threshold,
        class_names=predictor.class_names,
        threshold_key=predictor.threshold_key,
    )
    path = profile.save(tmp_path / "profile.json")
    dark = tmp_path / "dark"
    dark.mkdir()
    for src in d2_fixture.dataset.val_images[:N_IMAGES]:
        cv2.imwrite(str(dark / src.name), (cv2.imread(str(src)) * 0.25).astype(np.uint8))
    result = diagnose(d2_fixture.checkpoint, [dark], reference=path, class_names=d2_fixture.class_names)
    subjects = {f.subject for f in result.by_code("inputs.reference")}
    assert "brightness" in subjects, result.describe()
    # The same images undarkened are like the reference: no input finding.
    same = diagnose(d2_fixture.checkpoint, _images(d2_fixture), reference=path, probes=True)
    assert not same.by_code("inputs.reference"), same.describe()


def test_missing_images_are_a_usage_error(d2_fixture, tmp_path, capsys):
    assert main(["diagnose", str(d2_fixture.checkpoint), str(tmp_path / "nope.png")]) == 2
    assert "no such image" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["diagnose", str(d2_fixture.checkpoint), str(empty)]) == 2


# --------------------------------------------------------------------------- ranking (no model)


def _f(code: str, severity: str, impact: float | None = None) -> Finding:
    return Finding(code=code, severity=severity, subject="x", message="t", evidence="e", impact=impact)


def test_ranking_is_severity_then_impact_then_kind():
    ranked = rank(
        [
            _f("probe.threshold", "warning", 0.9),
            _f("probe.resize", "info"),
            _f("contract.preprocessing", "error", 0.3),
            _f("checkpoint.architecture", "error", 0.3),
            _f("contract.postprocessing", "error", 0.8),
        ]
    )
    assert [f.code for f in ranked] == [
        "contract.postprocessing",
        "checkpoint.architecture",
        "contract.preprocessing",
        "probe.threshold",
        "probe.resize",
    ]


def test_one_finding_value_for_the_monitor_and_diagnose():
    monitor = Finding("monitor.empty_streak", "11 images in a row", "warning", {"streak": 11, "rate": 0.18751})
    assert monitor.describe() == "[warning] monitor.empty_streak: 11 images in a row (streak=11, rate=0.1875)"
    assert monitor.docs == "docs/monitoring.md"
    ours = Finding(
        code="probe.resize", severity="info", subject="resize", message="t", evidence="a\nb", fix="f", data={"n": 1}
    )
    assert ours.describe() == "[info] probe.resize (resize): t\n  a\n  b\n  fix: f"
    assert ours.to_json() == {
        "code": "probe.resize",
        "severity": "info",
        "subject": "resize",
        "title": "t",  # the name diagnose --json has always used for the message
        "evidence": "a\nb",
        "fix": "f",
        "impact": None,
        "docs": "docs/diagnose.md#probe-resize",
        "data": {"n": 1},
    }
    assert rank([monitor, _f("probe.resize", "warning")])[0].code == "probe.resize"  # a table code ranks first


def test_unknown_codes_are_refused_and_every_code_is_documented():
    with pytest.raises(ValueError, match="unknown finding code"):
        _f("probe.nonsense", "info")
    docs = (Path(__file__).resolve().parent.parent / "docs" / "diagnose.md").read_text()
    for code in CODES:
        assert f"### `{code}`" in docs, code


# --------------------------------------------------------------------------- MMDetection


def write_mmdet_cfg(fixture, folder: Path, edit) -> Path:
    """The fixture's training config edited by ``edit(cfg)``, as a user's inference config file."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(fixture.config))
    edit(cfg)
    path = folder / "inference_cfg.py"
    cfg.dump(str(path))
    return path


def _mmdet_imagenet(cfg):
    cfg.model.data_preprocessor.mean = [123.675, 116.28, 103.53]
    cfg.model.data_preprocessor.std = [58.395, 57.12, 57.375]


def _mmdet_resize_800(cfg):
    cfg.test_dataloader.dataset.pipeline[1].scale = (800, 800)


def _mmdet_depth_50(cfg):
    cfg.model.backbone.depth = 50


def test_mmdet_healthy_model_exits_zero(mmdet_fixture):
    result = diagnose(mmdet_fixture.checkpoint, _images(mmdet_fixture))
    assert result.exit_code == 0, result.describe()
    resize = result.by_code("probe.resize")[0]
    assert resize.data["key"].endswith(".scale") and len(resize.data["curve"]) == 5, resize.describe()


@pytest.mark.parametrize(
    ("edit", "subject"),
    [(_mmdet_imagenet, "normalisation"), (_mmdet_resize_800, "resize")],
    ids=["ImageNet mean/std", "scale 800"],
)
def test_mmdet_seed_mistakes_are_the_top_finding(mmdet_fixture, tmp_path, edit, subject):
    config = write_mmdet_cfg(mmdet_fixture, tmp_path, edit)
    result = diagnose(mmdet_fixture.checkpoint, _images(mmdet_fixture), config=config)
    top = result.top
    assert top is not None and (top.code, top.subject) == ("contract.preprocessing", subject), result.describe()
    assert result.exit_code == 1


def test_mmdet_wrong_colour_order_is_the_top_finding(mmdet_fixture, tmp_path):
    folder = swapped_images(mmdet_fixture, tmp_path / "swapped")
    result = diagnose(mmdet_fixture.checkpoint, [folder])
    top = result.top
    assert top is not None and (top.code, top.severity) == ("probe.channel_order", "error"), result.describe()


def test_mmdet_backbone_mismatch_is_the_top_finding(mmdet_fixture, tmp_path):
    config = write_mmdet_cfg(mmdet_fixture, tmp_path, _mmdet_depth_50)
    result = diagnose(mmdet_fixture.checkpoint, _images(mmdet_fixture), training_config=config)
    top = result.top
    assert top is not None and top.code == "checkpoint.architecture", result.describe()
    assert "ResNet-18" in top.message and "model.backbone.depth=18" in top.fix
