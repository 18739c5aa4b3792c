"""A partial index for rate limits: the requests that use up a rule's rate.

A rate check counts, for one principal and rule, the requests since the start of the
window that were not refused. Refused requests are left out of this index, so a
sender who keeps retrying after being limited does not make each later check scan
their refusals.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_exec_sessions_rate_window"
COUNTED = "effect != 'deny'"


def upgrade() -> None:
    op.create_index(
        NAME,
        "exec_sessions",
        ["principal", "rule_id", "created_at"],
        sqlite_where=sa.text(COUNTED),
        postgresql_where=sa.text(COUNTED),
    )


def downgrade() -> None:
    op.drop_index(NAME, table_name="exec_sessions")
