"""Initial schema.

Exec sessions, approvals and votes, conversational sessions, and the hash-chained
audit events.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _id(name: str = "id", nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(32), nullable=nullable)


def _text(name: str, length: int | None = None, nullable: bool = False) -> sa.Column[str]:
    kind = sa.Text() if length is None else sa.String(length)
    return sa.Column(name, kind, nullable=nullable)


def _index(table: str, *columns: str) -> None:
    op.create_index(op.f(f"ix_{table}_{'_'.join(columns)}"), table, list(columns))


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        _text("kind", 32),
        _text("subject", 32),
        _text("payload"),
        _ts("created_at"),
        _text("prev_hash", 64),
        _text("hash", 64),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_events")),
    )
    _index("audit_events", "kind", "seq")
    _index("audit_events", "subject", "seq")

    op.create_table(
        "conv_sessions",
        _id(),
        _text("principal", 255),
        _text("target", 512),
        _text("reason"),
        _text("cwd"),
        sa.Column("env", sa.JSON(), nullable=False),
        _ts("created_at"),
        _ts("last_used_at"),
        _ts("ended_at", nullable=True),
        _text("end_reason", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conv_sessions")),
    )
    _index("conv_sessions", "principal", "created_at")

    op.create_table(
        "exec_sessions",
        _id(),
        _ts("created_at"),
        _text("principal", 255),
        _text("surface", 32),
        _text("target", 512),
        _text("provider", 128),
        _text("function", 128),
        _text("instance", 128),
        sa.Column("argv", sa.JSON(), nullable=False),
        _text("command_text", nullable=True),
        _text("reason"),
        _text("effect", 16),
        _text("rule_id", 255, nullable=True),
        _text("decision_reason"),
        _id("session_id", nullable=True),
        _id("approval_id", nullable=True),
        _text("request_key", 255, nullable=True),
        _text("owner", 255, nullable=True),
        _text("status", 32),
        _ts("outcome_at", nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        _ts("started_at", nullable=True),
        _ts("ended_at", nullable=True),
        sa.Column("stdout_bytes", sa.BigInteger(), nullable=True),
        sa.Column("stderr_bytes", sa.BigInteger(), nullable=True),
        _text("output_sha256", 64, nullable=True),
        sa.Column("artifact_keys", sa.JSON(), nullable=True),
        sa.Column("approvers", sa.JSON(), nullable=True),
        _text("error", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exec_sessions")),
    )
    _index("exec_sessions", "created_at")
    _index("exec_sessions", "function", "created_at")
    _index("exec_sessions", "principal", "rule_id", "created_at")
    _index("exec_sessions", "request_key")
    _index("exec_sessions", "session_id")
    _index("exec_sessions", "status")
    _index("exec_sessions", "target", "created_at")

    op.create_table(
        "approvals",
        _id(),
        _id("audit_id"),
        _text("request_hash", 64),
        _text("requester", 255),
        _text("target", 512),
        sa.Column("argv", sa.JSON(), nullable=False),
        _text("reason"),
        _text("rule_id", 255),
        sa.Column("approver_roles", sa.JSON(), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        _ts("created_at"),
        _ts("expires_at"),
        _text("state", 16),
        _text("denied_by", 255, nullable=True),
        _ts("decided_at", nullable=True),
        _text("surface", 32),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["audit_id"], ["exec_sessions.id"], name=op.f("fk_approvals_audit_id_exec_sessions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
    )
    _index("approvals", "audit_id")
    _index("approvals", "created_at")
    _index("approvals", "state", "expires_at")

    op.create_table(
        "approval_votes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _id("approval_id"),
        _text("approver", 255),
        sa.Column("approve", sa.Boolean(), nullable=False),
        _ts("voted_at"),
        sa.ForeignKeyConstraint(
            ["approval_id"], ["approvals.id"], name=op.f("fk_approval_votes_approval_id_approvals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval_votes")),
        sa.UniqueConstraint(
            "approval_id", "approver", name=op.f("uq_approval_votes_approval_id_approver")
        ),
    )
    _index("approval_votes", "approval_id")


def downgrade() -> None:
    for table in ("approval_votes", "approvals", "exec_sessions", "conv_sessions", "audit_events"):
        # Dropping a table drops its indexes with it.
        op.drop_table(table)
