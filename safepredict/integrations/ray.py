"""Ray Data batch inference: one SafePredictor per actor, the environment lock checked on every worker.

::

    from safepredict.integrations.ray import predict_images

    summary = predict_images(
        "/shared/output/model_final.pth", "/shared/images/", "/shared/preds.json",
        lock="/shared/output/safepredict.lock", on_env_mismatch="error",
        actors=8, num_gpus=1, batch_size=16,
    )
    print(summary.describe())      # every image counted, per node; environment findings per node

For a Dataset of your own, :func:`predict_dataset` adds the prediction as a lazy ``map_batches``
step and keeps the run's summary; :class:`SafePredictBatch` is the callable class itself, for
``Dataset.map_batches(SafePredictBatch, fn_constructor_kwargs=..., compute=ActorPoolStrategy(size=n))``.

Every actor, when it starts, checks the lock *on its own node* (the checkpoint's and training
config's hashes, the packages, CUDA, the driver) before it builds the model. With
``on_env_mismatch="error"`` an actor that differs refuses to start: it raises
:class:`~safepredict.errors.EnvironmentMismatchError` naming its node (Ray node id, host name) and
each mismatch, and the job fails with it. With ``"warn"`` it logs the mismatch there, runs, and
the mismatch appears in the run's summary under its node.

Inputs are one column of the Dataset: file paths (decoded on the worker by the framework's own
loader, as its evaluation decoded them), encoded bytes (written to a worker-local temporary file
and decoded by that same loader), or uint8 ``H x W x 3`` arrays, taken as ``color`` (default
``"RGB"``: what ``ray.data.read_images`` yields). Paths and bytes are the exact route; arrays
are used as given (``ray.data.read_images`` decodes with PIL and ignores EXIF orientation,
which Detectron2's loader applies).

Outputs are Arrow columns: the key column (and any ``passthrough`` columns) as they came in,
``boxes`` (list of ``[x1, y1, x2, y2]`` float32, image pixels), ``scores`` (list of float32),
``labels`` (list of int64), ``names`` (list of strings), ``height``/``width`` of the image,
``error`` (null, or why the image was skipped under ``on_error="record"``), and with
``masks=True`` ``masks`` (COCO RLE, ``{size, counts}``, one per detection).

Each actor reports its counters and its monitor's snapshot to one collector actor of the run
after every batch, synchronously, so when the Dataset has been consumed the collector holds every
image; :meth:`PredictionRun.summary` merges them.
"""

from __future__ import annotations

import glob
import inspect
import json
import logging
import math
import os
import socket
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from safepredict.errors import EnvironmentMismatchError, FrameworkNotInstalled, InputError

try:
    import pyarrow as pa
    import ray
    import ray.data
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise FrameworkNotInstalled(
        f"safepredict.integrations.ray needs Ray Data ({exc}): pip install 'safepredict[ray]'",
        expected="ray[data]",
        fix="pip install 'safepredict[ray]'",
    ) from exc

logger = logging.getLogger("safepredict")

__all__ = [
    "OUTPUT_COLUMNS",
    "PredictionRun",
    "RunSummary",
    "SafePredictBatch",
    "predict_dataset",
    "predict_images",
    "summarize",
]

# The columns SafePredictBatch adds, besides the key and passthrough columns (and ``masks``).
OUTPUT_COLUMNS = ("boxes", "scores", "labels", "names", "height", "width", "error")
KINDS = ("auto", "path", "bytes", "array")
_SCORE_BINS = 100  # best score per image, merged exactly across actors
_REPORT_TIMEOUT_S = 60.0
_BOXES = pa.list_(pa.list_(pa.float32(), 4))
_RLE = pa.struct([("size", pa.list_(pa.int32())), ("counts", pa.string())])
# Which monitor findings speak of what, in the summary.
_SCORE_CODES = (
    "monitor.score_drift",
    "monitor.constant_scores",
    "monitor.nan_scores",
    "monitor.score_range",
    "monitor.empty_rate",
    "monitor.empty_streak",
    "monitor.all_below_threshold",
    "monitor.threshold_mismatch",
)


# --------------------------------------------------------------------------- where a worker runs


def _node() -> dict[str, Any]:
    """The Ray node, host and process this code runs in."""
    ctx = ray.get_runtime_context()
    try:
        ip = ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 (the address is decoration: never fail a worker for it)
        ip = None
    return {
        "node_id": ctx.get_node_id(),
        "hostname": socket.gethostname(),
        "ip": ip,
        "pid": os.getpid(),
        "actor_id": ctx.get_actor_id(),
    }


def _where(node: Mapping[str, Any]) -> str:
    ip = f", ip {node['ip']}" if node.get("ip") else ""
    return f"Ray node {node['node_id']} (host {node['hostname']}{ip}, pid {node['pid']})"


