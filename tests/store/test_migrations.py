from __future__ import annotations

import threading
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool

from soma.store import Store
from soma.store.store import MIGRATIONS_DIR, _normalize_url
from soma.store.tables import Base

TABLES = {
    "projects",
    "nodes",
    "events",
    "reviews",
    "activity_results",
    "alembic_version",
    "market_versions",
    "market_trust",
    "tenant_secrets",
}


def _head() -> str | None:
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def test_open_twice_is_idempotent_and_keeps_data(store_url: str) -> None:
    with Store.open(store_url) as store:
        store.create_project("p1", "goal")
    with Store.open(store_url) as store:
        assert store.get_project("p1").goal == "goal"
    engine = create_engine(store_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) >= TABLES
            assert MigrationContext.configure(conn).get_current_revision() == _head()
    finally:
        engine.dispose()


def test_schema_matches_models(store_url: str) -> None:
    """The ORM models and the migrations describe the same schema (no forgotten revision)."""
    Store.open(store_url).close()
    engine = create_engine(store_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_concurrent_opens_on_a_fresh_database(store_url: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def work() -> None:
        try:
            barrier.wait()
            Store.open(store_url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_sqlite_creates_parent_dir_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "soma.db"
    with Store.open(f"sqlite:///{path}") as store:
        assert path.exists()
        with store._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_in_memory_sqlite(tmp_path: Path) -> None:
    with Store.open("sqlite://") as store:
        store.create_project("p1", "goal")
        assert store.get_project("p1").id == "p1"


def test_plain_postgresql_url_gets_psycopg() -> None:
    assert _normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert _normalize_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert _normalize_url("sqlite:///x.db").drivername == "sqlite"


def test_migration_files_ship_in_the_package() -> None:
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
    assert _head() == "0010"
