"""``diagnose()``: every check safepredict has, on the user's checkpoint, config, lock and images.

The order is cheapest first: the environment against the lock and the training contract against
the user's config need no model; then one SafePredictor on the training contract (a checkpoint
that does not fit its architecture stops here, as the top finding); then the probes, each
building a predictor with other ``overrides=`` only where it must.
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

from safepredict.contract import Discrepancy, TrainingArtifact, discover
from safepredict.diagnose.findings import Finding, jsonable, rank, worst
from safepredict.diagnose.probes import (
    ProbeResult,
    Run,
    build_predictor,
    channel_order_probe,
    compare,
    normalisation_probe,
    quiet_construction,
    resize_probe,
    run_pipeline,
    threshold_probe,
)
from safepredict.diagnose.reference import reference_findings
from safepredict.errors import CheckpointMismatchError, InputError, SafePredictError, TrainingArtifactNotFound
from safepredict.images import LoadedImage

logger = logging.getLogger("safepredict")

__all__ = ["DEFAULT_MAX_IMAGES", "Diagnosis", "collect_images", "diagnose"]

DEFAULT_MAX_IMAGES = 8
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})

# Which contract fields are measured together (one predictor per group).
_GROUPS = {
    "input_format": "colour order",
    "pixel_mean": "normalisation",
    "pixel_std": "normalisation",
    "pad_divisor": "padding",
    "pad_value": "padding",
    "nms_iou": "nms_iou",
    "max_detections": "max_detections",
}
# A preprocessing difference that changes fewer detections than this is reported as a warning only.
_MEASURABLE = 0.05
# A post-processing difference that changes at least this share of detections is an error.
_SEVERE = 0.5


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


# --------------------------------------------------------------------------- inputs


def collect_images(inputs: Iterable[str | os.PathLike[str]], *, recursive: bool = False) -> list[Path]:
    """Image files named directly or found in folders (sorted per folder); InputError if none."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found.extend(sorted(q for q in path.glob(pattern) if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES))
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"no such image or folder: {path}", found=str(path), fix="check the path")
    if not found:
        raise InputError(
            "no images to look at", found=[str(i) for i in inputs], fix="pass image files or folders of images"
        )
    return found


def sample(paths: Sequence[Path], limit: int | None) -> list[Path]:
    """At most ``limit`` paths, spread evenly over the list (reproducible)."""
    if limit is None or len(paths) <= limit:
        return list(paths)
    idx = np.linspace(0, len(paths) - 1, limit).round().astype(int)
    return [paths[i] for i in sorted(set(idx.tolist()))]


# --------------------------------------------------------------------------- findings without a model


def environment_findings(lock: str | os.PathLike[str], checkpoint: Path) -> tuple[list[Finding], dict[str, Any]]:
    """One finding per lock entry that differs from the running environment."""
    from safepredict.lock import check_lock

    report = check_lock(lock, weights=checkpoint)
    findings = []
    for m in report.mismatches:
        found = "absent" if m.found is None else m.found
        locked = "absent" if m.locked is None else m.locked
        findings.append(
            Finding(
                code="environment.mismatch",
                severity="error" if m.key == "files.weights" else "warning",
                subject=m.key,
                title=f"{m.key}: locked {locked}, running {found}",
                evidence=(
                    f"the lock {report.lock_path} says {m.key} = {locked} (rule {m.rule}: "
                    f"{m.requirement or m.rule}); here it is {found} ({m.source or 'running environment'}). "
                    f"Consequence: {m.consequence}"
                ),
                fix=m.fix,
                data=m.to_dict(),
            )
        )
    for u in report.unverified:
        findings.append(
            Finding(
                code="environment.unverified",
                severity="info",
                subject=u.key,
                title=f"{u.key} could not be checked here",
                evidence=u.describe(),
                data=u.to_dict(),
            )
        )
    return findings, report.to_dict()


def _group(d: Discrepancy) -> str:
    if d.key.startswith("resize."):
        return "resize"
    return _GROUPS.get(d.key, d.key)


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_value(v) for v in value) + ")"
    return repr(value) if isinstance(value, str) else str(value)


