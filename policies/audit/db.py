"""The store's handle on its database: fail-closed reads, and writes committed in
groups.

All writes of one store go through a single writer task, which serialises the chain in
this process (the database's lock does so between processes). Writes that arrive while
a transaction is in flight are committed together in the next one, each in its own
savepoint: one failing operation rolls back only its own changes, and a busy server
pays one commit (and on PostgreSQL one disk flush) per group instead of per change.

On PostgreSQL a group whose writes all come with a single-statement form
(``policies.audit.single``: an exec's intent and its outcome) takes no savepoints and
no Core. A write alone is sent as one statement hashed on the head this process last
committed (one round trip). Otherwise, or when that head was stale (another replica
wrote since), the group is one transaction on the driver: the chain's lock, the head,
then a few statements each appending up to ``MAX_BATCHED`` writes of one shape, and
one commit; the lock is held for a handful of round trips whatever the group's size.
When a statement appends fewer events than it carries (a rate used up, a request key
taken, no row to update), the group is rolled back and runs as a transaction of its
bodies, which tells each write's caller what went wrong.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import Connection

from policies.audit.backend import BUSY, Backend, Busy
from policies.audit.chain import ChainTx, Head
from policies.audit.checkpoint import CheckpointWriter, Segment
from policies.audit.errors import STORAGE_ERRORS, audit_errors
from policies.audit.single import LOCK_AND_HEAD, Append, batches, bind, joinable
from policies.errors import AuditUnavailable

T = TypeVar("T")
logger = logging.getLogger("policies.audit")

MAX_GROUP = 64


@dataclass(slots=True)
class _Write:
    operation: str
    body: Callable[[ChainTx], Any]
    future: asyncio.Future[Any]
    durable: bool = True
    single: Append | None = None


# What one write of a group produced: its result, or the exception it raised.
_Outcome = tuple[bool, Any]


def _run_alone(body: Callable[[ChainTx], T], conn: Connection) -> tuple[T, ChainTx]:
    """One write alone in its transaction: an exception rolls all of it back."""
    tx = ChainTx.begin(conn)
    result = body(tx)
    tx.flush()
    return result, tx


def _run_group(group: list[_Write], conn: Connection) -> tuple[list[_Outcome], ChainTx]:
    if len(group) == 1:
        result, tx = _run_alone(group[0].body, conn)
        return [(True, result)], tx
    tx = ChainTx.begin(conn)
    outcomes: list[_Outcome] = []
    for write in group:
        tx.refresh_time()
        mark = tx.mark()
        savepoint = conn.begin_nested()
        try:
            result = write.body(tx)
        except STORAGE_ERRORS:
            raise  # the transaction itself is broken: the whole group fails
        except Exception as exc:
            savepoint.rollback()
            tx.rewind(mark)
            outcomes.append((False, exc))
            continue
        savepoint.commit()
        outcomes.append((True, result))
    tx.flush()
    return outcomes, tx


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # the caller gave up waiting
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class Db:
    """Transactions against the audit database; storage failures raise AuditUnavailable.

    Operations are plain functions, each run inside a transaction (see ``backend``).
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.checkpoints: CheckpointWriter | None = None
        self._queue: list[_Write] = []
        self._writer: asyncio.Task[None] | None = None
        # The head this process's last write left (a hint: a single statement checks it).
        self._head: Head | None = None

    async def write(
        self,
        operation: str,
        body: Callable[[ChainTx], T],
        *,
        durable: bool = True,
        single: Append | None = None,
    ) -> T:
        """Run ``body`` in a chain transaction: its row changes and their events commit
        together (or not at all), then the new head is checkpointed.

        ``durable=False`` lets the commit return before it reaches the disk (PostgreSQL:
        ``synchronous_commit = off`` for that transaction): for a write whose loss in a
        database crash is recoverable, such as an exec's outcome, whose RUNNING row is
        then marked interrupted. Commits stay in order: a later durable commit makes
        every earlier one durable. A group is durable when any of its writes asks to be.

        ``single``: the same write as one statement, tried first when the backend can
        (its ``result`` is returned when it ran; ``body`` runs when it wrote nothing).

        Raises: AuditUnavailable when the database fails; whatever ``body`` raises
        (its changes are rolled back).
        """
        if self._idle():
            # Nothing of this store is in flight: write now if the lock is free.
            done = self._write_now(operation, body)
            if done is not BUSY:
                return done
        return await self._enqueue(operation, body, durable, single)

    def _idle(self) -> bool:
        return not self._queue and (self._writer is None or self._writer.done())

    def _enqueue(
        self,
        operation: str,
        body: Callable[[ChainTx], T],
        durable: bool,
        single: Append | None,
    ) -> asyncio.Future[T]:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_Write(operation, body, future, durable, single))
        self._start()
        return future

    def _start(self) -> None:
        """Drain the queue unless that is under way."""
        if self._queue and (self._writer is None or self._writer.done()):
            self._writer = asyncio.create_task(self._drain())

    def _write_now(self, operation: str, body: Callable[[ChainTx], T]) -> T | Busy:
        with audit_errors(operation):
            done = self.backend.write_now(functools.partial(_run_alone, body))
        if done is BUSY:
            return BUSY
        result, tx = done
        self._head = tx.head
        self._note(tx.start, tx.head)
        return result

    async def _drain(self) -> None:
        while self._queue:
            group = [w for w in self._queue[:MAX_GROUP] if not w.future.done()]
            del self._queue[:MAX_GROUP]
            if group and not await self._statements(group):
                await self._commit(group)

    async def _statements(self, group: list[_Write]) -> bool:
        """Run ``group`` as single statements (``policies.audit.single``): alone on the
        head this process last wrote, else in one transaction that reads the head under
        the chain's lock. False when it must run as a transaction of its bodies (a write
        with no such form, or the statements wrote nothing: the bodies report why)."""
        appends = [w.single for w in group if w.single is not None]
        if len(appends) < len(group) or not self.backend.single_statements:
            return False
        durable = any(w.durable for w in group)
        try:
            done = await self._single(appends, durable) or await self._batch(appends, durable)
        except STORAGE_ERRORS as exc:
            self._head = None  # the commit may or may not have happened
            self._failed(group, exc)
            return True
        if done:
            for write, append in zip(group, appends, strict=True):
                _settle(write.future, True, append.result)
        return done

    async def _single(self, appends: list[Append], durable: bool) -> bool:
        """One statement committed on its own, hashed on the head this process last
        wrote: False when it wrote nothing (another writer appended since)."""
        head = self._head
        if head is None or not joinable(appends):
            return False
        statement, params, new_head = bind(appends, head, dt.datetime.now(dt.UTC))
        self._head = None  # until the statement is known to have committed
        try:
            appended = await self.backend.run_single(statement.sql, params, durable=durable)
        except asyncpg.IntegrityConstraintViolationError:
            return False  # another writer appended first, or a duplicate: rolled back
        if appended != 1:
            return False
        self._head = new_head
        self._note(head, new_head)
        return True

    async def _batch(self, appends: list[Append], durable: bool) -> bool:
        """One transaction: the chain's lock and head, then the group's statements
        (``batches``); all commit, or none and False."""
        now = dt.datetime.now(dt.UTC)
        heads: list[Head] = []

        def statements(row: Sequence[Any] | None) -> list[tuple[str, Sequence[Any]]]:
            if row is None:
                return []  # an empty chain: its first event is hashed in a transaction
            head = start = Head(row[0], row[1])
            out: list[tuple[str, Sequence[Any]]] = []
            for indexes in batches(appends):
                statement, params, head = bind([appends[i] for i in indexes], head, now)
                out.append((statement.sql, params))
            heads[:] = [start, head]
            return out

        self._head = None
        if not await self.backend.run_batch(LOCK_AND_HEAD, statements, durable=durable):
            return False
        start, self._head = heads
        self._note(start, self._head)
        return True

    def _failed(self, group: list[_Write], exc: BaseException) -> None:
        logger.exception("audit store: %s failed", ", ".join(w.operation for w in group))
        for write in group:
            failure = AuditUnavailable(operation=write.operation)
            failure.__cause__ = exc
            _settle(write.future, False, failure)

    async def _commit(self, group: list[_Write]) -> None:
        try:
            durable = any(w.durable for w in group)
            outcomes, tx = await self.backend.write(
                functools.partial(_run_group, group), durable=durable
            )
        except Exception as exc:
            self._head = None  # the commit may or may not have happened
            if isinstance(exc, STORAGE_ERRORS):
                self._failed(group, exc)
            else:
                for write in group:
                    _settle(write.future, False, exc)
            return
        self._head = tx.head
        self._note(tx.start, tx.head)
        for write, (ok, value) in zip(group, outcomes, strict=True):
            _settle(write.future, ok, value)

    def _note(self, start: Head, head: Head) -> None:
        # The run a write appended, with the hashes computed here: the only events this
        # process may vouch for.
        if head.seq > start.seq and self.checkpoints is not None:
            self.checkpoints.note(Segment(start.seq + 1, start.hash, head.seq, head.hash))

    async def read(
        self, operation: str, body: Callable[[Connection], T], *, snapshot: bool = False
    ) -> T:
        """Run ``body`` in a read transaction.

        Raises: AuditUnavailable when the database fails; whatever ``body`` raises.
        """
        with audit_errors(operation):
            return await self.backend.read(body, snapshot=snapshot)

    async def aclose(self) -> None:
        """Finish queued writes, write the last checkpoint, close the connections."""
        try:
            self._start()
            if self._writer is not None:
                await asyncio.wait([self._writer])
            if self.checkpoints is not None:
                await self.checkpoints.flush()
        finally:
            with audit_errors("close"):
                await self.backend.dispose()
