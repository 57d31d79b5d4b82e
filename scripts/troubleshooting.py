"""Make each field failure against the real trained fixtures, and quote what safepredict says.

docs/troubleshooting.md has one entry per failure the seed write-ups describe; every message an
entry quotes sits between marker comments::

    <!-- message: seed-001-bgr -->
    ...what this script wrote...
    <!-- /message -->

This script produces them: each scenario makes one seed's mistake (an inference config with
another colour order, ImageNet's mean/std, another test size, a 0.99 threshold, a checkpoint given
a config with another architecture, an early snapshot, a stream in the other channel order, an
environment that drifted from its lock...) with the real models trained by the frameworks' own
trainers (``safepredict.demo.fixtures.get_fixture``), and captures what safepredict logs (records
of the ``safepredict`` logger, with their ``safepredict_code``), raises (``str()`` of the error)
or prints (``safepredict check``).

    python scripts/troubleshooting.py             # rewrite the quoted messages in the page
    python scripts/troubleshooting.py --check     # exit 1 if a quoted message is no longer produced, or differs
    python scripts/troubleshooting.py --list      # the scenarios and the seeds they come from

Messages that hold what was measured on the fixture (scores, the versions installed here, file
digests) are compared with their numbers free: a retrained fixture, on another thread count, has
other scores, and the words must still be the same. A diagnose report is compared by what the page
claims of it (``diagnose_claims``): the finding ranked first, its severity, code, subject, fix and
docs line; how many findings of each severity there are and the wording of the evidence are the
trained model's, and the page says so. Paths are written relative to the scenario's
folder, the fixtures' folder as ``output/``.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PAGE = ROOT / "docs" / "troubleshooting.md"
N_IMAGES = 12  # images per scenario that runs the model: enough to show, few enough to stay quick

BLOCK = re.compile(r"(<!-- message: (?P<id>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /message -->)", re.DOTALL)


@attrs.frozen
class Scenario:
    id: str
    seeds: str  # the seed write-ups it comes from
    title: str
    run: Callable[[Context], list[str]]
    measured: bool = False  # the messages hold numbers measured on the fixture: compared with numbers free
    # What of the message the page claims, where less than all of it holds for any trained model.
    claims: Callable[[str], str] | None = None


class Context:
    """What a scenario gets: the fixtures, a folder of its own, and the capture of what safepredict says."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folder = root
        self.records: list[logging.LogRecord] = []
        self._fixtures: dict[str, Any] = {}

    def fixture(self, framework: str) -> Any:
        if framework not in self._fixtures:
            from safepredict.demo.fixtures import get_fixture

            self._fixtures[framework] = get_fixture(framework)
        return self._fixtures[framework]

    @contextlib.contextmanager
    def scenario(self, scenario: Scenario) -> Iterator[None]:
        from safepredict._logging import reset_rate_limits

        self.folder = self.root / scenario.id
        self.folder.mkdir(parents=True, exist_ok=True)
        self.records = []
        reset_rate_limits()
        handler = _Collect(self.records)
        logger = logging.getLogger("safepredict")
        old_level = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the same messages also arrive as SafePredictWarning
                yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old_level)

    def logged(self, code: str, startswith: str = "") -> list[str]:
        """The records of ``code`` (whose message starts with ``startswith``), as the page quotes them."""
        return [
            f"WARNING [{code}] {r.getMessage()}"
            for r in self.records
            if getattr(r, "safepredict_code", None) == code and r.getMessage().startswith(startswith)
        ]

    def sanitize(self, text: str) -> str:
        """Paths as a reader sees them: relative to the scenario's folder, the fixtures' folder as ``output/``."""
        for fx in self._fixtures.values():
            text = text.replace(str(fx.output_dir), "output")
            text = text.replace(str(fx.dataset.root), "data")
        text = text.replace(str(self.folder) + os.sep, "").replace(str(self.folder), ".")
        return text.replace(str(self.root), "..")


class _Collect(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.INFO)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


def raised(call: Callable[[], Any]) -> str:
    """What ``call`` raised, as the page quotes it (``ErrorClass: str(error)``)."""
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the error is the message to quote
        return f"{type(exc).__name__}: {exc}"
    raise AssertionError("expected an error, none was raised")


# -- building the mistakes -------------------------------------------------------------------


