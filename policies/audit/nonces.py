"""One-time values of console sign-in in the database (``console_nonces``): a sign-in
link's nonce, an OpenID Connect login's state. Every replica on the database sees the
same rows, so a value is accepted once whichever replica (or restarted process) is
asked, and until it expires.

Expiry is judged on the database's clock (``leases.db_now``), as for leases. Each write
also deletes the rows that expired, so the table holds only live values.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from policies.audit.db import Db
from policies.audit.errors import audit_errors
from policies.audit.leases import db_now
from policies.audit.tables import console_nonces

_N = console_nonces.c


def _insert(conn: Connection, key: str, value: str | None, ttl: float) -> int:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    until = db_now(conn.dialect) + sa.literal(ttl, sa.Float())
    conn.execute(sa.delete(console_nonces).where(_N.expires_at < db_now(conn.dialect)))
    statement = dialect.insert(console_nonces).values(key=key, value=value, expires_at=until)
    done = conn.execute(statement.on_conflict_do_nothing(index_elements=["key"]))
    return int(done.rowcount)


async def claim(db: Db, key: str, ttl: float) -> bool:
    """Record ``key`` as used for ``ttl`` seconds; False when it was used already (and
    has not expired).

    Raises: AuditUnavailable.
    """
    with audit_errors("claim sign-in nonce"):
        inserted = await db.backend.write(lambda conn: _insert(conn, key, None, ttl))
    return inserted == 1


async def put(db: Db, key: str, value: str, ttl: float) -> None:
    """Keep ``value`` under ``key`` for ``ttl`` seconds, for one ``take`` (a key that is
    already held keeps its first value).

    Raises: AuditUnavailable.
    """
    with audit_errors("store sign-in state"):
        await db.backend.write(lambda conn: _insert(conn, key, value, ttl))


async def take(db: Db, key: str) -> str | None:
    """The value under ``key``, removed so that nobody takes it again; None when there
    is none (never stored, taken already, or expired).

    Raises: AuditUnavailable.
    """

    def body(conn: Connection) -> str | None:
        statement = (
            sa.delete(console_nonces)
            .where(_N.key == key, _N.expires_at >= db_now(conn.dialect))
            .returning(_N.value)
        )
        row = conn.execute(statement).first()
        return None if row is None or row[0] is None else str(row[0])

    with audit_errors("take sign-in state"):
        return await db.backend.write(body)
