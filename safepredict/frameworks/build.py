"""The framework path's builder: a checkpoint and its training artifact into a predictor's parts.

What ``SafePredictor(cfg)``, ``from_checkpoint`` and ``from_mmdet`` run before the predictor holds
anything: the bundle beside the checkpoint (its lock, reference profile and class names), the
start-up lock check (before any model file is deserialised), the training artifact
(:func:`~safepredict.frameworks.artifact.discover`), the effective config (the training config
with the user's honoured post-processing and explicit overrides, every other difference named),
the framework's adapter with the checkpoint loaded into it, and the automatic reference's
factory. The ONNX path's builder is :func:`safepredict.engines.onnx_predictor.onnx_parts`; the
predictor assembles itself from either (:class:`~safepredict.engines.parts.Parts`).
"""

from __future__ import annotations

import copy
import importlib
import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from safepredict import bundle as _bundle
from safepredict._logging import warn
from safepredict.contract import TTA_FIELDS, Discrepancy, TrainingContract, single_pass_difference
from safepredict.engines.parts import Parts
from safepredict.errors import InputError
from safepredict.frameworks.artifact import TrainingArtifact, discover
from safepredict.frameworks.base import Adapter

logger = logging.getLogger("safepredict")

__all__ = ["framework_parts"]

# Contract fields whose user value is honoured (post-processing); everything else follows training.
_HONOURED = {"score_threshold", "nms_iou", "max_detections"}


def _clone(cfg: Any) -> Any:
    if hasattr(cfg, "clone"):
        return cfg.clone()
    return copy.deepcopy(cfg)


def _effective_config(
    artifact: TrainingArtifact, overrides: Mapping[str, Any] | None
) -> tuple[Any, TrainingContract, tuple[Discrepancy, ...]]:
    """The training config with the user's honoured post-processing values and explicit overrides."""
    training = artifact.training_contract
    apply = importlib.import_module(f"safepredict.frameworks.{artifact.framework}.adapter").apply_setting
    cfg = _clone(artifact.training_cfg)
    applied = training
    single_pass = single_pass_difference(training, "SafePredictor")
    for d in artifact.discrepancies:
        if d.category == "internal":
            warn(f"training config trap: {d.describe()}", code="contract.trap", key=d.key)
            continue
        if d.key in TTA_FIELDS:
            # No predictor augments: an augmenting training evaluation is named once, below; an
            # inference config that augments where training did not is named here.
            if single_pass is None:
                warn(f"test-time augmentation: {d.describe()}", code="contract.tta", key=d.key)
            continue
        if overrides and d.key in overrides:
            continue  # reported below, as an override
        if d.key in _HONOURED:
            apply(cfg, training, d.key, d.inference)
            applied = applied.with_overrides({d.key: d.inference}, source=d.inference_source or "inference config")
            warn(
                f"{d.key}: using your inference value {d.inference!r} ({d.inference_source}), training used "
                f"{d.training!r} ({training.key(d.key)}): detections will differ from training-time evaluation",
                code="contract.postprocessing",
                key=d.key,
                training=d.training,
                inference=d.inference,
            )
        else:
            warn(
                f"{d.key}: ignoring {d.inference!r} from {d.inference_source}; the model was trained with "
                f"{d.training!r} ({training.key(d.key)}) and safepredict uses the training value. {d.fix}",
                code="contract.ignored",
                key=d.key,
                training=d.training,
                inference=d.inference,
            )
    for d in artifact.config_differences:
        if d.category == "other":
            logger.info("config key %s differs from training (%r -> %r): %s", d.key, d.training, d.inference, d.fix)
            continue
        warn(
            f"{d.key}: ignoring {d.inference!r} from {d.inference_source}; the model is built from the training "
            f"config, which has {d.training!r} ({d.category}, a key outside the contract). {d.fix}",
            code="contract.config_key",
            key=d.key,
            training=d.training,
            inference=d.inference,
        )
    for field, value in (overrides or {}).items():
        key = training.key(field)
        if field != "resize" and field not in training.keys:
            # A setting fixed in the framework's code (Detectron2's pad value, its backbone's
            # size divisibility): writing a key nobody reads would be a silent no-op.
            raise InputError(
                f"cannot override {field!r}: no config key sets it in this model "
                f"({training.notes.get(field, 'fixed by the framework')})",
                found=field,
                fix="override one of: " + ", ".join(sorted(training.keys)),
            )
        try:
            apply(cfg, training, field, value)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise InputError(
                f"cannot override {field!r}: the training config has no settable key {key!r} ({exc})",
                found=field,
                fix="override one of: " + ", ".join(sorted(training.keys)),
            ) from exc
        applied = applied.with_overrides({field: value})
        logger.warning(
            "override %s=%r (training: %r, key %s): a deliberate change from training",
            field,
            value,
            training.value(field),
            key,
            extra={"safepredict_code": "contract.override", "safepredict_key": field},
        )
    discrepancies = artifact.discrepancies
    if single_pass is not None:
        warn(f"test-time augmentation: {single_pass.describe()}", code="contract.tta", key=single_pass.key)
        discrepancies += (single_pass,)
    return cfg, applied, discrepancies


