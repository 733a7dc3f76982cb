"""Audit log: a per-tenant, hash-chained record of every policy decision.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from soma.store.tables (revisions are frozen).
_BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", _BIGID, autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(64), server_default="default", nullable=False),
        sa.Column("project_id", sa.String(128), nullable=True),
        sa.Column("node_id", sa.String(128), nullable=True),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action_kind", sa.String(64), nullable=False),
        sa.Column("tool", sa.String(255), nullable=True),
        sa.Column("arguments_digest", sa.String(64), nullable=False),
        sa.Column("rule_id", sa.String(255), nullable=True),
        sa.Column("effect", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
        sa.UniqueConstraint(
            "tenant_id", "idempotency_key", name="uq_audit_log_tenant_idempotency_key"
        ),
        sa.UniqueConstraint("tenant_id", "prev_hash", name="uq_audit_log_tenant_prev_hash"),
        # Ids are never reused on SQLite either, so a deleted record leaves a visible gap.
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_log_tenant_id_id", "audit_log", ["tenant_id", "id"])
    op.create_index(
        "ix_audit_log_tenant_project_id", "audit_log", ["tenant_id", "project_id", "id"]
    )


def downgrade() -> None:
    op.drop_table("audit_log")