def _difference(d: Discrepancy) -> str:
    """A difference's values and where each was read, without its fix (the finding carries that)."""
    what = f" ({d.message})" if d.message else ""
    return (
        f"{d.key}{what}: training {_value(d.training)} ({d.training_source}); "
        f"yours {_value(d.inference)} ({d.inference_source})"
    )


def _contract_text(ds: Sequence[Discrepancy]) -> str:
    return "\n".join(_difference(d) for d in ds)


def undertraining_findings(artifact: TrainingArtifact) -> list[Finding]:
    from safepredict.monitor import undertraining_hint

    progress = artifact.training_contract.progress
    if progress is None:
        return []
    hint = undertraining_hint(
        progress.iteration, progress.max_iter, epoch=progress.epoch, max_epochs=progress.max_epochs
    )
    if hint is None:
        return []
    return [
        Finding(
            code="training.undertrained",
            severity=hint.severity,
            subject="progress",
            title=f"the checkpoint is from {hint.evidence['unit']} {hint.evidence['done']} of {hint.evidence['total']}",
            evidence=hint.message,
            fix="use the final checkpoint of the run (model_final.pth / the last epoch), or train to the end",
            impact=None,
            data=dict(hint.evidence),
        )
    ]


def trap_findings(artifact: TrainingArtifact) -> list[Finding]:
    return [
        Finding(
            code="contract.trap",
            severity=d.severity,
            subject=d.key,
            title=d.message or f"trap at {d.framework_key}",
            evidence=f"{d.message} (at {d.training_source})",
            fix=d.fix,
            data={"key": d.key, "framework_key": d.framework_key, "training_source": d.training_source},
        )
        for d in artifact.discrepancies
        if d.category == "internal"
    ]


