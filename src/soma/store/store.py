"""The store: the product's own record of projects, nodes, events, reviews, activity results
and the audit log of policy decisions (its methods live in :mod:`soma.store.audit`).

Temporal holds the durable execution; the store holds what people and tools ask about (list my
projects, show this node's output, what is waiting for review) so the CLI, gateway and console
never need to query workflow histories. It is also where activities record side-effect results
under an idempotency key, so a retry after a worker crash replays the result instead of the effect.

Threading: activities call the store from worker threads. A :class:`Store` owns one Engine (which
is thread-safe and pools connections) and opens a short-lived Session per call, so no ORM state
is ever shared between threads; callers only ever get frozen pydantic records back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, Unpack

from alembic import command
from alembic.config import Config
from pydantic import TypeAdapter
from sqlalchemy import Engine, Select, create_engine, event, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from soma.errors import Conflict, NotFound, SomaError
from soma.store.audit import AuditMixin
from soma.store.cursors import CursorMixin
from soma.store.identity import IdentityMixin
from soma.store.market import MarketMixin
from soma.store.memory import MemoryMixin
from soma.store.metering import MeteringMixin
from soma.store.notifications import NotificationsMixin
from soma.store.records import (
    DEFAULT_TENANT,
    NODE_TERMINAL,
    PROJECT_TERMINAL,
    EventRecord,
    NodeFields,
    NodeRecord,
    Planner,
    ProjectFields,
    ProjectRecord,
    ProjectStatus,
    ReviewRecord,
    ReviewStatus,
)
from soma.store.resources import ResourcesMixin
from soma.store.secrets import SecretsMixin
from soma.store.tables import ActivityResult, Event, Node, Project, Review, utcnow

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Any fixed 64-bit number: every process migrating the same PostgreSQL database takes this
# advisory lock first, so two workers starting at once do not both try to create the tables.
_PG_MIGRATION_LOCK = 0x536F6D6153746F72  # "SomaStor"; must fit a signed bigint
_SQLITE_BUSY_TIMEOUT_MS = 30_000
# Execution option that makes a SQLite transaction take the write lock up front (see _on_begin).
_WRITE = "soma_write"

_PROJECT_FIELDS: TypeAdapter[ProjectFields] = TypeAdapter(ProjectFields)
_NODE_FIELDS: TypeAdapter[NodeFields] = TypeAdapter(NodeFields)


class UsageTotals(NamedTuple):
    projects: int
    input_tokens: int
    output_tokens: int


class UsageShare(NamedTuple):
    """Tokens used under one name: a persona or a model spec (``None``: not recorded)."""

    name: str | None
    runs: int
    input_tokens: int
    output_tokens: int


class Store(
    IdentityMixin,
    AuditMixin,
    MarketMixin,
    SecretsMixin,
    MeteringMixin,
    NotificationsMixin,
    ResourcesMixin,
    CursorMixin,
    MemoryMixin,
):
    """Thread-safe access to the store database. Build it with :meth:`Store.open`."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._reads = sessionmaker(engine, expire_on_commit=False)
        # Same pool, but SQLite transactions begin with BEGIN IMMEDIATE (see _on_begin).
        self._writes = sessionmaker(
            engine.execution_options(**{_WRITE: True}), expire_on_commit=False
        )

    # -- lifecycle -----------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect to ``url`` (e.g. :attr:`Settings.store_url`) and migrate the schema to head.

        Opening is idempotent and safe to do from several processes at once: migrations are
        serialized by a database lock and a schema already at head is left alone.
        """
        engine = _create_engine(_normalize_url(url))
        try:
            upgrade(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def close(self) -> None:
        """Close the pooled connections. The store must not be used afterwards."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The database URL with any password masked (safe to log)."""
        return self._engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._reads() as session:
            yield session

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on any exception."""
        with self._writes.begin() as session:
            yield session

    # -- projects ------------------------------------------------------------------------------

    def create_project(
        self,
        project_id: str,
        goal: str,
        *,
        tenant_id: str = DEFAULT_TENANT,
        status: ProjectStatus = "pending",
        planner: Planner | None = None,
        plan: dict[str, Any] | None = None,
        workflow_id: str | None = None,
        workspace_path: str | None = None,
        model: str | None = None,
    ) -> ProjectRecord:
        """Record a new project. Ids are unique across tenants, so a taken id is a Conflict."""
        _PROJECT_FIELDS.validate_python(
            {"goal": goal, "status": status, "planner": planner, "plan": plan}
        )
        now = utcnow()
        project = Project(
            id=project_id,
            tenant_id=tenant_id,
            goal=goal,
            status=status,
            planner=planner,
            plan=plan,
            workflow_id=workflow_id,
            workspace_path=workspace_path,
            model=model,
            usage_input_tokens=0,
            usage_output_tokens=0,
            created_at=now,
            updated_at=now,
            finished_at=now if status in PROJECT_TERMINAL else None,
        )
        try:
            with self._write() as session:
                if session.get(Project, project_id) is not None:
                    raise _taken(project_id)
                session.add(project)
                session.flush()
                return ProjectRecord.model_validate(project)
        except IntegrityError as exc:  # lost a race with another creator of the same id
            raise _taken(project_id) from exc

    def get_project(self, project_id: str, tenant_id: str = DEFAULT_TENANT) -> ProjectRecord:
        """The project, or NotFound if it does not exist *for this tenant*."""
        with self._read() as session:
            return ProjectRecord.model_validate(_project(session, project_id, tenant_id))

    def project_tenant(self, project_id: str) -> str:
        """The tenant that owns a project, whoever asks.

        For the workers only: they are handed a project id by the engine and must act as its
        tenant. Never call this on behalf of a user request, which is scoped by its own tenant.
        """
        with self._read() as session:
            tenant = session.scalar(select(Project.tenant_id).where(Project.id == project_id))
        if tenant is None:
            raise NotFound(f"project {project_id!r} does not exist")
        return tenant

    def list_projects(
        self,
        tenant_id: str = DEFAULT_TENANT,
        limit: int = 50,
        *,
        status: ProjectStatus | None = None,
    ) -> list[ProjectRecord]:
        """The tenant's projects, newest first."""
        query = select(Project).where(Project.tenant_id == tenant_id)
        if status is not None:
            query = query.where(Project.status == status)
        query = query.order_by(Project.created_at.desc(), Project.id.desc()).limit(limit)
        with self._read() as session:
            return [ProjectRecord.model_validate(p) for p in session.scalars(query)]

    def update_project(
        self, project_id: str, *, tenant_id: str = DEFAULT_TENANT, **fields: Unpack[ProjectFields]
    ) -> ProjectRecord:
        """Set the given columns and return the updated project.

        ``fields`` are validated (unknown names and bad statuses raise pydantic's
        ValidationError). Moving to a terminal status stamps ``finished_at`` and moving back out
        of one clears it, unless ``finished_at`` is passed explicitly.
        """
        values = dict(_PROJECT_FIELDS.validate_python(fields))
        now = utcnow()
        with self._write() as session:
            project = _project(session, project_id, tenant_id, lock=True)
            if "status" in values and "finished_at" not in values:
                if values["status"] not in PROJECT_TERMINAL:
                    values["finished_at"] = None
                elif project.finished_at is None:
                    values["finished_at"] = now
            for name, value in values.items():
                setattr(project, name, value)
            project.updated_at = now
            session.flush()
            return ProjectRecord.model_validate(project)

    def add_usage(
        self,
        project_id: str,
        input_tokens: int,
        output_tokens: int,
        *,
        tenant_id: str = DEFAULT_TENANT,
    ) -> None:
        """Add token usage to the project's totals.

        An atomic ``UPDATE ... SET n = n + ?``, because nodes running in parallel finish at the
        same time and a read-modify-write through :meth:`update_project` would lose updates.
        """
        with self._write() as session:
            result = session.execute(
                update(Project)
                .where(Project.id == project_id, Project.tenant_id == tenant_id)
                .values(
                    usage_input_tokens=Project.usage_input_tokens + input_tokens,
                    usage_output_tokens=Project.usage_output_tokens + output_tokens,
                    updated_at=utcnow(),
                )
                .execution_options(synchronize_session=False)
            )
            if getattr(result, "rowcount", 0) == 0:
                raise _project_not_found(project_id, tenant_id)

    def usage_totals(self, tenant_id: str = DEFAULT_TENANT) -> UsageTotals:
        """Model tokens summed over all of the tenant's projects, in one query."""
        query = select(
            func.count(Project.id),
            func.coalesce(func.sum(Project.usage_input_tokens), 0),
            func.coalesce(func.sum(Project.usage_output_tokens), 0),
        ).where(Project.tenant_id == tenant_id)
        with self._read() as session:
            projects, tokens_in, tokens_out = session.execute(query).one()
        return UsageTotals(int(projects), int(tokens_in), int(tokens_out))

    def usage_by_persona(self, tenant_id: str = DEFAULT_TENANT) -> list[UsageShare]:
        """Tokens per persona over the tenant's runs (plan nodes), most used first."""
        query = (
            select(
                Node.persona,
                func.count(),
                func.coalesce(func.sum(Node.input_tokens), 0),
                func.coalesce(func.sum(Node.output_tokens), 0),
            )
            .where(Node.tenant_id == tenant_id)
            .group_by(Node.persona)
        )
        return self._shares(query)

    def usage_by_model(self, tenant_id: str = DEFAULT_TENANT) -> list[UsageShare]:
        """Tokens per model spec over the tenant's projects, most used first."""
        query = (
            select(
                Project.model,
                func.count(),
                func.coalesce(func.sum(Project.usage_input_tokens), 0),
                func.coalesce(func.sum(Project.usage_output_tokens), 0),
            )
            .where(Project.tenant_id == tenant_id)
            .group_by(Project.model)
        )
        return self._shares(query)

    def _shares(self, query: Select[str | None, int, int, int]) -> list[UsageShare]:
        with self._read() as session:
            rows = session.execute(query).all()
        shares = [UsageShare(name, int(n), int(i), int(o)) for name, n, i, o in rows]
        return sorted(shares, key=lambda s: (-(s.input_tokens + s.output_tokens), s.name or ""))

    # -- nodes ---------------------------------------------------------------------------------

    def upsert_node(
        self,
        project_id: str,
        node_id: str,
        *,
        tenant_id: str = DEFAULT_TENANT,
        **fields: Unpack[NodeFields],
    ) -> NodeRecord:
        """Create the node if needed, set the given columns, and return it.

        Moving to ``running`` stamps ``started_at`` once (the first attempt's start); terminal
        statuses stamp ``finished_at`` and non-terminal ones clear it, unless given explicitly.
        """
        values = dict(_NODE_FIELDS.validate_python(fields))
        for attempt in range(2):
            try:
                return self._upsert_node(project_id, node_id, tenant_id, values)
            except IntegrityError:
                # Another thread inserted the same node between our read and our insert; the
                # second pass finds the row and updates it.
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _upsert_node(
        self, project_id: str, node_id: str, tenant_id: str, values: dict[str, Any]
    ) -> NodeRecord:
        now = utcnow()
        with self._write() as session:
            project = _project(session, project_id, tenant_id)
            node = session.get(Node, (project_id, node_id), with_for_update={"key_share": True})
            if node is None:
                node = Node(
                    project_id=project_id,
                    node_id=node_id,
                    tenant_id=project.tenant_id,
                    status="pending",
                    attempts=0,
                    steps=0,
                    input_tokens=0,
                    output_tokens=0,
                    created_at=now,
                )
                session.add(node)
            status = values.get("status")
            if status == "running" and "started_at" not in values and node.started_at is None:
                values = {**values, "started_at": now}
            if status is not None and "finished_at" not in values:
                terminal = status in NODE_TERMINAL
                finished = (node.finished_at or now) if terminal else None
                values = {**values, "finished_at": finished}
            for name, value in values.items():
                setattr(node, name, value)
            node.updated_at = now
            session.flush()
            return NodeRecord.model_validate(node)

    def get_node(
        self, project_id: str, node_id: str, *, tenant_id: str = DEFAULT_TENANT
    ) -> NodeRecord:
        """One node, or NotFound."""
        with self._read() as session:
            _project(session, project_id, tenant_id)
            node = session.get(Node, (project_id, node_id))
            if node is None:
                raise NotFound(
                    f"project '{project_id}' has no node '{node_id}'",
                    hint="node ids are the ids of the project's plan; list the project's nodes",
                )
            return NodeRecord.model_validate(node)

    def list_nodes(self, project_id: str, *, tenant_id: str = DEFAULT_TENANT) -> list[NodeRecord]:
        """The project's nodes in the order they were first recorded (normally plan order)."""
        query = (
            select(Node)
            .where(Node.project_id == project_id)
            .order_by(Node.created_at, Node.node_id)
        )
        with self._read() as session:
            _project(session, project_id, tenant_id)
            return [NodeRecord.model_validate(n) for n in session.scalars(query)]

    # -- events --------------------------------------------------------------------------------

    def add_event(
        self,
        project_id: str,
        kind: str,
        message: str,
        node_id: str | None = None,
        data: dict[str, Any] | None = None,
        *,
        tenant_id: str = DEFAULT_TENANT,
    ) -> int:
        """Append an event and return its id.

        The project row is locked while appending so that, per project, ids become visible in
        increasing order: on PostgreSQL a sequence value taken earlier can otherwise commit
        later, and a reader paging with ``after_id`` would skip that event for good.
        """
        with self._write() as session:
            project = _project(session, project_id, tenant_id, lock=True)
            row = Event(
                project_id=project_id,
                tenant_id=project.tenant_id,
                node_id=node_id,
                kind=kind,
                message=message,
                data=data,
                created_at=utcnow(),
            )
            session.add(row)
            session.flush()
            return row.id

    def list_events(
        self,
        project_id: str,
        after_id: int = 0,
        limit: int = 1000,
        *,
        tenant_id: str = DEFAULT_TENANT,
    ) -> list[EventRecord]:
        """Events with ``id > after_id``, oldest first; pass the last id seen to page or tail."""
        query = (
            select(Event)
            .where(Event.project_id == project_id, Event.id > after_id)
            .order_by(Event.id)
            .limit(limit)
        )
        with self._read() as session:
            _project(session, project_id, tenant_id)
            return [EventRecord.model_validate(e) for e in session.scalars(query)]

    # -- reviews -------------------------------------------------------------------------------

    def open_review(
        self, project_id: str, node_id: str, attempt: int, *, tenant_id: str = DEFAULT_TENANT
    ) -> ReviewRecord:
        """Open a pending review for this attempt of the node, or return the one already open.

        Idempotent, because the activity that opens it may be retried.
        """
        for tries in range(2):
            try:
                with self._write() as session:
                    project = _project(session, project_id, tenant_id)
                    review = session.scalar(_review_query(project_id, node_id, attempt))
                    if review is None:
                        review = Review(
                            project_id=project_id,
                            tenant_id=project.tenant_id,
                            node_id=node_id,
                            attempt=attempt,
                            status="pending",
                            created_at=utcnow(),
                        )
                        session.add(review)
                        session.flush()
                    return ReviewRecord.model_validate(review)
            except IntegrityError:  # opened concurrently; the second pass returns that one
                if tries:
                    raise
        raise AssertionError("unreachable")

    def decide_review(
        self,
        project_id: str,
        node_id: str,
        attempt: int,
        approved: bool,
        comment: str | None = None,
        decided_by: str | None = None,
        *,
        tenant_id: str = DEFAULT_TENANT,
    ) -> ReviewRecord:
        """Approve or reject a pending review.

        Repeating the same decision returns the review unchanged (a double click or a retried
        request); the opposite decision on an already decided review is a Conflict.
        """
        status: ReviewStatus = "approved" if approved else "rejected"
        with self._write() as session:
            _project(session, project_id, tenant_id)
            review = session.scalar(
                _review_query(project_id, node_id, attempt).with_for_update(key_share=True)
            )
            if review is None:
                raise NotFound(
                    f"no review for node '{node_id}' attempt {attempt} of project '{project_id}'",
                    hint="list the pending reviews to see which node attempts await a decision",
                )
            if review.status == "pending":
                review.status = status
                review.comment = comment
                review.decided_by = decided_by
                review.decided_at = utcnow()
                session.flush()
            elif review.status != status:
                raise Conflict(
                    f"review of node '{node_id}' attempt {attempt} was already {review.status}"
                    f" by {review.decided_by or 'someone'}",
                    hint="a decision is final; the node's next attempt gets a new review",
                )
            return ReviewRecord.model_validate(review)

    def list_reviews(
        self,
        status: ReviewStatus | None = "pending",
        tenant_id: str = DEFAULT_TENANT,
        *,
        project_id: str | None = None,
    ) -> list[ReviewRecord]:
        """The tenant's reviews with this status (None: any), oldest first."""
        query = select(Review).where(Review.tenant_id == tenant_id)
        if status is not None:
            query = query.where(Review.status == status)
        if project_id is not None:
            query = query.where(Review.project_id == project_id)
        query = query.order_by(Review.created_at, Review.id)
        with self._read() as session:
            return [ReviewRecord.model_validate(r) for r in session.scalars(query)]

    # -- activity results ----------------------------------------------------------------------

    def remember_result(
        self,
        key: str,
        kind: str,
        project_id: str | None,
        result: dict[str, Any],
        *,
        tenant_id: str = DEFAULT_TENANT,
    ) -> None:
        """Record the result of a side effect under its idempotency key; the first one wins.

        A later call with the same key (a retried activity that raced the first) is ignored
        without an error, so callers should :meth:`recall_result` afterwards when they need the
        value that was actually kept.
        """
        values = {
            "key": key,
            "tenant_id": tenant_id,
            "kind": kind,
            "project_id": project_id,
            "result": result,
            "created_at": utcnow(),
        }
        with self._write() as session:
            name = session.get_bind().dialect.name
            if name == "postgresql":
                session.execute(pg_insert(ActivityResult).values(values).on_conflict_do_nothing())
            elif name == "sqlite":
                session.execute(
                    sqlite_insert(ActivityResult).values(values).on_conflict_do_nothing()
                )
            elif session.get(ActivityResult, key) is None:  # pragma: no cover - other backends
                session.execute(insert(ActivityResult).values(values))

    def recall_result(self, key: str, *, tenant_id: str = DEFAULT_TENANT) -> dict[str, Any] | None:
        """The result recorded under ``key`` for this tenant, or None if there is none yet."""
        query = select(ActivityResult.result).where(
            ActivityResult.key == key, ActivityResult.tenant_id == tenant_id
        )
        with self._read() as session:
            return session.scalar(query)


