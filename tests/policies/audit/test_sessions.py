"""Conversational sessions: create, read, update cwd/env, end."""

from __future__ import annotations

import pytest

from policies.audit import SqlAuditStore
from policies.errors import SessionNotFound
from policies.types import SessionId


async def test_session_is_created_open_with_an_empty_env(audit_store: SqlAuditStore) -> None:
    created = await audit_store.create_session(
        principal="slack:U1", target="demo-api/c-1", reason="debug", cwd="/code"
    )

    fetched = await audit_store.get_session(created.session_id)

    assert fetched == created
    assert created.session_id.startswith("se_")
    assert (created.cwd, created.env, created.ended_at) == ("/code", {}, None)
    assert created.last_used_at == created.created_at


async def test_update_sets_cwd_and_replaces_env(audit_store: SqlAuditStore) -> None:
    session = await audit_store.create_session(
        principal="slack:U1", target="demo-api/c-1", reason="", cwd="/"
    )

    moved = await audit_store.update_session(session.session_id, cwd="/tmp")
    with_env = await audit_store.update_session(session.session_id, env={"A": "1", "B": "2"})
    replaced = await audit_store.update_session(session.session_id, env={"C": "3"})

    assert (moved.cwd, moved.env) == ("/tmp", {})
    assert (with_env.cwd, with_env.env) == ("/tmp", {"A": "1", "B": "2"})
    assert replaced.env == {"C": "3"}
    assert replaced.last_used_at >= session.last_used_at


async def test_ending_a_session_records_when_and_why_once(audit_store: SqlAuditStore) -> None:
    session = await audit_store.create_session(
        principal="slack:U1", target="demo-api/c-1", reason="", cwd="/"
    )

    ended = await audit_store.end_session(session.session_id, "user ended")
    again = await audit_store.end_session(session.session_id, "idle")

    assert ended.ended_at is not None and ended.end_reason == "user ended"
    assert again == ended
    assert (await audit_store.verify()).rows_checked == 2


async def test_unknown_session_is_session_not_found(audit_store: SqlAuditStore) -> None:
    missing = SessionId("se_missing")

    for call in (
        audit_store.get_session(missing),
        audit_store.update_session(missing, cwd="/"),
        audit_store.end_session(missing, "x"),
    ):
        with pytest.raises(SessionNotFound):
            await call
