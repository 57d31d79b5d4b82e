"""An mmengine training hook that writes the safepredict bundle beside the last checkpoint.

In the training config::

    custom_imports = dict(imports=["safepredict.frameworks.mmdet.hook"], allow_failed_imports=False)
    custom_hooks = [dict(type="SafePredictHook")]

(``custom_imports`` of ``safepredict.*`` modules are the only imports safepredict's safe config
reader accepts without ``trust``: they are safepredict's own code.) After the run
(``after_run``: after training and its last validation), on the main process only, it writes
``safepredict.lock``, ``safepredict-profile.json`` and the golden set beside the last
checkpoint, computed on ``val_dataloader``'s data set through the training contract's own
pipeline (class names come with the checkpoint's ``meta['dataset_meta']``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from safepredict.frameworks.base import require_framework

require_framework("mmdet", "the safepredict training hook")

from mmengine.hooks import Hook  # noqa: E402 - after the import guard
from mmengine.registry import HOOKS  # noqa: E402

logger = logging.getLogger("safepredict")


@HOOKS.register_module(force=True)
class SafePredictHook(Hook):
    """Write the safepredict bundle when the run ends (see the module docstring)."""

    priority = "LOWEST"

    def __init__(self, max_images: int = 200, golden: int = 8, checkpoint: str | None = None) -> None:
        self.max_images = max_images
        self.golden = golden
        self.checkpoint = checkpoint
        self.bundle: Any = None

    def _checkpoint(self, runner: Any) -> Path:
        if self.checkpoint:
            return Path(self.checkpoint)
        last = Path(runner.work_dir) / "last_checkpoint"
        if last.is_file():
            return Path(last.read_text().strip())
        found = sorted(Path(runner.work_dir).glob("*.pth"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise ValueError(f"SafePredictHook: no checkpoint in {runner.work_dir}; pass checkpoint=")
        return found[-1]

    @staticmethod
    def _validation(runner: Any) -> list[str]:
        loader = runner.val_dataloader if runner.val_loop is not None else runner.test_dataloader
        dataset = loader.dataset
        while not hasattr(dataset, "get_data_info") and hasattr(dataset, "dataset"):
            dataset = dataset.dataset  # wrappers (RepeatDataset, ...)
        return [dataset.get_data_info(i)["img_path"] for i in range(min(len(dataset), 10_000))]

    def after_run(self, runner: Any) -> None:
        from mmengine.dist import is_main_process

        from safepredict.bundle import write_bundle
        from safepredict.predictor import SafePredictor

        if not is_main_process():
            return
        checkpoint = self._checkpoint(runner)
        self.bundle = write_bundle(
            checkpoint,
            self._validation(runner),
            max_images=self.max_images,
            golden=self.golden,
            predictor_kwargs={"device": "cpu"},
            factory=SafePredictor.from_checkpoint,
        )
        logger.info("SafePredictHook: %s", self.bundle.describe())
