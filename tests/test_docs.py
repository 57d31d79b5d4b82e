"""The documentation site: generated pages are what the code produces now, and the site builds.

- ``docs/cli.md`` is every parser's ``--help`` (``scripts/gen_cli_docs.py``);
- every message ``docs/troubleshooting.md`` quotes is what safepredict says when the mistake is
  made with the real trained fixtures (``scripts/troubleshooting.py --check``, about a minute);
- ``mkdocs build --strict`` passes: no broken link, no page outside the navigation, every API
  page renders from the docstrings.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"


def _script(name: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "SAFEPREDICT_TORCH_THREADS": os.environ.get("SAFEPREDICT_TORCH_THREADS", "1"),
    }
    return subprocess.run(
        [sys.executable, str(SCRIPTS / name), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the command-line reference -----------------------------------------------------------------


def test_cli_reference_is_what_the_parsers_print() -> None:
    out = _script("gen_cli_docs.py", "--check", timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_cli_reference_covers_every_command_and_the_exit_codes() -> None:
    from safepredict import cli

    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    for name in cli.COMMANDS:
        assert f"\n## safepredict {name}\n" in text, name
    for code in (cli.EXIT_OK, cli.EXIT_FINDING, cli.EXIT_USAGE, cli.EXIT_INTERNAL):
        assert f"\n| {code} | " in text


def test_cli_reference_check_fails_on_a_stale_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")  # render() sets it for argparse: restored after the test
    gen = _module("gen_cli_docs")
    stale = tmp_path / "cli.md"
    stale.write_text(gen.render().replace("--strict", "--stricter"), encoding="utf-8")
    monkeypatch.setattr(gen, "CLI_MD", stale)
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0 and gen.main(["--check"]) == 0  # rewritten, it is current again


# -- the troubleshooting page -------------------------------------------------------------------


@pytest.mark.slow
def test_troubleshooting_quotes_what_safepredict_says_now(d2_fixture, mmdet_fixture) -> None:
    out = _script("troubleshooting.py", "--check")
    assert out.returncode == 0, out.stdout + out.stderr[-6000:]


def test_troubleshooting_names_blocks_without_a_scenario_and_scenarios_without_a_block(tmp_path: Path) -> None:
    ts = _module("troubleshooting")
    page = tmp_path / "page.md"
    page.write_text("<!-- message: seed-999-unknown -->\n```text\nx\n```\n<!-- /message -->\n")
    out = _script("troubleshooting.py", "--check", "--page", str(page), "--only", "seed-999-unknown", timeout=120)
    assert out.returncode == 1
    assert "seed-999-unknown: quoted on the page, but no scenario produces it" in out.stderr
    for scenario in ts.SCENARIOS:
        assert f"{scenario.id}: a scenario with no block on the page" in out.stderr


@pytest.mark.slow
def test_troubleshooting_check_fails_when_a_message_changes(d2_fixture, tmp_path: Path) -> None:
    real = (REPO / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    page = tmp_path / "troubleshooting.md"
    page.write_text(real.replace("it was trained with heads ['box']", "it was trained with heads ['mask']"))
    out = _script("troubleshooting.py", "--check", "--page", str(page), "--only", "seed-003-masks", timeout=300)
    assert out.returncode == 1
    assert "seed-003-masks: the message differs" in out.stderr
    assert "+UnsupportedOutputError: this model cannot produce masks: it was trained with heads ['box']" in out.stderr


def test_measured_numbers_are_compared_free_words_are_not() -> None:
    ts = _module("troubleshooting")
    a = "found 2.14.1 (pip distribution torch), sha256 f1467820909ada78500805cd7bcc47e6, 24 of 50 images"
    b = "found 2.15.0 (pip distribution torch), sha256 0123456789abcdef0123456789abcdef, 31 of 50 images"
    assert ts.comparable(a, True) == ts.comparable(b, True)
    assert ts.comparable(a, False) != ts.comparable(b, False)
    assert ts.comparable(a, True) != ts.comparable(a.replace("pip", "conda"), True)


# -- the site -----------------------------------------------------------------------------------


def test_site_builds_strict(tmp_path: Path) -> None:
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(module, reason="the docs tools come from scripts/requirements-test.txt")
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    api = (tmp_path / "site" / "reference" / "safepredictor" / "index.html").read_text(encoding="utf-8")
    assert "from_checkpoint" in api and "predict_batch" in api  # rendered from the docstrings
    assert ":meth:" not in api  # Sphinx roles are rendered as code
    assert (tmp_path / "site" / "cli" / "index.html").is_file()


def test_a_diagnose_report_is_compared_by_what_the_page_claims() -> None:
    ts = _module("troubleshooting")
    page = (REPO / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    quoted = {m.group("id"): m.group("body") for m in ts.BLOCK.finditer(page)}["seed-001-swapped-images"]
    scenario = ts.BY_ID["seed-001-swapped-images"]
    lines = quoted.splitlines()
    counts = next(i for i, line in enumerate(lines) if ts._COUNTS.match(line.strip()))
    # Another trained model: other counts of each severity, another headline and evidence.
    retrained = list(lines)
    retrained[counts] = "1 error, 0 warnings, 3 infos"
    head = next(i for i, line in enumerate(lines) if ts._FINDING_HEAD.match(line))
    retrained[head] = lines[head].split("):")[0] + "): these images look BGR, by their class shares"
    retrained[head + 1] = "     as given: 3 of 9 objects change class"
    assert ts.same_claims(scenario, quoted, "\n".join(retrained))
    # What the page claims: the finding ranked first, its severity, its fix.
    for wrong in (
        lines[head].replace("[error]", "[warning]"),
        lines[head].replace("probe.channel_order", "probe.mean_std"),
    ):
        assert not ts.same_claims(scenario, quoted, "\n".join([*lines[:head], wrong, *lines[head + 1 :]]))
    fix = next(i for i, line in enumerate(lines) if line.strip().startswith("fix:"))
    changed_fix = [*lines[:fix], lines[fix].replace("COLOR_BGR2RGB", "COLOR_RGB2BGR"), *lines[fix + 1 :]]
    assert not ts.same_claims(scenario, quoted, "\n".join(changed_fix))
    assert not ts.same_claims(scenario, quoted, "\n".join(lines[:head]))  # no finding at all
