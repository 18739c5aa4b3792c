"""The hash chain: canonical JSON, event hashes, and the write transaction that changes
rows and appends their events together.

    hash(n) = sha256(prev_hash || canonical({seq, kind, subject, payload, created_at}))

with ``prev_hash`` of the first event all zeros. ``payload`` is itself canonical JSON
(sorted keys, no whitespace, ASCII) of the column values the event set, so the row
tables can be rebuilt from the chain.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from policies.audit.prepared import (
    SUBJECT,
    driver,
    on_driver,
    prepared_insert,
    prepared_update,
)
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


def _encodable(value: Any) -> Any:
    # Called by the encoder only for what JSON has no form of; str and int enums
    # (StrEnum, IntEnum) are encoded as their values without it, as json_value does.
    if isinstance(value, dt.datetime):
        return to_utc(value).isoformat(timespec="microseconds")
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# One encoder in C for every event: the same text as json.dumps(json_value(v), ...)
# (a test holds them equal) without first copying the value in Python.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=_encodable)


def _str_keys_only(value: Any) -> bool:
    """Whether every mapping in ``value`` has only str keys (the encoder would spell
    other keys, and sort them, differently from ``json_value``)."""
    if isinstance(value, dict):
        return all(type(k) is str for k in value) and all(
            _str_keys_only(v) for v in value.values() if isinstance(v, dict | list | tuple)
        )
    if isinstance(value, list | tuple):
        return all(_str_keys_only(v) for v in value if isinstance(v, dict | list | tuple))
    return True


def canonical(value: Any) -> str:
    """Canonical JSON: sorted keys, no whitespace, ASCII only (so any text, even with
    lone surrogates, hashes the same everywhere)."""
    if _str_keys_only(value):
        return _ENCODER.encode(value)
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


# Statements of the write path, built once: building one costs more than running it.
_HEAD = (
    sa.select(audit_events.c.seq, audit_events.c.hash).order_by(audit_events.c.seq.desc()).limit(1)
)
_APPEND = audit_events.insert()


@functools.cache
def _insert_into(table: sa.Table) -> sa.Insert:
    return table.insert()


@functools.cache
def _update_by_id(table: sa.Table) -> sa.Update:
    return table.update().where(table.c.id == sa.bindparam(SUBJECT))


_HEAD_SQL = "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1"


def read_head(conn: Connection, prepared: bool) -> Head:
    if prepared:
        row = driver(conn).execute(_HEAD_SQL).fetchone()
    else:
        row = conn.execute(_HEAD).first()
    return Head(0, GENESIS_HASH) if row is None else Head(int(row[0]), str(row[1]))


def next_event(
    head: Head, kind: str, subject: str, changes: Mapping[str, Any], now: dt.datetime
) -> tuple[dict[str, Any], Head]:
    """The ``audit_events`` row that follows ``head`` recording ``changes``, and the new
    head."""
    payload = canonical(changes)
    seq = head.seq + 1
    digest = event_hash(head.hash, seq, kind, subject, payload, now)
    row = {
        "seq": seq,
        "kind": kind,
        "subject": subject,
        "payload": payload,
        "created_at": now,
        "prev_hash": head.hash,
        "hash": digest,
    }
    return row, Head(seq, digest)


@dataclass(slots=True)
class ChainTx:
    """One write transaction: row changes plus the events that describe them.

    Runs inside a backend write transaction (which holds the chain's write lock), so
    the head read at the start stays the head until commit.
    """

    conn: Connection
    head: Head
    now: dt.datetime
    prepared: bool  # statements run prepared on the driver (see policies.audit.prepared)
    start: Head = Head(0, GENESIS_HASH)  # the head this transaction found
    _events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def begin(cls, conn: Connection) -> ChainTx:
        prepared = on_driver(conn)
        head = read_head(conn, prepared)
        return cls(conn, head, dt.datetime.now(dt.UTC), prepared, head)

    @property
    def appended(self) -> int:
        return len(self._events)

    def refresh_time(self) -> None:
        """Stamp what follows with the current time (each write of a group has its own)."""
        self.now = dt.datetime.now(dt.UTC)

    def mark(self) -> tuple[Head, int]:
        """A point to ``rewind`` to when a step of a batch is rolled back."""
        return self.head, len(self._events)

    def rewind(self, mark: tuple[Head, int]) -> None:
        self.head = mark[0]
        del self._events[mark[1] :]

    def event(self, kind: str, subject: str, changes: Mapping[str, Any]) -> None:
        """Queue the event ``kind`` for ``subject``; it is written with the transaction."""
        row, self.head = next_event(self.head, kind, subject, changes, self.now)
        self._events.append(row)

    def insert(
        self, table: sa.Table, values: Mapping[str, Any], kind: str, subject: str | None = None
    ) -> None:
        """Insert a row and record ``kind`` with all its values."""
        if self.prepared:
            prepared_insert(self.conn.dialect, table, tuple(values)).run(self.conn, values)
        else:
            # Values as parameters, not in the statement: the compiled statement is cached.
            self.conn.execute(_insert_into(table), dict(values))
        self.event(kind, subject if subject is not None else str(values["id"]), values)

    def update(
        self,
        table: sa.Table,
        subject: str,
        values: Mapping[str, Any],
        kind: str,
        *where: sa.ColumnElement[bool],
    ) -> bool:
        """Update the row ``subject`` (when ``where`` holds) and record ``kind`` with the
        new values; False when no row matched (nothing recorded)."""
        params = {SUBJECT: subject, **values}
        if not where and self.prepared:
            count = prepared_update(self.conn.dialect, table, tuple(values)).run(self.conn, params)
        else:
            statement = _update_by_id(table)
            if where:
                statement = statement.where(*where)
            count = self.conn.execute(statement, params).rowcount
        if count != 1:
            return False
        self.event(kind, subject, values)
        return True

    def flush(self) -> None:
        """Write the queued events; call last, before the transaction commits."""
        if not self._events:
            return
        if self.prepared:
            keys = tuple(self._events[0])
            prepared_insert(self.conn.dialect, audit_events, keys).run_many(self.conn, self._events)
        else:
            self.conn.execute(_APPEND, self._events)
