"""SafeInferencer: a drop-in for MMDetection 3.x's ``DetInferencer``, with a SafePredictor underneath.

    from safepredict import SafeInferencer

    inferencer = SafeInferencer(weights="work_dirs/my_config/epoch_12.pth", device="cpu")
    result = inferencer("demo.jpg")                  # {"predictions": [...], "visualization": [...]}
    result = inferencer("images/", batch_size=4, out_dir="outputs/", no_save_pred=False)

The same constructor and ``__call__`` as ``DetInferencer`` (it is one: a subclass that keeps
mmdet's own input listing, visualisation and result formatting), and the same output dict. What
differs is underneath: the model is a :class:`~safepredict.predictor.SafePredictor` built with
:meth:`~safepredict.predictor.SafePredictor.from_mmdet`, so

- the checkpoint is read with ``weights_only=True`` (``DetInferencer`` fails on mmengine
  checkpoints with torch >= 2.6) and its embedded training config by the safe reader (mmengine
  would execute it);
- the model and its test pipeline follow the training contract; ``model=`` (a config), when
  given, is the *inference* config, diffed against training (``inferencer.discrepancies``);
- a checkpoint that does not fit is refused (strict load), a ``lock=`` is checked before any file
  is deserialised, and the runtime monitor watches every image (``inferencer.monitor``).

Each image runs in its own forward, as training-time evaluation ran it: ``batch_size`` groups
images for visualisation and output only. (Batched in one forward, images of different sizes are
padded to the largest, which moves detections slightly; here they do not depend on the batch.)
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from safepredict.errors import InputError
from safepredict.frameworks.base import require_framework

require_framework("mmdet", "SafeInferencer")

from mmdet.apis import DetInferencer  # noqa: E402 - after the import guard

__all__ = ["SafeInferencer"]


class SafeInferencer(DetInferencer):
    """``DetInferencer(model, weights, device, scope, palette, show_progress)``, run by a SafePredictor.

    ``model``: None (the training config embedded in ``weights`` is used, as ``DetInferencer``
    does), or your inference config (a file, ``Config`` or dict), compared with the training
    config. Model names of mmdet's metafiles are not taken: they download weights. ``weights``:
    the checkpoint (required). ``device``: as ``DetInferencer`` (None: CUDA if available).
    ``palette``: as ``DetInferencer`` (argument, then the config's test data set, then the
    checkpoint, then ``"random"``).

    The keyword-only arguments are :class:`~safepredict.predictor.SafePredictor`'s: ``lock``,
    ``on_env_mismatch``, ``monitor``, ``reference``, ``strict``, ``class_names``, ``trust``,
    ``overrides``, ``training_config``, ``bundle``, ``auto_reference``.
    """

    def __init__(
        self,
        model: Any = None,
        weights: str | os.PathLike[str] | None = None,
        device: str | None = None,
        scope: str | None = "mmdet",
        palette: str = "none",
        show_progress: bool = True,
        **safepredict_kwargs: Any,
    ) -> None:
        from mmengine.registry import init_default_scope

        from safepredict.predictor import SafePredictor

        if weights is None:
            raise InputError(
                "SafeInferencer needs weights= (the trained checkpoint)",
                fix="SafeInferencer(weights='work_dirs/my_config/epoch_12.pth'); the training config is read from it",
            )
        if isinstance(model, str | os.PathLike) and not Path(model).is_file():
            raise InputError(
                f"model={str(model)!r} is not a config file. SafeInferencer does not take mmdet metafile model "
                "names (they download weights)",
                found=str(model),
                fix="download the checkpoint and pass weights=path (model=None: its embedded training config is used)",
            )
        self.num_visualized_imgs = 0
        self.num_predicted_imgs = 0
        self.palette = palette
        self.scope = scope
        init_default_scope(scope)
        if device is None:
            from mmengine.device import get_device

            device = get_device()
        self.predictor = SafePredictor.from_mmdet(model, weights, device=device, **safepredict_kwargs)
        self.cfg = self.predictor.cfg
        self.model = self.predictor.model
        self._set_palette(self.model, self.cfg)
        self.pipeline = None  # images go through the predictor's own test pipeline (the training contract's)
        self.collate_fn = None
        self.visualizer = self._init_visualizer(copy.deepcopy(self.cfg))
        self.show_progress = show_progress

    # ------------------------------------------------------------------ what SafePredictor adds
    @property
    def contract(self) -> Any:
        """The training contract the model runs with."""
        return self.predictor.contract

    @property
    def discrepancies(self) -> tuple[Any, ...]:
        """How the inference config (``model=``) differs from training."""
        return tuple(self.predictor.discrepancies)

    @property
    def monitor(self) -> Any:
        """The runtime monitor that watched every image (None with ``monitor=False``)."""
        return self.predictor.monitor

    # ------------------------------------------------------------------ DetInferencer's steps
    def _set_palette(self, model: Any, cfg: Any) -> None:
        """The visualisation palette, by ``DetInferencer``'s priority: argument, config, checkpoint, random."""
        from mmdet.registry import DATASETS

        meta = model.dataset_meta
        if self.palette != "none":
            meta["palette"] = self.palette
            return
        palette = None
        try:
            dataset_cfg = copy.deepcopy(cfg.test_dataloader.dataset)
            dataset_cfg["lazy_init"] = True  # only the metainfo: no annotation is read
            palette = DATASETS.build(dataset_cfg).metainfo.get("palette")
        except Exception as exc:  # noqa: BLE001 - a data set class missing here: the palette is cosmetic
            warnings.warn(f"the test data set could not be built to read its palette ({exc})", stacklevel=3)
        if palette is not None:
            meta["palette"] = palette
        elif "palette" not in meta:
            warnings.warn(
                "palette does not exist, random is used by default. You can also set the palette to customize.",
                stacklevel=3,
            )
            meta["palette"] = "random"

    def preprocess(self, inputs: Iterable[Any], batch_size: int = 1, **kwargs: Any) -> Iterator[tuple[list, list]]:
        """Chunks of ``batch_size`` inputs, each as ``(originals, originals)``: the predictor decodes them."""
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}", found=batch_size)
        chunk: list[Any] = []
        for item in inputs:
            chunk.append(_image_of(item))
            if len(chunk) == batch_size:
                yield chunk, chunk
                chunk = []
        if chunk:
            yield chunk, chunk

    def forward(self, inputs: list[Any], **kwargs: Any) -> list[Any]:
        """One ``DetDataSample`` per image, each from its own forward through the SafePredictor."""
        return [self.predictor(image) for image in inputs]


def _image_of(item: Any) -> Any:
    """A path or a BGR array; the dict inputs of text-prompted models are refused."""
    if isinstance(item, Mapping):
        if "text" in item:
            raise InputError(
                "text prompts (texts=, for open-vocabulary models such as GLIP or Grounding DINO) are not supported",
                found=sorted(item),
                fix="call without texts=; safepredict runs closed-set detectors",
            )
        return item["img"] if "img" in item else item["img_path"]
    return item
