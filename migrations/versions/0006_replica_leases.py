"""Leases of `execgate serve` replicas on the RUNNING rows they own.

A replica renews its lease every few seconds; another replica marks the RUNNING rows of
an expired lease interrupted (``policies.audit.leases``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
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


def downgrade() -> None:
    op.drop_index("ix_replica_leases_expires_at", table_name="replica_leases")
    op.drop_table("replica_leases")
