"""Real trained models on the synthetic data set, built once per machine and cached.

``get_fixture("detectron2")`` / ``get_fixture("mmdet")`` return a :class:`Fixture`: a checkpoint
trained with the framework's own trainer, its training config as the framework wrote it, the data
set, and the box AP measured with the framework's own evaluator. Building runs in a subprocess
(the trainers set up process-wide loggers and registries) under a file lock, so concurrent test
sessions build each fixture once. The cache key covers everything that changes the weights: the data
spec, the training recipe, the installed framework versions, the trainer's thread count (float
reductions are summed in another order on another count: demo/seeding.py), the device, and
``FIXTURE_REVISION``: bump it when a trainer or the data generator changes what it produces (edits
that do not, such as docs, keep the cache). So ``safepredict demo`` (1 thread by default) and
``scripts/test.sh`` (2) share a fixture only when it is the same model.

Run ``python -m safepredict.demo.fixtures detectron2 mmdet`` to build both ahead of time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import attrs
from filelock import FileLock

from safepredict.demo.data import DatasetSpec, SyntheticDataset, generate
from safepredict.demo.seeding import train_threads

FRAMEWORKS = ("detectron2", "mmdet")
# 2: seeds and deterministic algorithms set for every trainer (demo/seeding.py).
FIXTURE_REVISION = 2
_VERSIONED = {
    "detectron2": ("torch", "torchvision", "sal-detectron2", "detectron2", "numpy", "opencv-python", "pillow"),
    "mmdet": ("torch", "torchvision", "mmcv", "mmengine", "mmdet", "numpy", "opencv-python"),
}


def cache_root() -> Path:
    """The user cache directory of safepredict (``$SAFEPREDICT_CACHE`` overrides it)."""
    env = os.environ.get("SAFEPREDICT_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("safepredict"))


@attrs.frozen
class Fixture:
    """A real trained model with its training artifacts."""

    framework: str
    output_dir: Path
    checkpoint: Path
    config: Path
    dataset: SyntheticDataset
    metrics: dict[str, float] = attrs.field(eq=False)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.dataset.class_names

    @property
    def ap50(self) -> float:
        return self.metrics["AP50"]


def _recipe(framework: str) -> Any:
    if framework == "detectron2":
        from safepredict.demo.train_detectron2 import Detectron2Recipe

        return Detectron2Recipe()
    if framework == "mmdet":
        from safepredict.demo.train_mmdet import MMDetRecipe

        return MMDetRecipe()
    raise ValueError(f"unknown framework {framework!r}; expected one of {FRAMEWORKS}")


def _installed(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _key(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def fixtures_root() -> Path:
    """Where trained fixtures are cached: ``$SAFEPREDICT_FIXTURES``, else ``<cache root>/fixtures``.

    CI points it at an empty directory on every run, so it trains what a new machine trains.
    """
    env = os.environ.get("SAFEPREDICT_FIXTURES")
    return Path(env) if env else cache_root() / "fixtures"


def dataset_dir(spec: DatasetSpec) -> Path:
    key = _key({"spec": attrs.asdict(spec), "revision": FIXTURE_REVISION})
    return fixtures_root() / f"data-{key}"


# The trainers run on the CPU (the recipes set it); a recipe that trains elsewhere must name its device here.
TRAIN_DEVICE = "cpu"


def _payload(framework: str, spec: DatasetSpec, threads: int) -> dict[str, Any]:
    """Everything that changes the weights a build gives: the fixture's cache key."""
    return {
        "framework": framework,
        "spec": attrs.asdict(spec),
        "recipe": attrs.asdict(_recipe(framework)),
        "versions": {dist: _installed(dist) for dist in _VERSIONED[framework]},
        "train_threads": threads,
        "device": TRAIN_DEVICE,
        "revision": FIXTURE_REVISION,
    }