# -- helpers -----------------------------------------------------------------------------------


def _project(session: Session, project_id: str, tenant_id: str, *, lock: bool = False) -> Project:
    query = select(Project).where(Project.id == project_id, Project.tenant_id == tenant_id)
    if lock:
        # FOR NO KEY UPDATE: serializes writers of this project without blocking the
        # foreign-key checks of concurrent inserts into nodes/events/reviews.
        query = query.with_for_update(key_share=True)
    project = session.scalar(query)
    if project is None:
        raise _project_not_found(project_id, tenant_id)
    return project


def _project_not_found(project_id: str, tenant_id: str) -> NotFound:
    return NotFound(
        f"no project '{project_id}' in tenant '{tenant_id}'",
        hint="check the project id (list the tenant's projects to see them)",
    )


def _taken(project_id: str) -> Conflict:
    return Conflict(
        f"a project with id '{project_id}' already exists",
        hint="project ids are unique across tenants; choose another id",
    )


def _review_query(project_id: str, node_id: str, attempt: int) -> Any:
    return select(Review).where(
        Review.project_id == project_id, Review.node_id == node_id, Review.attempt == attempt
    )


def _normalize_url(url: str) -> URL:
    """Parse ``url``; a bare ``postgresql://`` gets the installed psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _create_engine(url: URL) -> Engine:
    if url.get_backend_name() != "sqlite":
        # pre_ping: a pooled connection may have been closed by a database restart meanwhile.
        return create_engine(url, pool_pre_ping=True)
    memory = url.database in (None, "", ":memory:")
    if memory:
        # One shared connection, or every pooled connection would see its own empty database.
        # Good enough for tests; an in-memory store is not meant for concurrent use.
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        Path(str(url.database)).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _on_sqlite_connect)
    event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def _on_sqlite_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    """Per-connection SQLite settings (they are not persistent, so every connection needs them).

    - autocommit at the driver level: the stdlib module's own implicit BEGINs are replaced by
      explicit ones in :func:`_on_sqlite_begin`, so we choose the locking mode;
    - WAL: readers do not block the writer and vice versa;
    - busy_timeout: a writer waits for the lock instead of failing with "database is locked";
    - foreign_keys: SQLite ignores FOREIGN KEY clauses unless this is on.
    """
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable with WAL except on power loss
    finally:
        cursor.close()


def _on_sqlite_begin(connection: Connection) -> None:
    """Write transactions take the write lock at BEGIN.

    A deferred transaction that reads and then writes can fail at once with SQLITE_BUSY when
    another connection wrote meanwhile (busy_timeout cannot help: waiting would deadlock), so
    every transaction that may write starts with BEGIN IMMEDIATE and simply queues for the lock.
    """
    immediate = connection.get_execution_options().get(_WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


_upgrade_lock = threading.Lock()


def upgrade(engine: Engine) -> None:
    """Migrate the database behind ``engine`` to the newest revision (a no-op when current).

    Runs in one transaction holding a database-wide lock (BEGIN IMMEDIATE on SQLite, an advisory
    lock on PostgreSQL) so concurrent openers take turns. On SQLite foreign keys are switched
    off for the duration, because batch migrations rebuild tables by dropping them, and a drop
    with foreign keys on would cascade-delete the rows of child tables; the result is checked
    with ``PRAGMA foreign_key_check`` before committing.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    sqlite = engine.dialect.name == "sqlite"
    with _upgrade_lock, engine.connect() as conn:
        raw = conn.connection.driver_connection
        if sqlite and raw is not None:
            raw.execute("PRAGMA foreign_keys=OFF")  # a no-op inside a transaction: do it first
        try:
            conn.execution_options(**{_WRITE: True})
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                    )
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise SomaError(
                            f"migration left {len(broken)} rows with dangling foreign keys",
                            hint="fix the migration; nothing was committed",
                        )
        finally:
            if sqlite and raw is not None:
                raw.execute("PRAGMA foreign_keys=ON")