def _make_adapter(
    artifact: TrainingArtifact, cfg: Any, device: str, strict: bool, class_names: tuple[str, ...] | None
) -> Adapter:
    module = importlib.import_module(f"safepredict.frameworks.{artifact.framework}.adapter")
    adapter_class: type[Adapter] = module.adapter_class(cfg)
    return adapter_class(
        cfg,
        artifact.checkpoint,
        device=device,
        strict=strict,
        class_names=class_names,
        checkpoint_state=artifact.checkpoint_data,
    )


_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")


def _check_device(device: str) -> str:
    """``device`` if this machine has it, else a typed error saying what it has."""
    if not isinstance(device, str) or not _DEVICE.match(device):
        raise InputError(
            f"invalid device {device!r}",
            expected="'cpu', 'cuda', 'cuda:N' or 'mps'",
            found=device,
            fix="pass device='cpu' or device='cuda:0'",
        )
    if device.startswith("cuda"):
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            raise InputError(
                f"device {device!r} is not available here: torch sees {count} CUDA device(s)"
                + ("" if torch.version.cuda else f" (torch {torch.__version__} is a CPU-only build)"),
                expected=device,
                found=f"{count} CUDA device(s)",
                fix="pass device='cpu', or run where the GPU and a CUDA build of torch are",
            )
    if device == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise InputError("device 'mps' is not available here", found=device, fix="pass device='cpu'")
    return device


def _check_lock(lock: str | os.PathLike[str], weights: Path, config: Any, policy: str) -> tuple[bool, Any]:
    """Check the environment lock before any model file is deserialised: (whether it pins ``config``, the report).

    A weights or config file whose sha256 differs from the lock is refused (IntegrityError)
    whatever ``policy`` says; versions and hardware follow ``policy`` (warn or error).
    """
    from safepredict.lock import check_lock, enforce, read_lock, refuse_changed_files

    report = check_lock(lock, weights=weights, config=config)
    refuse_changed_files(report, lock)
    enforce(report, policy)
    from safepredict.lock.external import detect_format

    if config is None or detect_format(lock) != "safepredict":
        return False, report  # conda lockfiles pin packages, never model files
    pinned = [e for e in read_lock(lock).environment.files if e.role == "config" and e.rule != "record"]
    return bool(pinned), report


def _automatic_reference(predictor: Any) -> Any:
    """The reference profile built once from the validation set the training config names (cached), or None."""
    from safepredict.autoref import automatic_reference

    return automatic_reference(predictor)


