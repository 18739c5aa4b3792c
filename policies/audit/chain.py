"""The hash chain: canonical JSON, event hashes, and the write transaction that changes a
row and appends its event together.

    hash(n) = sha256(prev_hash || canonical({seq, kind, subject, payload, created_at}))

with ``prev_hash`` of the first event all zeros. ``payload`` is itself canonical JSON
(sorted keys, no whitespace, ASCII) of the column values the event set, so the row
tables can be rebuilt from the chain.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from policies.audit.engine import write_transaction
from policies.audit.tables import audit_events, to_utc

GENESIS_HASH = "0" * 64


def json_value(value: Any) -> Any:
    """``value`` as stored in an event payload (datetimes as UTC ISO text)."""
    if isinstance(value, dt.datetime):
        return to_utc(value).isoformat(timespec="microseconds")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    return value


def canonical(value: Any) -> str:
    """Canonical JSON: sorted keys, no whitespace, ASCII only (so any text, even with
    lone surrogates, hashes the same everywhere)."""
    return json.dumps(json_value(value), sort_keys=True, separators=(",", ":"))


def event_hash(
    prev_hash: str, seq: int, kind: str, subject: str, payload: str, created_at: dt.datetime
) -> str:
    body = canonical(
        {
            "seq": seq,
            "kind": kind,
            "subject": subject,
            "payload": payload,
            "created_at": created_at,
        }
    )
    return hashlib.sha256((prev_hash + body).encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class Head:
    seq: int
    hash: str


async def read_head(conn: AsyncConnection) -> Head:
    row = (
        await conn.execute(
            sa.select(audit_events.c.seq, audit_events.c.hash)
            .order_by(audit_events.c.seq.desc())
            .limit(1)
        )
    ).first()
    return Head(0, GENESIS_HASH) if row is None else Head(int(row.seq), str(row.hash))


@dataclass(slots=True)
class ChainTx:
    """One write transaction: row changes plus the events that describe them."""

    conn: AsyncConnection
    head: Head
    now: dt.datetime
    _events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def appended(self) -> int:
        return len(self._events)

    def event(self, kind: str, subject: str, changes: Mapping[str, Any]) -> None:
        """Queue the event ``kind`` for ``subject``; it is written with the transaction."""
        payload = canonical(changes)
        seq = self.head.seq + 1
        digest = event_hash(self.head.hash, seq, kind, subject, payload, self.now)
        self._events.append(
            {
                "seq": seq,
                "kind": kind,
                "subject": subject,
                "payload": payload,
                "created_at": self.now,
                "prev_hash": self.head.hash,
                "hash": digest,
            }
        )
        self.head = Head(seq, digest)

    async def insert(
        self, table: sa.Table, values: Mapping[str, Any], kind: str, subject: str | None = None
    ) -> None:
        """Insert a row and record ``kind`` with all its values."""
        await self.conn.execute(table.insert().values(**values))
        self.event(kind, subject if subject is not None else str(values["id"]), values)

    async def update(
        self,
        table: sa.Table,
        subject: str,
        values: Mapping[str, Any],
        kind: str,
        *where: sa.ColumnElement[bool],
    ) -> bool:
        """Update the row ``subject`` (when ``where`` holds) and record ``kind`` with the
        new values; False when no row matched (nothing recorded)."""
        result = await self.conn.execute(
            table.update().where(table.c.id == subject, *where).values(**values)
        )
        if result.rowcount != 1:
            return False
        self.event(kind, subject, values)
        return True

    async def flush(self) -> None:
        if self._events:
            await self.conn.execute(audit_events.insert(), self._events)


@asynccontextmanager
async def chain_transaction(engine: AsyncEngine) -> AsyncIterator[ChainTx]:
    """A write transaction positioned at the chain head; its events are appended and
    committed together with its row changes, or not at all."""
    async with write_transaction(engine) as conn:
        tx = ChainTx(conn, await read_head(conn), dt.datetime.now(dt.UTC))
        yield tx
        await tx.flush()