def checkpoint_finding(exc: CheckpointMismatchError, training_source: str) -> Finding:
    problems = exc.found if isinstance(exc.found, list) else []
    kinds = {getattr(p, "kind", "?") for p in problems}
    meaning = exc.fix or str(exc)
    subjects = []
    if "classes" in meaning:
        subjects.append("num_classes")
    if "ResNet-" in meaning or "backbone" in meaning:
        subjects.append("backbone")
    return Finding(
        code="checkpoint.architecture",
        severity="error",
        subject=", ".join(subjects) or "architecture",
        title=f"the checkpoint does not fit the model its training config builds: {meaning}",
        evidence=(
            f"{len(problems)} parameter(s) do not fit ({', '.join(sorted(kinds))}) when the checkpoint is loaded into "
            f"the model built from {training_source}. Detectron2 and MMDetection would only log this and keep random "
            f"weights for them: garbage detections.\n{exc.message}"
        ),
        fix=(
            f"{meaning}; or pass the config the checkpoint was really trained with "
            "(--training-config, or put its config.yaml beside the checkpoint)"
        ),
        impact=1.0,
        data={"problems": [attrs.asdict(p) for p in problems[:50]], "n_problems": len(problems)},
    )


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
) -> Diagnosis:
    """Run every check on ``checkpoint`` and ``images`` (files or folders); return ranked findings.

    ``config`` is the inference config the user runs with (diffed against training and measured);
    ``training_config`` the config the model was trained with where the artifact does not carry it;
    ``lock`` an environment lock; ``reference`` a ReferenceProfile or its path (default: the
    ``safepredict-profile.json`` beside the checkpoint, if there is one). ``max_images`` images are
    sampled evenly from the inputs. ``probes=False`` runs only the checks that need no prediction.
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
            artifact = discover(checkpoint, config=config, training_config=training_config)
        except TrainingArtifactNotFound as exc:
            if config is None or training_config is not None:
                raise
            # The user's config is all there is: take it as the training config and say so.
            training_config, config = config, None
            artifact = discover(checkpoint, training_config=training_config)
            findings.append(
                Finding(
                    code="contract.no_training_config",
                    severity="warning",
                    subject="training config",
                    title="no training config beside the checkpoint: your --config was taken as the training config",
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

    def make(overrides: dict[str, Any] | None = None, *, user_config: Any = None) -> Any:
        return build_predictor(
            checkpoint,
            training_config=training_config,
            config=user_config,
            overrides=overrides,
            class_names=names,
            device=device,
        )

    with timer("load"):
        try:
            predictor = make()
        except CheckpointMismatchError as exc:
            findings.append(checkpoint_finding(exc, artifact.training_source))
            findings += _unmeasured_contract_findings(user_diffs, contract)
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
        findings += _unmeasured_contract_findings(user_diffs, contract)
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
        base = run_pipeline(predictor, loaded, "training contract")
    data["training_pipeline"] = base.summary()
    views: list[Run] = [base]

    with timer("contract differences"):
        measured, user_run = _contract_findings(user_diffs, contract, base, loaded, make, config)
    findings += measured
    if user_run is not None:
        views.append(user_run)
        data["your_pipeline"] = {**user_run.summary(), "effect": compare(base, user_run).to_json()}

    probe_results: list[ProbeResult] = []
    with timer("channel order"):
        probe_results.append(channel_order_probe(predictor, loaded, base))
    with timer("normalisation"):
        probe_results.append(_guard("normalisation", lambda: normalisation_probe(make, loaded, base, contract)))
    with timer("resize"):
        probe_results.append(_guard("resize", lambda: resize_probe(make, loaded, base, contract)))
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
            title=f"the {name} probe could not run",
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


# --------------------------------------------------------------------------- contract differences


def _unmeasured_contract_findings(diffs: Sequence[Discrepancy], contract: Any) -> list[Finding]:
    """Contract differences as findings, without measuring them (no model could be built)."""
    out = []
    for d in diffs:
        code = {"architecture": "contract.architecture", "postprocessing": "contract.postprocessing"}.get(
            d.category, "contract.preprocessing"
        )
        out.append(
            Finding(
                code=code,
                severity=d.severity,
                subject=d.key,
                title=f"your config's {d.key} differs from training ({d.framework_key})",
                evidence=_difference(d),
                fix=d.fix,
                data=_discrepancy_data(d),
            )
        )
    return out


def _discrepancy_data(d: Discrepancy) -> dict[str, Any]:
    return {
        "key": d.key,
        "framework_key": d.framework_key,
        "training": d.training,
        "inference": d.inference,
        "training_source": d.training_source,
        "inference_source": d.inference_source,
    }


def _contract_findings(
    diffs: Sequence[Discrepancy],
    contract: Any,
    base: Run,
    images: Sequence[LoadedImage],
    make: Callable[..., Any],
    config: Any,
) -> tuple[list[Finding], Run | None]:
    """Contract differences, each measured on the images; and the user's whole pipeline, if it differs."""
    findings: list[Finding] = []
    groups: dict[str, list[Discrepancy]] = {}
    threshold_diff: Discrepancy | None = None
    architecture: list[Discrepancy] = []
    for d in diffs:
        if d.key == "score_threshold":
            threshold_diff = d
        elif d.category == "architecture":
            architecture.append(d)
        else:
            groups.setdefault(_group(d), []).append(d)
    runs: dict[str, Run] = {}
    for name, members in groups.items():
        overrides = {d.key: d.inference for d in members}
        label = f"your {name}"
        try:
            run = run_pipeline(make(overrides), images, label)
        except SafePredictError as exc:
            findings += [
                attrs.evolve(f, evidence=f"{f.evidence}\n(not measured: {exc.message})")
                for f in _unmeasured_contract_findings(members, contract)
            ]
            continue
        runs[name] = run
        effect = compare(base, run)
        findings.append(_measured_finding(name, members, effect))
    if architecture:
        findings += _architecture_findings(architecture, make)
    if threshold_diff is not None:
        findings.append(_threshold_finding(threshold_diff, base))

    if not groups and threshold_diff is None:
        return findings, None
    user_threshold = float(threshold_diff.inference) if threshold_diff is not None else base.threshold
    if len(runs) == 1 and len(groups) == 1:
        (run,) = runs.values()
        return findings, run.with_threshold(user_threshold, "your config")
    if not groups:
        return findings, base.with_threshold(user_threshold, "your config")
    overrides = {d.key: d.inference for members in groups.values() for d in members if d.category == "preprocessing"}
    try:
        with quiet_construction():
            user = run_pipeline(make(overrides, user_config=config), images, "your config")
    except SafePredictError as exc:
        logger.info("diagnose: your whole pipeline could not be built: %s", exc)
        return findings, None
    return findings, user


