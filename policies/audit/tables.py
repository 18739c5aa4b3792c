"""The audit database schema: exec sessions, approvals and their votes, conversational
sessions, and ``audit_events``, the append-only hash chain every change is written to.

The row tables are projections: each of their rows can be rebuilt from the events whose
``subject`` is the row id, which is how ``verify`` notices a hand-edited row. Migrations
(``migrations/``) create the schema; this metadata is what autogenerate compares against.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING)

# The requests that use up a rule's rate: refused ones do not. Written as literal SQL so
# that a query carrying the same condition can use the partial index built on it.
RATE_COUNTED = "effect != 'deny'"


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite keeps no offset, so values are stored as naive UTC there and read back aware;
    PostgreSQL stores ``timestamptz``. A naive value handed in is taken to be UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        aware = to_utc(value)
        return aware.replace(tzinfo=None) if dialect.name == "sqlite" else aware

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return to_utc(value)


def to_utc(value: dt.datetime) -> dt.datetime:
    """``value`` as an aware UTC datetime (naive values are taken to be UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _id(name: str = "id", **kw: Any) -> sa.Column[str]:
    return sa.Column(name, sa.String(32), **kw)


# Every exec request: the intent columns are written before anything runs, the outcome
# columns when it ends. ``owner`` (host:pid:boot-nonce) lets a later start tell a dead
# writer's RUNNING rows from a live one's.
exec_sessions = sa.Table(
    "exec_sessions",
    metadata,
    _id(primary_key=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("principal", sa.String(255), nullable=False),
    sa.Column("surface", sa.String(32), nullable=False),
    sa.Column("target", sa.String(512), nullable=False),
    sa.Column("provider", sa.String(128), nullable=False),
    sa.Column("function", sa.String(128), nullable=False),
    sa.Column("instance", sa.String(128), nullable=False),
    sa.Column("argv", sa.JSON(), nullable=False),
    sa.Column("command_text", sa.Text(), nullable=True),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("effect", sa.String(16), nullable=False),
    sa.Column("rule_id", sa.String(255), nullable=True),
    sa.Column("decision_reason", sa.Text(), nullable=False),
    _id("session_id", nullable=True),
    _id("approval_id", nullable=True),
    sa.Column("request_key", sa.String(255), nullable=True),
    sa.Column("owner", sa.String(255), nullable=True),
    sa.Column("status", sa.String(32), nullable=False),
    # Outcome; ``outcome_at`` is NULL until an outcome was recorded.
    sa.Column("outcome_at", UTCDateTime(), nullable=True),
    sa.Column("exit_code", sa.Integer(), nullable=True),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("ended_at", UTCDateTime(), nullable=True),
    sa.Column("stdout_bytes", sa.BigInteger(), nullable=True),
    sa.Column("stderr_bytes", sa.BigInteger(), nullable=True),
    sa.Column("output_sha256", sa.String(64), nullable=True),
    sa.Column("artifact_keys", sa.JSON(), nullable=True),
    sa.Column("approvers", sa.JSON(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    # Revision 0002: the scrubbed inline output, and artifact metadata.
    sa.Column("stdout_text", sa.Text(), nullable=True),
    sa.Column("stderr_text", sa.Text(), nullable=True),
    sa.Column("artifacts", sa.JSON(), nullable=True),
    sa.Index(None, "created_at", "id"),  # revision 0007: keyset pages
    sa.Index(None, "effect", "created_at", "rule_id"),  # revision 0007: charts
    sa.Index(None, "principal", "created_at"),  # revision 0005
    sa.Index(None, "target", "created_at"),
    sa.Index(None, "function", "created_at"),
    sa.Index(None, "session_id"),
    sa.Index(None, "request_key"),
    sa.Index(None, "status"),
    # Revision 0003: the requests that use up a rate (see RATE_COUNTED).
    sa.Index(
        "ix_exec_sessions_rate_window",
        "principal",
        "rule_id",
        "created_at",
        sqlite_where=sa.text(RATE_COUNTED),
        postgresql_where=sa.text(RATE_COUNTED),
    ),
)

approvals = sa.Table(
    "approvals",
    metadata,
    _id(primary_key=True),
    sa.Column(
        "audit_id", sa.String(32), sa.ForeignKey("exec_sessions.id"), nullable=False, index=True
    ),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("requester", sa.String(255), nullable=False),
    sa.Column("target", sa.String(512), nullable=False),
    sa.Column("argv", sa.JSON(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("rule_id", sa.String(255), nullable=False),
    sa.Column("approver_roles", sa.JSON(), nullable=False),
    sa.Column("threshold", sa.Integer(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("denied_by", sa.String(255), nullable=True),
    sa.Column("decided_at", UTCDateTime(), nullable=True),
    sa.Column("surface", sa.String(32), nullable=False),
    sa.Column("context", sa.JSON(), nullable=False),
    sa.Index(None, "state", "expires_at"),
    sa.Index(None, "created_at"),
)

approval_votes = sa.Table(
    "approval_votes",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column(
        "approval_id", sa.String(32), sa.ForeignKey("approvals.id"), nullable=False, index=True
    ),
    sa.Column("approver", sa.String(255), nullable=False),
    sa.Column("approve", sa.Boolean(), nullable=False),
    sa.Column("voted_at", UTCDateTime(), nullable=False),
    # One vote per approver: the database itself refuses a second one.
    sa.UniqueConstraint("approval_id", "approver"),
)

conv_sessions = sa.Table(
    "conv_sessions",
    metadata,
    _id(primary_key=True),
    sa.Column("principal", sa.String(255), nullable=False),
    sa.Column("target", sa.String(512), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("cwd", sa.Text(), nullable=False),
    sa.Column("env", sa.JSON(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("last_used_at", UTCDateTime(), nullable=False),
    sa.Column("ended_at", UTCDateTime(), nullable=True),
    sa.Column("end_reason", sa.Text(), nullable=True),
    # Revision 0004: where a surface shows the session (a Slack thread).
    sa.Column("anchor", sa.String(512), nullable=True),
    sa.Index(None, "principal", "created_at"),
    sa.Index(None, "anchor"),
)

# Revision 0009: each `execgate serve` replica's lease on the RUNNING rows it owns.
# ``expires_at`` is seconds since the epoch on the DATABASE's clock (see
# ``policies.audit.leases``), so replicas whose clocks disagree still agree on expiry.
# Not part of the chain: a lease is operational state; what it decides (a row marked
# interrupted) is chained.
replica_leases = sa.Table(
    "replica_leases",
    metadata,
    sa.Column("owner", sa.String(255), primary_key=True),
    sa.Column("expires_at", sa.Float(), nullable=False),
    sa.Index(None, "expires_at"),
)

# Revision 0009: the delivery keys already recorded (a Slack retry's key), one row per
# key, claimed in the transaction that writes the intent: of two deliveries of one
# request racing on two replicas, the database lets exactly one record (and run).
request_keys = sa.Table(
    "request_keys",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("audit_id", sa.String(32), nullable=False),
)

# Revision 0010: the one-time values of console sign-in (a sign-in link's nonce, an
# OpenID Connect state) until used or expired; ``expires_at`` is seconds since the epoch
# on the database's clock. Not part of the chain: the sign-ins they allow are not
# audited actions, and a lost row only makes a link or a login attempt fail.
console_nonces = sa.Table(
    "console_nonces",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text(), nullable=True),
    sa.Column("expires_at", sa.Float(), nullable=False),
    sa.Index(None, "expires_at"),
)

# Revision 0010: the free-text search index over exec commands, kept by the database
# (SQLite: the FTS5 table ``exec_text`` and its shadow tables, filled by triggers;
# PostgreSQL: pg_trgm GIN indexes). This metadata does not describe it.
TEXT_SEARCH_TABLE = "exec_text"
TEXT_SEARCH_INDEXES = frozenset(
    {"ix_exec_sessions_command_text_trgm", "ix_exec_sessions_argv_trgm"}
)


def in_metadata(name: str | None, type_: str, parent_names: Any) -> bool:
    """Whether schema comparison (Alembic's ``include_name``) should look at ``name``:
    everything but the free-text search index."""
    if type_ == "table" and name is not None:
        return name != TEXT_SEARCH_TABLE and not name.startswith(TEXT_SEARCH_TABLE + "_")
    if type_ == "index":
        return name not in TEXT_SEARCH_INDEXES
    return True


# SQLite aliases an INTEGER PRIMARY KEY to the rowid (no separate index); PostgreSQL
# needs 64 bits for a long-lived log.
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("seq", _SEQ, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("subject", sa.String(32), nullable=False),
    sa.Column("payload", sa.Text(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.CheckConstraint("seq > 0", name="seq_positive"),  # revision 0008
    sa.Index(None, "subject", "seq"),
    sa.Index(None, "kind", "seq"),
)

# The row tables whose content ``verify`` rebuilds from events, with the event kind
# that creates a row.
PROJECTIONS: dict[str, tuple[sa.Table, str]] = {
    "exec": (exec_sessions, "exec.intent"),
    "approval": (approvals, "approval.created"),
    "session": (conv_sessions, "session.created"),
}
