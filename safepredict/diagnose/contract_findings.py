"""Diagnose's findings about the training contract, each measured where a model can measure it.

Your inference config against the training contract (preprocessing and post-processing
differences forced through ``overrides=`` and measured on the images, architecture differences
tried by loading the checkpoint into the model your config describes), traps inside the training
config, the checkpoint against the architecture its training config builds, and how far its
training got. :func:`safepredict.diagnose.run.diagnose` calls these in order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from safepredict.contract import Discrepancy
from safepredict.diagnose.probes import Pipelines, Run, compare, quiet_construction
from safepredict.errors import CheckpointMismatchError, SafePredictError
from safepredict.findings import Finding
from safepredict.images import LoadedImage

if TYPE_CHECKING:
    from safepredict.frameworks.artifact import TrainingArtifact

logger = logging.getLogger("safepredict")

__all__ = [
    "checkpoint_finding",
    "contract_findings",
    "trap_findings",
    "undertraining_findings",
    "unmeasured_contract_findings",
]

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


# --------------------------------------------------------------------------- without a model


def undertraining_findings(artifact: TrainingArtifact) -> list[Finding]:
    """A checkpoint saved before the end of its training schedule (the monitor's start-up hint, ranked)."""
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
            message=f"the checkpoint is from {hint.data['unit']} {hint.data['done']} of {hint.data['total']}",
            evidence=hint.message,
            fix="use the final checkpoint of the run (model_final.pth / the last epoch), or train to the end",
            impact=None,
            data=dict(hint.data),
        )
    ]


def trap_findings(artifact: TrainingArtifact) -> list[Finding]:
    """Known traps inside the training config itself."""
    return [
        Finding(
            code="contract.trap",
            severity=d.severity,
            subject=d.key,
            message=d.message or f"trap at {d.framework_key}",
            evidence=f"{d.message} (at {d.training_source})",
            fix=d.fix,
            data={"key": d.key, "framework_key": d.framework_key, "training_source": d.training_source},
        )
        for d in artifact.discrepancies
        if d.category == "internal"
    ]


def checkpoint_finding(exc: CheckpointMismatchError, training_source: str) -> Finding:
    """The checkpoint that does not fit the model its training config builds: the top finding, always."""
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
        message=f"the checkpoint does not fit the model its training config builds: {meaning}",
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


def unmeasured_contract_findings(diffs: Sequence[Discrepancy], contract: Any) -> list[Finding]:
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
                message=f"your config's {d.key} differs from training ({d.framework_key})",
                evidence=_difference(d),
                fix=d.fix,
                data=discrepancy_data(d),
            )
        )
    return out


def discrepancy_data(d: Discrepancy) -> dict[str, Any]:
    """A discrepancy's values and sources as plain data (a finding's ``data``)."""
    return {
        "key": d.key,
        "framework_key": d.framework_key,
        "training": d.training,
        "inference": d.inference,
        "training_source": d.training_source,
        "inference_source": d.inference_source,
    }


# --------------------------------------------------------------------------- measured on the images


def contract_findings(
    diffs: Sequence[Discrepancy],
    contract: Any,
    base: Run,
    images: Sequence[LoadedImage],
    pipelines: Pipelines,
    config: Any,
) -> tuple[list[Finding], Run | None]:
    """Contract differences, each measured on the images; and the user's whole pipeline, if it differs.

    ``pipelines`` builds (once each) the predictors with the user's values forced through ``overrides=``.
    """
    findings: list[Finding] = []
    groups: dict[str, list[Discrepancy]] = {}
    threshold_diff: Discrepancy | None = None
    architecture: list[Discrepancy] = []
    for d in diffs:
        if d.key == "score_threshold":
            threshold_diff = d
        elif d.key.startswith("tta."):
            # Nothing to measure: no predictor runs test-time augmentation, either way.
            findings += unmeasured_contract_findings([d], contract)
        elif d.category == "architecture":
            architecture.append(d)
        else:
            groups.setdefault(_group(d), []).append(d)
    runs: dict[str, Run] = {}
    for name, members in groups.items():
        overrides = {d.key: d.inference for d in members}
        label = f"your {name}"
        try:
            run = pipelines.run(images, label, overrides)
        except SafePredictError as exc:
            findings += [
                attrs.evolve(f, evidence=f"{f.evidence}\n(not measured: {exc.message})")
                for f in unmeasured_contract_findings(members, contract)
            ]
            continue
        runs[name] = run
        effect = compare(base, run)
        findings.append(_measured_finding(name, members, effect))
    if architecture:
        findings += _architecture_findings(architecture, pipelines)
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
            user = pipelines.run(images, "your config", overrides, user_config=config)
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
        message=(
            f"your config's {what} ({keys}) differs from training: "
            f"{effect.agreement:.0%} of the training pipeline's detections survive it"
        ),
        evidence=_contract_text(members) + "\nmeasured: " + measured,
        fix="; ".join(dict.fromkeys(d.fix for d in members)),
        impact=impact,
        data={"discrepancies": [discrepancy_data(d) for d in members], "effect": effect.to_json()},
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
        message=f"your score threshold {user_t:g} ({d.framework_key}) {words} at {train_t:g}",
        evidence=_difference(d)
        + f"\nmeasured on these images: {n_user} detection(s) at {user_t:g}, {n_train} at {train_t:g}",
        fix=d.fix,
        impact=round(impact, 4),
        data={**discrepancy_data(d), "detections_at_training": n_train, "detections_at_yours": n_user},
    )


def _architecture_findings(diffs: Sequence[Discrepancy], pipelines: Pipelines) -> list[Finding]:
    """Architecture differences; what loading the checkpoint into the user's model would do is tried."""
    buildable = {
        d.key: d.inference for d in diffs if d.key in ("depth", "num_classes", "backbone", "meta_architecture")
    }
    outcome = ""
    if buildable:
        try:
            with quiet_construction():
                pipelines(buildable)
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
                message=(
                    f"your config's {d.key} is {d.inference!r}, the checkpoint was trained with {d.training!r} "
                    f"({d.framework_key})"
                ),
                evidence=_difference(d) + (f"\ntried: {outcome}" if outcome and d.key in buildable else ""),
                fix=d.fix,
                impact=1.0 if d.key in buildable else 0.0,
                data=discrepancy_data(d),
            )
        )
    return findings


# --------------------------------------------------------------------------- wording


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
