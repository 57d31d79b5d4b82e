"""SafePredictor: the straight line image -> training contract -> model -> detections -> monitor.

It reads the training artifact (``config.yaml`` beside a Detectron2 checkpoint, the config text
mmengine embeds in a checkpoint), builds the model from the *training* config with the
framework's own code, refuses a checkpoint that does not fit, and names every difference between
the user's inference settings and training:

- preprocessing (colour order, mean/std, resize, padding) and architecture always follow
  training; a different value in the user's config is ignored with a warning. A deliberate
  change goes through ``overrides=`` and is logged.
- post-processing (score threshold, NMS IoU, detections per image) follows the user's config,
  logged as a difference from training.
"""

from __future__ import annotations

import copy
import importlib
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from safepredict._logging import warn
from safepredict.contract import Discrepancy, TrainingArtifact, TrainingContract, discover
from safepredict.detections import Detections
from safepredict.errors import InputError, UnsupportedOutputError
from safepredict.frameworks.base import Adapter, RawResult
from safepredict.images import LoadedImage, as_path, check_color, from_array

logger = logging.getLogger("safepredict")

__all__ = ["SafePredictor"]

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
    for d in artifact.discrepancies:
        if d.category == "internal":
            warn(f"training config trap: {d.describe()}", code="contract.trap", key=d.key)
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
    for field, value in (overrides or {}).items():
        key = training.key(field)
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
    return cfg, applied, artifact.discrepancies


def _make_adapter(
    artifact: TrainingArtifact, cfg: Any, device: str, strict: bool, class_names: tuple[str, ...] | None
) -> Adapter:
    if artifact.framework == "detectron2":
        from safepredict.frameworks.detectron2.adapter import Detectron2Adapter

        return Detectron2Adapter(cfg, artifact.checkpoint, device=device, strict=strict, class_names=class_names)
    from safepredict.frameworks.mmdet.adapter import MMDetAdapter

    return MMDetAdapter(cfg, artifact.checkpoint, device=device, strict=strict, class_names=class_names)


