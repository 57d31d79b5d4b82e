"""Session fixtures: real models trained with each framework's own trainer (cached per machine)."""

from __future__ import annotations

import pytest

from safepredict.demo.fixtures import Fixture, get_fixture


@pytest.fixture(scope="session")
def d2_fixture() -> Fixture:
    return get_fixture("detectron2")


@pytest.fixture(scope="session")
def mmdet_fixture() -> Fixture:
    return get_fixture("mmdet")
