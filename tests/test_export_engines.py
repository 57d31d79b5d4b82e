"""The engine seam: the ONNX Runtime engine and the predictor's helpers import one way only.

The onnxruntime engine (``safepredict.engines``) imports neither torch nor a framework at module
level; the predictor assembles itself from the parts an engine's builder hands over
(``frameworks.build.framework_parts``, ``engines.onnx_predictor.onnx_parts``) and imports none of
the framework path's helpers (``workers``, ``autoref``, ``bundle``, the lock check), which are handed
the predictor (or its class) instead of importing it back: no import circle runs through them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "safepredict"


def _imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


@pytest.mark.parametrize("helper", ["workers.py", "autoref.py", "bundle.py"])
def test_the_predictors_helpers_do_not_import_it_back(helper):
    imports = _imports(PACKAGE / helper)
    assert not {m for m in imports if m.startswith("safepredict.predictor")}, sorted(imports)


def test_the_predictor_imports_no_engine_s_helpers():
    """The seam: each engine's builder brings its helpers (the framework path: bundle, lock check,
    automatic reference, worker processes); the predictor only assembles the parts."""
    imports = _imports(PACKAGE / "predictor.py")
    helpers = ("safepredict.workers", "safepredict.autoref", "safepredict.bundle", "safepredict.lock")
    assert not {m for m in imports if m.startswith(helpers)}, sorted(imports)
    assert {"safepredict.frameworks.build.framework_parts", "safepredict.engines.onnx_predictor.onnx_parts"} <= imports


def test_both_builders_hand_over_the_same_parts(d2_fixture, tmp_path):
    from safepredict.engines.onnx_predictor import onnx_parts
    from safepredict.engines.parts import Parts
    from safepredict.frameworks.build import framework_parts

    torch_parts = framework_parts(checkpoint=d2_fixture.checkpoint, device="cpu", monitor=False)
    from safepredict import SafePredictor

    predictor = SafePredictor.from_checkpoint(d2_fixture.checkpoint, monitor=False)
    onnx = onnx_parts(predictor.export(tmp_path / "model.onnx"), monitor=False)
    for parts in (torch_parts, onnx):
        assert isinstance(parts, Parts)
        assert parts.applied_contract.pixel_mean == predictor.applied_contract.pixel_mean
        assert parts.engine.score_threshold == predictor.score_threshold
    # The framework path brings the automatic reference only with a monitor; an export never needs one.
    assert framework_parts(checkpoint=d2_fixture.checkpoint, device="cpu").automatic_reference is not None
    assert torch_parts.automatic_reference is None and onnx.automatic_reference is None


@pytest.mark.parametrize("module", sorted(p.name for p in (PACKAGE / "engines").glob("*.py")))
def test_the_engines_import_no_torch_or_framework_at_module_level(module):
    imports = _imports(PACKAGE / "engines" / module, top_level_only=True)
    heavy = {m for m in imports if m.split(".")[0] in {"torch", "torchvision", "detectron2", "mmdet", "mmcv"}}
    assert not heavy and not {m for m in imports if m.startswith("safepredict.frameworks.")} - {
        "safepredict.frameworks.artifact"
    }, sorted(imports)


def test_the_engines_do_not_import_the_predictor():
    for path in (PACKAGE / "engines").glob("*.py"):
        imports = _imports(path)
        assert not {m for m in imports if m.startswith("safepredict.predictor")}, (path.name, sorted(imports))


def test_both_engines_offer_what_the_predictor_calls(d2_fixture, tmp_path):
    from safepredict import SafePredictor
    from safepredict.engines.base import Engine

    torch_side = SafePredictor.from_checkpoint(d2_fixture.checkpoint, monitor=False)
    onnx_side = SafePredictor.from_onnx(torch_side.export(tmp_path / "model.onnx"), monitor=False)
    for predictor in (torch_side, onnx_side):
        assert isinstance(predictor._adapter, Engine), type(predictor._adapter)
        result = predictor._adapter.run(predictor.load(d2_fixture.dataset.val_images[0]))
        assert len(result.final) <= len(result.candidates)
