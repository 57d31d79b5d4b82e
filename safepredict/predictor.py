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
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from safepredict import bundle as _bundle
from safepredict._logging import warn
from safepredict.contract import TTA_FIELDS, Discrepancy, TrainingContract, single_pass_difference
from safepredict.detections import Detections
from safepredict.errors import InputError, UnsupportedOutputError
from safepredict.frameworks.artifact import TrainingArtifact, discover
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
        if on_env_mismatch not in ("warn", "error"):
            raise InputError(f"on_env_mismatch must be 'warn' or 'error', got {on_env_mismatch!r}")
        # What a worker process needs to build the same predictor (predict_many).
        self._init_kwargs: dict[str, Any] = {
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

        self.device = _check_device(device)
        # The start-up lock check's LockReport (None without a lock): the Prometheus metrics export it.
        self.lock_report: Any = None
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
            pins_config, self.lock_report = _check_lock(lock, checkpoint, config_file, on_env_mismatch)
            if pins_config and not trust:
                # The lock pins this very config file's content: the user validated it, so it is trusted.
                logger.info("trusted: %s matches the sha256 pinned in lock %s", config_file, lock)
                trust = True

        self.artifact = discover(
            checkpoint,
            config=cfg,
            training_config=training_config,
            overrides=dict(overrides) if overrides else None,
            trust=trust,
        )
        self.cfg, self.applied_contract, self.discrepancies = _effective_config(self.artifact, overrides)
        names = tuple(class_names) if class_names is not None else self.artifact.training_contract.class_names

        self._adapter = _make_adapter(self.artifact, self.cfg, device, strict, names)
        # After the strict fit check: a checkpoint for another class count is named as such first.
        expected_classes = self.artifact.training_contract.num_classes
        if names is not None and class_names is not None and expected_classes and len(names) != expected_classes:
            raise InputError(
                f"class_names has {len(names)} names but the model was trained with {expected_classes} classes",
                expected=expected_classes,
                found=len(names),
                fix=f"pass the {expected_classes} names in training order",
            )
        # The weights live in the model now; holding the file's content too would double the memory.
        self.artifact = attrs.evolve(self.artifact, checkpoint_data=None)
        if self._adapter.class_names is None:
            warn(
                f"the training artifact of {checkpoint} records no class names: labels are indices "
                "(safepredict does not fall back to COCO names); pass class_names=[...]",
                code="contract.no_class_names",
            )
        self.class_names = self._adapter.class_names
        self._check_progress()
        self.monitor = self._make_monitor(reference, auto_reference) if monitor else None
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
        from safepredict.engines.onnx_predictor import build

        return build(cls, path, **kwargs)

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
        from safepredict.workers import WorkerPlan, chunks, cores, default_plan, run_chunk, run_in_workers

        check_color(color)
        if "onnx" in self._init_kwargs:  # onnxruntime uses its own intra-op threads
            yield from self.iter_predict(images, color)
            return
        sized = len(images) if hasattr(images, "__len__") else None  # type: ignore[arg-type]
        plan = default_plan(self.device, sized) if workers is None else WorkerPlan(workers=workers, threads=threads)
        items = ((image, color) for image in images)
        want_image = self.monitor is not None
        if plan.workers == 0:
            import torch

            # Decoding on a second thread pays where the model leaves a core free (a GPU, one thread).
            overlap = self.device.startswith("cuda") or torch.get_num_threads() < cores()
            results: Iterable[Any] = (
                result
                for chunk in chunks(items, chunk_size)
                for result in run_chunk(self, chunk, want_image, overlap=overlap)
            )
        else:
            kwargs = dict(self._init_kwargs)
            kwargs["checkpoint"] = self.artifact.checkpoint
            results = run_in_workers(self, kwargs, items, plan, want_image=want_image, chunk_size=chunk_size)
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

    def _make_monitor(self, reference: Any, auto_reference: bool = False) -> Any:
        from safepredict.monitor import Monitor, ReferenceProfile

        if reference is not None and not isinstance(reference, ReferenceProfile):
            reference = ReferenceProfile.load(reference)
        if reference is None and auto_reference:
            from safepredict.autoref import automatic_reference

            reference = automatic_reference(self)  # cached, or built once from the validation set; or None
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
