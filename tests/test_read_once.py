"""A SafePredictor reads its checkpoint file once: discover() loads it, the adapter reuses it.

Before, Detectron2's ``DetectionCheckpointer.load`` and mmengine's loader read the file again
(three reads for Detectron2, two for MMDetection). Counted here on the real trained fixtures
with the real frameworks: every ``torch.load`` and every ``open`` of the checkpoint's path.
"""

from __future__ import annotations

import builtins
import io
from pathlib import Path
from typing import Any

import pytest

from safepredict import SafePredictor


def _count_reads(monkeypatch: pytest.MonkeyPatch, checkpoint: Path) -> dict[str, int]:
    import torch

    counts = {"torch.load": 0, "open": 0}
    target = checkpoint.resolve()

    def is_target(file: Any) -> bool:
        try:
            return Path(file).resolve() == target
        except TypeError:
            return False

    real_load = torch.load

    def load(f: Any, *args: Any, **kwargs: Any) -> Any:
        counts["torch.load"] += 1
        return real_load(f, *args, **kwargs)

    real_open = builtins.open

    def counting_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if is_target(file):
            counts["open"] += 1
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(io, "open", counting_open)
    return counts


@pytest.mark.parametrize("framework", ["detectron2", "mmdet"])
def test_construction_reads_the_checkpoint_once(framework, request, monkeypatch):
    fixture = request.getfixturevalue("d2_fixture" if framework == "detectron2" else "mmdet_fixture")
    counts = _count_reads(monkeypatch, fixture.checkpoint)
    p = SafePredictor.from_checkpoint(fixture.checkpoint, monitor=False)
    assert counts == {"torch.load": 1, "open": 1}, counts
    # The weights were loaded for real: the model predicts the fixture's objects.
    assert not p.predict(fixture.dataset.val_images[0]).is_empty()
    # And the predictor does not keep a second copy of the file's content.
    assert p.artifact.checkpoint_data is None
