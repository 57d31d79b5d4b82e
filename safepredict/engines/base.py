"""What SafePredictor needs of an engine: the seam between the predictor and what runs the network.

Two kinds implement it: the framework adapters (``safepredict.frameworks.base.Adapter``: the
framework's own test-time code on PyTorch) and :class:`~safepredict.engines.onnxruntime.OnnxEngine`
(an exported graph with safepredict's numpy steps). The predictor holds the contract, one engine
and the monitor; it reads images through the engine (each decodes files as its framework's
evaluation does) and gets, per image, the candidates below the threshold (for the monitor), the
final detections and the native output. How a predictor gets its engine (the builders and their
parts) is :mod:`safepredict.engines.parts`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from safepredict.images import LoadedImage


@runtime_checkable
class Engine(Protocol):
    """The interface SafePredictor calls (attributes and methods)."""

    framework: str
    device: str
    model: Any
    class_names: tuple[str, ...] | None
    score_threshold: float  # the effective threshold of the final detections
    threshold_key: str  # the config key that sets it
    keeps_candidates: bool  # whether candidates below the threshold are kept (for the monitor)

    def read(self, path: Path) -> LoadedImage:
        """Decode a file exactly as the model's evaluation path does."""
        ...

    def run(self, image: LoadedImage) -> Any:
        """One image's result: ``.candidates``, ``.final`` (Detections) and ``.native``."""
        ...

    def run_many(self, predictor: Any, images: Iterable[Any], color: str, **options: Any) -> Iterator[Any]:
        """``(image_rgb or None, candidates, final)`` of each image in order (``predict_many``): the
        engine decides how to use the machine (worker processes for the frameworks, onnxruntime's
        own threads)."""
        ...

    def describe(self) -> str: ...
