"""Audit events are numbered from 1: a check constraint refuses any other number.

``verify`` walks the chain from event 1 and accounts for every event row; this
constraint is defence in depth, so that ExecGate's own database refuses an event
numbered outside the chain. SQLite cannot add a constraint in place: batch mode
rebuilds the table.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-12
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "seq_positive"  # named ck_audit_events_seq_positive by the naming convention


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.create_check_constraint(NAME, "seq > 0")


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_constraint(NAME, type_="check")
