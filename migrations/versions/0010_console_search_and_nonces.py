"""Review console: an index for free text over commands, and one-time sign-in nonces.

Free text ("command contains") matches anywhere in an exec's command text or argv, case
insensitively, which no B-tree serves. SQLite keeps an FTS5 table with the trigram
tokenizer (``exec_text``: the exec id and its two texts), filled by triggers on
``exec_sessions`` and from the rows already there; a phrase query on it finds every row
containing a string of three characters or more. PostgreSQL gets pg_trgm GIN indexes
on the same two texts, which serve ``ILIKE '%…%'`` directly; a database where the
extension cannot be created keeps working without them (searches scan). The table
metadata does not describe these (``policies.audit.tables.in_metadata``).

A later migration that rebuilds ``exec_sessions`` in SQLite batch mode drops the
triggers with the old table and must create them again (``_TRIGGERS``).

``console_nonces`` holds the one-time values of console sign-in (a link's nonce, an
OpenID Connect state) until they are used or expire, so that every replica sharing the
database accepts each of them once, also after a restart.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger("alembic.runtime.migration")

_FTS = (
    "CREATE VIRTUAL TABLE exec_text USING fts5("
    "id UNINDEXED, command_text, argv, tokenize = 'trigram')"
)
_TRIGGERS = (
    "CREATE TRIGGER exec_text_insert AFTER INSERT ON exec_sessions BEGIN "
    "INSERT INTO exec_text (id, command_text, argv) "
    "VALUES (new.id, new.command_text, new.argv); END",
    "CREATE TRIGGER exec_text_update AFTER UPDATE OF id, command_text, argv "
    "ON exec_sessions BEGIN "
    "DELETE FROM exec_text WHERE id = old.id; "
    "INSERT INTO exec_text (id, command_text, argv) "
    "VALUES (new.id, new.command_text, new.argv); END",
    "CREATE TRIGGER exec_text_delete AFTER DELETE ON exec_sessions BEGIN "
    "DELETE FROM exec_text WHERE id = old.id; END",
)
_TRGM = (
    ("ix_exec_sessions_command_text_trgm", "command_text"),
    ("ix_exec_sessions_argv_trgm", "(CAST(argv AS TEXT))"),
)


def upgrade() -> None:
    op.create_table(
        "console_nonces",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_console_nonces"),
    )
    op.create_index("ix_console_nonces_expires_at", "console_nonces", ["expires_at"])
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute(_FTS)
        for trigger in _TRIGGERS:
            op.execute(trigger)
        op.execute(
            "INSERT INTO exec_text (id, command_text, argv) "
            "SELECT id, command_text, argv FROM exec_sessions"
        )
    elif bind.dialect.name == "postgresql":
        try:
            with bind.begin_nested():
                bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except sa.exc.DBAPIError:
            logger.warning(
                "pg_trgm is not available: free-text search in the review console scans "
                "(CREATE EXTENSION pg_trgm as a superuser, then `execgate db upgrade`)"
            )
            return
        for name, expression in _TRGM:
            op.execute(
                f"CREATE INDEX IF NOT EXISTS {name} ON exec_sessions "
                f"USING gin ({expression} gin_trgm_ops)"
            )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for trigger in ("exec_text_insert", "exec_text_update", "exec_text_delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS exec_text")
    elif bind.dialect.name == "postgresql":
        for name, _ in _TRGM:
            op.execute(f"DROP INDEX IF EXISTS {name}")
    op.drop_index("ix_console_nonces_expires_at", table_name="console_nonces")
    op.drop_table("console_nonces")