def _measured_finding(name: str, members: Sequence[Discrepancy], effect: Any) -> Finding:
    first = members[0]
    post = first.category == "postprocessing"
    impact = effect.impact
    if post:
        severity = "error" if impact >= _SEVERE else "warning"
    else:
        severity = "error" if impact >= _MEASURABLE else "warning"
    keys = ", ".join(d.framework_key for d in members)
    what = {
        "colour order": "colour order",
        "normalisation": "mean/std",
        "resize": "test size",
        "padding": "padding",
    }.get(name, name)
    measured = effect.describe("training contract", f"with your {what}")
    if impact < _MEASURABLE:
        measured += " — no measurable effect on these images, but other images can differ"
    return Finding(
        code="contract.postprocessing" if post else "contract.preprocessing",
        severity=severity,
        subject=name if name in ("normalisation", "resize", "padding") else first.key,
        title=(
            f"your config's {what} ({keys}) differs from training: "
            f"{effect.agreement:.0%} of the training pipeline's detections survive it"
        ),
        evidence=_contract_text(members) + "\nmeasured: " + measured,
        fix="; ".join(dict.fromkeys(d.fix for d in members)),
        impact=impact,
        data={"discrepancies": [_discrepancy_data(d) for d in members], "effect": effect.to_json()},
    )


def _threshold_finding(d: Discrepancy, base: Run) -> Finding:
    train_t, user_t = float(d.training), float(d.inference)
    n_train, n_user = base.detections(train_t), base.detections(user_t)
    if user_t > train_t:
        changed = n_train - n_user
        impact = changed / n_train if n_train else 0.0
        words = f"hides {changed} of the {n_train} detections training evaluation counted"
    else:
        changed = n_user - n_train
        impact = changed / n_user if n_user else 0.0
        words = f"adds {changed} detections below what training evaluation counted ({n_user} instead of {n_train})"
    severity = "error" if impact >= _SEVERE else "warning"
    return Finding(
        code="contract.postprocessing",
        severity=severity,
        subject="score_threshold",
        title=f"your score threshold {user_t:g} ({d.framework_key}) {words} at {train_t:g}",
        evidence=_difference(d)
        + f"\nmeasured on these images: {n_user} detection(s) at {user_t:g}, {n_train} at {train_t:g}",
        fix=d.fix,
        impact=round(impact, 4),
        data={**_discrepancy_data(d), "detections_at_training": n_train, "detections_at_yours": n_user},
    )


def _architecture_findings(diffs: Sequence[Discrepancy], make: Callable[..., Any]) -> list[Finding]:
    """Architecture differences; what loading the checkpoint into the user's model would do is tried."""
    buildable = {
        d.key: d.inference for d in diffs if d.key in ("depth", "num_classes", "backbone", "meta_architecture")
    }
    outcome = ""
    if buildable:
        try:
            with quiet_construction():
                make(buildable)
            outcome = "the checkpoint loads into the model your config builds"
        except CheckpointMismatchError as exc:
            outcome = f"loading the checkpoint into the model your config builds fails: {exc.fix or exc.message}"
        except Exception as exc:  # noqa: BLE001 - any framework error building that model is the evidence
            outcome = (
                f"the model your config describes cannot be built around the checkpoint: {type(exc).__name__}: {exc}"
            )
    findings = []
    for d in diffs:
        severity = d.severity
        findings.append(
            Finding(
                code="contract.architecture",
                severity=severity,
                subject=d.key,
                title=(
                    f"your config's {d.key} is {d.inference!r}, the checkpoint was trained with {d.training!r} "
                    f"({d.framework_key})"
                ),
                evidence=_difference(d) + (f"\ntried: {outcome}" if outcome and d.key in buildable else ""),
                fix=d.fix,
                impact=1.0 if d.key in buildable else 0.0,
                data=_discrepancy_data(d),
            )
        )
    return findings
