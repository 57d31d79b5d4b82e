"""A Detectron2 training hook that writes the safepredict bundle beside the final checkpoint.

    from safepredict.frameworks.detectron2.hook import SafePredictHook

    trainer = DefaultTrainer(cfg)
    trainer.register_hooks([SafePredictHook()])   # after the trainer's own hooks: runs last
    trainer.train()

When training starts (``before_train``), on the main process, it writes the trainer's ``cfg`` to
``OUTPUT_DIR/config.yaml`` if nothing wrote it there, as ``default_setup`` would: Detectron2's
own tutorial trains with ``DefaultTrainer(cfg)`` and never calls ``default_setup``, and without
that file nobody can tell later how the model expects its input.

At the end of training (``after_train``: after the last evaluation and the final checkpoint),
on the main process only, it writes ``safepredict.lock``, ``safepredict-profile.json``, the
golden set and ``safepredict-classes.json`` beside ``OUTPUT_DIR/model_final.pth``, computed on the
validation set (``DATASETS.TEST[0]``, as registered in ``DatasetCatalog``) through the training
contract's own pipeline. With no validation set (the tutorial's ``DATASETS.TEST = ()``) it writes
the lock and the class names (of ``DATASETS.TRAIN[0]``) and says that the profile and golden set
need ``dataset=`` or ``val_images=``. For ``SimpleTrainer`` or a LazyConfig training loop, pass
``checkpoint=``, ``config=`` and ``dataset=`` (or ``val_images=``) explicitly.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safepredict.frameworks.base import require_framework

require_framework("detectron2", "the safepredict training hook")

from detectron2.engine import HookBase  # noqa: E402 - after the import guard

logger = logging.getLogger("safepredict")


class SafePredictHook(HookBase):
    """Write config.yaml when training starts (if missing), the safepredict bundle when it ends (module docstring)."""

    def __init__(
        self,
        *,
        checkpoint: str | Path | None = None,
        config: str | Path | None = None,
        dataset: str | None = None,
        val_images: Sequence[str | Path] | None = None,
        class_names: Sequence[str] | None = None,
        max_images: int = 200,
        golden: int = 8,
    ) -> None:
        self.checkpoint = checkpoint
        self.config = config
        self.dataset = dataset
        self.val_images = val_images
        self.class_names = class_names
        self.max_images = max_images
        self.golden = golden
        self.bundle: Any = None

    def _cfg(self) -> Any:
        return getattr(self.trainer, "cfg", None)

    def _paths(self) -> tuple[Path, Path | None]:
        cfg = self._cfg()
        output = Path(cfg.OUTPUT_DIR) if cfg is not None and hasattr(cfg, "OUTPUT_DIR") else None
        checkpoint = Path(self.checkpoint) if self.checkpoint else (output / "model_final.pth" if output else None)
        if checkpoint is None:
            raise ValueError("SafePredictHook: pass checkpoint= (the trainer has no cfg.OUTPUT_DIR)")
        config = Path(self.config) if self.config else (output / "config.yaml" if output else None)
        return checkpoint, config if config is not None and config.is_file() else None

    def _validation(self) -> tuple[list[str], tuple[str, ...] | None]:
        """The validation images and the class names; no images where the trainer has no validation set."""
        from detectron2.data import DatasetCatalog, MetadataCatalog

        names = tuple(self.class_names) if self.class_names else None
        if self.val_images is not None:
            return [str(p) for p in self.val_images], names
        cfg = self._cfg()
        dataset = self.dataset or (cfg.DATASETS.TEST[0] if cfg is not None and cfg.DATASETS.TEST else None)
        if dataset is None:
            train = cfg.DATASETS.TRAIN[0] if cfg is not None and cfg.DATASETS.TRAIN else None
            if names is None and train is not None:
                classes = MetadataCatalog.get(train).get("thing_classes")
                names = tuple(classes) if classes else None
            return [], names
        records = DatasetCatalog.get(dataset)
        if names is None:
            classes = MetadataCatalog.get(dataset).get("thing_classes")
            names = tuple(classes) if classes else None
        return [r["file_name"] for r in records], names

    def write_config(self) -> Path | None:
        """Write the trainer's cfg to ``OUTPUT_DIR/config.yaml`` where nothing wrote it; the path written, or None.

        What ``default_setup`` writes (``cfg.dump()``), so the checkpoint carries its training config
        wherever ``model_final.pth`` goes with its folder. An existing file is left alone, and so is a
        run given ``config=``.
        """
        cfg = self._cfg()
        if self.config or cfg is None or not getattr(cfg, "OUTPUT_DIR", None) or not hasattr(cfg, "dump"):
            return None
        path = Path(cfg.OUTPUT_DIR) / "config.yaml"
        if path.is_file():
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(cfg.dump(), encoding="utf-8")
        logger.info("SafePredictHook: wrote the training config to %s (as default_setup would)", path)
        return path

    def before_train(self) -> None:
        from detectron2.utils import comm

        if comm.is_main_process():
            self.write_config()

    def after_train(self) -> None:
        from detectron2.utils import comm

        from safepredict.bundle import write_bundle
        from safepredict.predictor import SafePredictor

        if not comm.is_main_process():
            return
        self.write_config()  # a hook registered after training started missed before_train
        checkpoint, config = self._paths()
        images, names = self._validation()
        self.bundle = write_bundle(
            checkpoint,
            images,
            config=config,
            class_names=names,
            max_images=self.max_images,
            golden=self.golden,
            predictor_kwargs={"device": "cpu"},
            factory=SafePredictor.from_checkpoint,
        )
        logger.info("SafePredictHook: %s", self.bundle.describe())
