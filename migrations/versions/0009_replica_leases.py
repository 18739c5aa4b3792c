"""Leases of `execgate serve` replicas on the RUNNING rows they own, and the request
keys already recorded.

A replica renews its lease every few seconds; another replica marks the RUNNING rows of
an expired lease interrupted (``policies.audit.leases``). ``request_keys`` holds each
delivery key once, claimed with the intent it belongs to, so that two deliveries of one
request on two replicas record (and run) once; it starts with the keys already in the
log (the first exec of each).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "replica_leases",
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("owner", name="pk_replica_leases"),
    )
    op.create_index("ix_replica_leases_expires_at", "replica_leases", ["expires_at"])
    op.create_table(
        "request_keys",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("audit_id", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_request_keys"),
    )
    op.execute(
        "INSERT INTO request_keys (key, audit_id) "
        "SELECT request_key, MIN(id) FROM exec_sessions "
        "WHERE request_key IS NOT NULL GROUP BY request_key"
    )


def downgrade() -> None:
    op.drop_table("request_keys")
    op.drop_index("ix_replica_leases_expires_at", table_name="replica_leases")
    op.drop_table("replica_leases")