# --------------------------------------------------------------------------- the collector


class _CollectorState:
    """What the run's collector actor holds: each actor's registration, counters, and refusals."""

    def __init__(self) -> None:
        self.actors: dict[str, dict[str, Any]] = {}
        self.refusals: list[dict[str, Any]] = []

    def register(self, key: str, info: dict[str, Any]) -> None:
        self.actors[key] = dict(info)

    def report(self, key: str, counters: dict[str, Any]) -> None:
        self.actors.setdefault(key, {}).update(counters)

    def refuse(self, info: dict[str, Any]) -> None:
        self.refusals.append(dict(info))

    def state(self) -> dict[str, Any]:
        return {"actors": list(self.actors.values()), "refusals": list(self.refusals)}


# No CPU: the collector must never take a slot an inference actor needs.
_Collector: Any = ray.remote(num_cpus=0)(_CollectorState)


def _call(collector: Any, method: str, *args: Any) -> None:
    """Call the collector and wait, so the driver reads it only after this batch's report landed."""
    if collector is None:
        return
    try:
        ray.get(getattr(collector, method).remote(*args), timeout=_REPORT_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 (a lost report must not fail the prediction; the summary says so)
        logger.warning("safepredict: could not report to the run's collector (%s); the summary will miss it", exc)


# --------------------------------------------------------------------------- the callable class


def _worker_threads(threads: int | None) -> int:
    if threads is not None:
        return int(threads)
    env = os.environ.get("SAFEPREDICT_TORCH_THREADS")
    if env:
        return int(env)
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    return max(1, int(cpus))


def _config_file(checkpoint: Path, training_config: Any) -> Path | None:
    """The training config file the lock pins, as SafePredictor looks for it."""
    if isinstance(training_config, (str, os.PathLike)):
        return Path(training_config)
    beside = checkpoint.parent / "config.yaml"
    return beside if beside.is_file() else None


def _column_values(column: Any) -> list[Any]:
    """One Python value (or array) per row of a batch column."""
    if isinstance(column, np.ndarray):
        return column.tolist() if column.ndim == 1 and column.dtype != object else list(column)
    if hasattr(column, "to_pylist"):  # a pyarrow array
        return list(column.to_pylist())
    return list(column)


def _rle(masks: np.ndarray) -> list[dict[str, Any]]:
    from pycocotools import mask as mask_util  # both frameworks depend on it

    out = []
    for m in masks:
        rle = mask_util.encode(np.asfortranarray(np.asarray(m, dtype=np.uint8)))
        counts = rle["counts"]
        out.append(
            {"size": [int(s) for s in rle["size"]], "counts": counts.decode() if isinstance(counts, bytes) else counts}
        )
    return out


class SafePredictBatch:
    """A Ray Data callable class: one SafePredictor per actor, built after the lock check on its node.

    Use it with ``Dataset.map_batches(SafePredictBatch, fn_constructor_kwargs={...},
    compute=ray.data.ActorPoolStrategy(size=n), batch_size=..., num_gpus=...)``; batches come in
    Ray's default ``"numpy"`` format and go out as ``pyarrow.Table`` (see the module docstring for
    the columns).

    Parameters (the ``fn_constructor_kwargs``):
        checkpoint: the checkpoint, as a path the *workers* can read.
        column: the input column; ``kind``: ``"path"``, ``"bytes"``, ``"array"`` or ``"auto"``
            (each value by its type). ``color``: the channel order of arrays (default ``"RGB"``,
            as ``ray.data.read_images`` gives them; ``"BGR"`` for arrays from ``cv2``).
        key_column: the column that names each image, passed through (default: the input column
            when it holds paths). ``passthrough``: more columns to pass through.
        lock, on_env_mismatch: the lock each actor checks at start, and what a mismatch does:
            ``"error"`` refuses to start the actor, ``"warn"`` (default) logs and records it.
        config, training_config, overrides, reference, class_names, device: SafePredictor's
            (``device`` defaults to ``"cuda"`` where Ray assigned the actor a GPU, else ``"cpu"``).
        masks: add a ``masks`` column of COCO RLE (needs a model with a mask head).
        on_error: ``"raise"`` (default) fails the job on an unreadable image; ``"record"`` puts
            the reason in the ``error`` column and counts the image as failed.
        collector: the run's collector actor (:func:`predict_dataset` makes one), or None.
        threads: torch's intra-op threads in the actor (default ``$SAFEPREDICT_TORCH_THREADS``,
            else the CPUs Ray assigned the actor).
        **predictor_kwargs: passed to ``SafePredictor`` unchanged (``strict``, ``monitor``, ``trust``...).
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike[str],
        *,
        column: str = "path",
        kind: str = "auto",
        color: str = "RGB",
        key_column: str | None = None,
        passthrough: Sequence[str] = (),
        lock: str | os.PathLike[str] | None = None,
        on_env_mismatch: str = "warn",
        config: Any = None,
        training_config: Any = None,
        overrides: Mapping[str, Any] | None = None,
        reference: Any = None,
        class_names: Sequence[str] | None = None,
        device: str | None = None,
        masks: bool = False,
        on_error: str = "raise",
        collector: Any = None,
        threads: int | None = None,
        **predictor_kwargs: Any,
    ) -> None:
        from safepredict.images import check_color

        if kind not in KINDS:
            raise InputError(f"kind must be one of {KINDS}, got {kind!r}", expected=KINDS, found=kind)
        if on_env_mismatch not in ("warn", "error"):
            raise InputError(
                f"on_env_mismatch must be 'warn' or 'error', got {on_env_mismatch!r}", found=on_env_mismatch
            )
        if on_error not in ("raise", "record"):
            raise InputError(f"on_error must be 'raise' or 'record', got {on_error!r}", found=on_error)
        self.column = column
        self.kind = kind
        self.color = check_color(color)
        self.key_column = key_column
        self.passthrough = tuple(passthrough)
        self.masks = bool(masks)
        self.on_error = on_error
        self._collector = collector
        self._key = f"{ray.get_runtime_context().get_actor_id()}:{uuid.uuid4().hex[:8]}"
        self.node = _node()
        checkpoint = Path(checkpoint)
        # First the lock, before torch is imported: a refused node says so in a second, not after a model build.
        environment = self._check_environment(lock, on_env_mismatch, checkpoint, training_config)

        import torch

        self.threads = _worker_threads(threads)
        torch.set_num_threads(self.threads)
        if device is None:
            device = "cuda" if ray.get_gpu_ids() else "cpu"

        from safepredict.predictor import SafePredictor

        if predictor_kwargs.get("replay"):
            # The golden replay reads its images from beside the lock; the check above already ran.
            predictor_kwargs = {**predictor_kwargs, "lock": lock, "on_env_mismatch": "warn"}
        self.predictor = SafePredictor(
            config,
            checkpoint=checkpoint,
            training_config=training_config,
            overrides=overrides,
            reference=reference,
            class_names=class_names,
            device=device,
            **predictor_kwargs,
        )
        self._tmp = tempfile.TemporaryDirectory(prefix="safepredict-ray-")
        self._counters: dict[str, Any] = {
            "images": 0,
            "failed": 0,
            "empty": 0,
            "detections": 0,
            "batches": 0,
            "seconds": 0.0,
            "best_score_hist": [0] * _SCORE_BINS,
            "best_score_nonfinite": 0,
        }
        _call(
            self._collector,
            "register",
            self._key,
            {
                **self.node,
                "actor": self._key,
                "device": device,
                "threads": self.threads,
                "framework": self.predictor.framework,
                "score_threshold": self.predictor.score_threshold,
                "class_names": list(self.predictor.class_names or ()),
                "lock": None if lock is None else str(lock),
                "on_env_mismatch": on_env_mismatch,
                "environment": environment,
                "input": {"column": column, "kind": kind, "color": self.color},
                **self._counters,
            },
        )

    # ------------------------------------------------------------------ start-up
    def _check_environment(
        self, lock: str | os.PathLike[str] | None, policy: str, checkpoint: Path, training_config: Any
    ) -> dict[str, Any] | None:
        """Check the lock here, on this worker's node; refuse (error) or record (warn) a mismatch."""
        if lock is None:
            return None
        from safepredict._logging import warn
        from safepredict.lock import check_lock, enforce

        report = check_lock(lock, weights=checkpoint, config=_config_file(checkpoint, training_config))
        found = report.to_dict()
        if report.ok:
            return found
        where = _where(self.node)
        if policy == "error":
            _call(self._collector, "refuse", {**self.node, "actor": self._key, "environment": found})
            try:
                enforce(report, "error")
            except EnvironmentMismatchError as exc:
                raise EnvironmentMismatchError(
                    f"safepredict refuses to run on {where}: {exc.message}",
                    expected=exc.expected,
                    found=exc.found,
                    source=exc.source,
                    fix=f"install what the lock names on host {self.node['hostname']} (or run every node from "
                    "one image), or re-run `safepredict lock` if the change is intended",
                    details={"node": dict(self.node), "mismatches": found["mismatches"]},
                ) from None
        # The worker's log says where; the summary on the driver lists it under this node.
        warn(
            f"on {where}: {report.describe()}",
            code="env.mismatch",
            lock=report.lock_path,
            node_id=self.node["node_id"],
            hostname=self.node["hostname"],
            mismatches=found["mismatches"],
        )
        return found

    # ------------------------------------------------------------------ one batch
    def __call__(self, batch: Mapping[str, Any]) -> Any:
        started = time.monotonic()
        values = _column_values(batch[self.column])
        n = len(values)
        key_column = self.key_column
        if key_column is None and self.kind in ("path", "auto") and n and isinstance(values[0], str):
            key_column = self.column
        columns: dict[str, Any] = {}
        for name in ([key_column] if key_column else []) + [c for c in self.passthrough if c != key_column]:
            columns[name] = _column_values(batch[name])
        boxes: list[Any] = []
        scores: list[Any] = []
        labels: list[Any] = []
        names: list[Any] = []
        heights: list[int | None] = []
        widths: list[int | None] = []
        errors: list[str | None] = []
        rles: list[Any] = []
        c = self._counters
        for value in values:
            try:
                dets = self._predict(value)
            except InputError as exc:
                if self.on_error == "raise":
                    raise
                c["failed"] += 1
                for out in (boxes, scores, labels, names, rles):
                    out.append([])
                heights.append(None)
                widths.append(None)
                errors.append(exc.message)
                continue
            c["images"] += 1
            c["detections"] += len(dets)
            if dets.is_empty():
                c["empty"] += 1
            else:
                best = float(dets.scores.max())
                if math.isfinite(best) and 0.0 <= best <= 1.0:
                    c["best_score_hist"][min(int(best * _SCORE_BINS), _SCORE_BINS - 1)] += 1
                else:
                    c["best_score_nonfinite"] += 1
            boxes.append(dets.boxes.tolist())
            scores.append(dets.scores.tolist())
            labels.append(dets.labels.tolist())
            names.append(dets.names)
            size = dets.image_size
            heights.append(None if size is None else int(size[0]))
            widths.append(None if size is None else int(size[1]))
            errors.append(None)
            if self.masks:
                m = getattr(dets, "masks", None)
                rles.append(_rle(m) if m is not None else [])
        columns["boxes"] = pa.array(boxes, type=_BOXES)
        columns["scores"] = pa.array(scores, type=pa.list_(pa.float32()))
        columns["labels"] = pa.array(labels, type=pa.list_(pa.int64()))
        columns["names"] = pa.array(names, type=pa.list_(pa.string()))
        columns["height"] = pa.array(heights, type=pa.int32())
        columns["width"] = pa.array(widths, type=pa.int32())
        columns["error"] = pa.array(errors, type=pa.string())
        if self.masks:
            columns["masks"] = pa.array(rles, type=pa.list_(_RLE))
        c["batches"] += 1
        c["seconds"] += time.monotonic() - started
        self._report()
        return pa.table(columns)

    def _predict(self, value: Any) -> Any:
        kind = self.kind if self.kind != "auto" else _kind_of(value)
        if kind == "path":
            return self.predictor.predict(os.fspath(value), masks=self.masks)
        if kind == "bytes":
            # The framework's loader decodes files: the bytes become one, on this worker's disk.
            path = Path(self._tmp.name) / "image"
            path.write_bytes(bytes(value))
            return self.predictor.predict(path, masks=self.masks)
        array = np.asarray(value)
        if not array.flags.writeable:  # a zero-copy view of Ray's object store
            array = array.copy()
        return self.predictor.predict(array, self.color, masks=self.masks)

    def _report(self) -> None:
        monitor = self.predictor.monitor
        payload = {**self._counters, "best_score_hist": list(self._counters["best_score_hist"])}
        payload["monitor"] = monitor.snapshot() if monitor is not None else None
        _call(self._collector, "report", self._key, payload)


def _kind_of(value: Any) -> str:
    if isinstance(value, (str, os.PathLike)):
        return "path"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytes"
    if isinstance(value, np.ndarray) and value.dtype.kind in "SV" and value.ndim == 0:
        return "bytes"
    if isinstance(value, np.ndarray):
        return "array"
    raise InputError(
        f"cannot tell what the input {type(value).__name__} is: pass kind='path', 'bytes' or 'array'",
        found=type(value).__name__,
    )


# --------------------------------------------------------------------------- the summary


def _sum_dicts(dicts: Iterable[Mapping[str, Any] | None]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for d in dicts:
        total.update({k: int(v) for k, v in (d or {}).items()})
    return dict(total)


def _median_from_hist(hist: Sequence[int]) -> float | None:
    total = sum(hist)
    if not total:
        return None
    half = total / 2.0
    seen = 0
    for i, count in enumerate(hist):
        if seen + count >= half:
            return (i + (half - seen) / count) / len(hist)  # linear within the bin
        seen += count
    return None  # pragma: no cover


@attrs.frozen
class RunSummary:
    """The merged counters of every actor of a run, per node, with the environment found on each node.

    ``images`` counts every image an actor handled (``failed`` of them unreadable, under
    ``on_error="record"``); ``inputs`` is what the driver sent (None when it could not know),
    ``rows`` what it wrote (None when Ray wrote it). ``monitor`` sums the monitors' counters;
    ``findings`` are the monitor findings of all actors by code. ``environment`` lists each lock
    mismatch with the node it was found on; ``refusals`` the actors that refused to start.
    """

    images: int
    failed: int
    detections: int
    empty: int
    actors: tuple[dict[str, Any], ...]
    nodes: dict[str, dict[str, Any]]
    environment: tuple[dict[str, Any], ...]
    refusals: tuple[dict[str, Any], ...]
    findings: dict[str, int]
    monitor: dict[str, Any]
    best_score_hist: tuple[int, ...]
    inputs: int | None = None
    rows: int | None = None
    out: str | None = None

    @property
    def complete(self) -> bool:
        """Whether every input (and every written row) is counted: the summary misses no image."""
        return (self.inputs is None or self.images == self.inputs) and (self.rows is None or self.rows == self.images)

    @property
    def empty_rate(self) -> float | None:
        predicted = self.images - self.failed
        return self.empty / predicted if predicted else None

    @property
    def median_best_score(self) -> float | None:
        """The median best score of the images with a detection (from a 100-bin histogram, exact to 0.01)."""
        return _median_from_hist(self.best_score_hist)

    @property
    def input_findings(self) -> dict[str, int]:
        return {k: v for k, v in self.findings.items() if k.startswith("monitor.input_")}

    @property
    def score_findings(self) -> dict[str, int]:
        return {k: v for k, v in self.findings.items() if k in _SCORE_CODES}

    def describe(self) -> str:
        """The run in a few lines: counts, health, and what each node's environment was."""
        lines = []
        if self.out:
            lines.append(f"wrote {self.out}: {self.detections} detection(s) on {self.images} image(s)")
        lines.append(
            f"ray: {self.images} image(s) on {len(self.actors)} actor(s) on {len(self.nodes)} node(s)"
            + (f", {self.failed} unreadable" if self.failed else "")
        )
        if not self.complete:
            lines.append(
                f"  INCOMPLETE: {self.inputs} input(s), {self.rows} row(s) written, {self.images} counted "
                "(an actor's report was lost: see the workers' logs)"
            )
        if self.images - self.failed:
            ref = self.monitor.get("reference_empty_rate")
            lines.append(
                f"  {self.detections} detection(s); {self.empty} image(s) with none ({self.empty_rate:.1%})"
                + (f", reference {ref:.1%}" if ref is not None else "")
            )
            by_class = self.monitor.get("detections_by_class_total") or {}
            if by_class:
                lines.append("  by class: " + ", ".join(f"{k} {v}" for k, v in by_class.items()))
            median = self.median_best_score
            if median is not None:
                lines.append(f"  median best score {median:.3f}")
        for title, found in (("score health", self.score_findings), ("input drift", self.input_findings)):
            lines.append(f"  {title}: " + (", ".join(f"{k} x{v}" for k, v in found.items()) if found else "no finding"))
        shown = {**self.score_findings, **self.input_findings}
        other = {k: v for k, v in self.findings.items() if k not in shown}
        if other:
            lines.append("  other findings: " + ", ".join(f"{k} x{v}" for k, v in other.items()))
        for node_id, node in self.nodes.items():
            env = node["environment"]
            lines.append(
                f"  node {node_id} (host {node['hostname']}): {node['actors']} actor(s), {node['images']} image(s); "
                f"environment: {env}"
            )
        for finding in self.environment:
            lines.append(
                f"    {finding['key']}: locked {finding['locked']}, found {finding['found']} "
                f"on node {finding['node_id']} (host {finding['hostname']})"
                + (" - refused" if finding.get("refused") else "")
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        out = attrs.asdict(self, recurse=False)
        out.update(
            complete=self.complete,
            empty_rate=self.empty_rate,
            median_best_score=self.median_best_score,
            best_score_hist=list(self.best_score_hist),
            actors=list(self.actors),
            environment=list(self.environment),
            refusals=list(self.refusals),
        )
        return out


def _env_findings(entry: Mapping[str, Any], refused: bool) -> list[dict[str, Any]]:
    env = entry.get("environment") or {}
    return [
        {
            "node_id": entry.get("node_id"),
            "hostname": entry.get("hostname"),
            "actor": entry.get("actor"),
            "refused": refused,
            **{k: m.get(k) for k in ("key", "locked", "found", "rule", "requirement", "consequence", "fix")},
        }
        for m in env.get("mismatches", ())
    ]


def summarize(
    state: Mapping[str, Any], *, inputs: int | None = None, rows: int | None = None, out: str | None = None
) -> RunSummary:
    """Merge the collector's state (each actor's counters and monitor snapshot) into one summary."""
    actors = [dict(a) for a in state.get("actors", ()) if "node_id" in a]
    refusals = [dict(r) for r in state.get("refusals", ())]
    monitors = [a.get("monitor") or {} for a in actors]
    merged: dict[str, Any] = {}
    for key in (
        "images_total",
        "images_empty_total",
        "images_without_candidates_total",
        "images_nonfinite_total",
        "input_images_total",
        "candidates_total",
        "detections_total",
    ):
        merged[key] = sum(int(m.get(key, 0)) for m in monitors)
    for key in ("detections_by_class_total", "findings_total", "findings_suppressed_total"):
        merged[key] = _sum_dicts(m.get(key) for m in monitors)
    for key in ("score_threshold", "reference_empty_rate"):
        values = {m.get(key) for m in monitors if m}
        merged[key] = values.pop() if len(values) == 1 else sorted(v for v in values if v is not None) or None

    hist = [0] * _SCORE_BINS
    for a in actors:
        for i, count in enumerate(a.get("best_score_hist") or ()):
            hist[i] += int(count)

    nodes: dict[str, dict[str, Any]] = {}
    environment: list[dict[str, Any]] = []
    seen: set[tuple[Any, Any]] = set()
    for a in actors:
        node = nodes.setdefault(
            str(a["node_id"]),
            {"hostname": a.get("hostname"), "ip": a.get("ip"), "actors": 0, "images": 0, "failed": 0, "findings": {}},
        )
        node["actors"] += 1
        node["images"] += int(a.get("images", 0)) + int(a.get("failed", 0))
        node["failed"] += int(a.get("failed", 0))
        node["findings"] = _sum_dicts([node["findings"], (a.get("monitor") or {}).get("findings_total")])
        env = a.get("environment")
        state_now = "no lock" if env is None else ("matches the lock" if env.get("ok") else "DIFFERS from the lock")
        # One actor that differs makes the node differ; "no lock" only where nothing was checked.
        if node.get("environment") in (None, "no lock") or state_now == "DIFFERS from the lock":
            node["environment"] = state_now
        for f in _env_findings(a, refused=False):
            if (f["node_id"], f["key"]) not in seen:
                seen.add((f["node_id"], f["key"]))
                environment.append(f)
    for r in refusals:
        nodes.setdefault(
            str(r["node_id"]),
            {"hostname": r.get("hostname"), "ip": r.get("ip"), "actors": 0, "images": 0, "failed": 0, "findings": {}},
        )["environment"] = "DIFFERS from the lock (actor refused)"
        for f in _env_findings(r, refused=True):
            if (f["node_id"], f["key"]) not in seen:
                seen.add((f["node_id"], f["key"]))
                environment.append(f)

    return RunSummary(
        images=sum(int(a.get("images", 0)) + int(a.get("failed", 0)) for a in actors),
        failed=sum(int(a.get("failed", 0)) for a in actors),
        detections=sum(int(a.get("detections", 0)) for a in actors),
        empty=sum(int(a.get("empty", 0)) for a in actors),
        actors=tuple(actors),
        nodes=nodes,
        environment=tuple(environment),
        refusals=tuple(refusals),
        findings=dict(merged["findings_total"]),
        monitor=merged,
        best_score_hist=tuple(hist),
        inputs=inputs,
        rows=rows,
        out=out,
    )


# --------------------------------------------------------------------------- a run on a Dataset


@attrs.define
class PredictionRun:
    """A lazy Dataset of predictions and the collector its actors report to.

    Consume ``dataset`` (``write_parquet``, ``iter_batches``, ``take_all``...), then read
    :meth:`summary`. Where the consumption raised, :meth:`refusal_error` says whether it was
    because actors refused to run in an environment that differs from the lock.
    """

    dataset: Any
    collector: Any
    inputs: int | None = None

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = ray.get(self.collector.state.remote())
        return result

    def summary(self, *, rows: int | None = None, out: str | None = None) -> RunSummary:
        """The merged summary of every actor so far (all of the run once the Dataset is consumed)."""
        return summarize(self.state(), inputs=self.inputs, rows=rows, out=out)

    def refusal_error(self) -> EnvironmentMismatchError | None:
        """An EnvironmentMismatchError naming each node whose actors refused to start, or None."""
        refusals = self.state()["refusals"]
        if not refusals:
            return None
        lines, expected, found = [], {}, {}
        for r in refusals:
            env = r.get("environment") or {}
            lines.append(f"safepredict refused to run on {_where(r)}: environment differs from {env.get('lock')}")
            for m in env.get("mismatches", ()):
                lines.append(f"  {m['key']}: locked {m['locked']}, found {m['found']} ({m['requirement']})")
                lines.append(f"    consequence: {m['consequence']}")
                expected[m["key"]] = m["locked"]
                found[f"{r['node_id']}:{m['key']}"] = m["found"]
        return EnvironmentMismatchError(
            "\n".join(dict.fromkeys(lines)),
            expected=expected,
            found=found,
            source=(refusals[0].get("environment") or {}).get("lock"),
            fix="install what the lock names on those nodes (or run every node from one image), "
            "or re-run `safepredict lock` if the change is intended",
            details=refusals,
        )

    def close(self) -> None:
        """End the collector actor (the summary is gone after this)."""
        ray.kill(self.collector)


def predict_dataset(
    dataset: Any,
    checkpoint: str | os.PathLike[str],
    *,
    actors: int = 1,
    batch_size: int = 16,
    num_cpus: float = 1.0,
    num_gpus: float | None = None,
    runtime_env: dict[str, Any] | None = None,
    inputs: int | None = None,
    **options: Any,
) -> PredictionRun:
    """Add SafePredictBatch to ``dataset`` as a fixed pool of ``actors`` actors; a lazy PredictionRun.

    ``options`` are SafePredictBatch's (``column``, ``kind``, ``color``, ``key_column``, ``lock``,
    ``on_env_mismatch``, ``class_names``, ...) and SafePredictor's. Paths in them are read on the
    workers. ``num_cpus``/``num_gpus`` are reserved per actor; ``runtime_env`` is Ray's, for the
    actors (see docs/scale-out.md). ``inputs``, the number of rows of ``dataset`` when known,
    lets the summary say whether it counted them all.
    """
    if actors < 1:
        raise InputError(f"actors must be at least 1, got {actors}", found=actors)
    collector = _Collector.remote()
    kwargs: dict[str, Any] = {}
    if "udf_modifying_row_count" in inspect.signature(type(dataset).map_batches).parameters:
        # One row out per row in, so Ray may push a limit down; older Ray has no such parameter.
        kwargs["udf_modifying_row_count"] = False
    if num_gpus is not None:
        kwargs["num_gpus"] = num_gpus
    if runtime_env is not None:
        kwargs["runtime_env"] = runtime_env
    out = dataset.map_batches(
        SafePredictBatch,
        fn_constructor_kwargs={"checkpoint": os.fspath(checkpoint), "collector": collector, **options},
        compute=ray.data.ActorPoolStrategy(size=actors),
        batch_size=batch_size,
        batch_format="numpy",
        num_cpus=num_cpus,
        **kwargs,
    )
    return PredictionRun(out, collector, inputs)


# --------------------------------------------------------------------------- folder -> results file


def _named_images(images: Any, recursive: bool) -> list[tuple[str, Path]]:
    """``(name, absolute path)`` of each image of a folder, a glob, a file, or a list of them."""
    from safepredict.folder import collect_images

    items = [images] if isinstance(images, (str, os.PathLike)) else list(images)
    named: list[tuple[str, Path]] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            named.extend((p.relative_to(path).as_posix(), p) for p in collect_images([path], recursive=recursive))
        elif path.is_file():
            named.append((path.as_posix(), path))
        elif any(c in os.fspath(item) for c in "*?["):
            matched = sorted(glob.glob(os.fspath(item), recursive=True))
            named.extend((m, p) for m in matched if (p := Path(m)).is_file())
        else:
            raise InputError(f"no such image, folder or glob match: {item}", found=str(item), fix="check the path")
    if not named:
        raise InputError("no images to predict", found=[str(i) for i in items], fix="pass image files or folders")
    seen: dict[str, Path] = {}
    for name, path in named:
        if name in seen and seen[name] != path:
            raise InputError(f"two images are both called {name!r} ({seen[name]} and {path})", found=name)
        seen[name] = path
    return [(name, path.resolve()) for name, path in seen.items()]


def _coco_ids(gt: Path, names: Sequence[str]) -> tuple[dict[str, int], list[int]]:
    """Each image's COCO id and the COCO category ids in label order (as ``safepredict predict``)."""
    from safepredict.folder import _coco_ids as coco_ids

    return coco_ids(gt, names)


def _format(out: Path, format: str | None) -> str:
    if format is None:
        format = "coco" if out.suffix.lower() == ".json" else "parquet"
    if format not in ("coco", "parquet"):
        raise InputError(f"format must be 'coco' or 'parquet', got {format!r}", found=format)
    return format


def _write_coco(
    batches: Iterator[Any], out: Path, ids: Mapping[str, int] | None, categories: Sequence[int] | None
) -> int:
    """Stream the rows' detections into one COCO results file; the number of rows."""
    from safepredict.detections import Detections

    rows = 0
    first = True
    tmp = out.with_name(out.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write("[")
            for table in batches:
                data = table.select(["image_id", "boxes", "scores", "labels"]).to_pydict()
                for name, boxes, scores, labels in zip(
                    data["image_id"], data["boxes"], data["scores"], data["labels"], strict=True
                ):
                    rows += 1
                    dets = Detections(boxes=boxes, scores=scores, labels=labels)
                    for result in dets.to_coco(ids[name] if ids is not None else name, categories):
                        handle.write(("\n" if first else ",\n") + json.dumps(result))
                        first = False
            handle.write("\n]\n")
    except BaseException:
        tmp.unlink(missing_ok=True)  # a half-written results file is worse than none
        raise
    tmp.replace(out)
    return rows


def predict_images(
    checkpoint: str | os.PathLike[str],
    images: Any,
    out: str | os.PathLike[str],
    *,
    format: str | None = None,
    recursive: bool = False,
    coco_gt: str | os.PathLike[str] | None = None,
    actors: int = 1,
    batch_size: int = 16,
    num_cpus: float = 1.0,
    num_gpus: float | None = None,
    runtime_env: dict[str, Any] | None = None,
    progress: bool = True,
    **options: Any,
) -> RunSummary:
    """Predict a folder, a glob or a list of images on Ray; COCO results (``.json``) or Parquet to ``out``.

    The images are read by the workers from their paths (shared storage). COCO results are
    ``[{image_id, category_id, bbox: [x, y, w, h], score}]``, ``image_id`` being the image's path
    relative to its folder (or, with ``coco_gt``, that file's id; ``category_id`` then the
    file's category ids). Parquet (``out`` a folder, or ``format="parquet"``) holds
    SafePredictBatch's columns with ``image_id`` and ``path``. ``options`` are
    :func:`predict_dataset`'s (``lock``, ``on_env_mismatch``, ``class_names``, ``device``...).
    ``progress`` shows Ray Data's progress bars. Returns the merged summary of every actor; an
    actor refusing its node's environment raises EnvironmentMismatchError naming the node.
    """
    taken = sorted({"column", "kind", "key_column", "passthrough"} & set(options))
    if taken:
        raise InputError(
            f"predict_images sets {', '.join(taken)} itself",
            found=taken,
            fix="use predict_dataset for a Dataset of your own",
        )
    out = Path(out)
    fmt = _format(out, format)
    if not out.parent.is_dir():
        raise InputError(f"folder {out.parent} does not exist", found=str(out.parent))
    named = _named_images(images, recursive)
    ids, categories = (None, None) if coco_gt is None else _coco_ids(Path(coco_gt), [n for n, _ in named])
    for key in ("lock", "training_config", "reference"):
        value = options.get(key)
        if isinstance(value, (str, os.PathLike)) and Path(value).exists():
            options[key] = str(Path(value).resolve())  # the workers may not share the driver's cwd
    ckpt = Path(checkpoint)
    if ckpt.exists():
        ckpt = ckpt.resolve()

    items = [{"image_id": name, "path": str(path)} for name, path in named]
    ds = ray.data.from_items(items)
    run = predict_dataset(
        ds,
        ckpt,
        actors=actors,
        batch_size=batch_size,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        runtime_env=runtime_env,
        inputs=len(items),
        column="path",
        kind="path",
        key_column="image_id",
        passthrough=("path",) if fmt == "parquet" else (),
        **options,
    )
    context = ray.data.DataContext.get_current()
    shown = context.enable_progress_bars
    context.enable_progress_bars = progress
    try:
        rows: int | None = None
        if fmt == "coco":
            rows = _write_coco(run.dataset.iter_batches(batch_format="pyarrow", batch_size=None), out, ids, categories)
        else:
            run.dataset.write_parquet(str(out))
    except Exception as exc:
        # An actor that refused its node's environment fails the job with Ray's ActorDiedError;
        # the collector knows which nodes refused, and why: raise that, typed.
        try:
            refused = run.refusal_error()
            run.close()
        except Exception:  # noqa: BLE001 (the collector went down too: the original error says more)
            refused = None
        if refused is not None:
            raise refused from exc
        raise
    finally:
        context.enable_progress_bars = shown
    summary = run.summary(rows=rows, out=str(out))
    run.close()
    if not summary.complete:
        logger.warning(
            "safepredict: the run's summary counts %d image(s) of %d input(s) (%s row(s) written): "
            "an actor's report was lost; see the workers' logs",
            summary.images,
            summary.inputs,
            summary.rows,
        )
    return summary
