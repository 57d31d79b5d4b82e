"""``safepredict predict``: COCO results equal to SafePredictor's, resumable, quiet when asked; CLI conventions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from safepredict.cli import main
from safepredict.demo.evaluate import coco_box_ap
from safepredict.detections import Detections
from safepredict.folder import PROGRESS_SUFFIX

N = 10


@pytest.fixture(scope="module")
def predictor(d2_fixture):
    from safepredict.diagnose.probes import build_predictor

    return build_predictor(d2_fixture.checkpoint)


@pytest.fixture
def folder(d2_fixture, tmp_path) -> Path:
    out = tmp_path / "images"
    out.mkdir()
    for path in d2_fixture.dataset.val_images[:N]:
        shutil.copy(path, out / path.name)
    return out


def _expected(predictor, folder: Path) -> dict[str, Detections]:
    return {p.name: predictor.predict(p) for p in sorted(folder.iterdir())}


def _by_image(results: list[dict]) -> dict:
    out: dict = {}
    for r in results:
        out.setdefault(r["image_id"], []).append(r)
    return out


def test_predict_writes_coco_results_equal_to_safepredictor(d2_fixture, predictor, folder, tmp_path, capsys):
    out = tmp_path / "preds.json"
    names = ",".join(d2_fixture.class_names)
    assert main(["predict", str(d2_fixture.checkpoint), str(folder), "--out", str(out), "--class-names", names]) == 0
    err = capsys.readouterr().err
    results = json.loads(out.read_text())
    expected = _expected(predictor, folder)
    assert sum(len(d) for d in expected.values()) == len(results) > 0
    got = _by_image(results)
    for name, dets in expected.items():
        mine = got.get(name, [])
        assert len(mine) == len(dets)
        np.testing.assert_allclose([r["score"] for r in mine], dets.scores, atol=1e-6)
        np.testing.assert_allclose([r["bbox"] for r in mine], [r["bbox"] for r in dets.to_coco(name)], atol=1e-3)
        assert [r["category_id"] for r in mine] == dets.labels.tolist()
    assert not (tmp_path / ("preds.json" + PROGRESS_SUFFIX)).exists()
    assert f"{N}/{N}" in err  # the progress bar, on stderr
    assert f"monitor: {N} image(s) watched" in err and "findings:" in err
    assert "by class: red " in err  # the names given on the command line


def test_predict_folder_from_python(d2_fixture, predictor, folder, tmp_path, capsys):
    from safepredict.folder import predict_folder

    out = tmp_path / "preds.json"
    result = predict_folder(d2_fixture.checkpoint, [folder], out, class_names=d2_fixture.class_names, progress=False)
    assert capsys.readouterr().err == ""  # progress=False: no bar; the summary is the caller's to print
    expected = _expected(predictor, folder)
    assert (result.out, result.images, result.resumed) == (out, N, 0)
    assert result.detections == sum(len(d) for d in expected.values()) == len(json.loads(out.read_text()))
    assert result.monitor is not None and result.monitor["images_total"] == N
    text = result.describe()
    assert text.startswith(f"wrote {out}: {result.detections} detection(s) on {N} image(s)")
    assert f"monitor: {N} image(s) watched" in text


def test_coco_gt_ids_give_the_evaluators_ap(d2_fixture, predictor, tmp_path):
    out = tmp_path / "preds.json"
    folder = d2_fixture.dataset.val_dir
    argv = ["-q", "predict", str(d2_fixture.checkpoint), str(folder), "--out", str(out)]
    assert main([*argv, "--coco-gt", str(d2_fixture.dataset.val_json)]) == 0
    results = json.loads(out.read_text())
    assert all(isinstance(r["image_id"], int) and r["category_id"] in (1, 2, 3) for r in results)
    # The same numbers Detectron2's COCOEvaluator reported when the fixture was trained.
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(d2_fixture.dataset.val_json))
    ev = COCOeval(gt, gt.loadRes(results), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    ours = coco_box_ap(d2_fixture.dataset.val_json, _expected(predictor, folder))
    assert ev.stats[1] * 100 == pytest.approx(ours["AP50"], abs=1e-6)
    assert ev.stats[1] * 100 == pytest.approx(d2_fixture.ap50, abs=0.5)


def test_predict_resumes_after_a_failure(d2_fixture, folder, tmp_path, capsys):
    out = tmp_path / "preds.json"
    names = sorted(p.name for p in folder.iterdir())
    broken = folder / names[4]
    good_bytes = broken.read_bytes()
    broken.write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    argv = ["predict", str(d2_fixture.checkpoint), str(folder), "--out", str(out)]
    assert main(argv) == 2  # the decode error stops the run, a user error
    progress = tmp_path / ("preds.json" + PROGRESS_SUFFIX)
    lines = progress.read_text().splitlines()
    assert len(lines) == 1 + 4 and not out.exists()  # header + the 4 images before the broken one
    with progress.open("a") as handle:
        handle.write('{"image": "torn')  # a crash in the middle of a line
    broken.write_bytes(good_bytes)
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f"resuming: 4 of {N} image(s) already done" in err
    assert f"monitor: {N - 4} image(s) watched (this run; 4 resumed)" in err
    results = json.loads(out.read_text())
    assert {r["image_id"] for r in results} <= set(names)
    assert [r["image_id"] for r in results] == sorted(r["image_id"] for r in results)  # input order kept
    assert not progress.exists()


def test_resume_with_other_settings_is_refused_until_restart(d2_fixture, folder, tmp_path, capsys):
    out = tmp_path / "preds.json"
    progress = tmp_path / ("preds.json" + PROGRESS_SUFFIX)
    progress.write_text(json.dumps({"safepredict_predict": 1, "checkpoint": "elsewhere.pth"}) + "\n")
    argv = ["predict", str(d2_fixture.checkpoint), str(folder), "--out", str(out), "--score-threshold", "0.6"]
    assert main(argv) == 2
    assert "other settings" in capsys.readouterr().err
    assert main(["-q", *argv, "--restart"]) == 0
    assert capsys.readouterr().err == ""  # -q: no progress bar, no summary
    results = json.loads(out.read_text())
    assert results and min(r["score"] for r in results) > 0.6


def test_subcommand_level_quiet_flag(d2_fixture, folder, tmp_path, capsys):
    out = tmp_path / "preds.json"
    assert main(["predict", str(d2_fixture.checkpoint), str(folder), "--out", str(out), "-q"]) == 0
    assert capsys.readouterr().err == ""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "safepredict", *args], capture_output=True, text=True, check=False)


@pytest.mark.parametrize(("command", "option"), [("diagnose", "--report"), ("predict", "--restart")])
def test_help(command, option):
    done = _cli(command, "--help")
    assert done.returncode == 0 and "usage: safepredict " + command in done.stdout
    assert option in done.stdout and "-q, --quiet" in done.stdout


def test_user_errors_exit_2_without_traceback(tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(b"")
    for args in (
        ("predict", str(tmp_path / "missing.pth"), str(image), "--out", str(tmp_path / "p.json")),
        ("diagnose", str(tmp_path / "missing.pth"), str(image)),
        ("predict", str(tmp_path / "missing.pth"), str(tmp_path / "no-such-folder"), "--out", "p.json"),
    ):
        done = _cli(*args)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and "error:" in done.stderr
    done = _cli("predict", "x.pth")  # --out and images missing: argparse's usage error
    assert done.returncode == 2 and "required" in done.stderr
