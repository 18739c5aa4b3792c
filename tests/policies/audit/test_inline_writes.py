"""SQLite writes on the event loop's own connection, and their way around a held lock:
the loop never waits for the lock; writes then queue for the writer thread, where they
commit in groups, each in its own savepoint."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from policies.audit import SqlAuditStore, open_audit_store
from policies.audit.backend import BUSY, SqliteBackend
from policies.audit.db_engine import parse_url
from policies.audit.migrate import upgrade
from policies.errors import ExecNotFound
from policies.ports import AuditFilter, ExecOutcome, ExecStatus, RateCheck
from policies.types import AuditId
from tests.conftest import CHECKPOINT_KEY
from tests.policies.audit.support import INTENT, intent


@pytest.fixture
async def db_file(tmp_path: Path) -> Path:
    path = tmp_path / "inline.db"
    await upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@contextlib.asynccontextmanager
async def store_on(db_file: Path, checkpoint_path: Path) -> AsyncIterator[SqlAuditStore]:
    store = await open_audit_store(
        f"sqlite+aiosqlite:///{db_file}",
        checkpoint_path=checkpoint_path,
        checkpoint_key=CHECKPOINT_KEY,
        new_log=True,
    )
    try:
        yield store
    finally:
        await store.aclose()


@contextlib.contextmanager
def lock_held(db_file: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the database's write lock until the block ends."""
    blocker = sqlite3.connect(db_file, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        yield blocker
        blocker.execute("COMMIT")
    finally:
        blocker.close()


async def all_started() -> None:
    # One turn of the loop: every task created before has run up to its first wait.
    await asyncio.sleep(0)


def test_the_loops_connection_never_waits_for_the_lock_nor_checkpoints_the_wal(
    db_file: Path,
) -> None:
    backend = SqliteBackend(parse_url(f"sqlite+aiosqlite:///{db_file}"))
    try:
        _, raw = backend._inline_connection()
        settings = [
            raw.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("busy_timeout", "wal_autocheckpoint")
        ]
        assert settings == [0, 0]
        with lock_held(db_file):
            assert backend.write_now(lambda c: 1) is BUSY
        assert backend.write_now(lambda c: 2) == 2
    finally:
        asyncio.run(backend.dispose())


def test_a_failed_commit_releases_the_lock_and_the_next_write_goes_through(
    db_file: Path,
) -> None:
    backend = SqliteBackend(parse_url(f"sqlite+aiosqlite:///{db_file}"))

    def breaks_at_commit(conn: Connection) -> None:
        # A foreign key checked only at COMMIT: the statement succeeds, the commit fails.
        conn.exec_driver_sql("PRAGMA defer_foreign_keys=ON")
        conn.exec_driver_sql(
            "INSERT INTO approval_votes (approval_id, approver, approve, voted_at) "
            "VALUES ('ap_missing', 'local:bob', 1, '2026-01-01 00:00:00')"
        )

    try:
        with pytest.raises(sa.exc.IntegrityError):
            backend.write_now(breaks_at_commit)
        other = sqlite3.connect(db_file, isolation_level=None, timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")  # would raise "database is locked"
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert backend.write_now(lambda c: 3) == 3
    finally:
        asyncio.run(backend.dispose())


async def test_writes_wait_for_a_held_lock_without_blocking_the_loop_then_commit(
    db_file: Path, checkpoint_path: Path
) -> None:
    async with store_on(db_file, checkpoint_path) as store:

        async def fail() -> None:
            await store.record_outcome(AuditId("ex_missing"), ExecOutcome(ExecStatus.FAILED))

        with lock_held(db_file):
            writes = [
                *(asyncio.ensure_future(store.record_intent(INTENT)) for _ in range(5)),
                asyncio.ensure_future(fail()),
                *(asyncio.ensure_future(store.record_intent(INTENT)) for _ in range(5)),
            ]
            await all_started()
            # The loop went on, and nothing was written past the held lock.
            assert not any(w.done() for w in writes)
        with anyio.fail_after(30):
            results = await asyncio.gather(*writes, return_exceptions=True)

        # The failing write rolled back only itself in the group.
        assert [type(r) for r in results].count(ExecNotFound) == 1
        assert all(isinstance(r, str) for r in results[:5] + results[6:])
        report = await store.verify()
        assert (report.ok, report.rows_checked) == (True, 10)
        assert isinstance(await store.record_intent(INTENT), str)


async def test_rate_limited_writes_queued_behind_a_held_lock_never_exceed_the_rate(
    db_file: Path, checkpoint_path: Path
) -> None:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=60)
    rate = RateCheck(since=since, limit=7, refusal=intent(effect="deny", status=ExecStatus.DENIED))
    async with store_on(db_file, checkpoint_path) as one, store_on(db_file, checkpoint_path) as two:
        with lock_held(db_file):
            writes = [
                asyncio.ensure_future(store.record_rated_intent(INTENT, rate))
                for store in [one, two] * 15
            ]
            await all_started()
            assert not any(w.done() for w in writes)
        with anyio.fail_after(30):
            results = await asyncio.gather(*writes)

        assert sum(not limited for _, limited in results) == 7
        records = await one.list_execs(AuditFilter(limit=100))
        assert sorted(r.intent.effect for r in records) == ["allow"] * 7 + ["deny"] * 23
