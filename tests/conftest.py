"""Fixtures shared by every test package."""

from __future__ import annotations

import pytest

from ireid.core.records import Record
from tests.helpers import make_record


@pytest.fixture
def records() -> list[Record]:
    return [make_record(i) for i in range(10)]
