"""Review console: keyset pages on (created_at, id), counts per effect over time.

The console pages through the log newest first and continues after the last row's
(created_at, id); an index on that pair serves every page at the cost of the first
(and any query on created_at alone, so it replaces the index on created_at). Charts
count execs per effect over a time range and the rules that denied most:
(effect, created_at, rule_id) answers both from the index alone.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = ("ix_exec_sessions_created_at", ["created_at"])
NEW = (
    ("ix_exec_sessions_created_at_id", ["created_at", "id"]),
    ("ix_exec_sessions_effect_created_at_rule_id", ["effect", "created_at", "rule_id"]),
)


def upgrade() -> None:
    for name, columns in NEW:
        op.create_index(name, "exec_sessions", columns)
    op.drop_index(OLD[0], table_name="exec_sessions")


def downgrade() -> None:
    op.create_index(OLD[0], "exec_sessions", OLD[1])
    for name, _ in NEW:
        op.drop_index(name, table_name="exec_sessions")
