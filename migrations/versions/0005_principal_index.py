"""Audit searches by principal: one index on (principal, created_at).

The index on (principal, rule_id, created_at) served the rate check, which now has a
partial index of its own (0003). Searches for a principal's records (the default for
Slack and MCP users) filter by principal and read newest first: (principal,
created_at) serves both, and every write keeps one index instead of two.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = ("ix_exec_sessions_principal_rule_id_created_at", ["principal", "rule_id", "created_at"])
NEW = ("ix_exec_sessions_principal_created_at", ["principal", "created_at"])


def upgrade() -> None:
    op.create_index(NEW[0], "exec_sessions", NEW[1])
    op.drop_index(OLD[0], table_name="exec_sessions")


def downgrade() -> None:
    op.create_index(OLD[0], "exec_sessions", OLD[1])
    op.drop_index(NEW[0], table_name="exec_sessions")
