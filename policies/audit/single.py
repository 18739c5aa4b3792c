"""A chain write as one PostgreSQL statement: one round trip, one commit.

The write path of every exec (its intent, then its outcome) changes one row and appends
the event recording it. In a transaction that costs BEGIN, the advisory lock, the head,
the change, the event and COMMIT: six or more round trips, each a wake-up of the server
process. Here the process's last known head is taken on trust and the whole write is
sent as one statement, committed on its own:

    WITH lk     AS (SELECT pg_advisory_xact_lock(...)),         -- the chain's write lock
         ok     AS (SELECT 1 FROM lk WHERE <the event at the known head exists>
                                         AND <the guard, e.g. the rate is not used up>),
         claim0 AS (INSERT INTO request_keys ... SELECT ... FROM ok RETURNING 1),
         row0   AS (INSERT INTO exec_sessions ... SELECT ... FROM claim0|ok RETURNING 1
                    | UPDATE exec_sessions ... WHERE id = ... AND EXISTS (SELECT FROM ok)),
         ev0    AS (INSERT INTO audit_events ... SELECT ... FROM row0 RETURNING 1),
         row1   AS (... FROM ev0 ...), ev1 AS (...), ...     -- the next writes, in order
    SELECT count(*) FROM ev<last>

Each step reads the rows the step before returned, so the writes are all made or none.
It appended its events (count 1) only when the chain's head was the one they were
hashed on: ``audit_events.seq`` is the primary key and every write appends at head + 1,
so had any other transaction appended since, the insert at that seq fails on the key
(the unique check sees rows committed after the statement's snapshot, and waits for
ones in flight). The same holds the guard exact: a guard read from a snapshot that
missed a concurrent write belongs to a statement that fails. A request key already
claimed fails the statement too. A statement that fails, or writes nothing (unknown
head, guard false, no row to update), has changed nothing: the caller then runs the
write as an ordinary transaction, which reports what went wrong.

Writes that arrive together (``batches``) go in one transaction instead: the chain's
lock, the head read under it, then a statement per run of writes of one shape, each
hashed on the head the one before it left, and one commit.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg

from policies.audit.chain import Head, next_event
from policies.audit.db_engine import CHAIN_LOCK_KEY
from policies.audit.prepared import Prepared, prepare
from policies.audit.tables import audit_events, request_keys

_DIALECT = pg_asyncpg.dialect()  # type: ignore[no-untyped-call]
_EVENT_KEYS = ("seq", "kind", "subject", "payload", "created_at", "prev_hash", "hash")
_ONE: sa.Label[Any] = sa.literal_column("1").label("one")


@dataclass(frozen=True, slots=True)
class Append:
    """One row change and the event that records it (see the module's docstring)."""

    table: sa.Table
    kind: str
    subject: str  # the row's id
    values: Mapping[str, Any]  # the row's new values, except ``stamp``
    stamp: str  # the column that takes the write's time
    update: bool = False  # update the row ``subject`` instead of inserting it
    request_key: str | None = None  # claimed for ``subject`` in the same statement
    guard: sa.ColumnElement[bool] | None = None  # nothing is written unless it holds
    guard_params: Mapping[str, Any] = field(default_factory=dict)
    guard_reads: frozenset[str] = frozenset()  # the columns of ``table`` the guard reads
    result: Any = None  # what the write returns when the statement did it

    def shape(self) -> _Shape:
        return (self.table, (*self.values, self.stamp), self.update, self.request_key is not None)


# What a statement is compiled for: table, columns, update, request key claimed.
_Shape = tuple[sa.Table, tuple[str, ...], bool, bool]
MAX_APPENDS = 4
# A group's statements inside one transaction: how many writes of one shape each takes.
MAX_BATCHED = 8

# In a group's transaction, before its statements: the chain's write lock, then the head
# (no row while the chain is empty), read by a statement of its own so that its snapshot
# is taken once the lock is held.
LOCK_AND_HEAD: tuple[tuple[str, tuple[Any, ...]], ...] = (
    ("SELECT pg_advisory_xact_lock($1)", (CHAIN_LOCK_KEY,)),
    ("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1", ()),
)


def joinable(appends: Sequence[Append]) -> bool:
    """Whether ``appends`` can go in one statement: a few; an update only first (one
    that matched nothing would leave the writes before it standing); one guard at most,
    after nothing but updates of columns it does not read (it reads the database as it
    was before the statement)."""
    if not 0 < len(appends) <= MAX_APPENDS or any(a.update for a in appends[1:]):
        return False
    guarded = [i for i, a in enumerate(appends) if a.guard is not None]
    if not guarded:
        return True
    if len(guarded) > 1:
        return False
    reads = appends[guarded[0]].guard_reads
    return all(a.update and not {*a.values, a.stamp} & reads for a in appends[: guarded[0]])


def batches(appends: Sequence[Append]) -> list[list[int]]:
    """``appends`` (their indexes) cut into statements to run one after the other in one
    transaction holding the chain's lock (each sees what the ones before it wrote).

    Writes of one shape share a statement, up to ``MAX_BATCHED``, so that few distinct
    statements are ever prepared; the order between writes of different shapes changes
    (they come from different callers, none waiting on another). A guarded write has a
    statement of its own, in its order among the guarded ones: its guard then reads
    every write before it. Every statement must append all of its events: one that
    appends fewer (a guard false, no row to update) leaves the transaction to be
    rolled back.
    """
    runs: dict[_Shape, list[int]] = {}
    cut: list[list[int]] = []
    for i, append in enumerate(appends):
        if append.guard is not None:
            cut.append([i])
            continue
        run = runs.setdefault(append.shape(), [])
        if len(run) == MAX_BATCHED:
            cut.append(run.copy())
            run.clear()
        run.append(i)
    return [*cut, *(run for run in runs.values() if run)]


def bind(
    appends: Sequence[Append], head: Head, now: dt.datetime
) -> tuple[Prepared, tuple[Any, ...], Head]:
    """The statement making ``appends`` in order (``joinable``), its parameters, and
    the chain's head once it has run."""
    guarded = next((a for a in appends if a.guard is not None), None)
    params: dict[str, Any] = {
        "lock_key": CHAIN_LOCK_KEY,
        "prev_seq": head.seq,
        "prev_hash": head.hash,
        **({} if guarded is None else guarded.guard_params),
    }
    for i, append in enumerate(appends):
        changes = {**append.values, append.stamp: now}
        event, head = next_event(head, append.kind, append.subject, changes, now)
        params[f"a{i}_subject"] = append.subject
        params[f"a{i}_claim_key"] = append.request_key
        params.update({f"a{i}_row_{k}": v for k, v in changes.items()})
        params.update({f"a{i}_ev_{k}": v for k, v in event.items()})
    guard = None if guarded is None else guarded.guard
    statement = _statement(tuple(a.shape() for a in appends), guard)
    return statement, statement.params(params), head


@functools.lru_cache(maxsize=128)
def _statement(shapes: tuple[_Shape, ...], guard: sa.ColumnElement[bool] | None) -> Prepared:
    lock = sa.func.pg_advisory_xact_lock(sa.bindparam("lock_key", type_=sa.BigInteger))
    lk = sa.select(lock.label("locked")).cte("lk")
    ev = audit_events.c
    at_head = sa.exists().where(
        ev.seq == sa.bindparam("prev_seq", type_=sa.BigInteger),
        ev.hash == sa.bindparam("prev_hash", type_=sa.String),
    )
    ok = sa.select(_ONE).select_from(lk).where(at_head, *([] if guard is None else [guard]))
    # Each step reads the rows the one before returned: the first that writes nothing
    # leaves every later one with nothing to write.
    source: sa.CTE = ok.cte("ok")
    for i, (table, keys, update, claim) in enumerate(shapes):
        subject = sa.bindparam(f"a{i}_subject", type_=sa.String)
        binds = {k: sa.bindparam(f"a{i}_row_{k}", type_=table.c[k].type) for k in keys}
        if update:
            row: sa.Insert | sa.Update = (
                table.update()
                .where(table.c.id == subject, sa.exists(sa.select(source.c.one)))
                .values(binds)
            )
        else:
            if claim:
                key = sa.bindparam(f"a{i}_claim_key", type_=sa.String)
                source = (
                    request_keys.insert()
                    .from_select(["key", "audit_id"], sa.select(key, subject).select_from(source))
                    .returning(_ONE)
                    .cte(f"claim{i}")
                )
            row = table.insert().from_select(
                list(keys), sa.select(*binds.values()).select_from(source)
            )
        row_cte = row.returning(_ONE).cte(f"row{i}")
        event_binds = [
            sa.bindparam(f"a{i}_ev_{k}", type_=audit_events.c[k].type) for k in _EVENT_KEYS
        ]
        source = (
            audit_events.insert()
            .from_select(list(_EVENT_KEYS), sa.select(*event_binds).select_from(row_cte))
            .returning(_ONE)
            .cte(f"ev{i}")
        )
    statement = sa.select(sa.func.count()).select_from(source)
    return prepare(statement, _DIALECT)