def d2_config(ctx: Context, name: str, **changes: Any) -> Path:
    """The Detectron2 training config with ``changes`` (``MODEL__PIXEL_MEAN=...``), as a user's inference yaml."""
    from detectron2.config import get_cfg

    fx = ctx.fixture("detectron2")
    cfg = get_cfg()
    cfg.merge_from_file(str(fx.config))
    cfg.MODEL.WEIGHTS = str(fx.checkpoint)
    cfg.MODEL.DEVICE = "cpu"
    for key, value in changes.items():
        node = cfg
        *parents, leaf = key.split("__")
        for part in parents:
            node = getattr(node, part)
        setattr(node, leaf, value)
    path = ctx.folder / name
    path.write_text(cfg.dump())
    return path


def mmdet_config(ctx: Context, name: str, edit: Callable[[Any], None]) -> Path:
    """The MMDetection training config edited by ``edit``, dumped as a user's inference config."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(ctx.fixture("mmdet").config))
    edit(cfg)
    path = ctx.folder / name
    cfg.dump(str(path))
    return path


def lonely_checkpoint(ctx: Context, framework: str) -> Path:
    """A copy of the checkpoint with nothing beside it (no config.yaml)."""
    fx = ctx.fixture(framework)
    run = ctx.folder / "run"
    run.mkdir(exist_ok=True)
    path = run / fx.checkpoint.name
    shutil.copyfile(fx.checkpoint, path)
    return path


def predictor(ctx: Context, framework: str, config: Any = None, **kwargs: Any) -> Any:
    from safepredict import SafePredictor

    fx = ctx.fixture(framework)
    kwargs.setdefault("class_names", fx.class_names)
    return SafePredictor.from_checkpoint(kwargs.pop("checkpoint", fx.checkpoint), config=config, **kwargs)


def images(ctx: Context, framework: str, n: int = N_IMAGES) -> list[Path]:
    return list(ctx.fixture(framework).dataset.val_images[:n])


# -- the scenarios ---------------------------------------------------------------------------


def bgr_config(ctx: Context) -> list[str]:
    config = d2_config(ctx, "inference.yaml", INPUT__FORMAT="BGR")
    p = predictor(ctx, "detectron2", config, monitor=False)
    p.predict(images(ctx, "detectron2", 1)[0])
    return ctx.logged("contract.ignored", "input_format:")


def imagenet_mean_std_d2(ctx: Context) -> list[str]:
    config = d2_config(
        ctx,
        "inference.yaml",
        MODEL__PIXEL_MEAN=[103.53, 116.28, 123.675],
        MODEL__PIXEL_STD=[57.375, 57.12, 58.395],
    )
    predictor(ctx, "detectron2", config, monitor=False)
    return ctx.logged("contract.ignored", "pixel_")


def test_size(ctx: Context) -> list[str]:
    config = d2_config(ctx, "inference.yaml", INPUT__MIN_SIZE_TEST=1000, INPUT__MAX_SIZE_TEST=1200)
    predictor(ctx, "detectron2", config, monitor=False)
    return ctx.logged("contract.ignored", "resize.")


def high_threshold(ctx: Context) -> list[str]:
    """Seed 003's 0.99, raised to above every score this model gives these images, so it empties them all."""
    plain = predictor(ctx, "detectron2", monitor=False)
    paths = images(ctx, "detectron2")
    best = max(float(plain.predict_candidates(path)[1].scores.max(initial=0.0)) for path in paths)
    # Above every score, at 4 decimals: ceil keeps it above the best one.
    threshold = min(1.0, math.ceil(max(0.99, best + (1.0 - best) / 2) * 1e4) / 1e4)
    config = d2_config(ctx, "inference.yaml", MODEL__ROI_HEADS__SCORE_THRESH_TEST=threshold)
    p = predictor(ctx, "detectron2", config)
    empty = sum(p.predict(path).is_empty() for path in paths)
    assert empty == len(paths), f"{empty} of {len(paths)} images empty at {threshold}"
    return ctx.logged("contract.postprocessing", "score_threshold:") + ctx.logged("monitor.all_below_threshold")


def classes_into_d2(ctx: Context) -> list[str]:
    from safepredict import SafePredictor

    lonely = lonely_checkpoint(ctx, "detectron2")
    config = d2_config(ctx, "config.yaml", MODEL__ROI_HEADS__NUM_CLASSES=80)
    return [raised(lambda: SafePredictor.from_checkpoint(lonely, training_config=config, monitor=False))]


