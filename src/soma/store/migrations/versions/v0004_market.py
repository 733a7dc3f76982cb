"""Marketplace: publisher keys, published package versions, ratings, installs and trust.

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from soma.store.tables (revisions are frozen).
_JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "market_publishers",
        sa.Column("publisher", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("publisher", "key_id", name="pk_market_publishers"),
    )
    op.create_index("ix_market_publishers_tenant_id", "market_publishers", ["tenant_id"])

    op.create_table(
        "market_versions",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("publisher", sa.String(64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags", _JSON, nullable=False),
        sa.Column("manifest", _JSON, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("signature", _JSON, nullable=False),
        sa.Column("archive", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("yanked", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("yank_reason", sa.Text(), nullable=True),
        sa.Column("downloads", sa.Integer(), server_default="0", nullable=False),
        sa.Column("published_at", _TS, nullable=False),
        sa.Column("published_tenant", sa.String(64), nullable=False),
        sa.Column("published_by", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("name", "version", name="pk_market_versions"),
    )
    op.create_index("ix_market_versions_publisher", "market_versions", ["publisher"])

    op.create_table(
        "market_ratings",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("stars", sa.Integer(), nullable=False),
        sa.Column("rated_at", _TS, nullable=False),
        sa.CheckConstraint("stars BETWEEN 1 AND 5", name="ck_market_ratings_stars_range"),
        sa.PrimaryKeyConstraint("name", "tenant_id", "user_id", name="pk_market_ratings"),
    )

    op.create_table(
        "market_installs",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("publisher", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("manifest", _JSON, nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("installed_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "name", name="pk_market_installs"),
    )

    op.create_table(
        "market_trust",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("publisher", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("added_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "publisher", "key_id", name="pk_market_trust"),
    )


def downgrade() -> None:
    for table in (
        "market_trust",
        "market_installs",
        "market_ratings",
        "market_versions",
        "market_publishers",
    ):
        op.drop_table(table)
