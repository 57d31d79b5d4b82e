"""The monitor's hints built from plain numbers: threshold advice and the undertrained checkpoint."""

from __future__ import annotations

from safepredict.findings import Finding

__all__ = ["threshold_advice", "undertraining_hint"]


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
        data={"unit": unit, "done": done, "total": total, "fraction": round(fraction, 4)},
    )
