"""What every framework adapter does, and the framework-neutral checkpoint check.

An adapter owns one loaded model and runs the framework's own test-time code on it:
decode a file as the framework's evaluation does, apply the training contract's preprocessing
with the framework's transforms, run the model, return the detections *before* the score
threshold (the candidates, down to a floor) together with the framework's native output.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from safepredict._logging import warn
from safepredict.detections import Detections
from safepredict.errors import CheckpointMismatchError, FrameworkNotInstalled
from safepredict.images import LoadedImage

# Candidates are kept down to this score (or the threshold, if lower) so the monitor can see a
# collapse below the threshold. Where the threshold is a test on the final score before NMS,
# lowering it does not change the detections above it: per-class NMS only lets a higher-scoring
# box suppress a lower one, and the top-k caps (pre-NMS per level, per image) keep the highest
# scores. Where it is not (an FCOS/ATSS head tests the class score, then multiplies it by its
# centerness), the adapter leaves the threshold alone and the model's output is final as it is.
CANDIDATE_SCORE_FLOOR = 0.01


def _coerce(value: Any, existing: Any) -> Any:
    """``value`` in the shape the config holds at that key (int vs 1-tuple, list vs tuple)."""
    if isinstance(existing, bool) or existing is None:
        return value
    if isinstance(existing, int) and isinstance(value, (tuple, list)):
        return int(value[0])
    if isinstance(existing, (int, float)) and isinstance(value, (int, float)):
        return type(existing)(value)
    if isinstance(existing, tuple) and isinstance(value, (tuple, list)):
        return tuple(value)
    if isinstance(existing, list) and isinstance(value, (tuple, list)):
        return list(value)
    return value


def _path_parts(key: str) -> list[str]:
    return [p for p in re.split(r"\.|\[(\d+)\]", key) if p]


def _is_index(node: Any, part: str) -> bool:
    # Lists of every config library (list, tuple, omegaconf ListConfig) are indexed by number.
    return part.isdigit() and not isinstance(node, Mapping) and hasattr(node, "__getitem__")


def _step(node: Any, part: str) -> Any:
    return node[int(part)] if _is_index(node, part) else node[part]


def flatten_config(cfg: Any) -> dict[str, Any]:
    """Every leaf of a config (yacs CfgNode, mmengine Config, omegaconf DictConfig, dict) by key path.

    Paths read ``A.B.C`` and ``a.b[0].c``, as :func:`config_value` takes them.
    """
    if hasattr(cfg, "to_dict") and not isinstance(cfg, Mapping):
        cfg = cfg.to_dict()  # mmengine Config
    if type(cfg).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        cfg = OmegaConf.to_container(cfg, resolve=False)
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        elif isinstance(node, list | tuple) and any(isinstance(v, Mapping | list | tuple) for v in node):
            for i, v in enumerate(node):
                walk(v, f"{prefix}[{i}]")
        else:
            out[prefix] = node

    walk(cfg, "")
    return out


def config_value(cfg: Any, key: str) -> Any:
    """The value at ``key`` (``A.B.C``, ``a.b[1].c``) of a yacs CfgNode, an mmengine Config or a dict."""
    node = cfg
    for part in _path_parts(key):
        node = _step(node, part)
    return node


def set_config_value(cfg: Any, key: str, value: Any) -> None:
    """Set ``key`` (``A.B.C``, ``a.b[1].c`` or ``a.b.1.c``) in a yacs CfgNode or an mmengine Config."""
    parts = _path_parts(key)
    node = cfg
    for part in parts[:-1]:
        node = _step(node, part)
    last = parts[-1]
    frozen = hasattr(cfg, "is_frozen") and cfg.is_frozen()
    if frozen:
        cfg.defrost()
    try:
        if _is_index(node, last):
            node[int(last)] = _coerce(value, node[int(last)])
        else:
            node[last] = _coerce(value, node.get(last) if hasattr(node, "get") else None)
    finally:
        if frozen:
            cfg.freeze()


@attrs.frozen
class KeyProblem:
    """One parameter that does not fit between checkpoint and model."""

    key: str
    kind: str  # "missing" (model has it, checkpoint not), "unexpected", "shape"
    checkpoint_shape: tuple[int, ...] | None = None
    model_shape: tuple[int, ...] | None = None


def compare_state_dicts(model_state: Mapping[str, Any], checkpoint_state: Mapping[str, Any]) -> list[KeyProblem]:
    """Every missing, unexpected and shape-mismatched parameter, sorted by key."""
    problems = []
    for key, tensor in model_state.items():
        if key not in checkpoint_state:
            problems.append(KeyProblem(key, "missing", model_shape=tuple(tensor.shape)))
        elif tuple(checkpoint_state[key].shape) != tuple(tensor.shape):
            problems.append(KeyProblem(key, "shape", tuple(checkpoint_state[key].shape), tuple(tensor.shape)))
    for key, value in checkpoint_state.items():
        if key not in model_state:
            problems.append(KeyProblem(key, "unexpected", checkpoint_shape=tuple(getattr(value, "shape", ()))))
    return sorted(problems, key=lambda p: p.key)


_RESNET_DEPTHS: dict[tuple[tuple[int, ...], bool], int] = {
    ((2, 2, 2, 2), False): 18,
    ((3, 4, 6, 3), False): 34,
    ((3, 4, 6, 3), True): 50,
    ((3, 4, 23, 3), True): 101,
    ((3, 8, 36, 3), True): 152,
}


def resnet_blocks(state: Mapping[str, Any], stage_pattern: str) -> tuple[tuple[int, ...], bool] | None:
    """Blocks per stage and whether they are bottlenecks, read from parameter names.

    ``stage_pattern`` is a regex with two groups, stage and block index, e.g.
    ``r"backbone\\.bottom_up\\.res(\\d)\\.(\\d+)\\."`` for Detectron2.
    """
    blocks: dict[int, set[int]] = {}
    bottleneck = False
    regex = re.compile(stage_pattern)
    for key in state:
        match = regex.match(key)
        if match:
            blocks.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
            if ".conv3." in key[match.end() - 1 :]:
                bottleneck = True
    if not blocks:
        return None
    return tuple(len(blocks[s]) for s in sorted(blocks)), bottleneck


def resnet_depth(blocks: tuple[tuple[int, ...], bool] | None) -> int | None:
    return None if blocks is None else _RESNET_DEPTHS.get(blocks)


def checkpoint_classes(
    problems: list[KeyProblem], pattern: str, configured: int, backgrounds: tuple[int, ...] = (0, 1)
) -> int | None:
    """How many classes the checkpoint's classifier was trained for, read off a shape mismatch.

    ``pattern`` matches the classifier's weight (``roi_heads.box_predictor.cls_score.weight``,
    ``bbox_head.retina_cls.weight``); its first dimension is ``per_class * (classes + background)``
    (a dense head has one output per anchor and class, a softmax one more for the background).
    ``configured`` is the config's class count; the first of ``backgrounds`` that divides both
    sides evenly decides.
    """
    regex = re.compile(pattern)
    for p in problems:
        if p.kind != "shape" or not regex.search(p.key) or not p.model_shape or not p.checkpoint_shape:
            continue
        model_out, checkpoint_out = p.model_shape[0], p.checkpoint_shape[0]
        for background in backgrounds:
            if model_out % (configured + background):
                continue
            per_class = model_out // (configured + background)
            if per_class and checkpoint_out % per_class == 0 and checkpoint_out // per_class > background:
                return checkpoint_out // per_class - background
    return None


def summarize_problems(problems: list[KeyProblem], limit: int = 6) -> str:
    lines = []
    for p in problems[:limit]:
        if p.kind == "shape":
            lines.append(f"  {p.key}: checkpoint {list(p.checkpoint_shape or ())} vs model {list(p.model_shape or ())}")
        else:
            lines.append(f"  {p.key}: {p.kind}")
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return "\n".join(lines)


def enforce_fit(
    model_state: Mapping[str, Any],
    weights: Mapping[str, Any],
    checkpoint: Path,
    *,
    strict: bool,
    explain: Callable[[list[KeyProblem]], str],
) -> None:
    """Refuse (``strict``) or warn about a checkpoint whose parameters do not fit the model.

    ``explain`` turns the key problems into words for this framework ("checkpoint has 3
    classes, config has 80: set ...").
    """
    problems = compare_state_dicts(model_state, weights)
    if not problems:
        return
    meaning = explain(problems)
    message = (
        f"checkpoint {checkpoint} does not fit the model the config builds: {meaning}\n{summarize_problems(problems)}"
    )
    if strict:
        raise CheckpointMismatchError(
            message, expected="every parameter of the model", found=problems, source=str(checkpoint), fix=meaning
        )
    warn(message + "\n(strict=False: mismatched parameters keep random weights)", code="checkpoint.mismatch")


@attrs.frozen(eq=False)
class RawResult:
    """What an adapter returns for one image."""

    # NMSed detections down to the candidate floor, best first (the final ones, where the
    # adapter could not lower the threshold: Adapter.keeps_candidates)
    candidates: Detections
    final: Detections  # what the framework returns at the effective score threshold
    native: Any  # the framework's own output type, thresholded like the framework would


# The Python modules each framework needs, and what to tell a user who lacks them.
FRAMEWORK_MODULES: dict[str, tuple[str, ...]] = {"detectron2": ("detectron2",), "mmdet": ("mmdet", "mmengine")}
INSTALL_HINTS: dict[str, str] = {
    "detectron2": "install Detectron2 from its source (https://detectron2.readthedocs.io), "
    "or run scripts/setup-frameworks.sh",
    "mmdet": "pip install mmengine 'mmcv>=2.0.0rc4,<2.2.0' mmdet (mmcv built with its ops; "
    "see https://mmdetection.readthedocs.io), or pip install 'safepredict[mmdet]'",
}
_DISPLAY = {"detectron2": "Detectron2", "mmdet": "MMDetection"}


def require_framework(framework: str, what: str = "this checkpoint") -> None:
    """Import ``framework``'s modules, or raise FrameworkNotInstalled naming what to install."""
    import importlib

    for module in FRAMEWORK_MODULES[framework]:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise FrameworkNotInstalled(
                f"{what} needs {_DISPLAY[framework]}, which is not importable here ({exc})",
                expected=module,
                found=str(exc),
                fix=INSTALL_HINTS[framework],
            ) from exc


def strip_prefixes(weights: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter names without the ``module.`` a DataParallel/DistributedDataParallel save adds."""
    return {k.removeprefix("module."): v for k, v in weights.items()}


def attribute_path(obj: Any, path: str) -> Any:
    """``obj`` at a dotted attribute ``path`` (``roi_heads.box_predictor``), or None."""
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


class Adapter(abc.ABC):
    """One loaded model of one framework, run with that framework's own test-time code.

    The sequence is the same for every framework and written once here: import guard, read the
    checkpoint (once: :func:`~safepredict.frameworks.artifact.discover` hands over the state it
    already loaded), build the model from the training config, strip ``module.`` prefixes, the
    strict fit check, load; at run time inputs -> forward -> :class:`Detections` -> split at the
    threshold. A framework module supplies only the steps that differ.
    """

    framework: str
    weights_key: str  # where the checkpoint keeps its state dict
    color: str  # channel order the framework's preprocessing expects its input array in
    score_threshold: float  # effective threshold of the final detections
    threshold_key: str  # config key that sets it
    # Whether the model was lowered to keep candidates below the threshold (keep_candidates);
    # when not, its output is final as it is.
    keeps_candidates: bool
    # The framework keeps ``score >= threshold`` (YOLOX) rather than ``score > threshold``.
    threshold_inclusive: bool = False
    class_names: tuple[str, ...] | None
    device: str
    model: Any
    cfg: Any

    def __init__(
        self,
        cfg: Any,
        checkpoint: Path,
        *,
        device: str = "cpu",
        strict: bool = True,
        class_names: tuple[str, ...] | None = None,
        checkpoint_state: Mapping[str, Any] | None = None,
    ) -> None:
        from safepredict.frameworks.checkpoint import load_checkpoint

        require_framework(self.framework)
        self.device = device
        self.checkpoint = checkpoint
        state = checkpoint_state if checkpoint_state is not None else load_checkpoint(checkpoint)
        self.cfg = self.prepare_config(cfg, checkpoint, device)
        self.model = self.build_model(self.cfg, device)
        weights = strip_prefixes(state.get(self.weights_key, state))
        enforce_fit(
            self.model.state_dict(),
            weights,
            checkpoint,
            strict=strict,
            explain=lambda problems: self.explain_mismatch(problems, weights),
        )
        self.load_weights(weights)
        self.model.eval()
        self.class_names = self.read_class_names(state, class_names)
        self.threshold_key, self.score_threshold = self.threshold()
        self.keeps_candidates = self.keep_candidates(min(CANDIDATE_SCORE_FLOOR, self.score_threshold))
        self.setup()

    # ---------------------------------------------------------------- what each framework supplies
    @abc.abstractmethod
    def prepare_config(self, cfg: Any, checkpoint: Path, device: str) -> Any:
        """A private copy of the training config, set up for ``device``."""

    @abc.abstractmethod
    def build_model(self, cfg: Any, device: str) -> Any:
        """The model the config builds, with the framework's own builder (random weights)."""

    @abc.abstractmethod
    def explain_mismatch(self, problems: list[KeyProblem], weights: Mapping[str, Any]) -> str:
        """Say in words what a set of key problems means for this framework's config."""

    @abc.abstractmethod
    def load_weights(self, weights: dict[str, Any]) -> None:
        """Load the (already checked) state dict with the framework's own loader."""

    @abc.abstractmethod
    def threshold(self) -> tuple[str, float]:
        """``(config key, value)`` of the score threshold of the final detections."""

    @abc.abstractmethod
    def keep_candidates(self, floor: float) -> bool:
        """Lower the model's own score threshold to ``floor`` where that keeps the detections above
        the threshold what they were (see CANDIDATE_SCORE_FLOOR); say whether it was lowered."""

    @abc.abstractmethod
    def read(self, path: Path) -> LoadedImage:
        """Decode a file exactly as the framework's evaluation path does."""

    @abc.abstractmethod
    def inputs(self, image: LoadedImage) -> Any:
        """What the framework's test-time data path makes of this image."""

    @abc.abstractmethod
    def forward(self, inputs: Any) -> Any:
        """The model's raw output for one image's inputs (candidates, native type)."""

    @abc.abstractmethod
    def to_detections(self, output: Any, image: LoadedImage) -> Detections:
        """The candidates of ``output`` as framework-neutral Detections, best first."""

    @abc.abstractmethod
    def native(self, output: Any) -> Any:
        """``output`` thresholded as the framework itself would have returned it (see :meth:`is_final`)."""

    def read_class_names(self, state: Mapping[str, Any], given: tuple[str, ...] | None) -> tuple[str, ...] | None:
        """The class names: ``given`` (the contract's or the user's) unless the checkpoint knows better."""
        return given

    def setup(self) -> None:  # noqa: B027 (an optional step: most frameworks need one, not all)
        """Anything the framework's test-time path needs built once (mappers, pipelines)."""

    # ---------------------------------------------------------------- the one run sequence
    def run(self, image: LoadedImage) -> RawResult:
        """Preprocess with the training contract, run the model, split the candidates at the threshold."""
        output = self.forward(self.inputs(image))
        candidates = self.to_detections(output, image)
        return RawResult(
            candidates=candidates, final=self.final_detections(output, candidates), native=self.native(output)
        )

    def run_many(
        self,
        predictor: Any,
        images: Iterable[Any],
        color: str,
        *,
        workers: int | None = None,
        threads: int = 1,
        chunk_size: int = 4,
    ) -> Iterator[tuple[Any, Detections, Detections]]:
        """``(image_rgb or None, candidates, final)`` of each image, in order, using the whole machine.

        What :meth:`SafePredictor.predict_many` runs (see there): worker processes forked from this
        one (sharing the model copy-on-write) or spawned, each building ``predictor`` again from its
        arguments; or, with ``workers=0``, here with decoding overlapped. ``image_rgb`` is given when
        the predictor has a monitor.
        """
        from safepredict.workers import WorkerPlan, chunks, cores, default_plan, run_chunk, run_in_workers

        sized = len(images) if hasattr(images, "__len__") else None  # type: ignore[arg-type]
        plan = (
            default_plan(predictor.device, sized) if workers is None else WorkerPlan(workers=workers, threads=threads)
        )
        items = ((image, color) for image in images)
        want_image = predictor.monitor is not None
        if plan.workers == 0:
            import torch

            # Decoding on a second thread pays where the model leaves a core free (a GPU, one thread).
            overlap = predictor.device.startswith("cuda") or torch.get_num_threads() < cores()
            for chunk in chunks(items, chunk_size):
                yield from run_chunk(predictor, chunk, want_image, overlap=overlap)
        else:
            kwargs = dict(predictor._init_kwargs)
            kwargs["checkpoint"] = predictor.artifact.checkpoint
            yield from run_in_workers(predictor, kwargs, items, plan, want_image=want_image, chunk_size=chunk_size)

    def final_detections(self, output: Any, candidates: Detections) -> Detections:
        """What the framework returns at the threshold: the candidates above it (see :meth:`is_final`).

        An adapter that runs the mask or keypoint heads on the final detections only (as the
        framework does at its threshold) returns those, with their masks, instead.
        """
        final = self.is_final(candidates.scores)
        return candidates if final is None else candidates[np.asarray(final)]

    def is_final(self, scores: Any) -> Any:
        """Which of the candidates' ``scores`` (numpy or torch) the framework would have returned at
        its threshold: a boolean mask, or None for all of them (the threshold was not lowered)."""
        if not self.keeps_candidates:
            return None
        return scores >= self.score_threshold if self.threshold_inclusive else scores > self.score_threshold

    def describe(self) -> str:
        kept = (
            f"candidates kept down to {min(CANDIDATE_SCORE_FLOOR, self.score_threshold):g}"
            if self.keeps_candidates
            else "the model's own threshold (no candidates below it)"
        )
        return (
            f"{self.framework} model on {self.device}, threshold {self.score_threshold} ({self.threshold_key}), {kept}"
        )
