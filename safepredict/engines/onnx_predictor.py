"""A SafePredictor on the ONNX Runtime engine: the contract and the monitor from the file's metadata.

:func:`onnx_parts` makes the parts of a :class:`~safepredict.SafePredictor` whose engine is an
:class:`~safepredict.engines.onnxruntime.OnnxEngine`: the same ``predict``/``predict_candidates``,
the same :class:`Detections`, the same monitor (with the reference profile carried in the file, or
``<file>.reference.json`` beside it), and a start-up check of the running environment against
the run-time entries recorded at export (onnxruntime version, execution provider, numpy, OpenCV,
Pillow). torch and the frameworks are never imported.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from safepredict._logging import warn
from safepredict.contract import ResizePolicy, TrainingContract
from safepredict.engines.parts import Parts
from safepredict.engines.providers import preferred_provider
from safepredict.errors import EnvironmentMismatchError, InputError

logger = logging.getLogger("safepredict")

# The packages the ONNX-side predictor runs on: the run-time part of the exporting lock.
RUNTIME_PACKAGES = ("onnxruntime", "numpy", "opencv-python", "pillow")


def _installed(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def runtime_entries(providers: Sequence[str] | None = None) -> dict[str, Any]:
    """The run-time lock entries of this environment (recorded at export, checked at start-up)."""
    entries: dict[str, Any] = {f"packages.{p}": _installed(p) for p in RUNTIME_PACKAGES}
    if providers is None:
        try:
            import onnxruntime

            providers = onnxruntime.get_available_providers()
        except ImportError:
            providers = []
    entries["onnxruntime.execution_provider"] = preferred_provider(providers)
    return entries


def contract_from_json(doc: Mapping[str, Any]) -> TrainingContract:
    """The TrainingContract a ``contract`` metadata entry describes."""
    resize = dict(doc["resize"])
    return TrainingContract(
        framework=doc["framework"],
        source=f"{doc.get('source')} (carried in the ONNX metadata)",
        input_format=doc["input_format"],
        pixel_mean=doc["pixel_mean"],
        pixel_std=doc["pixel_std"],
        resize=ResizePolicy(**resize),
        pad_divisor=doc["pad_divisor"],
        pad_value=doc["pad_value"],
        score_threshold=doc["score_threshold"],
        nms_iou=doc["nms_iou"],
        max_detections=doc["max_detections"],
        num_classes=doc["num_classes"],
        class_names=doc.get("class_names"),
        meta_architecture=doc["meta_architecture"],
        backbone=doc["backbone"],
        depth=doc.get("depth"),
        heads=frozenset(doc.get("heads", ())),
        keys=doc.get("keys", {}),
    )


def check_runtime(recorded: Mapping[str, Any] | None, engine: Any, policy: str, source: str) -> list[str]:
    """Differences between the recorded run-time entries and this environment; warned or raised per ``policy``."""
    if not recorded:
        return []
    running = runtime_entries(engine.providers)
    running["onnxruntime.execution_provider"] = engine.providers[0] if engine.providers else None
    problems = [
        f"{key}: exported with {value}, running {running.get(key)}"
        for key, value in sorted(recorded.items())
        if value is not None and running.get(key) != value
    ]
    if problems:
        message = f"the environment differs from the one {source} was exported and verified in: " + "; ".join(problems)
        if policy == "error":
            raise EnvironmentMismatchError(
                message,
                expected=dict(recorded),
                found=running,
                source=source,
                fix="install the recorded versions (pip install onnxruntime==...), or pass on_env_mismatch='warn'",
            )
        warn(message, code="lock.mismatch")
    return problems


def check_lock_before_loading(lock: str | os.PathLike[str], path: Path, policy: str) -> Any:
    """The start-up lock check SafePredictor runs, with the ONNX file's sha256 as the weights.

    A file whose sha256 differs from the lock is refused unread (IntegrityError) whatever
    ``policy`` says; versions and hardware follow ``policy``. Returns the LockReport.
    """
    from safepredict.lock import check_lock, enforce, refuse_changed_files

    report = check_lock(lock, weights=path)
    refuse_changed_files(report, lock)
    enforce(report, policy)
    return report


def onnx_parts(
    path: str | os.PathLike[str],
    *,
    monitor: bool = True,
    reference: Any = None,
    class_names: Sequence[str] | None = None,
    providers: Sequence[str] | None = None,
    threads: int | None = None,
    on_env_mismatch: str = "warn",
    lock: str | os.PathLike[str] | None = None,
) -> Parts:
    """The parts of a SafePredictor running ``path`` on onnxruntime (``SafePredictor.from_onnx``)."""
    from safepredict.engines.onnxruntime import OnnxEngine
    from safepredict.frameworks.artifact import TrainingArtifact

    if on_env_mismatch not in ("warn", "error"):
        raise InputError(f"on_env_mismatch must be 'warn' or 'error', got {on_env_mismatch!r}")
    path = Path(path)
    report = None
    if lock is not None:
        report = check_lock_before_loading(lock, path, on_env_mismatch)
    engine = OnnxEngine(path, providers=providers, threads=threads, class_names=class_names)
    document = engine.document
    training = contract_from_json(document["training_contract"])
    artifact = TrainingArtifact(
        framework=document["framework"],
        checkpoint=path,
        training_contract=training,
        inference_contract=None,
        training_cfg=None,
        inference_cfg=None,
        training_source=str(path),
        inference_source=None,
        dataset_meta=None,
        discrepancies=(),
    )
    runtime_differences = check_runtime(document.get("runtime"), engine, on_env_mismatch, str(path))
    if engine.class_names is None:
        warn(
            f"{path} records no class names: labels are indices; pass class_names=[...]", code="contract.no_class_names"
        )
    if monitor and reference is None:
        beside = path.with_name(path.name + ".reference.json")
        if beside.is_file():
            reference = beside
            logger.info("using the reference profile beside the model: %s", beside)
        elif document.get("reference") is not None:
            from safepredict.monitor import ReferenceProfile

            reference = ReferenceProfile.from_json(document["reference"], source=f"{path} (metadata)")
            logger.info("using the reference profile carried in %s", path)
    return Parts(
        artifact=artifact,
        cfg=None,
        applied_contract=contract_from_json(document["contract"]),
        discrepancies=(),
        engine=engine,
        device=engine.device,
        lock_report=report,
        lock_path=Path(lock) if lock is not None else None,
        reference=reference if monitor else None,
        rebuild={"onnx": str(path), "providers": providers, "threads": threads, "class_names": class_names},
        runtime_differences=tuple(runtime_differences),
    )
