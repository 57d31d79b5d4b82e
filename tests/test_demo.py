"""`safepredict demo`: the tutorial-style inference code fails, SafePredictor with the same config does not."""

from __future__ import annotations

import re

from safepredict.cli import main


def test_demo_shows_the_mistake_and_the_catch(d2_fixture, capsys):
    assert main(["demo", "--images", "4"]) == 0
    out = capsys.readouterr().out
    final = re.search(r"naive AP50 ([\d.]+) -> SafePredictor AP50 ([\d.]+)", out)
    assert final, out
    naive, safe = float(final.group(1)), float(final.group(2))
    assert safe >= 80.0 and naive < 0.5 * safe
    for key in ("input_format", "pixel_mean", "resize.min_size", "depth"):
        assert key in out
