"""What a SafePredictor is made of, as an engine's builder hands it over.

Two builders make them: :func:`safepredict.frameworks.build.framework_parts` (a checkpoint and its
training artifact, on the framework's own test-time code) and
:func:`safepredict.engines.onnx_predictor.onnx_parts` (an exported model on onnxruntime). The
predictor assembles itself from either the same way (``SafePredictor._setup``): the contract, one
engine, the monitor. It imports neither builder's helpers (bundle, lock check, automatic
reference, worker processes): each builder brings what its engine needs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs


@attrs.frozen
class Parts:
    """One predictor's parts: what it runs, what it was trained with, what was checked at start-up."""

    artifact: Any  # frameworks.artifact.TrainingArtifact: where the model and its contract came from
    cfg: Any  # the effective framework config (None for an exported model)
    applied_contract: Any  # the contract in force: training, with the user's honoured values
    discrepancies: tuple[Any, ...]
    engine: Any  # engines.base.Engine: what runs the network
    device: str
    lock_report: Any = None  # the start-up lock check's LockReport, or None without a lock
    lock_path: Path | None = None
    reference: Any = None  # the monitor's reference profile (or its path), given or found beside the model
    # Builds a reference for the finished predictor when none was given or found (or None: never).
    automatic_reference: Callable[[Any], Any] | None = None
    # What a worker process needs to build the same predictor (predict_many, the automatic reference).
    rebuild: Mapping[str, Any] = attrs.field(factory=dict)
    runtime_differences: Sequence[str] = ()  # run-time entries that differ from the export's
