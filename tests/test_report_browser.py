"""The HTML report of ``diagnose`` opened in a real headless Chromium, and its screenshot looked at.

Chromium comes from Debian (``scripts/setup-browser.sh``). The test needs it: without a browser
the report is not checked, and that is a failure, not a skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from safepredict.cli import main

WIDTH, HEIGHT = 1200, 2000
N_IMAGES = 4


def swapped_images(fixture, folder: Path) -> Path:
    """Validation images written with red and blue swapped: a finding of every severity in the report."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in fixture.dataset.val_images[:N_IMAGES]:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        cv2.imwrite(str(folder / path.name), np.ascontiguousarray(bgr[:, :, ::-1]))
    return folder


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("no headless Chromium on PATH: run scripts/setup-browser.sh (apt-get install chromium)")


def screenshot(html: Path, png: Path, profile: Path) -> np.ndarray:
    """Render ``html`` in headless Chromium and return the screenshot (BGR)."""
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--screenshot={png}",
        f"--window-size={WIDTH},{HEIGHT}",
        html.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert png.is_file(), f"chromium wrote no screenshot (exit {done.returncode}):\n{done.stderr[-3000:]}"
    image = cv2.imread(str(png), cv2.IMREAD_COLOR)
    assert image is not None, "the screenshot is not a PNG cv2 can decode"
    return image


@pytest.fixture(scope="module")
def report(d2_fixture, tmp_path_factory) -> Path:
    """The report of a diagnosis with a finding of every severity: images in the other colour order."""
    root = tmp_path_factory.mktemp("report")
    folder = swapped_images(d2_fixture, root / "bgr")
    profile = root / "profile.json"
    val = str(d2_fixture.dataset.val_dir)
    assert main(["-q", "profile", str(d2_fixture.checkpoint), val, "--limit", "16", "-o", str(profile)]) == 0
    out = root / "report.html"
    argv = ["-q", "diagnose", str(d2_fixture.checkpoint), str(folder), "--reference", str(profile)]
    assert main([*argv, "--report", str(out)]) == 1
    return out


def test_report_is_self_contained(report):
    text = report.read_text(encoding="utf-8")
    assert "<table class='findings'>" in text and "probe.channel_order" in text
    sources = re.findall(r"""(?:src|href)=['"]([^'"]+)""", text)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources), sources[:3]
    # Two pictures per image (training contract on the images as given, and swapped back), two histograms and
    # the resize curve.
    assert len(sources) == 2 * N_IMAGES + 2 + 1, len(sources)
    assert "http://" not in text and "https://" not in text
    assert "Grey: the reference profile" in text  # the histograms compare against the reference


def test_report_renders_in_headless_chromium(report, tmp_path):
    image = screenshot(report, tmp_path / "shot.png", tmp_path / "profile")
    h, w = image.shape[:2]
    assert (w, h) == (WIDTH, HEIGHT), image.shape
    assert float(image.std()) > 10.0  # not one flat colour
    colours = np.unique(image.reshape(-1, 3)[::7], axis=0)
    assert len(colours) > 200, len(colours)  # text, badges and the drawn detections, not a blank page
    # The error badge of the top finding (#c0392b) is on screen: the findings table was laid out.
    badge = np.all(np.abs(image.astype(int) - (0x2B, 0x39, 0xC0)) <= 6, axis=2)
    assert badge.sum() > 100, badge.sum()
    # So are the pictures: the synthetic images' dark noisy backgrounds are nowhere else on the page.
    dark = np.all(image < 70, axis=2)
    assert dark.mean() > 0.02, dark.mean()


def test_report_of_a_checkpoint_that_does_not_fit(d2_fixture, tmp_path):
    """No model could be built: the report still holds the finding, and no picture."""
    from detectron2.config import get_cfg

    from safepredict.diagnose import diagnose, render_html

    lonely = tmp_path / "model_final.pth"
    lonely.write_bytes(d2_fixture.checkpoint.read_bytes())
    cfg = get_cfg()
    cfg.merge_from_file(str(d2_fixture.config))
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 80
    config = tmp_path / "inference.yaml"
    config.write_text(cfg.dump())
    result = diagnose(lonely, [d2_fixture.dataset.val_images[0]], training_config=config)
    text = render_html(result)
    assert "checkpoint.architecture" in text and "set MODEL.ROI_HEADS.NUM_CLASSES=3" in text
    assert "<img" not in text and "Training contract" in text
