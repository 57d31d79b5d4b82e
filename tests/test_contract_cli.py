"""``safepredict contract`` and ``safepredict.read_contract``: what a model saw at training, no model built.

On the trained fixtures: a Detectron2 checkpoint (``config.yaml`` beside it, class names from the
bundle's ``safepredict-classes.json``), an mmengine checkpoint (its embedded config), a config alone.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import attrs
import pytest

import safepredict
from safepredict.bundle import CLASSES_FILENAME
from safepredict.cli import main


@pytest.fixture(scope="module")
def d2_copy(d2_fixture, tmp_path_factory) -> Path:
    """The Detectron2 fixture's checkpoint with its config.yaml, and the class names a training hook writes."""
    root = tmp_path_factory.mktemp("d2")
    shutil.copy(d2_fixture.checkpoint, root / "model_final.pth")
    shutil.copy(d2_fixture.config, root / "config.yaml")
    (root / CLASSES_FILENAME).write_text(json.dumps({"class_names": list(d2_fixture.class_names)}))
    return root / "model_final.pth"


def test_read_contract_is_public_and_reads_checkpoints_and_configs(d2_fixture, mmdet_fixture, d2_copy) -> None:
    from safepredict.frameworks.artifact import discover
    from safepredict.frameworks.detectron2.contract import read_contract as read_d2

    assert "read_contract" in safepredict.__all__
    from_checkpoint = safepredict.read_contract(d2_copy)
    # The checkpoint's contract is its config.yaml's, with the progress the checkpoint records and the
    # class names the bundle records (a Detectron2 config names data sets, not classes).
    training = discover(d2_copy).training_contract
    assert from_checkpoint == attrs.evolve(training, class_names=d2_fixture.class_names)
    assert from_checkpoint.progress == training.progress and training.progress is not None
    assert CLASSES_FILENAME in from_checkpoint.notes["class_names"]
    config_alone = safepredict.read_contract(d2_fixture.config)
    assert config_alone.input_format == from_checkpoint.input_format and config_alone.progress is None
    assert config_alone == read_d2(d2_fixture.config)

    mm = safepredict.read_contract(mmdet_fixture.checkpoint)
    assert mm.source.endswith(":meta.cfg") and mm.class_names == mmdet_fixture.class_names
    assert mm == discover(mmdet_fixture.checkpoint).training_contract


def test_a_config_has_no_training_config_of_its_own(d2_fixture) -> None:
    with pytest.raises(safepredict.InputError, match="training_config= is for a checkpoint"):
        safepredict.read_contract(d2_fixture.config, training_config=d2_fixture.config)


def test_cli_prints_the_contract_with_where_each_value_came_from(d2_copy, capsys) -> None:
    assert main(["contract", str(d2_copy)]) == 0
    out = capsys.readouterr().out
    contract = safepredict.read_contract(d2_copy)
    assert out.startswith(contract.describe())
    for field in ("input_format", "resize.min_size", "score_threshold", "tta.enabled"):
        where = contract.where(field).removeprefix(f"{contract.source}: ")
        assert re.search(rf"^  {re.escape(field)} +{re.escape(where)}$", out, re.M), field
    assert "INPUT.FORMAT" in out and "TEST.AUG.ENABLED" in out and "test-time augmentation: off" in out


def test_cli_json_is_the_contract_as_data(d2_copy, mmdet_fixture, capsys) -> None:
    for path in (d2_copy, mmdet_fixture.checkpoint):
        assert main(["contract", str(path), "--json"]) == 0
        document = json.loads(capsys.readouterr().out)
        contract = safepredict.read_contract(path)
        assert document["framework"] == contract.framework and document["source"] == contract.source
        assert document["input_format"] == contract.input_format
        assert tuple(document["pixel_mean"]) == contract.pixel_mean
        assert document["resize"]["kind"] == contract.resize.kind
        assert document["tta"]["enabled"] is contract.tta.enabled is False
        assert document["class_names"] == list(contract.class_names or ())
        assert document["where"]["score_threshold"] == contract.where("score_threshold")
        assert document["keys"]["score_threshold"] == contract.key("score_threshold")


def test_cli_reads_a_checkpoint_whose_config_is_elsewhere(d2_fixture, tmp_path, capsys) -> None:
    alone = tmp_path / "model_final.pth"
    shutil.copy(d2_fixture.checkpoint, alone)
    assert main(["contract", str(alone), "--json"]) == 2
    err = capsys.readouterr().err
    assert "safepredict contract: error:" in err and "no config.yaml beside it" in err and "training_config=" in err
    assert main(["contract", str(alone), "--training-config", str(d2_fixture.config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["source"] == str(d2_fixture.config)
