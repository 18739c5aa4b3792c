"""Where a conversational session is shown: its anchor on a surface.

A Slack session lives in a thread; the thread's address is kept with the session so
that replies in it still reach the session after ExecGate restarts.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("conv_sessions") as batch:
        batch.add_column(sa.Column("anchor", sa.String(512), nullable=True))
        batch.create_index("ix_conv_sessions_anchor", ["anchor"])


def downgrade() -> None:
    with op.batch_alter_table("conv_sessions") as batch:
        batch.drop_index("ix_conv_sessions_anchor")
        batch.drop_column("anchor")
