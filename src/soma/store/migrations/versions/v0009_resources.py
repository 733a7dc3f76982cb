"""Project resources: what the workspace manager provisioned for a project (bare repositories,
GitHub repositories, S3 buckets) and whether it was torn down.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
_TS = sa.DateTime(timezone=True)
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "project_resources",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("details", _JSON, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("torn_down_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_project_resources"),
        sa.UniqueConstraint(
            "tenant_id",
            "project_id",
            "kind",
            "name",
            name="uq_project_resources_tenant_id_project_id_kind_name",
        ),
    )
    op.create_index("ix_project_resources_tenant_id", "project_resources", ["tenant_id"])
    op.create_index("ix_project_resources_project_id", "project_resources", ["project_id"])


def downgrade() -> None:
    op.drop_index("ix_project_resources_project_id", table_name="project_resources")
    op.drop_index("ix_project_resources_tenant_id", table_name="project_resources")
    op.drop_table("project_resources")
