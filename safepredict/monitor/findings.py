"""What the monitor reports: a Finding value, how it is logged, and the hints built from plain numbers."""

from __future__ import annotations

from typing import Any

import attrs

from safepredict._logging import warn

SEVERITIES = ("info", "warning", "error")


def _freeze_evidence(value: Any) -> dict[str, Any]:
    return dict(value or {})


@attrs.frozen
class Finding:
    """One thing the monitor noticed: a stable ``code``, a sentence for people, and the numbers behind it.

    ``code`` (``"monitor.empty_streak"``...) is what programs and tests match on; ``evidence`` holds the
    measured values and the limits they were compared with, and goes into the log record's ``extra``.
    """

    code: str = attrs.field(validator=attrs.validators.matches_re(r"monitor\.[a-z_]+"))
    message: str
    severity: str = attrs.field(default="warning", validator=attrs.validators.in_(SEVERITIES))
    evidence: dict[str, Any] = attrs.field(factory=dict, converter=_freeze_evidence, eq=False, hash=False)

    def describe(self) -> str:
        """The finding in one line, evidence included."""
        facts = ", ".join(f"{k}={_short(v)}" for k, v in self.evidence.items())
        return f"[{self.severity}] {self.code}: {self.message}" + (f" ({facts})" if facts else "")

    def emit(self) -> None:
        """Log this finding on the ``safepredict`` logger and raise it as a SafePredictWarning."""
        warn(self.message, code=self.code, severity=self.severity, evidence=self.evidence, stacklevel=4)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def threshold_advice(
    n_below: int, best_below: float, score_threshold: float, threshold_key: str | None, *, images: int = 1
) -> str:
    """The sentence that says how much lies under the score threshold and which setting controls it."""
    where = "this image" if images == 1 else f"these {images} images"
    key = f"set by {threshold_key}" if threshold_key else "set by the model's test-time score threshold"
    return (
        f"{where} had {n_below} candidate(s) below the score threshold {score_threshold:g} "
        f"(best score {best_below:.3f}); the threshold is {key}"
    )


def undertraining_hint(
    iteration: int | None,
    max_iter: int | None,
    *,
    epoch: int | None = None,
    max_epochs: int | None = None,
) -> Finding | None:
    """A finding naming a checkpoint saved before the end of its training schedule, or None.

    Pass the numbers the training artifact records: Detectron2's checkpoint ``iteration`` and the
    config's ``SOLVER.MAX_ITER``, or mmengine's ``epoch``/``iter`` against ``max_epochs``/``max_iters``.
    Detectron2 stores the index of the last finished iteration (``MAX_ITER - 1`` in ``model_final``)
    while mmengine stores the number finished, so one iteration short of the end counts as complete
    (one epoch short does not).
    Below 90 % of the schedule the finding is a warning, otherwise information: a late "best"
    checkpoint is often chosen on purpose, a checkpoint at 5 % rarely is.
    """
    progress: list[tuple[str, int, int]] = []
    for unit, done, total in (("iteration", iteration, max_iter), ("epoch", epoch, max_epochs)):
        if done is None or total is None:
            continue
        if total <= 0 or done < 0:
            raise ValueError(f"{unit} {done} of {total}: counts must be non-negative and the schedule positive")
        progress.append((unit, int(done), int(total)))
    if not progress:
        return None
    # The coarser unit (epochs) decides when both are known: iterations per epoch vary with the data.
    unit, done, total = progress[-1]
    if done + (1 if unit == "iteration" else 0) >= total:
        return None
    fraction = done / total
    severity = "warning" if fraction < 0.9 else "info"
    message = (
        f"the checkpoint was saved at {unit} {done} of {total} ({fraction:.1%} of its training schedule); "
        "an early checkpoint often detects little or nothing above the score threshold"
        + ("; use the final checkpoint or train to the end" if severity == "warning" else "")
    )
    return Finding(
        code="monitor.undertrained",
        message=message,
        severity=severity,
        evidence={"unit": unit, "done": done, "total": total, "fraction": round(fraction, 4)},
    )
