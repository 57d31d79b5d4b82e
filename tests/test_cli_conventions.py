"""Every command follows the same conventions: examples in --help, -o for --out, --json that is one JSON document.

The JSON runs are real: the trained Detectron2 fixture, a real lock, a real golden set.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from safepredict.cli import COMMANDS, build_parser, main


def _command_parser(command: str) -> argparse.ArgumentParser:
    parser = build_parser([command])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_shows_examples_of_the_command(command: str) -> None:
    text = _command_parser(command).format_help()
    assert "examples:" in text, text
    examples = text.split("examples:", 1)[1]
    assert f"safepredict {command} " in examples or f"safepredict {command}\n" in examples


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_reports_as_json_and_out_has_a_short_form(command: str) -> None:
    options = _options(_command_parser(command))
    assert "--json" in options
    if "--out" in options:
        assert "-o" in options


def _json(capsys: pytest.CaptureFixture[str]) -> tuple[object, str]:
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err  # the whole of stdout is one document


@pytest.fixture(scope="module")
def model(d2_fixture, tmp_path_factory) -> Path:
    """The trained fixture's checkpoint and config, copied: the commands write beside the checkpoint."""
    root = tmp_path_factory.mktemp("model")
    shutil.copy(d2_fixture.checkpoint, root / d2_fixture.checkpoint.name)
    shutil.copy(d2_fixture.config, root / d2_fixture.config.name)
    return root / d2_fixture.checkpoint.name


@pytest.fixture(scope="module")
def images(d2_fixture, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("images")
    for path in d2_fixture.dataset.val_images[:4]:
        shutil.copy(path, out / path.name)
    return out


def test_lock_golden_and_check_replay_as_json(model: Path, images: Path, capsys) -> None:
    lock = model.parent / "safepredict.lock"
    assert main(["lock", "--weights", str(model), "-o", str(lock), "--json"]) == 0
    wrote, _ = _json(capsys)
    assert wrote["wrote"] == str(lock) and [f["role"] for f in wrote["files"]] == ["weights"]
    assert wrote["packages"] > 0

    assert main(["golden", str(model), str(images), "--lock", str(lock), "--json"]) == 0
    golden, err = _json(capsys)
    assert golden["ok"] is True and golden["images"] == 4 and golden["detections"] > 0
    assert golden["drifts"] == [] and "wrote" in err  # the "wrote ..." line moved to stderr

    assert main(["check", str(lock), "--replay", "--json"]) == 0
    report, _ = _json(capsys)
    assert report["ok"] is True and report["exit_code"] == 0 and report["format"] == "safepredict"
    assert report["replay"]["ok"] is True and report["replay"]["detections"] == golden["detections"]

    out = model.parent / "environment.yml"
    assert main(["export-conda", str(lock), "-o", str(out), "--json"]) == 0
    exported, _ = _json(capsys)
    assert set(exported) == {"wrote", "format", "recipe", "local_builds"} and out.is_file()
    assert (exported["wrote"], exported["format"]) == (str(out), "environment")


def test_profile_and_profile_show_as_json(model: Path, images: Path, capsys) -> None:
    out = model.parent / "profile.json"
    assert main(["profile", str(model), str(images), "-o", str(out), "--swapped", "2", "--json"]) == 0
    printed, err = _json(capsys)
    assert printed == json.loads(out.read_text()) and f"wrote {out}" in err
    assert printed["n_images"] == 4
    assert main(["profile-show", str(out), "--json"]) == 0
    shown, _ = _json(capsys)
    assert shown == printed


def test_predict_summary_as_json(d2_fixture, model: Path, images: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "preds.json"
    assert main(["predict", str(model), str(images), "-o", str(out), "--json", "--workers", "0"]) == 0
    summary, _ = _json(capsys)
    results = json.loads(out.read_text())
    assert summary["out"] == str(out) and summary["images"] == 4
    assert summary["detections"] == len(results) > 0 and summary["resumed"] == 0
    assert summary["monitor"]["images_total"] == 4
