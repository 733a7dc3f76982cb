"""Initial schema: projects, nodes, events, reviews, activity_results.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from soma.store.tables: a revision must keep creating
# exactly this schema even after the models move on.
_JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
_BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def _tenant() -> sa.Column[str]:
    return sa.Column("tenant_id", sa.String(64), server_default="default", nullable=False)


def _count(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), server_default="0", nullable=False)


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.String(128), nullable=False),
        _tenant(),
        sa.Column("goal", sa.Text(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("planner", sa.String(32), nullable=True),
        sa.Column("plan", _JSON, nullable=True),
        sa.Column("workflow_id", sa.String(255), nullable=True),
        sa.Column("workspace_path", sa.Text(), nullable=True),
        _count("usage_input_tokens"),
        _count("usage_output_tokens"),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_projects"),
    )
    op.create_index("ix_projects_tenant_id", "projects", ["tenant_id"])
    op.create_index("ix_projects_status", "projects", ["status"])
    op.create_index("ix_projects_tenant_created", "projects", ["tenant_id", "created_at"])

    op.create_table(
        "nodes",
        sa.Column("project_id", sa.String(128), nullable=False),
        sa.Column("node_id", sa.String(128), nullable=False),
        _tenant(),
        sa.Column("capsule", sa.String(255), nullable=True),
        sa.Column("persona", sa.String(255), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        _count("attempts"),
        _count("steps"),
        _count("input_tokens"),
        _count("output_tokens"),
        sa.Column("output", _JSON, nullable=True),
        sa.Column("commit_sha", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("last_event", sa.Text(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("started_at", _TS, nullable=True),
        sa.Column("finished_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_nodes_project_id", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("project_id", "node_id", name="pk_nodes"),
    )
    op.create_index("ix_nodes_tenant_id", "nodes", ["tenant_id"])

    op.create_table(
        "events",
        sa.Column("id", _BIGID, autoincrement=True, nullable=False),
        sa.Column("project_id", sa.String(128), nullable=False),
        _tenant(),
        sa.Column("node_id", sa.String(128), nullable=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", _JSON, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_events_project_id", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_project_id", "events", ["project_id"])
    op.create_index("ix_events_tenant_id", "events", ["tenant_id"])
    op.create_index("ix_events_project_id_id", "events", ["project_id", "id"])

    op.create_table(
        "reviews",
        sa.Column("id", _BIGID, autoincrement=True, nullable=False),
        sa.Column("project_id", sa.String(128), nullable=False),
        _tenant(),
        sa.Column("node_id", sa.String(128), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.String(255), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("decided_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_reviews_project_id", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_reviews"),
        sa.UniqueConstraint(
            "project_id", "node_id", "attempt", name="uq_reviews_project_node_attempt"
        ),
    )
    op.create_index("ix_reviews_project_id", "reviews", ["project_id"])
    op.create_index("ix_reviews_tenant_id", "reviews", ["tenant_id"])
    op.create_index("ix_reviews_tenant_status", "reviews", ["tenant_id", "status"])

    op.create_table(
        "activity_results",
        sa.Column("key", sa.String(255), nullable=False),
        _tenant(),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("project_id", sa.String(128), nullable=True),
        sa.Column("result", _JSON, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_activity_results"),
    )
    op.create_index("ix_activity_results_tenant_id", "activity_results", ["tenant_id"])
    op.create_index("ix_activity_results_project_id", "activity_results", ["project_id"])


def downgrade() -> None:
    for table in ("activity_results", "reviews", "events", "nodes", "projects"):
        op.drop_table(table)
