"""Session fixtures: real models trained with each framework's own trainer (cached per machine)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _no_skip import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401 - hooks, found by name

from safepredict.demo.fixtures import Fixture, get_fixture


@pytest.fixture(scope="session")
def d2_fixture() -> Fixture:
    return get_fixture("detectron2")


@pytest.fixture(scope="session")
def mmdet_fixture() -> Fixture:
    return get_fixture("mmdet")


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private cache for the automatic references of one test module, with the switch turned on."""
    folder = tmp_path_factory.mktemp("references")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAFEPREDICT_REFERENCES", str(folder))
        mp.setenv("SAFEPREDICT_AUTO_REFERENCE", "1")
        yield folder


@pytest.fixture(scope="session", autouse=True)
def _torch_threads() -> None:
    """One intra-op thread: with 2 cores and other work running, OpenMP's spinning threads make a
    2-thread forward 10-20x slower; SAFEPREDICT_TORCH_THREADS changes it."""
    import os

    try:
        import torch
    except ImportError:  # the pure-numpy tests (lock, monitor) do not need it
        return
    torch.set_num_threads(int(os.environ.get("SAFEPREDICT_TORCH_THREADS", "1")))


@pytest.fixture(autouse=True)
def _fresh_warning_limits() -> None:
    """Each test starts with empty warning rate-limit windows (safepredict._logging)."""
    from safepredict._logging import reset_rate_limits

    reset_rate_limits()
