"""The package's import rules, read from the source with ``ast`` (every import, also inside functions).

- neutral values know no framework: ``contract/``, ``detections``, ``images``, ``lock/`` and
  ``monitor/`` import nothing from ``safepredict.frameworks`` and no framework package;
- data flows one way: no library module imports the CLI, the demo or a ``commands`` module;
- nothing under ``safepredict/`` imports from ``tests/``;
- no import circle runs through the predictor (issue 23's engine seam): nothing it imports, even
  inside a function, imports it back.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "safepredict"

NEUTRAL = (
    "safepredict.contract",
    "safepredict.detections",
    "safepredict.images",
    "safepredict.lock",
    "safepredict.monitor",
)
FRAMEWORK_PACKAGES = ("detectron2", "mmdet", "mmengine", "mmcv", "torch", "torchvision")
# Modules of the command-line layer: they may import anything, nothing below them imports them.
CLI_LAYER = ("safepredict.cli", "safepredict.__main__", "safepredict.demo")


@attrs.frozen
class Violation:
    module: str
    line: int
    imported: str
    rule: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.imported} ({self.rule})"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:  # ``from safepredict import cli`` imports a module too
                yield node.lineno, f"{base}.{alias.name}"


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _is_commands(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last == "commands" or last.endswith("_commands")


def violations(root: Path = PACKAGE) -> list[Violation]:
    """Every import in the package under ``root`` that breaks one of the rules above."""
    found = []
    for path in sorted(root.rglob("*.py")):
        module = _module_name(path, root)
        cli_layer = _within(module, CLI_LAYER) or _is_commands(module)
        neutral = _within(module, NEUTRAL)
        for line, imported in _imports(path, module):
            if imported.split(".")[0] == "tests" or imported.startswith("_synthetic"):
                found.append(Violation(module, line, imported, "the library never imports the tests"))
            if neutral and _within(imported, ("safepredict.frameworks",)):
                found.append(Violation(module, line, imported, "neutral values import no framework layer"))
            if neutral and _within(imported, FRAMEWORK_PACKAGES):
                found.append(Violation(module, line, imported, "neutral values import no framework"))
            if not cli_layer and (_within(imported, CLI_LAYER) or _is_commands(imported)):
                found.append(Violation(module, line, imported, "library modules import no CLI, demo or commands"))
    return found


def test_the_package_keeps_its_import_rules() -> None:
    broken = violations()
    assert not broken, "\n".join(map(str, broken))


def test_the_rules_are_checked_on_every_import_form(tmp_path: Path) -> None:
    """A package that breaks each rule once, in each import form, is caught every time."""
    root = tmp_path / "safepredict"
    (root / "contract").mkdir(parents=True)
    (root / "monitor").mkdir()
    (root / "frameworks").mkdir()
    for folder in (root, root / "contract", root / "monitor", root / "frameworks"):
        (folder / "__init__.py").write_text("")
    (root / "contract" / "values.py").write_text("from safepredict.frameworks.base import Adapter\n")
    (root / "monitor" / "stats.py").write_text("def f():\n    import torch\n    from ..frameworks import artifact\n")
    (root / "predictor.py").write_text("from safepredict import cli\nfrom safepredict.demo import fixtures\n")
    (root / "images.py").write_text("from tests._synthetic import Stream\n")
    (root / "folder.py").write_text("from safepredict.diagnose.commands import register\n")
    (root / "folder_commands.py").write_text("from safepredict.diagnose.commands import register\n")  # allowed
    broken = {(v.module, v.imported) for v in violations(root)}
    assert broken == {
        ("safepredict.contract.values", "safepredict.frameworks.base"),
        ("safepredict.contract.values", "safepredict.frameworks.base.Adapter"),
        ("safepredict.monitor.stats", "torch"),
        ("safepredict.monitor.stats", "safepredict.frameworks"),
        ("safepredict.monitor.stats", "safepredict.frameworks.artifact"),
        ("safepredict.predictor", "safepredict.cli"),
        ("safepredict.predictor", "safepredict.demo"),
        ("safepredict.predictor", "safepredict.demo.fixtures"),
        ("safepredict.images", "tests._synthetic"),
        ("safepredict.images", "tests._synthetic.Stream"),
        ("safepredict.folder", "safepredict.diagnose.commands"),
    }


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Each module of the package under ``root`` -> the modules of it that it imports, anywhere.

    ``from a import b`` imports the module ``a.b`` where there is one, else ``a`` (``b`` is a name in
    it); a package's ``__init__`` that a submodule's import runs is not counted as an edge.
    """
    paths = {_module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        by_statement: dict[int, list[str]] = {}
        for line, imported in _imports(path, module):
            by_statement.setdefault(line, []).append(imported)
        edges: set[str] = set()
        for names in by_statement.values():
            base, members = names[0], [n for n in names[1:] if n in paths]
            edges.update(members or ([base] if base in paths else []))
        graph[module] = {m for m in edges if m != module and not module.startswith(m + ".")}
    return graph


def import_circle(graph: dict[str, set[str]], module: str) -> list[str] | None:
    """A chain of imports from ``module`` back to itself, or None."""
    seen, stack = {module}, [[module]]
    while stack:
        chain = stack.pop()
        for nxt in sorted(graph.get(chain[-1], ())):
            if nxt == module:
                return [*chain, nxt]
            if nxt not in seen:
                seen.add(nxt)
                stack.append([*chain, nxt])
    return None


def test_no_import_circle_runs_through_the_predictor() -> None:
    graph = import_graph()
    assert graph["safepredict.predictor"], "the graph found no imports of the predictor"
    assert import_circle(graph, "safepredict.predictor") is None


def test_the_circle_check_follows_every_import_form(tmp_path: Path) -> None:
    """A circle through a function-level, a relative and a package import is found; a one-way chain is not."""
    root = tmp_path / "safepredict"
    (root / "export").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "predictor.py").write_text("def export():\n    from safepredict.export import export\n")
    (root / "export" / "__init__.py").write_text("def verify():\n    from .verify import run\n")
    (root / "export" / "verify.py").write_text("def run():\n    from safepredict import predictor\n")
    assert import_circle(import_graph(root), "safepredict.predictor") == [
        "safepredict.predictor",
        "safepredict.export",
        "safepredict.export.verify",
        "safepredict.predictor",
    ]
    (root / "export" / "verify.py").write_text("from safepredict.export import writer_name\n")
    assert import_circle(import_graph(root), "safepredict.predictor") is None


@pytest.mark.parametrize("neutral", NEUTRAL)
def test_each_neutral_room_exists(neutral: str) -> None:
    """A renamed room would make its rule vacuous: each neutral module is still there."""
    path = PACKAGE.parent / Path(*neutral.split("."))
    assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()
