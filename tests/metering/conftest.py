from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from soma.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'soma.db'}") as opened:
        yield opened
