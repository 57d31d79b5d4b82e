"""``diagnose`` against the model forwards it needs, on the trained fixtures.

``diagnose`` runs the training pipeline and, per probe, the pipelines it compares with (another
channel order, mean/std, test size) over the same images. This measures, in one process with the
framework already imported, the whole ``diagnose()`` call against the time spent inside the
model runs it makes (``Adapter.run``: preprocessing, forward, post-processing), counted by
wrapping that method. The rest is building one predictor per distinct pipeline, decoding, the
probes' arithmetic and the findings.

    python benchmarks/bench_diagnose.py --images 8 --out docs/benchmarks-diagnose.md
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import time
from pathlib import Path
from typing import Any

from _page import publish

FRAMEWORK_MODULES = {"detectron2": "detectron2.modeling", "mmdet": "mmdet.apis"}


def bench(framework: str, images: int, repeats: int) -> list[tuple[float, float, int]]:
    """(whole diagnose, inside model runs, model runs) for each of ``1 + repeats`` calls."""
    importlib.import_module(FRAMEWORK_MODULES[framework])  # the import every forward needs anyway
    from safepredict.demo.fixtures import get_fixture
    from safepredict.diagnose.run import diagnose
    from safepredict.frameworks import base

    fx = get_fixture(framework)
    spent = {"seconds": 0.0, "runs": 0}
    real_run = base.Adapter.run

    def timed_run(self: Any, image: Any) -> Any:
        start = time.perf_counter()
        try:
            return real_run(self, image)
        finally:
            spent["seconds"] += time.perf_counter() - start
            spent["runs"] += 1

    base.Adapter.run = timed_run  # type: ignore[method-assign]
    rows = []
    try:
        for _ in range(1 + repeats):
            spent.update(seconds=0.0, runs=0)
            start = time.perf_counter()
            diagnose(fx.checkpoint, fx.dataset.val_images, max_images=images)
            rows.append((time.perf_counter() - start, spent["seconds"], int(spent["runs"])))
    finally:
        base.Adapter.run = real_run  # type: ignore[method-assign]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--frameworks", nargs="*", default=["detectron2", "mmdet"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import torch

    lines = [
        f"# diagnose on {args.images} images against its model runs",
        "",
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; the framework imported first. "
        f"First call in the process, then the median of {args.repeats} more.",
        "",
        "| framework | call | diagnose (s) | inside model runs (s) | model runs | ratio |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for framework in args.frameworks:
        rows = bench(framework, args.images, args.repeats)
        first, rest = rows[0], rows[1:]
        steady = tuple(statistics.median(r[i] for r in rest) for i in range(3))
        for label, (whole, inside, runs) in (("first", first), ("after", steady)):
            lines.append(f"| {framework} | {label} | {whole:.2f} | {inside:.2f} | {int(runs)} | {whole / inside:.2f} |")
    publish(lines, args.out)


if __name__ == "__main__":
    main()
