"""Fixtures shared by every test package."""

from __future__ import annotations

from pathlib import Path

import pytest

from ireid.core.records import Record
from tests.helpers import make_record


@pytest.fixture
def records() -> list[Record]:
    return [make_record(i) for i in range(10)]


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic world shared by the tests that train or index (12/4/6 ids × 2 images)."""
    from ireid.core.synthetic.world import build_world

    out = tmp_path_factory.mktemp("tiny_world")
    build_world(out, ids_train=12, ids_val=4, ids_test=6, images_per_id=2, seed=0, progress=False)
    return out