class SafePredictor:
    """A predictor that runs a checkpoint exactly as its training-time evaluation did.

    Drop-in for Detectron2's ``DefaultPredictor(cfg)`` (``cfg.MODEL.WEIGHTS`` is the checkpoint;
    ``p(bgr_image)`` returns ``{"instances": Instances}``) and for MMDetection's
    ``init_detector`` + ``inference_detector`` (:meth:`from_mmdet`; ``p(image)`` returns a
    ``DetDataSample``). :meth:`predict` returns framework-neutral :class:`Detections`.

    Parameters (keyword-only, for every constructor):
        overrides: contract field -> value, a deliberate change from training (logged).
        training_config: the config the model was trained with, when it is not next to the
            checkpoint (Detectron2) or embedded in it (mmengine).
        lock: path of a safepredict lock to check the environment against at start-up.
        on_env_mismatch: ``"warn"`` (default) or ``"error"``.
        monitor: watch outputs and inputs (default on); ``reference``: a ReferenceProfile or
            its path, for drift tests against validation.
        strict: refuse a checkpoint that does not fit the model (default); ``False`` warns.
        class_names: names for a model whose training artifact records none.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``; default: the config's (Detectron2) or cpu.
    """

    def __init__(
        self,
        cfg: Any = None,
        *,
        checkpoint: str | os.PathLike[str] | None = None,
        training_config: Any = None,
        overrides: Mapping[str, Any] | None = None,
        lock: str | os.PathLike[str] | None = None,
        on_env_mismatch: str = "warn",
        monitor: bool = True,
        reference: Any = None,
        replay: bool = False,
        strict: bool = True,
        class_names: Iterable[str] | None = None,
        device: str | None = None,
    ) -> None:
        if on_env_mismatch not in ("warn", "error"):
            raise InputError(f"on_env_mismatch must be 'warn' or 'error', got {on_env_mismatch!r}")
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
        self.device = device

        if lock is not None:
            from safepredict.lock import check_lock, enforce

            config_file = training_config if isinstance(training_config, (str, os.PathLike)) else None
            if config_file is None and (checkpoint.parent / "config.yaml").is_file():
                config_file = checkpoint.parent / "config.yaml"
            enforce(check_lock(lock, weights=checkpoint, config=config_file), on_env_mismatch)

        self.artifact = discover(
            checkpoint, config=cfg, training_config=training_config, overrides=dict(overrides) if overrides else None
        )
        self.cfg, self.applied_contract, self.discrepancies = _effective_config(self.artifact, overrides)
        names = tuple(class_names) if class_names is not None else self.artifact.training_contract.class_names
        self._adapter = _make_adapter(self.artifact, self.cfg, device, strict, names)
        if self._adapter.class_names is None:
            warn(
                f"the training artifact of {checkpoint} records no class names: labels are indices "
                "(safepredict does not fall back to COCO names); pass class_names=[...]",
                code="contract.no_class_names",
            )
        self.class_names = self._adapter.class_names
        self._check_progress()
        self.monitor = self._make_monitor(reference) if monitor else None
        self._lock_path = Path(lock) if lock is not None else None
        # The golden replay's report (drift is also logged as monitor.replay_drift), or None.
        self.replay_report = self.replay() if replay else None

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_checkpoint(
        cls, checkpoint: str | os.PathLike[str], config: Any = None, device: str = "cpu", **kwargs: Any
    ) -> SafePredictor:
        """Either framework, from the checkpoint: the training contract decides everything.

        ``config`` is your inference config (a file or config object), diffed against training.
        """
        return cls(config, checkpoint=checkpoint, device=device, **kwargs)

    @classmethod
    def from_mmdet(
        cls, config: Any, checkpoint: str | os.PathLike[str], device: str = "cpu", **kwargs: Any
    ) -> SafePredictor:
        """Drop-in for ``init_detector(config, checkpoint, device)``; ``config`` may be None."""
        return cls(config, checkpoint=checkpoint, device=device, **kwargs)

    # ------------------------------------------------------------------ properties
    @property
    def contract(self) -> TrainingContract:
        """The training contract (what the model saw at training)."""
        return self.artifact.training_contract

    @property
    def framework(self) -> str:
        return self.artifact.framework

    @property
    def model(self) -> Any:
        """The framework's model, loaded and in eval mode."""
        return self._adapter.model  # type: ignore[attr-defined]

    @property
    def score_threshold(self) -> float:
        return self._adapter.score_threshold

    @property
    def threshold_key(self) -> str:
        return self._adapter.threshold_key

    def describe(self) -> str:
        lines = [self.artifact.describe(), self._adapter.describe()]
        return "\n".join(lines)

    # ------------------------------------------------------------------ inputs
    def load(self, image: Any, color: str = "BGR") -> LoadedImage:
        """Any accepted input as the array the framework's evaluation would have decoded."""
        path = as_path(image)
        if path is not None:
            try:
                return self._adapter.read(path)
            except InputError:
                raise
            except Exception as exc:
                raise InputError(f"cannot decode image {path}: {exc}", found=str(path)) from exc
        return from_array(image, check_color(color))

    # ------------------------------------------------------------------ prediction
    def _run(self, image: Any, color: str) -> tuple[LoadedImage, RawResult]:
        loaded = self.load(image, color)
        result = self._adapter.run(loaded)
        if self.monitor is not None:
            self.monitor.observe(loaded.to("RGB"), result.candidates)
        return loaded, result

    def __call__(self, image: Any) -> Any:
        """The framework's own output type, as ``DefaultPredictor``/``inference_detector`` return.

        Arrays are taken as BGR, as both frameworks' predictors take them (``cv2.imread``).
        A list gives a list.
        """
        if isinstance(image, (list, tuple)):
            return [self(i) for i in image]
        return self._run(image, "BGR")[1].native

    def predict(self, image: Any, color: str = "BGR", *, masks: bool = False) -> Detections:
        """Framework-neutral detections of one image (a path, a PIL image, or an array in ``color``)."""
        if masks and "mask" not in self.contract.heads:
            raise UnsupportedOutputError(
                f"this model cannot produce masks: it was trained with heads {sorted(self.contract.heads)}",
                expected="mask",
                found=sorted(self.contract.heads),
                fix="use a checkpoint trained with a mask head (MODEL.MASK_ON / a Mask R-CNN config)",
            )
        return self._run(image, color)[1].final

    def predict_batch(self, images: Iterable[Any], color: str = "BGR") -> list[Detections]:
        """Detections of each image, in order (one forward per image, as the evaluation loader does)."""
        return list(self.iter_predict(images, color))

    def iter_predict(self, images: Iterable[Any], color: str = "BGR") -> Iterator[Detections]:
        for image in images:
            yield self.predict(image, color)

    def predict_candidates(self, image: Any, color: str = "BGR") -> tuple[np.ndarray, Detections]:
        """``(image_rgb, candidates)``: every detection down to the candidate floor, not monitored.

        Used to build reference profiles and by the diagnose probes.
        """
        loaded = self.load(image, color)
        return loaded.to("RGB"), self._adapter.run(loaded).candidates

    # ------------------------------------------------------------------ start-up checks
    def _check_progress(self) -> None:
        progress = self.contract.progress
        if progress is None:
            return
        from safepredict.monitor import undertraining_hint

        hint = undertraining_hint(
            getattr(progress, "iteration", None),
            getattr(progress, "max_iter", None),
            epoch=getattr(progress, "epoch", None),
            max_epochs=getattr(progress, "max_epochs", None),
        )
        if hint is not None:
            hint.emit()

    def _make_monitor(self, reference: Any) -> Any:
        from safepredict.monitor import Monitor, ReferenceProfile

        if reference is not None and not isinstance(reference, ReferenceProfile):
            reference = ReferenceProfile.load(reference)
        return Monitor(
            reference=reference,
            score_threshold=self.score_threshold,
            threshold_key=self.threshold_key,
            class_names=self.class_names,
        )

    def replay(self) -> Any:
        """Re-run the golden images stored with the lock and report drift (see docs/monitoring.md)."""
        from safepredict.monitor.replay import replay_golden

        if self._lock_path is None:
            raise InputError("replay=True needs lock=... (the golden set is stored beside the lock)")
        return replay_golden(self, self._lock_path)
