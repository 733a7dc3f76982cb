"""Store fixtures, run against SQLite and PostgreSQL alike.

PostgreSQL isolation: one uniquely-named database per test session (dropped at the end) and one
schema per test inside it, selected through ``search_path`` in the URL, so parallel runs and
reruns never see each other's tables. Set ``SOMA_TEST_POSTGRES_URL`` to point elsewhere; when the
server is unreachable the PostgreSQL cases are skipped with the reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from soma.store import Store
from tests.postgres import scratch_database


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[URL]:
    """A fresh database for this test session, dropped afterwards."""
    with scratch_database("soma_test") as url:
        yield url


@pytest.fixture
def postgres_url(postgres_database: URL) -> Iterator[str]:
    """A URL whose connections work in a schema of this test's own."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(postgres_database, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with engine.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = postgres_database.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database; PostgreSQL is only touched by the tests that use it."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'soma.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as opened:
        yield opened
