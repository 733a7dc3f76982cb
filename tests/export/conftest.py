"""Fixtures of the export tests: this test's NATS stream, and a store of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from soma.store import Store
from tests.export import Bus, open_bus


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    async with open_bus() as opened:
        yield opened


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path}/s.db") as opened:
        yield opened
