"""The engine seam: the ONNX Runtime engine and the predictor's helpers import one way only.

The onnxruntime engine (``safepredict.engines``) imports neither torch nor a framework at module
level, and the helpers the predictor calls (``workers``, ``autoref``, ``bundle``) are handed the predictor (or
its class) instead of importing it back: no import circle runs through them.
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


def _module_graph() -> dict[str, set[str]]:
    """Every safepredict module -> the safepredict modules it imports anywhere (function bodies included)."""
    modules: dict[str, Path] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported = _imports(path)
        # "from safepredict.a import b" imports the module safepredict.a.b when there is one, else safepredict.a.
        targets = {m for m in imported if m in modules}
        targets -= {m.rpartition(".")[0] for m in targets if m.rpartition(".")[0] in targets}
        graph[name] = {m for m in targets if m != name and not name.startswith(m + ".")}
    return graph


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    """A path of imports from ``start`` to ``goal``, or None."""
    seen, stack = {start}, [[start]]
    while stack:
        path = stack.pop()
        for nxt in sorted(graph.get(path[-1], ())):
            if nxt == goal:
                return [*path, nxt]
            if nxt not in seen:
                seen.add(nxt)
                stack.append([*path, nxt])
    return None


def test_no_import_circle_runs_through_the_predictor():
    graph = _module_graph()
    assert graph["safepredict.predictor"], "the module graph found no imports of the predictor"
    assert _reaches(graph, "safepredict.predictor", "safepredict.predictor") is None


def test_the_circle_check_sees_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    assert _reaches(graph, "a", "a") == ["a", "b", "c", "a"]
    assert _reaches({"a": {"b"}, "b": set()}, "a", "a") is None


def test_both_engines_offer_what_the_predictor_calls(d2_fixture, tmp_path):
    from safepredict import SafePredictor
    from safepredict.engines.base import Engine

    torch_side = SafePredictor.from_checkpoint(d2_fixture.checkpoint, monitor=False)
    onnx_side = SafePredictor.from_onnx(torch_side.export(tmp_path / "model.onnx"), monitor=False)
    for predictor in (torch_side, onnx_side):
        assert isinstance(predictor._adapter, Engine), type(predictor._adapter)
        result = predictor._adapter.run(predictor.load(d2_fixture.dataset.val_images[0]))
        assert len(result.final) <= len(result.candidates)
