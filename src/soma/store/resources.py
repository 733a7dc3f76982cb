"""Project resources: what was provisioned for a project, where it is, and whether it is gone.

One row per ``(tenant_id, project_id, kind, name)``: provisioning the same request again finds
the row instead of creating a second resource, and teardown moves it to ``torn_down`` rather
than deleting it, so the record of what existed outlives the thing itself. Every query is scoped
by ``tenant_id``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from soma.store.tables import ProjectResource, utcnow

ResourceStatus = Literal["provisioned", "torn_down", "failed"]


class ResourceRecord(BaseModel):
    """One provisioned (or attempted, or torn-down) resource of a project."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: int
    tenant_id: str
    project_id: str
    kind: str
    name: str
    location: str | None
    status: ResourceStatus
    error: str | None
    details: dict[str, Any] | None
    created_at: datetime
    torn_down_at: datetime | None


class ResourcesMixin:
    """The project-resource methods of :class:`soma.store.Store`."""

    # Provided by Store.
    def _read(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def get_resource(
        self, tenant_id: str, project_id: str, kind: str, name: str
    ) -> ResourceRecord | None:
        """The resource recorded under this key, or None."""
        with self._read() as session:
            row = session.scalar(_key_query(tenant_id, project_id, kind, name))
            return None if row is None else ResourceRecord.model_validate(row)

    def list_resources(self, project_id: str, *, tenant_id: str) -> list[ResourceRecord]:
        """The project's resources in the order they were first requested."""
        query = (
            select(ProjectResource)
            .where(ProjectResource.tenant_id == tenant_id, ProjectResource.project_id == project_id)
            .order_by(ProjectResource.id)
        )
        with self._read() as session:
            return [ResourceRecord.model_validate(r) for r in session.scalars(query)]

    def record_resource(
        self,
        tenant_id: str,
        project_id: str,
        kind: str,
        name: str,
        *,
        status: ResourceStatus,
        location: str | None = None,
        error: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> ResourceRecord:
        """Create or update the row for this key. ``torn_down_at`` is stamped on a move to
        ``torn_down`` and cleared on a move to ``provisioned``; ``location`` and ``details``
        are kept when not given, so a failed teardown still says where the resource is."""
        try:
            return self._record(tenant_id, project_id, kind, name, status, location, error, details)
        except IntegrityError:  # lost a race with a first write of the same key: update it
            return self._record(tenant_id, project_id, kind, name, status, location, error, details)

    def _record(
        self,
        tenant_id: str,
        project_id: str,
        kind: str,
        name: str,
        status: ResourceStatus,
        location: str | None,
        error: str | None,
        details: dict[str, Any] | None,
    ) -> ResourceRecord:
        now = utcnow()
        with self._write() as session:
            row = session.scalar(_key_query(tenant_id, project_id, kind, name))
            if row is None:
                row = ProjectResource(
                    tenant_id=tenant_id,
                    project_id=project_id,
                    kind=kind,
                    name=name,
                    created_at=now,
                )
                session.add(row)
            row.status = status
            row.error = error
            if location is not None:
                row.location = location
            if details is not None:
                row.details = {**(row.details or {}), **details}
            if status == "torn_down":
                row.torn_down_at = now
            elif status == "provisioned":
                row.torn_down_at = None
            session.flush()
            return ResourceRecord.model_validate(row)


def _key_query(tenant_id: str, project_id: str, kind: str, name: str) -> Any:
    return select(ProjectResource).where(
        ProjectResource.tenant_id == tenant_id,
        ProjectResource.project_id == project_id,
        ProjectResource.kind == kind,
        ProjectResource.name == name,
    )