def depth_mmdet(ctx: Context) -> list[str]:
    from safepredict import SafePredictor

    def depth_50(cfg: Any) -> None:
        cfg.model.backbone.depth = 50

    config = mmdet_config(ctx, "my_config.py", depth_50)
    fx = ctx.fixture("mmdet")
    SafePredictor.from_mmdet(str(config), fx.checkpoint, monitor=False, class_names=fx.class_names)
    safe = ctx.logged("contract.ignored", "depth:")
    refused = raised(lambda: SafePredictor.from_checkpoint(fx.checkpoint, training_config=str(config), monitor=False))
    return [*safe, refused]


def imagenet_mean_std_mmdet(ctx: Context) -> list[str]:
    def imagenet(cfg: Any) -> None:
        cfg.model.data_preprocessor.mean = [123.675, 116.28, 103.53]
        cfg.model.data_preprocessor.std = [58.395, 57.12, 57.375]

    from safepredict import SafePredictor

    fx = ctx.fixture("mmdet")
    config = mmdet_config(ctx, "my_config.py", imagenet)
    SafePredictor.from_mmdet(str(config), fx.checkpoint, monitor=False, class_names=fx.class_names)
    return ctx.logged("contract.ignored", "pixel_")


def nms_mmdet(ctx: Context) -> list[str]:
    def nms(cfg: Any) -> None:
        cfg.model.test_cfg.rcnn.nms.iou_threshold = 0.7

    from safepredict import SafePredictor

    fx = ctx.fixture("mmdet")
    config = mmdet_config(ctx, "my_config.py", nms)
    SafePredictor.from_mmdet(str(config), fx.checkpoint, monitor=False, class_names=fx.class_names)
    return ctx.logged("contract.postprocessing", "nms_iou:")


def masks_from_boxes(ctx: Context) -> list[str]:
    p = predictor(ctx, "detectron2", monitor=False)
    path = images(ctx, "detectron2", 1)[0]
    return [raised(lambda: p.predict(path, masks=True))]


def early_snapshot(ctx: Context) -> list[str]:
    """An early snapshot: the trained weights saved as Detectron2's periodic checkpointer names them."""
    import torch

    fx = ctx.fixture("detectron2")
    state = torch.load(fx.checkpoint, map_location="cpu", weights_only=False)
    state["iteration"] = 49  # what `model_0000049.pth` holds after 50 of the schedule's iterations
    run = ctx.folder / "output"
    run.mkdir(exist_ok=True)
    torch.save(state, run / "model_0000049.pth")
    shutil.copyfile(fx.config, run / "config.yaml")
    predictor(ctx, "detectron2", checkpoint=run / "model_0000049.pth", monitor=True)
    return ctx.logged("monitor.undertrained")


def read_bgr(path: Path) -> Any:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read {path}")
    return image


def _stream(ctx: Context, seed: int, n: int) -> list[Path]:
    from safepredict.demo.data import DatasetSpec, generate

    ds = generate(ctx.folder / f"images-{seed}", DatasetSpec(seed=seed, num_train=0, num_val=n))
    return sorted(ds.val_dir.glob("*.png"))


def _profiled(ctx: Context) -> Any:
    """A predictor with a reference profile captured on the validation images, as `safepredict profile` does."""
    from safepredict.monitor import ReferenceProfile

    plain = predictor(ctx, "detectron2", monitor=False)
    profile = ReferenceProfile.build(
        (plain.predict_candidates(path) for path in ctx.fixture("detectron2").dataset.val_images),
        score_threshold=plain.score_threshold,
        class_names=plain.class_names,
        threshold_key=plain.threshold_key,
    )
    return predictor(ctx, "detectron2", reference=profile.save(ctx.folder / "safepredict-profile.json"))


def swapped_images(ctx: Context) -> list[str]:
    """Images written in the other channel order (an RGB array saved with cv2.imwrite), then diagnosed."""
    import cv2
    import numpy as np

    from safepredict.diagnose import diagnose

    fx = ctx.fixture("detectron2")
    folder = ctx.folder / "images"
    folder.mkdir(exist_ok=True)
    for path in images(ctx, "detectron2", 8):
        cv2.imwrite(str(folder / path.name), np.ascontiguousarray(read_bgr(path)[:, :, ::-1]))
    report = diagnose(fx.checkpoint, [folder], class_names=fx.class_names).describe().splitlines()
    # The report's head and its first (top-ranked) finding, through its docs line.
    end = next(i for i, line in enumerate(report) if line.strip().startswith("docs:"))
    return [f"$ safepredict diagnose output/{fx.checkpoint.name} images/\n" + "\n".join(report[: end + 1])]


