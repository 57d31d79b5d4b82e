"""Detectron2 training configs read once per process: a hit is keyed by the file's bytes, never a skipped check."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from detectron2.config import get_cfg

from safepredict.errors import UntrustedCodeError
from safepredict.frameworks import config_cache, safe_yaml
from safepredict.frameworks.detectron2.contract import load_config, read_contract


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The guarded reads of yacs files that really happen (safe_yaml.read_yacs, counted), from an empty cache."""
    seen: list[str] = []
    real = safe_yaml.read_yacs

    def counted(filename: Any) -> dict[str, Any]:
        seen.append(str(filename))
        return real(filename)

    monkeypatch.setattr(safe_yaml, "read_yacs", counted)
    config_cache.clear()
    yield seen
    config_cache.clear()


def _training_config(path: Path, min_size: int = 640) -> Path:
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TEST = min_size
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.3
    path.write_text(cfg.dump())
    return path


def test_the_same_bytes_are_read_once_and_give_an_equal_contract(tmp_path, reads):
    path = _training_config(tmp_path / "config.yaml")
    first = read_contract(path)
    again = read_contract(path)
    assert len(reads) == 1  # the second construction skipped the guarded read and the merge
    assert again == first and again.describe() == first.describe()
    a, _ = load_config(path)
    b, _ = load_config(path)
    assert a.dump() == b.dump() and a is not b and len(reads) == 1


def test_a_changed_file_is_read_again(tmp_path, reads):
    path = _training_config(tmp_path / "config.yaml", min_size=640)
    assert load_config(path)[0].INPUT.MIN_SIZE_TEST == 640
    _training_config(path, min_size=512)
    assert load_config(path)[0].INPUT.MIN_SIZE_TEST == 512
    assert len(reads) == 2


def test_new_bytes_at_a_cached_path_are_checked_again(tmp_path, reads):
    path = _training_config(tmp_path / "config.yaml")
    load_config(path)
    path.write_text(path.read_text() + 'EXTRA: !!python/object/apply:os.system ["true"]\n')
    with pytest.raises(UntrustedCodeError):
        load_config(path)


def test_what_a_hit_gives_is_a_copy(tmp_path, reads):
    path = _training_config(tmp_path / "config.yaml")
    cfg, _ = load_config(path)
    cfg.INPUT.MIN_SIZE_TEST = 1
    assert load_config(path)[0].INPUT.MIN_SIZE_TEST == 640


def test_a_trusted_read_is_not_served_to_an_untrusted_one(tmp_path, reads):
    path = _training_config(tmp_path / "config.yaml")
    load_config(path, trust=True)  # Detectron2's own merge_from_file: not the safe reader
    assert reads == []
    load_config(path)
    assert len(reads) == 1


def test_a_config_with_bases_is_read_every_time(tmp_path, reads):
    _training_config(tmp_path / "base.yaml")
    child = tmp_path / "config.yaml"
    child.write_text("_BASE_: base.yaml\nINPUT:\n  MIN_SIZE_TEST: 800\n")
    assert load_config(child)[0].INPUT.MIN_SIZE_TEST == 800
    assert load_config(child)[0].MODEL.ROI_HEADS.SCORE_THRESH_TEST == pytest.approx(0.3)
    assert len(reads) == 2  # its result depends on base.yaml's bytes too: never cached


def test_the_cache_is_bounded(tmp_path, reads):
    for i in range(config_cache.MAX_ENTRIES + 3):
        load_config(_training_config(tmp_path / f"config{i}.yaml", min_size=600 + i))
    first = tmp_path / "config0.yaml"
    load_config(first)
    assert reads.count(str(first)) == 2  # the oldest was dropped
