"""What every framework adapter does, and the framework-neutral checkpoint check.

An adapter owns one loaded model and runs the framework's own test-time code on it:
decode a file as the framework's evaluation does, apply the training contract's preprocessing
with the framework's transforms, run the model, return the detections *before* the score
threshold (the candidates, down to a floor) together with the framework's native output.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from safepredict._logging import warn
from safepredict.detections import Detections
from safepredict.errors import CheckpointMismatchError
from safepredict.images import LoadedImage

# Candidates are kept down to this score (or the threshold, if lower) so the monitor can see a
# collapse below the threshold. Lowering the threshold before NMS does not change the detections
# above it: per-class NMS only lets a higher-scoring box suppress a lower one, and the top-k cap
# keeps the highest scores.
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


def set_config_value(cfg: Any, key: str, value: Any) -> None:
    """Set ``key`` (``A.B.C``, ``a.b[1].c`` or ``a.b.1.c``) in a yacs CfgNode or an mmengine Config."""
    parts = _path_parts(key)
    node = cfg
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    frozen = hasattr(cfg, "is_frozen") and cfg.is_frozen()
    if frozen:
        cfg.defrost()
    try:
        if isinstance(node, list):
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

    candidates: Detections  # NMSed detections down to the candidate floor, best first
    final: Detections  # the detections above the effective score threshold
    native: Any  # the framework's own output type, thresholded like the framework would


class Adapter(abc.ABC):
    """One loaded model of one framework, run with that framework's own test-time code."""

    framework: str
    color: str  # channel order the framework's preprocessing expects its input array in
    score_threshold: float  # effective threshold of the final detections
    threshold_key: str  # config key that sets it
    class_names: tuple[str, ...] | None
    device: str

    @abc.abstractmethod
    def read(self, path: Path) -> LoadedImage:
        """Decode a file exactly as the framework's evaluation path does."""

    @abc.abstractmethod
    def run(self, image: LoadedImage) -> RawResult:
        """Preprocess with the training contract, run the model, post-process."""

    def describe(self) -> str:
        return f"{self.framework} model on {self.device}, threshold {self.score_threshold} ({self.threshold_key})"


def split_final(candidates: Detections, threshold: float) -> Detections:
    """The detections the framework would have returned at ``threshold`` (its test is ``score > thr``)."""
    return candidates[np.asarray(candidates.scores > threshold)]