def low_contrast_stream(ctx: Context) -> list[str]:
    import numpy as np

    p = _profiled(ctx)
    for path in _stream(ctx, 304, 50):
        img = read_bgr(path).astype(np.float32)
        p.predict(np.clip((img - img.mean()) * 0.3 + img.mean(), 0, 255).astype(np.uint8), color="BGR")
    return ctx.logged("monitor.input_contrast") + ctx.logged("monitor.input_grayscale")


def _check(ctx: Context, lock: Path) -> str:
    """`safepredict check LOCK` as a container entrypoint runs it: the command, its output, its exit code."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(
        [sys.executable, "-m", "safepredict", "check", lock.name],
        cwd=lock.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = (out.stdout + out.stderr).rstrip()
    return f"$ safepredict check {lock.name}\n{text}\n$ echo $?\n{out.returncode}"


def environment_drift(ctx: Context) -> list[str]:
    """A lock from the validation machine, where numpy and torch were other versions than here."""
    import tomli_w
    import tomllib

    from safepredict.lock import write_lock

    lock = ctx.folder / "safepredict.lock"
    write_lock(lock)
    doc = tomllib.loads(lock.read_text())
    doc["packages"]["torch"]["version"] = "2.4.1"
    doc["packages"]["numpy"]["version"] = "1.26.4"
    lock.write_text(tomli_w.dumps(doc))
    return [_check(ctx, lock)]


def changed_weights(ctx: Context) -> list[str]:
    """The weights the lock pins, re-saved by an export step: same tensors, another file."""
    import torch

    from safepredict.lock import write_lock

    fx = ctx.fixture("detectron2")
    model = ctx.folder / "model"
    model.mkdir(exist_ok=True)
    weights = model / "model_final.pth"
    shutil.copyfile(fx.checkpoint, weights)
    shutil.copyfile(fx.config, model / "config.yaml")
    write_lock(model / "safepredict.lock", weights=weights, config=model / "config.yaml")
    state = torch.load(weights, map_location="cpu", weights_only=False)
    state.pop("optimizer", None)  # an "export" that drops the optimizer state
    torch.save(state, weights)
    return [raised(lambda: predictor(ctx, "detectron2", checkpoint=weights, lock=model / "safepredict.lock"))]


_FINDING_HEAD = re.compile(r"^\s*\d+\. \[(?P<severity>\w+)\] (?P<code>[\w.]+) \((?P<subject>[^)]*)\):")
_COUNTS = re.compile(r"^\d+ errors?, \d+ warnings?, \d+ infos?$")


def diagnose_claims(body: str) -> str:
    """What a quoted diagnose report claims whatever model the recipe trained: the command, the report's
    head, and of the top-ranked finding its severity, code, subject, fix and docs line (numbers free).

    Not claimed: how many findings of each severity there are, the finding's headline and evidence (which
    measurement decided it, with which scores). Raises ``ValueError`` on a body with no finding.
    """
    lines = body.splitlines()
    first = next((i for i, line in enumerate(lines) if _FINDING_HEAD.match(line)), None)
    if first is None:
        raise ValueError("the quoted diagnose report has no finding")
    head = _FINDING_HEAD.match(lines[first])
    assert head is not None
    kept = [line for line in lines[:first] if not _COUNTS.match(line.strip())]
    kept.append(f"1. [{head['severity']}] {head['code']} ({head['subject']})")
    kept += [line.strip() for line in lines[first + 1 :] if line.strip().startswith(("fix:", "docs:"))]
    return comparable("\n".join(kept), True)


SCENARIOS = [
    Scenario("seed-001-bgr", "001, 003", "colour order in the inference config", bgr_config),
    Scenario("seed-001-mean-std", "001, 002", "ImageNet mean/std (Detectron2)", imagenet_mean_std_d2),
    Scenario("seed-000-mean-std", "000", "ImageNet mean/std (MMDetection)", imagenet_mean_std_mmdet),
    Scenario("seed-002-test-size", "002, 001, 004", "another test size", test_size),
    Scenario("seed-003-threshold", "003, 002", "score threshold too high", high_threshold, measured=True),
    Scenario("seed-000-nms", "000, 004", "another NMS threshold", nms_mmdet),
    Scenario("seed-000-backbone", "000", "a config with another backbone depth", depth_mmdet),
    Scenario("seed-002-classes", "000, 002", "a config with another number of classes", classes_into_d2),
    Scenario("seed-003-masks", "003", "masks asked of a box model", masks_from_boxes),
    Scenario("seed-002-undertrained", "002", "an early checkpoint", early_snapshot),
    Scenario(
        "seed-001-swapped-images",
        "001, 003",
        "images in the other channel order",
        swapped_images,
        measured=True,
        claims=diagnose_claims,
    ),
    # Numbers free: the statistics are read on a grid of each image (monitor/inputs.py), and the grid is the recipe's.
    Scenario("seed-002-low-contrast", "002", "low-contrast inputs", low_contrast_stream, measured=True),
    Scenario("seed-004-environment", "004", "another environment", environment_drift, measured=True),
    Scenario("seed-004-weights", "004", "the weights file changed", changed_weights, measured=True),
]
BY_ID = {s.id: s for s in SCENARIOS}


# -- the page --------------------------------------------------------------------------------


def render(messages: list[str]) -> str:
    """The body of a message block: one fenced block of what safepredict said."""
    return "```text\n" + "\n\n".join(m.rstrip() for m in messages) + "\n```\n"


_NUMBER = re.compile(r"(?<![A-Za-z_])[0-9a-f]{16,}|\d+(?:\.\d+)*(?:e-?\d+)?%?")


def comparable(body: str, measured: bool) -> str:
    return _NUMBER.sub("#", body) if measured else body


def same_claims(scenario: Scenario, quoted: str, produced: str) -> bool:
    """Whether what safepredict says now still bears out what the page quotes for ``scenario``."""
    if scenario.claims is not None:
        try:
            return scenario.claims(quoted) == scenario.claims(produced)
        except ValueError:
            return False
    return comparable(quoted, scenario.measured) == comparable(produced, scenario.measured)


def run_scenarios(ids: list[str], root: Path) -> dict[str, str]:
    ctx = Context(root)
    out = {}
    for sid in ids:
        scenario = BY_ID[sid]
        start = time.monotonic()
        with ctx.scenario(scenario):
            messages = [ctx.sanitize(m) for m in scenario.run(ctx)]
        if not messages:
            raise SystemExit(f"{sid}: the scenario produced no message: safepredict said nothing")
        out[sid] = render(messages)
        print(f"{sid}: {len(messages)} message(s), {time.monotonic() - start:.1f} s", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a quoted message differs from what is produced now")
    ap.add_argument("--only", nargs="+", metavar="ID", help="run these scenarios only")
    ap.add_argument("--list", action="store_true", help="list the scenarios")
    ap.add_argument("--page", type=Path, default=PAGE, help="the page (default docs/troubleshooting.md)")
    args = ap.parse_args(argv)
    if args.list:
        for s in SCENARIOS:
            print(f"{s.id:26} seeds {s.seeds:14} {s.title}")
        return 0
    os.environ.setdefault("SAFEPREDICT_TORCH_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(int(os.environ["SAFEPREDICT_TORCH_THREADS"]))
    except ImportError:
        pass

    text = args.page.read_text(encoding="utf-8")
    quoted = {m.group("id"): m.group("body") for m in BLOCK.finditer(text)}
    unknown = sorted(set(quoted) - set(BY_ID))
    missing = [s.id for s in SCENARIOS if s.id not in quoted]
    problems = [f"{sid}: quoted on the page, but no scenario produces it" for sid in unknown]
    problems += [f"{sid}: a scenario with no block on the page (add `<!-- message: {sid} -->`)" for sid in missing]
    ids = [sid for sid in (args.only or [s.id for s in SCENARIOS]) if sid in quoted and sid in BY_ID]
    with tempfile.TemporaryDirectory(prefix="safepredict-troubleshooting-") as tmp:
        produced = run_scenarios(ids, Path(tmp))

    if args.check:
        for sid, body in produced.items():
            measured = BY_ID[sid].measured
            if not same_claims(BY_ID[sid], quoted[sid], body):
                diff = "".join(
                    difflib.unified_diff(
                        quoted[sid].splitlines(keepends=True), body.splitlines(keepends=True), "on the page", "now"
                    )
                )
                problems.append(f"{sid}: the message differs{' (numbers aside)' if measured else ''}:\n{diff}")
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print(f"\n{len(problems)} problem(s): run `python scripts/troubleshooting.py` to rewrite", file=sys.stderr)
            return 1
        print(f"{args.page.name}: {len(produced)} quoted message blocks are what safepredict says now")
        return 0

    def replace(m: re.Match[str]) -> str:
        body = produced.get(m.group("id"), m.group("body"))
        return m.group(1) + body + m.group(4)

    args.page.write_text(BLOCK.sub(replace, text), encoding="utf-8")
    print(f"wrote {len(produced)} message blocks into {args.page}")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
