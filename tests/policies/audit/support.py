"""Helpers for the audit store tests: sample records and raw SQL behind the store's back."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from policies.audit.db_engine import create_engine
from policies.ports import ExecIntent

INTENT = ExecIntent(
    principal="local:alice",
    surface="cli",
    target="demo-api/c-1a2b3c",
    provider="local",
    function="demo-api",
    instance="c-1a2b3c",
    argv=("ls", "-l", "/tmp"),
    command_text=None,
    reason="debugging",
    effect="allow",
    rule_id="read-only",
    decision_reason="read-only diagnostics are allowed",
)


def intent(**changes: Any) -> ExecIntent:
    return dataclasses.replace(INTENT, **changes)


async def execute(url: str, sql: str, params: Mapping[str, Any] | None = None) -> int:
    """Run one statement directly against the database (tampering, inspection);
    returns the affected row count."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(sa.text(sql), dict(params or {}))
            return result.rowcount if result.returns_rows is False else -1
    finally:
        await engine.dispose()


async def scalar(url: str, sql: str, params: Mapping[str, Any] | None = None) -> Any:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.scalar(sa.text(sql), dict(params or {}))
    finally:
        await engine.dispose()
