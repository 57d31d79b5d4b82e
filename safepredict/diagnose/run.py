"""``diagnose()``: every check safepredict has, on the user's checkpoint, config, lock and images.

The order is cheapest first: the environment against the lock and the training contract against
the user's config need no model; then one SafePredictor on the training contract (a checkpoint
that does not fit its architecture stops here, as the top finding); then the probes. Every
predictor comes from one :class:`~safepredict.diagnose.probes.Pipelines`, so each distinct
pipeline (training contract plus overrides) is built once however many checks ask for it.

This module is the orchestration; the findings themselves are made by
:mod:`~safepredict.diagnose.environment_findings` (the lock),
:mod:`~safepredict.diagnose.contract_findings` (the contract, the checkpoint's fit, training progress),
:mod:`~safepredict.diagnose.probes` (the model on the images) and
:mod:`~safepredict.diagnose.reference` (the images and outputs against a reference profile).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from safepredict.diagnose.contract_findings import (
    checkpoint_finding,
    contract_findings,
    trap_findings,
    undertraining_findings,
    unmeasured_contract_findings,
)
from safepredict.diagnose.environment_findings import environment_findings
from safepredict.diagnose.probes import (
    Pipelines,
    ProbeResult,
    Run,
    channel_order_probe,
    compare,
    normalisation_probe,
    resize_probe,
    threshold_probe,
)
from safepredict.diagnose.ranking import rank, worst
from safepredict.diagnose.reference import reference_findings
from safepredict.errors import CheckpointMismatchError, InputError, SafePredictError, TrainingArtifactNotFound
from safepredict.findings import Finding, jsonable
from safepredict.folder import collect_images
from safepredict.frameworks.artifact import discover
from safepredict.images import LoadedImage

logger = logging.getLogger("safepredict")

__all__ = ["DEFAULT_MAX_IMAGES", "Diagnosis", "diagnose", "sample"]

DEFAULT_MAX_IMAGES = 8


@attrs.frozen(eq=False)
class Diagnosis:
    """The outcome of :func:`diagnose`: ranked findings and what the report draws."""

    checkpoint: Path
    framework: str | None
    findings: tuple[Finding, ...]
    images: tuple[Path, ...]
    rgb: tuple[np.ndarray, ...] = ()  # the decoded images, RGB, for the report
    views: tuple[Run, ...] = ()  # pipelines drawn side by side, the training contract first
    class_names: tuple[str, ...] | None = None
    contract_text: str = ""
    reference: Any = None  # the ReferenceProfile compared against, if any
    probes: dict[str, Any] = attrs.field(factory=dict)
    timings: dict[str, float] = attrs.field(factory=dict)

    @property
    def worst(self) -> str | None:
        return worst(self.findings)

    @property
    def exit_code(self) -> int:
        return 1 if self.worst in ("error", "warning") else 0

    @property
    def top(self) -> Finding | None:
        return self.findings[0] if self.findings else None

    def by_code(self, code: str) -> list[Finding]:
        return [f for f in self.findings if f.code == code]

    def describe(self) -> str:
        """The findings in words, worst first, numbered."""
        head = f"safepredict diagnose: {self.checkpoint}"
        if self.framework:
            head += f" ({self.framework}, {len(self.images)} image(s))"
        if not self.findings:
            return head + "\nno findings"
        lines = [head]
        counts = {s: sum(1 for f in self.findings if f.severity == s) for s in ("error", "warning", "info")}
        lines.append(", ".join(f"{n} {s}{'s' if n != 1 else ''}" for s, n in counts.items()))
        for i, finding in enumerate(self.findings, 1):
            text = finding.describe().replace("\n", "\n   ")
            lines.append(f"{i:>2}. {text}\n    docs: {finding.docs}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "checkpoint": str(self.checkpoint),
            "framework": self.framework,
            "images": [str(p) for p in self.images],
            "worst": self.worst,
            "exit_code": self.exit_code,
            "findings": [f.to_json() for f in self.findings],
            "probes": jsonable(self.probes),
            "timings": {k: round(v, 2) for k, v in self.timings.items()},
        }


def sample(paths: Sequence[Path], limit: int | None) -> list[Path]:
    """At most ``limit`` paths, spread evenly over the list (reproducible)."""
    if limit is None or len(paths) <= limit:
        return list(paths)
    idx = np.linspace(0, len(paths) - 1, limit).round().astype(int)
    return [paths[i] for i in sorted(set(idx.tolist()))]


# --------------------------------------------------------------------------- the run


class _Timer:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    def __call__(self, name: str) -> Any:
        timer = self

        class _Span:
            def __enter__(self) -> None:
                logger.info("diagnose: %s", name)
                self.start = time.monotonic()

            def __exit__(self, *exc: Any) -> None:
                timer.times[name] = timer.times.get(name, 0.0) + time.monotonic() - self.start

        return _Span()


def diagnose(
    checkpoint: str | os.PathLike[str],
    images: Iterable[str | os.PathLike[str]],
    *,
    config: Any = None,
    training_config: Any = None,
    lock: str | os.PathLike[str] | None = None,
    reference: Any = None,
    class_names: Sequence[str] | None = None,
    device: str = "cpu",
    max_images: int | None = DEFAULT_MAX_IMAGES,
    recursive: bool = False,
    probes: bool = True,
    trust: bool = False,
) -> Diagnosis:
    """Run every check on ``checkpoint`` and ``images`` (files or folders); return ranked findings.

    ``config`` is the inference config the user runs with (diffed against training and measured);
    ``training_config`` the config the model was trained with where the artifact does not carry it;
    ``lock`` an environment lock; ``reference`` a ReferenceProfile or its path (default: the
    ``safepredict-profile.json`` beside the checkpoint, if there is one). ``max_images`` images are
    sampled evenly from the inputs. ``probes=False`` runs only the checks that need no prediction.
    ``trust`` runs the framework's own config loaders (see docs/security.md).
    """
    timer = _Timer()
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise InputError(f"checkpoint not found: {checkpoint}", found=str(checkpoint), fix="check the path")
    paths = sample(collect_images(images, recursive=recursive), max_images)
    findings: list[Finding] = []
    data: dict[str, Any] = {}

    if lock is not None:
        with timer("environment"):
            env_findings, data["environment"] = environment_findings(lock, checkpoint)
        findings += env_findings

    with timer("contract"):
        try:
            artifact = discover(checkpoint, config=config, training_config=training_config, trust=trust)
        except TrainingArtifactNotFound as exc:
            if config is None or training_config is not None:
                raise
            # The user's config is all there is: take it as the training config and say so.
            training_config, config = config, None
            artifact = discover(checkpoint, training_config=training_config, trust=trust)
            findings.append(
                Finding(
                    code="contract.no_training_config",
                    severity="warning",
                    subject="training config",
                    message="no training config beside the checkpoint: your --config was taken as the training config",
                    evidence=exc.message,
                    fix=exc.fix or "pass the config the model was trained with as --training-config",
                )
            )
    framework = artifact.framework
    contract = artifact.training_contract
    names = tuple(class_names) if class_names is not None else contract.class_names
    findings += trap_findings(artifact) + undertraining_findings(artifact)
    user_diffs = [d for d in artifact.discrepancies if d.category != "internal"]

    ref, ref_source = _reference(reference, checkpoint)
    if ref is not None:
        data["reference"] = {"source": ref_source, "images": ref.n_images}

    pipelines = Pipelines(
        checkpoint, training_config=training_config, class_names=names, device=device, trust=trust
    )
    with timer("load"):
        try:
            predictor = pipelines()
        except CheckpointMismatchError as exc:
            findings.append(checkpoint_finding(exc, artifact.training_source))
            findings += unmeasured_contract_findings(user_diffs, contract)
            return Diagnosis(
                checkpoint,
                framework,
                tuple(rank(findings)),
                tuple(paths),
                contract_text=contract.describe(),
                probes=data,
                timings=timer.times,
            )
    names = predictor.class_names
    if not probes:
        findings += unmeasured_contract_findings(user_diffs, contract)
        return Diagnosis(
            checkpoint,
            framework,
            tuple(rank(findings)),
            tuple(paths),
            class_names=names,
            contract_text=contract.describe(),
            reference=ref,
            probes=data,
            timings=timer.times,
        )

    with timer("decode"):
        loaded: list[LoadedImage] = [predictor.load(p) for p in paths]
    with timer("training pipeline"):
        base = pipelines.run(loaded, "training contract")
    data["training_pipeline"] = base.summary()
    views: list[Run] = [base]

    with timer("contract differences"):
        measured, user_run = contract_findings(user_diffs, contract, base, loaded, pipelines, config)
    findings += measured
    if user_run is not None:
        views.append(user_run)
        data["your_pipeline"] = {**user_run.summary(), "effect": compare(base, user_run).to_json()}

    probe_results: list[ProbeResult] = []
    with timer("channel order"):
        probe_results.append(channel_order_probe(predictor, loaded, base, reference=ref))
    with timer("normalisation"):
        probe_results.append(_guard("normalisation", lambda: normalisation_probe(pipelines, loaded, base, contract)))
    with timer("resize"):
        probe_results.append(_guard("resize", lambda: resize_probe(pipelines, loaded, base, contract)))
    threshold = user_run.threshold if user_run is not None else base.threshold
    key = predictor.threshold_key
    with timer("threshold"):
        probe_results.append(threshold_probe(base, threshold, key))
    for result in probe_results:
        findings += result.findings
        data[result.name] = result.data
        if result.name == "channel_order" and result.findings and result.findings[0].severity == "error":
            views += result.runs
    rgb = tuple(image.to("RGB") for image in loaded)
    if ref is not None:
        with timer("reference"):
            ref_findings, data["reference_comparison"] = reference_findings(ref, rgb, base, names)
        findings += ref_findings
    return Diagnosis(
        checkpoint=checkpoint,
        framework=framework,
        findings=tuple(rank(findings)),
        images=tuple(paths),
        rgb=rgb,
        views=tuple(views),
        class_names=names,
        contract_text=contract.describe(),
        reference=ref,
        probes=data,
        timings=timer.times,
    )


def _guard(name: str, probe: Callable[[], ProbeResult]) -> ProbeResult:
    """Run ``probe``; a probe that cannot run (an override the config cannot take) becomes a finding."""
    try:
        return probe()
    except SafePredictError as exc:
        finding = Finding(
            code="probe.failed",
            severity="info",
            subject=name,
            message=f"the {name} probe could not run",
            evidence=str(exc),
        )
        return ProbeResult(name, (finding,), (), {"failed": str(exc)})


def _reference(reference: Any, checkpoint: Path) -> tuple[Any, str | None]:
    """The reference profile and where it came from (the one beside the checkpoint by default)."""
    from safepredict.monitor import PROFILE_FILENAME, ReferenceProfile

    if reference is None:
        beside = checkpoint.parent / PROFILE_FILENAME
        if not beside.is_file():
            return None, None
        reference = beside
    if isinstance(reference, ReferenceProfile):
        return reference, "given"
    path = Path(reference)
    if not path.is_file():
        raise InputError(
            f"reference profile not found: {path}",
            found=str(path),
            fix="capture one with `safepredict profile CHECKPOINT VALIDATION_FOLDER`",
        )
    return ReferenceProfile.load(path), str(path)
