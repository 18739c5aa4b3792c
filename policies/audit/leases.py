"""Who owns a RUNNING row, by lease: each `execgate serve` replica renews its lease in
the database; a replica whose lease expired is taken to be dead.

A replica renews ``replica_leases[owner]`` every few seconds for ``ttl`` seconds. Any
replica's reaper takes an expired lease by deleting it, in the same chained transaction
that marks that owner's RUNNING rows interrupted. The delete re-checks expiry on the row
it deletes, so a renewal that lands first wins (the lease was renewed: nothing is
taken) and a renewal that lands second finds its row gone (the replica learns it lost
its lease). Expiry is judged on the database's clock alone: replicas whose own clocks
disagree, or that are slow to run, still agree on when a lease ends, and a replica that
renews within ``ttl`` never has its rows taken.

Owners without a lease (one-shot CLI processes) keep the host/pid check of
``policies.audit.owner``.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

from policies.audit.chain import ChainTx
from policies.audit.db import Db
from policies.audit.errors import audit_errors
from policies.audit.tables import exec_sessions, replica_leases
from policies.ports import ExecStatus

logger = logging.getLogger("policies.audit")

LEASE_LOST_ERROR = "the ExecGate replica running the command stopped renewing its lease"
_L = replica_leases.c
_RUNNING = exec_sessions.c.status == ExecStatus.RUNNING.value


def db_now(dialect: Dialect) -> sa.ColumnElement[Any]:
    """The database's clock, in seconds since the epoch."""
    if dialect.name == "postgresql":
        return sa.literal_column("extract(epoch from clock_timestamp())::float8")
    return sa.literal_column("((julianday('now') - 2440587.5) * 86400.0)")


def _renew(owner: str, ttl: float, conn: Connection) -> bool:
    until = db_now(conn.dialect) + sa.literal(ttl, sa.Float())
    update = sa.update(replica_leases).where(_L.owner == owner).values(expires_at=until)
    if conn.execute(update).rowcount == 1:
        return True
    conn.execute(sa.insert(replica_leases).values(owner=owner, expires_at=until))
    return False


async def renew(db: Db, owner: str, ttl: float) -> bool:
    """Hold ``owner``'s lease for ``ttl`` more seconds; False when there was no lease to
    renew (the first renewal, or the lease expired and was taken: a new one is held now).

    Raises: AuditUnavailable.
    """
    with audit_errors("renew lease"):
        return await db.backend.write(lambda conn: _renew(owner, ttl, conn))


def _take(tx: ChainTx, owner: str, *where: sa.ColumnElement[bool]) -> int | None:
    """Delete ``owner``'s lease (when ``where`` holds) and mark its RUNNING rows
    interrupted; None when the lease was not taken."""
    deleted = tx.conn.execute(sa.delete(replica_leases).where(_L.owner == owner, *where))
    if deleted.rowcount != 1:
        return None
    running = tx.conn.execute(
        sa.select(exec_sessions.c.id).where(_RUNNING, exec_sessions.c.owner == owner)
    )
    values = {
        "status": ExecStatus.INTERRUPTED.value,
        "outcome_at": tx.now,
        "error": LEASE_LOST_ERROR,
    }
    return sum(
        tx.update(exec_sessions, audit_id, values, "exec.interrupted", _RUNNING)
        for audit_id in running.scalars().all()
    )


async def reap(db: Db) -> int:
    """Take every expired lease and mark its owner's RUNNING rows interrupted; return
    how many rows were marked.

    Raises: AuditUnavailable.
    """

    def expired(conn: Connection) -> list[str]:
        query = sa.select(_L.owner).where(_L.expires_at < db_now(conn.dialect))
        return list(conn.execute(query).scalars().all())

    owners = await db.read("find expired leases", expired)
    if not owners:
        return 0

    def body(tx: ChainTx) -> int:
        still_expired = _L.expires_at < db_now(tx.conn.dialect)
        taken = [_take(tx, owner, still_expired) for owner in owners]
        for owner, count in zip(owners, taken, strict=True):
            if count is not None:
                logger.warning(
                    "audit: the lease of %s expired; %d running exec(s) marked interrupted",
                    owner,
                    count,
                )
        return sum(count or 0 for count in taken)

    return await db.write("reap expired leases", body)


async def release(db: Db, owner: str) -> int:
    """Give up ``owner``'s lease at shutdown, marking its RUNNING rows interrupted;
    return how many.

    Raises: AuditUnavailable.
    """
    return await db.write("release lease", lambda tx: _take(tx, owner) or 0)
