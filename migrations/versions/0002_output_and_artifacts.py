"""Inline output and artifact metadata on exec sessions.

The scrubbed, truncated output of each exec is kept so that the person who asked for an
approved command can read its result on their own surface; artifacts (spilled output,
collected files) are recorded with key, size, sha256 and content type.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("exec_sessions") as batch:
        batch.add_column(sa.Column("stdout_text", sa.Text(), nullable=True))
        batch.add_column(sa.Column("stderr_text", sa.Text(), nullable=True))
        batch.add_column(sa.Column("artifacts", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("exec_sessions") as batch:
        batch.drop_column("artifacts")
        batch.drop_column("stderr_text")
        batch.drop_column("stdout_text")
