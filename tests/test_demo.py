"""`safepredict demo`: the tutorial-style inference code fails, SafePredictor with the same config does not."""

from __future__ import annotations

import json
import re

from safepredict.cli import main


def test_demo_shows_the_mistake_and_the_catch(d2_fixture, capsys):
    assert main(["demo", "--images", "4", "--json"]) == 0
    captured = capsys.readouterr()
    out = captured.err  # with --json the narrative goes to stderr, the outcome to stdout
    outcome = json.loads(captured.out)
    final = re.search(r"naive AP50 ([\d.]+) -> SafePredictor AP50 ([\d.]+)", out)
    assert final, out
    naive, safe = float(final.group(1)), float(final.group(2))
    assert safe >= 80.0 and naive < 0.5 * safe
    for key in ("input_format", "pixel_mean", "resize.min_size", "depth"):
        assert key in out
    assert round(outcome["naive"]["ap50"], 1) == naive and round(outcome["safepredict"]["ap50"], 1) == safe
    keys = {d["key"] for d in outcome["discrepancies"]}
    assert {"input_format", "pixel_mean", "resize.min_size"} <= keys
