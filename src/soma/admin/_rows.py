"""The store as rows: a dialect-neutral export and import of every table.

Tables go in dependency order (``Base.metadata.sorted_tables``: tenants before users before
keys, projects before nodes and events), rows as one JSON object per line. Values are read and
written through the ORM's column types, so timestamps come out as timezone-aware ISO 8601,
binary columns (sealed vault rows, embeddings, package archives) as base64, and JSON columns as
JSON: the same file loads into SQLite or PostgreSQL.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Connection,
    Engine,
    LargeBinary,
    Table,
    create_engine,
    delete,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from soma.store.records import DEFAULT_TENANT
from soma.store.store import MIGRATIONS_DIR
from soma.store.tables import Base, Tenant, UTCDateTime

TABLES: list[Table] = list(Base.metadata.sorted_tables)
_BATCH = 500


def engine_for(url: str) -> Engine:
    """A plain engine on the store at ``url`` (already migrated by ``Store.open``)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, poolclass=NullPool)


def head_revision() -> str:
    head = _scripts().get_current_head()
    assert head is not None
    return head


def known_revision(revision: str) -> bool:
    return revision in {script.revision for script in _scripts().walk_revisions()}


def _scripts() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    return ScriptDirectory.from_config(config)


def revision(conn: Connection) -> str:
    return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one())


def counts(conn: Connection) -> dict[str, int]:
    return {
        table.name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
        for table in TABLES
    }


def is_empty(conn: Connection) -> bool:
    """No rows anywhere but the ``default`` tenant that the migrations create."""
    for table, rows in counts(conn).items():
        if table == Tenant.__tablename__:
            ids = conn.execute(select(Tenant.__table__.c.id)).scalars().all()
            if set(ids) - {DEFAULT_TENANT}:
                return False
        elif rows:
            return False
    return True


def iter_rows(conn: Connection, table: Table) -> Iterator[dict[str, Any]]:
    """The table's rows as Python values, in primary-key order, streamed."""
    query = select(table).order_by(*table.primary_key.columns)
    result = conn.execution_options(stream_results=True, yield_per=_BATCH).execute(query)
    for row in result.mappings():
        yield dict(row)


def write_jsonl(rows: Iterable[Mapping[str, Any]], table: Table, out: IO[bytes]) -> int:
    written = 0
    for row in rows:
        encoded = {name: _encode(table, name, value) for name, value in row.items()}
        out.write(json.dumps(encoded, ensure_ascii=False, sort_keys=True).encode("utf-8"))
        out.write(b"\n")
        written += 1
    return written


def read_jsonl(path: Path, table: Table) -> Iterator[dict[str, Any]]:
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                data = json.loads(line)
                yield {name: _decode(table, name, value) for name, value in data.items()}


def clear(conn: Connection) -> None:
    """Delete every row of every table, children first."""
    for table in reversed(TABLES):
        conn.execute(delete(table))


def load(conn: Connection, table: Table, rows: Iterable[Mapping[str, Any]]) -> int:
    loaded = 0
    batch: list[Mapping[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= _BATCH:
            conn.execute(insert(table), batch)
            loaded += len(batch)
            batch = []
    if batch:
        conn.execute(insert(table), batch)
        loaded += len(batch)
    return loaded


def reset_sequences(conn: Connection) -> None:
    """PostgreSQL: move each identity/serial sequence past the ids that were loaded."""
    if conn.dialect.name != "postgresql":
        return  # SQLite derives the next rowid (and sqlite_sequence) from the rows
    for table in TABLES:
        column = table.autoincrement_column
        if column is None:
            continue
        conn.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence(:table, :column),"
                f' COALESCE(MAX("{column.name}"), 1), MAX("{column.name}") IS NOT NULL)'
                f' FROM "{table.name}"'
            ),
            {"table": table.name, "column": column.name},
        )


def _encode(table: Table, name: str, value: Any) -> Any:
    if value is None:
        return None
    kind = table.c[name].type
    if isinstance(kind, UTCDateTime) and isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def _decode(table: Table, name: str, value: Any) -> Any:
    if value is None or name not in table.c:
        return value
    kind = table.c[name].type
    if isinstance(kind, UTCDateTime):
        return datetime.fromisoformat(value)
    if isinstance(kind, LargeBinary):
        return base64.b64decode(value)
    return value
