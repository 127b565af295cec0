"""The first schema: ``teams``, ``api_keys`` (its ``team`` a foreign key to ``teams``) and
``usage``, with their indexes.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create the three tables (a frozen copy of ``tenancy/tables.py`` as of this revision)."""
    op.create_table(
        "teams",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("rpm", sa.Integer, nullable=True),
        sa.Column("tpm", sa.BigInteger, nullable=True),
        sa.Column("max_parallel", sa.Integer, nullable=True),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("team", sa.String(128), sa.ForeignKey("teams.name"), nullable=False),
        sa.Column("models", sa.JSON, nullable=False),
        sa.Column("rpm", sa.Integer, nullable=True),
        sa.Column("tpm", sa.BigInteger, nullable=True),
        sa.Column("max_parallel", sa.Integer, nullable=True),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_used_at", sa.Float, nullable=True),
    )
    op.create_index("ix_api_keys_team", "api_keys", ["team"])
    op.create_table(
        "usage",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("team", sa.String(128), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("version", sa.String(64), nullable=True),
        sa.Column("deployment", sa.String(256), nullable=True),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("cached_tokens", sa.Integer, nullable=False),
        sa.Column("images", sa.Integer, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("error_type", sa.String(64), nullable=True),
    )
    for column in ("created_at", "key_id", "team"):
        op.create_index(f"ix_usage_{column}", "usage", [column])


def downgrade() -> None:
    """Drop the three tables."""
    op.drop_table("usage")
    op.drop_index("ix_api_keys_team", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("teams")