def fixture_dir(framework: str, spec: DatasetSpec = DatasetSpec(), *, threads: int | None = None) -> Path:
    """Where the fixture of ``framework`` trained with ``threads`` (default :func:`train_threads`) is cached."""
    threads = train_threads(framework) if threads is None else threads
    return fixtures_root() / f"{framework}-{_key(_payload(framework, spec, threads))}"


def _load(framework: str, out: Path, dataset: SyntheticDataset) -> Fixture:
    info = json.loads((out / "fixture.json").read_text())
    return Fixture(
        framework=framework,
        output_dir=out,
        checkpoint=out / info["checkpoint"],
        config=out / info["config"],
        dataset=dataset,
        metrics=info["metrics"],
    )


def _locked(path: Path) -> FileLock:
    """One builder per cache entry across processes (pytest's, a second session's)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path)


def get_dataset(spec: DatasetSpec = DatasetSpec()) -> SyntheticDataset:
    root = dataset_dir(spec)
    with _locked(root.with_suffix(".lock")):
        return generate(root, spec)


def get_fixture(
    framework: str, spec: DatasetSpec = DatasetSpec(), *, threads: int | None = None, log: Path | None = None
) -> Fixture:
    """The cached fixture of ``framework`` trained with ``threads`` (default :func:`train_threads`),
    trained now if this machine has none yet."""
    threads = train_threads(framework) if threads is None else threads
    dataset = get_dataset(spec)
    out = fixture_dir(framework, spec, threads=threads)
    with _locked(out.with_suffix(".lock")):
        if not (out / "fixture.json").exists():
            tmp = out.with_name(out.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            log_path = log or tmp / "build.log"
            started = time.monotonic()
            with open(log_path, "w") as log_file:
                proc = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "safepredict.demo.fixtures",
                        "--train",
                        framework,
                        "--data",
                        str(dataset.root),
                        "--out",
                        str(tmp),
                    ],
                    env={**os.environ, "SAFEPREDICT_TRAIN_THREADS": str(threads)},
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    check=False,
                )
            if proc.returncode != 0:
                tail = log_path.read_text()[-4000:]
                raise RuntimeError(f"building the {framework} fixture failed (log {log_path}):\n{tail}")
            info = json.loads((tmp / "fixture.json").read_text())
            info["build_seconds"] = round(time.monotonic() - started, 1)
            info["train_threads"] = threads
            info["device"] = TRAIN_DEVICE
            (tmp / "fixture.json").write_text(json.dumps(info, indent=2))
            shutil.rmtree(out, ignore_errors=True)
            tmp.rename(out)
        return _load(framework, out, dataset)


def _train_in_this_process(framework: str, data_root: Path, out: Path) -> None:
    dataset = generate(data_root)
    if framework == "detectron2":
        from safepredict.demo.train_detectron2 import train as train_d2

        metrics = train_d2(dataset, out)
        info = {"checkpoint": "model_final.pth", "config": "config.yaml", "metrics": metrics}
    else:
        from safepredict.demo.train_mmdet import MMDetRecipe
        from safepredict.demo.train_mmdet import train as train_mmdet

        metrics = train_mmdet(dataset, out)
        epochs = MMDetRecipe().max_epochs
        info = {"checkpoint": f"epoch_{epochs}.pth", "config": "train_config.py", "metrics": metrics}
    (out / "fixture.json").write_text(json.dumps(info, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build safepredict's trained fixtures (cached).")
    parser.add_argument("frameworks", nargs="*", help=f"which to build: {', '.join(FRAMEWORKS)} (default: all)")
    parser.add_argument("--train", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.train:
        _train_in_this_process(args.train, args.data, args.out)
        return 0
    unknown = sorted(set(args.frameworks) - set(FRAMEWORKS))
    if unknown:
        parser.error(f"unknown framework(s) {unknown}; choose from {FRAMEWORKS}")
    for framework in args.frameworks or FRAMEWORKS:
        fixture = get_fixture(framework)
        print(f"{framework}: AP50={fixture.ap50:.1f} AP={fixture.metrics['AP']:.1f} at {fixture.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
