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

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from safepredict.contract import TrainingContract
from safepredict.detections import Detections
from safepredict.engines.parts import Parts
from safepredict.errors import InputError, UnsupportedOutputError
from safepredict.frameworks.base import RawResult
from safepredict.images import LoadedImage, as_path, check_color, from_array

logger = logging.getLogger("safepredict")

__all__ = ["SafePredictor"]


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
        trust: run the framework's own config loaders on the artifact (they execute Python and
            unsafe YAML). Off by default: configs are read by safe readers and anything that
            would run code is refused with UntrustedCodeError. A lock that pins the config
            file's sha256 trusts that file too. See docs/security.md.

        bundle: use the safepredict bundle beside the checkpoint (written at the end of training
            by the training hooks, see docs/monitoring.md): its lock, reference profile, golden
            set and class names stand in for ``lock``/``reference``/``class_names`` not given.
        auto_reference: with a monitor and no reference (given or in the bundle), build one once
            from the validation set the training config names, if its files are on this machine,
            and cache it (``safepredict.autoref``, docs/monitoring.md).

    With ``lock``, the weights and config files are hashed before anything is deserialised: a
    file whose sha256 differs from the lock raises IntegrityError whatever ``on_env_mismatch``
    says (that policy is for versions and hardware).
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
        trust: bool = False,
        bundle: bool = True,
        auto_reference: bool = True,
    ) -> None:
        from safepredict.frameworks.build import framework_parts

        parts = framework_parts(
            cfg,
            checkpoint=checkpoint,
            training_config=training_config,
            overrides=overrides,
            lock=lock,
            on_env_mismatch=on_env_mismatch,
            monitor=monitor,
            reference=reference,
            strict=strict,
            class_names=class_names,
            device=device,
            trust=trust,
            bundle=bundle,
            auto_reference=auto_reference,
        )
        self._setup(parts, monitor=monitor, replay=replay)

    def _setup(self, parts: Parts, *, monitor: bool, replay: bool = False) -> None:
        """Assemble this predictor from an engine builder's parts: the contract, the engine, the monitor."""
        self.device = parts.device
        # The start-up lock check's LockReport (None without a lock): the Prometheus metrics export it.
        self.lock_report = parts.lock_report
        self.artifact = parts.artifact
        self.cfg = parts.cfg
        self.applied_contract = parts.applied_contract
        self.discrepancies = parts.discrepancies
        self._adapter = parts.engine
        self.class_names = parts.engine.class_names
        # What a worker process needs to build the same predictor (predict_many).
        self._init_kwargs: dict[str, Any] = dict(parts.rebuild)
        self._lock_path = parts.lock_path
        # Run-time entries that differ from those an exported model recorded (empty for a checkpoint).
        self.runtime_differences = list(parts.runtime_differences)
        self._check_progress()
        self.monitor = self._make_monitor(parts.reference, parts.automatic_reference) if monitor else None
        # The golden replay's report (drift is also logged as monitor.replay_drift), or None.
        self.replay_report = self.replay() if replay else None

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_checkpoint(
        cls, checkpoint: str | os.PathLike[str], config: Any = None, device: str = "cpu", **kwargs: Any
    ) -> SafePredictor:
        """Either framework, from the checkpoint: the training contract decides everything.

        ``config`` is your inference config (a file or config object), diffed against training.
        An ``.onnx`` file written by :meth:`export` runs on onnxruntime (:meth:`from_onnx`).
        """
        if Path(checkpoint).suffix.lower() == ".onnx":
            return cls.from_onnx(checkpoint, **kwargs)
        return cls(config, checkpoint=checkpoint, device=device, **kwargs)

    @classmethod
    def from_onnx(cls, path: str | os.PathLike[str], **kwargs: Any) -> SafePredictor:
        """An exported model (:meth:`export`) on onnxruntime: no torch, no framework imported.

        The contract, class names, post-processing and monitor reference come from the file's
        metadata (docs/deploying.md). Keywords: ``monitor``, ``reference``, ``class_names``,
        ``providers`` (onnxruntime execution providers), ``threads``, ``on_env_mismatch``, ``lock``.
        """
        from safepredict.engines.onnx_predictor import onnx_parts

        monitor = kwargs.pop("monitor", True)
        predictor = cls.__new__(cls)
        predictor._setup(onnx_parts(path, monitor=monitor, **kwargs), monitor=monitor)
        return predictor

    def export(self, path: str | os.PathLike[str], **kwargs: Any) -> Path:
        """Write this model as ONNX with its training contract in the metadata (docs/deploying.md)."""
        from safepredict.export.writer import export  # not the package, whose verify_export imports the predictor

        return export(self, path, **kwargs)

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
        return self._adapter.model

    @property
    def score_threshold(self) -> float:
        return self._adapter.score_threshold

    @property
    def threshold_key(self) -> str:
        return self._adapter.threshold_key

    @property
    def monitor_threshold(self) -> float:
        """Where the monitor cuts candidates: the score threshold, or 0.0 where the model kept its
        own (FCOS/ATSS: every candidate is final, and some score below the threshold)."""
        return self._adapter.score_threshold if self._adapter.keeps_candidates else 0.0

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

    def predict_many(
        self,
        images: Iterable[Any],
        color: str = "BGR",
        *,
        workers: int | None = None,
        threads: int = 1,
        chunk_size: int = 4,
    ) -> Iterator[Detections]:
        """Detections of each image, in input order, using the whole machine.

        ``workers`` processes (default: one per core on the CPU, none on a GPU or for a handful
        of images) with ``threads`` intra-op threads each: forked from this process on Linux
        (sharing this model copy-on-write), else spawned, each building this predictor from the
        same arguments; each decodes the next image while its model runs. Every output equals what
        :meth:`predict` gives for that image (same code, same threads per forward), and this
        predictor's monitor sees every image. ``workers=0`` runs here, decoding overlapped.
        """
        check_color(color)
        results = self._adapter.run_many(self, images, color, workers=workers, threads=threads, chunk_size=chunk_size)
        for rgb, candidates, final in results:
            if self.monitor is not None:
                self.monitor.observe(rgb, candidates)
            yield final

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

    def _make_monitor(self, reference: Any, automatic: Callable[[Any], Any] | None = None) -> Any:
        from safepredict.monitor import Monitor, ReferenceProfile

        if reference is not None and not isinstance(reference, ReferenceProfile):
            reference = ReferenceProfile.load(reference)
        if reference is None and automatic is not None:
            reference = automatic(self)  # the engine's: cached, or built once from the validation set; or None
        return Monitor(
            reference=reference,
            score_threshold=self.monitor_threshold,
            threshold_key=self.threshold_key,
            class_names=self.class_names,
        )

    def replay(self) -> Any:
        """Re-run the golden images stored with the lock and report drift (see docs/monitoring.md)."""
        from safepredict.monitor.replay import replay_golden

        if self._lock_path is None:
            raise InputError("replay=True needs lock=... (the golden set is stored beside the lock)")
        return replay_golden(self, self._lock_path)