def framework_parts(
    cfg: Any = None,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    training_config: Any = None,
    overrides: Mapping[str, Any] | None = None,
    lock: str | os.PathLike[str] | None = None,
    on_env_mismatch: str = "warn",
    monitor: bool = True,
    reference: Any = None,
    strict: bool = True,
    class_names: Iterable[str] | None = None,
    device: str | None = None,
    trust: bool = False,
    bundle: bool = True,
    auto_reference: bool = True,
) -> Parts:
    """The parts of a SafePredictor of ``checkpoint`` (see :class:`~safepredict.SafePredictor` for the arguments)."""
    if on_env_mismatch not in ("warn", "error"):
        raise InputError(f"on_env_mismatch must be 'warn' or 'error', got {on_env_mismatch!r}")
    # What a worker process needs to build the same predictor (predict_many).
    rebuild: dict[str, Any] = {
        "cfg": cfg,
        "checkpoint": checkpoint,
        "training_config": training_config,
        "overrides": dict(overrides) if overrides else None,
        "strict": strict,
        "class_names": tuple(class_names) if class_names is not None else None,
        "device": device,
        "trust": trust,
        "bundle": bundle,
    }
    if checkpoint is None:
        weights = getattr(getattr(cfg, "MODEL", None), "WEIGHTS", None)
        if not weights:
            raise InputError(
                "no checkpoint: pass a Detectron2 cfg with MODEL.WEIGHTS set, or checkpoint=...",
                fix="cfg.MODEL.WEIGHTS = 'output/model_final.pth', or SafePredictor.from_checkpoint(path)",
            )
        checkpoint = weights
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise InputError(f"checkpoint not found: {checkpoint}", found=str(checkpoint), fix="check the path")
    if device is None:
        device = str(getattr(getattr(cfg, "MODEL", None), "DEVICE", "") or "cpu")

    device = _check_device(device)
    lock_report: Any = None
    found = _bundle.find(checkpoint) if bundle else None
    if found is not None and not found.is_empty():
        if lock is None and found.lock is not None:
            lock = found.lock
            logger.info("using the lock beside the checkpoint: %s", lock)
        if reference is None and monitor and found.profile is not None:
            reference = found.profile
            logger.info("using the reference profile beside the checkpoint: %s", reference)
        if class_names is None and found.classes is not None:
            class_names = found.class_names()
            logger.info("using the class names beside the checkpoint: %s", found.classes)

    if lock is not None:
        config_file = training_config if isinstance(training_config, (str, os.PathLike)) else None
        if config_file is None and (checkpoint.parent / "config.yaml").is_file():
            config_file = checkpoint.parent / "config.yaml"
        pins_config, lock_report = _check_lock(lock, checkpoint, config_file, on_env_mismatch)
        if pins_config and not trust:
            # The lock pins this very config file's content: the user validated it, so it is trusted.
            logger.info("trusted: %s matches the sha256 pinned in lock %s", config_file, lock)
            trust = True

    artifact = discover(
        checkpoint,
        config=cfg,
        training_config=training_config,
        overrides=dict(overrides) if overrides else None,
        trust=trust,
    )
    cfg_used, applied, discrepancies = _effective_config(artifact, overrides)
    names = tuple(class_names) if class_names is not None else artifact.training_contract.class_names

    adapter = _make_adapter(artifact, cfg_used, device, strict, names)
    # After the strict fit check: a checkpoint for another class count is named as such first.
    expected_classes = artifact.training_contract.num_classes
    if names is not None and class_names is not None and expected_classes and len(names) != expected_classes:
        raise InputError(
            f"class_names has {len(names)} names but the model was trained with {expected_classes} classes",
            expected=expected_classes,
            found=len(names),
            fix=f"pass the {expected_classes} names in training order",
        )
    # The weights live in the model now; holding the file's content too would double the memory.
    artifact = attrs.evolve(artifact, checkpoint_data=None)
    if adapter.class_names is None:
        warn(
            f"the training artifact of {checkpoint} records no class names: labels are indices "
            "(safepredict does not fall back to COCO names); pass class_names=[...]",
            code="contract.no_class_names",
        )
    return Parts(
        artifact=artifact,
        cfg=cfg_used,
        applied_contract=applied,
        discrepancies=discrepancies,
        engine=adapter,
        device=device,
        lock_report=lock_report,
        lock_path=Path(lock) if lock is not None else None,
        reference=reference if monitor else None,
        automatic_reference=_automatic_reference if monitor and auto_reference else None,
        rebuild=rebuild,
    )
