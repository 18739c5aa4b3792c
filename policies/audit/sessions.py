"""Conversational sessions: a principal's working context (cwd, env) on one target,
carried across several execs."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from policies.audit.chain import ChainTx
from policies.audit.db import Db
from policies.audit.ids import SESSION_PREFIX, new_id
from policies.audit.records import session_record
from policies.audit.tables import conv_sessions
from policies.errors import SessionNotFound
from policies.ports import SessionRecord
from policies.types import SessionId


def _load(conn: Connection, session_id: str) -> SessionRecord:
    row = conn.execute(sa.select(conv_sessions).where(conv_sessions.c.id == session_id)).first()
    if row is None:
        raise SessionNotFound(session_id=session_id)
    return session_record(row)


async def create_session(
    db: Db, *, principal: str, target: str, reason: str, cwd: str
) -> SessionRecord:
    """Raises: AuditUnavailable."""
    session_id = new_id(SESSION_PREFIX)

    def body(tx: ChainTx) -> SessionRecord:
        values: dict[str, Any] = {
            "id": session_id,
            "principal": principal,
            "target": target,
            "reason": reason,
            "cwd": cwd,
            "env": {},
            "created_at": tx.now,
            "last_used_at": tx.now,
            "ended_at": None,
            "end_reason": None,
            "anchor": None,
        }
        tx.insert(conv_sessions, values, "session.created")
        return _load(tx.conn, session_id)

    return await db.write("create session", body)


async def get_session(db: Db, session_id: SessionId) -> SessionRecord:
    """Raises: SessionNotFound when there is no such session; AuditUnavailable."""
    return await db.read("read session", lambda conn: _load(conn, session_id))


async def update_session(
    db: Db,
    session_id: SessionId,
    *,
    cwd: str | None,
    env: dict[str, str] | None,
    anchor: str | None = None,
) -> SessionRecord:
    """Set cwd, env (replacing the whole mapping) and/or anchor, and mark the session
    used.

    Raises: SessionNotFound when there is no such session; AuditUnavailable.
    """

    def body(tx: ChainTx) -> SessionRecord:
        values: dict[str, Any] = {"last_used_at": tx.now}
        if cwd is not None:
            values["cwd"] = cwd
        if env is not None:
            values["env"] = {str(k): str(v) for k, v in env.items()}
        if anchor is not None:
            values["anchor"] = anchor
        if not tx.update(conv_sessions, session_id, values, "session.updated"):
            raise SessionNotFound(session_id=session_id)
        return _load(tx.conn, session_id)

    return await db.write("update session", body)


async def find_session(db: Db, anchor: str) -> SessionRecord | None:
    """The newest session shown at ``anchor``. Raises: AuditUnavailable."""
    c = conv_sessions.c
    query = (
        sa.select(conv_sessions)
        .where(c.anchor == anchor)
        .order_by(c.created_at.desc(), c.id.desc())
        .limit(1)
    )
    row = await db.read("find session", lambda conn: conn.execute(query).first())
    return None if row is None else session_record(row)


async def end_session(db: Db, session_id: SessionId, reason: str) -> SessionRecord:
    """End the session; ending an ended session returns it unchanged.

    Raises: SessionNotFound when there is no such session; AuditUnavailable.
    """

    def body(tx: ChainTx) -> SessionRecord:
        values = {"ended_at": tx.now, "end_reason": reason}
        # No row matches when the session already ended (or never existed: _load says).
        tx.update(
            conv_sessions, session_id, values, "session.ended", conv_sessions.c.ended_at.is_(None)
        )
        return _load(tx.conn, session_id)

    return await db.write("end session", body)
