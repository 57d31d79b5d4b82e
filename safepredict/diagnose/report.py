"""The visual report of ``safepredict diagnose --report out.html``: one self-contained HTML file.

Everything is inline (CSS, and PNG pictures drawn with OpenCV as base64 ``data:`` URIs), so the
file can be mailed, attached to a ticket or opened offline. It shows the ranked findings table,
each image's detections through the training-contract pipeline next to the user's pipeline (and
next to the images with red and blue swapped when the channel-order probe fired), score
histograms against the reference profile, and the resize probe's curve.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from safepredict.detections import Detections
from safepredict.findings import DIAGNOSE_CODES

__all__ = ["draw_detections", "histogram_chart", "render_html", "write_report"]

# BGR colours for classes, distinct on a dark background.
_PALETTE = (
    (80, 80, 255),
    (255, 140, 40),
    (40, 220, 240),
    (120, 220, 80),
    (220, 90, 220),
    (255, 255, 120),
    (60, 160, 255),
    (180, 180, 180),
)
# Histogram series colours (BGR): reference, training contract, user pipeline, probe.
_SERIES = ((150, 150, 150), (60, 170, 60), (50, 80, 230), (220, 140, 40))
_SEVERITY_CSS = {"error": "#c0392b", "warning": "#d68910", "info": "#5d6d7e"}
_MIN_SIDE = 220  # pictures of small images are scaled up to this short side


def _png(bgr: np.ndarray) -> str:
    import cv2

    ok, buf = cv2.imencode(".png", bgr)
    if not ok:  # pragma: no cover - encoding a uint8 BGR array does not fail
        raise RuntimeError("cv2 could not encode a PNG")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def draw_detections(
    rgb: np.ndarray, detections: Detections, class_names: Sequence[str] | None, *, title: str = ""
) -> np.ndarray:
    """The image (BGR, scaled up when small) with each detection's box, class and score, and a title bar."""
    import cv2

    h, w = rgb.shape[:2]
    scale = max(1.0, _MIN_SIDE / max(1, min(h, w)))
    image = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    if scale > 1.0:
        image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_NEAREST)
    for box, score, label in zip(detections.boxes, detections.scores, detections.labels, strict=True):
        colour = _PALETTE[int(label) % len(_PALETTE)]
        x1, y1, x2, y2 = (round(float(v) * scale) for v in box)
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, 2)
        name = class_names[int(label)] if class_names and 0 <= int(label) < len(class_names) else str(int(label))
        text = f"{name} {float(score):.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        ty = max(th + 2, y1)
        cv2.rectangle(image, (x1, ty - th - 3), (x1 + tw + 2, ty), colour, -1)
        cv2.putText(image, text, (x1 + 1, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    if title:
        bar = np.full((22, image.shape[1], 3), 32, np.uint8)
        cv2.putText(bar, title[:60], (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (240, 240, 240), 1, cv2.LINE_AA)
        image = np.vstack([bar, image])
    return image


def _axes(width: int, height: int, margin: int) -> np.ndarray:
    import cv2

    canvas = np.full((height, width, 3), 255, np.uint8)
    cv2.line(canvas, (margin, height - margin), (width - 10, height - margin), (0, 0, 0), 1)
    cv2.line(canvas, (margin, 10), (margin, height - margin), (0, 0, 0), 1)
    return canvas


def histogram_chart(
    series: Sequence[tuple[str, np.ndarray]],
    *,
    threshold: float | None = None,
    title: str = "",
    width: int = 520,
    height: int = 260,
) -> np.ndarray:
    """Score histograms as grouped bars over 0..1 (each series a proportion per bin), BGR.

    ``series`` is ``(label, proportions)`` with the same number of bins each.
    """
    import cv2

    margin = 36
    canvas = _axes(width, height, margin)
    bins = max((len(p) for _, p in series), default=20)
    top = max((float(np.max(p)) for _, p in series if len(p)), default=0.0) or 1.0
    plot_w, plot_h = width - margin - 14, height - 2 * margin
    slot = plot_w / bins
    bar = max(1.0, slot / max(1, len(series)) - 1)
    for s, (label, props) in enumerate(series):
        colour = _SERIES[s % len(_SERIES)]
        for b, value in enumerate(props):
            x = int(margin + 1 + b * slot + s * bar)
            y = int(height - margin - plot_h * float(value) / top)
            cv2.rectangle(canvas, (x, y), (int(x + bar - 1), height - margin - 1), colour, -1)
        cv2.rectangle(canvas, (width - 190, 12 + 16 * s), (width - 180, 22 + 16 * s), colour, -1)
        cv2.putText(canvas, label[:26], (width - 175, 22 + 16 * s), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = int(margin + tick * plot_w)
        cv2.putText(canvas, f"{tick:g}", (x - 8, height - margin + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    if threshold is not None:
        x = int(margin + threshold * plot_w)
        cv2.line(canvas, (x, 10), (x, height - margin), (0, 0, 200), 1)
        cv2.putText(canvas, f"thr {threshold:g}", (x + 3, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 200), 1)
    cv2.putText(canvas, title[:60], (margin, height - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    return canvas


def curve_chart(points: Sequence[tuple[float, float]], *, marked: float | None, title: str) -> np.ndarray:
    """A line chart of ``(x, y)`` with y in 0..1 (the resize probe: mean best score per test size), BGR."""
    import cv2

    width, height, margin = 520, 240, 36
    canvas = _axes(width, height, margin)
    if not points:
        return canvas
    xs = [p[0] for p in points]
    lo, hi = min(xs), max(xs)
    span = (hi - lo) or 1.0
    plot_w, plot_h = width - margin - 24, height - 2 * margin

    def at(x: float, y: float) -> tuple[int, int]:
        return int(margin + 6 + (x - lo) / span * plot_w), int(height - margin - y * plot_h)

    for a, b in itertools.pairwise(points):
        cv2.line(canvas, at(*a), at(*b), (60, 170, 60), 2, cv2.LINE_AA)
    for x, y in points:
        colour = (0, 0, 200) if marked is not None and x == marked else (60, 170, 60)
        cv2.circle(canvas, at(x, y), 4, colour, -1)
        px, py = at(x, y)
        cv2.putText(canvas, f"{int(x)}", (px - 10, height - margin + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        cv2.putText(canvas, f"{y:.2f}", (px - 12, py - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.putText(canvas, title[:64], (margin, height - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    return canvas


def _proportions(scores: np.ndarray, bins: int) -> np.ndarray:
    from safepredict.monitor import stats

    if scores.size == 0:
        return np.zeros(bins)
    return stats.score_histogram(scores, bins) / scores.size


def _e(value: Any) -> str:
    return html.escape(str(value))


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px; color: #222;
       background: #fafafa; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ccc; }
.summary { font-size: 15px; margin: 8px 0 16px; }
table.findings { border-collapse: collapse; width: 100%; background: #fff; }
table.findings td, table.findings th { border: 1px solid #ddd; padding: 6px 8px; vertical-align: top;
                                       font-size: 13px; text-align: left; }
table.findings th { background: #eee; }
.sev { color: #fff; font-weight: bold; padding: 2px 6px; border-radius: 3px; font-size: 12px; }
pre { white-space: pre-wrap; font-size: 12px; margin: 0; }
.row { display: flex; flex-wrap: wrap; gap: 10px; margin: 8px 0 14px; align-items: flex-start; }
.row figure { margin: 0; background: #fff; border: 1px solid #ddd; padding: 4px; }
figcaption { font-size: 12px; color: #444; max-width: 320px; }
code { background: #eee; padding: 0 3px; }
"""


def render_html(diagnosis: Any, *, max_images: int = 12) -> str:
    """The report of a :class:`~safepredict.diagnose.run.Diagnosis` as one self-contained HTML string."""
    d = diagnosis
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>safepredict diagnose: {_e(d.checkpoint.name)}</title><style>{_CSS}</style></head><body>",
        "<h1>safepredict diagnose</h1>",
        f"<div class='summary'>checkpoint <code>{_e(d.checkpoint)}</code> ({_e(d.framework or 'unknown framework')}), "
        f"{len(d.images)} image(s); worst finding: <b>{_e(d.worst or 'none')}</b>; exit code {d.exit_code}. "
        f"Written {_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}.</div>",
    ]
    parts.append(_findings_table(d.findings))
    if d.views and d.rgb:
        parts.append(_pictures(d, max_images))
        parts.append(_histograms(d))
    resize = d.probes.get("resize", {})
    if resize.get("curve"):
        points = [(float(p["size"]), float(p["mean_top_score"])) for p in resize["curve"]]
        chart = curve_chart(points, marked=float(resize["trained_size"]), title="mean best score vs test size (px)")
        parts.append(
            "<h2>Resize probe</h2><div class='row'><figure>"
            f"<img alt='mean best score against test size' src='{_png(chart)}'>"
            f"<figcaption>red: the trained test size ({_e(resize.get('key', ''))})</figcaption></figure></div>"
        )
    if d.contract_text:
        parts.append(f"<h2>Training contract</h2><pre>{_e(d.contract_text)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _findings_table(findings: Sequence[Any]) -> str:
    rows = ["<h2>Findings, worst first</h2>"]
    if not findings:
        return rows[0] + "<p>No findings.</p>"
    rows.append(
        "<table class='findings'><tr><th>#</th><th>severity</th><th>finding</th><th>evidence</th><th>fix</th></tr>"
    )
    for i, f in enumerate(findings, 1):
        colour = _SEVERITY_CSS[f.severity]
        rows.append(
            f"<tr><td>{i}</td><td><span class='sev' style='background:{colour}'>{_e(f.severity)}</span></td>"
            f"<td><b>{_e(f.message)}</b><br><code>{_e(f.code)}</code> · {_e(f.subject)}<br>"
            f"<small>{_e(DIAGNOSE_CODES.get(f.code, ''))}</small></td>"
            f"<td><pre>{_e(f.evidence)}</pre></td><td>{_e(f.fix)}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _pictures(d: Any, max_images: int) -> str:
    labels = ", ".join(v.label for v in d.views)
    out = [
        f"<h2>Detections per image</h2><p>Left to right: {_e(labels)}. Each picture shows the pixels that "
        "pipeline fed the model, with its detections above its own score threshold.</p>"
    ]
    for i, rgb in enumerate(d.rgb[:max_images]):
        out.append("<div class='row'>")
        for view in d.views:
            dets = view.final(i)
            pixels = rgb[:, :, ::-1] if view.swapped else rgb  # what that pipeline fed the model
            picture = draw_detections(pixels, dets, d.class_names, title=f"{view.label} (> {view.threshold:g})")
            caption = f"{_e(Path(d.images[i]).name)} · {_e(view.label)}: {len(dets)} detection(s)"
            out.append(
                f"<figure><img alt='{caption}' src='{_png(picture)}'><figcaption>{caption}</figcaption></figure>"
            )
        out.append("</div>")
    if len(d.rgb) > max_images:
        out.append(f"<p>{len(d.rgb) - max_images} more image(s) not drawn.</p>")
    return "\n".join(out)


def _histograms(d: Any) -> str:
    bins = d.reference.score_bins if d.reference is not None else 20
    series: list[tuple[str, np.ndarray]] = []
    if d.reference is not None:
        series.append(("reference (validation)", np.asarray(d.reference.candidate_score_hist, dtype=float)))
    for view in d.views:
        series.append((view.label, _proportions(view.scores(), bins)))
    chart = histogram_chart(series, threshold=d.views[0].threshold, title="candidate scores (share per bin)")
    tops = [(view.label, _proportions(view.top_scores(), bins)) for view in d.views]
    if d.reference is not None:
        tops.insert(0, ("reference (validation)", np.asarray(d.reference.max_score_hist[:bins], dtype=float)))
    chart_top = histogram_chart(tops, threshold=d.views[0].threshold, title="best score per image (share per bin)")
    note = (
        "Grey: the reference profile captured on validation images."
        if d.reference is not None
        else "No reference profile: capture one with <code>safepredict profile</code> to compare against validation."
    )
    return (
        "<h2>Score histograms</h2><div class='row'>"
        f"<figure><img alt='candidate score histogram' src='{_png(chart)}'></figure>"
        f"<figure><img alt='best score histogram' src='{_png(chart_top)}'></figure></div><p>{note}</p>"
    )


def write_report(diagnosis: Any, path: str | os.PathLike[str]) -> Path:
    """Write the HTML report to ``path`` (atomically) and return the path."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_html(diagnosis), encoding="utf-8")
    tmp.replace(path)
    return path
