"""``SqlAuditStore``: the SQL implementation of ``policies.ports.AuditStore``."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from policies.audit import approvals as approval_ops
from policies.audit import leases, nonces
from policies.audit import sessions as session_ops
from policies.audit.backend import open_backend
from policies.audit.browse import AuditBrowser
from policies.audit.chain import ChainTx
from policies.audit.checkpoint import CheckpointWriter, Publish, start_checkpoint
from policies.audit.db import Db
from policies.audit.db_engine import CONNECT_TIMEOUT_S
from policies.audit.errors import audit_errors
from policies.audit.ids import EXEC_PREFIX, new_id
from policies.audit.observe import AuditObserver
from policies.audit.owner import current_owner, hostname, owner_is_dead
from policies.audit.prepared import prepared_select
from policies.audit.records import exec_record, intent_values, outcome_values
from policies.audit.revision import SCHEMA_HEAD
from policies.audit.single import Append
from policies.audit.tables import (
    RATE_COUNTED,
    approvals,
    conv_sessions,
    exec_sessions,
    request_keys,
)
from policies.audit.verify import verify_store
from policies.errors import AuditUnavailable, ConfigError, DuplicateRequest, ExecNotFound
from policies.ports import (
    ApprovalRecord,
    ApprovalRequest,
    ApprovalState,
    AuditFilter,
    ExecIntent,
    ExecOutcome,
    ExecRecord,
    ExecStatus,
    RateCheck,
    SessionRecord,
    VerifyReport,
)
from policies.types import ApprovalId, AuditId, SessionId

logger = logging.getLogger("policies.audit")

MAX_LIST = 10_000
INTERRUPTED_ERROR = "ExecGate stopped before the command finished"
_OUTCOME = "exec.outcome"


# The requests that use up a rate: refused ones (including those refused by this very
# rate) do not, or a burst would lock its sender out for good. A rate check only needs
# to know whether the limit is reached, so it stops counting there: its cost is bounded
# by the limit, not by how many requests the window holds.
_COUNTED: sa.Select[Any] = (
    sa.select(sa.literal_column("1"))
    .select_from(exec_sessions)
    .where(
        exec_sessions.c.principal == sa.bindparam("principal"),
        exec_sessions.c.rule_id == sa.bindparam("rule_id"),
        exec_sessions.c.created_at >= sa.bindparam("since"),
        sa.text(RATE_COUNTED),
    )
    .limit(sa.bindparam("limit", type_=sa.Integer))
)
_COUNT_UP_TO = sa.select(sa.func.count()).select_from(_COUNTED.subquery())
_RATE_LEFT = _COUNT_UP_TO.scalar_subquery() < sa.bindparam("limit", type_=sa.Integer)
_RATE_READS = ("principal", "rule_id", "created_at", "effect")


def _claim_key(tx: ChainTx, key: str, audit_id: str) -> None:
    """Raises: DuplicateRequest when ``key`` was recorded before (by any process)."""
    insert = pg_insert if tx.conn.dialect.name == "postgresql" else sqlite_insert
    claim = insert(request_keys).values(key=key, audit_id=audit_id).on_conflict_do_nothing()
    if tx.conn.execute(claim).rowcount == 1:
        return
    existing = tx.conn.scalar(sa.select(request_keys.c.audit_id).where(request_keys.c.key == key))
    raise DuplicateRequest(audit_id=existing)


def _insert_intent(tx: ChainTx, audit_id: str, intent: ExecIntent, owner: str) -> None:
    if intent.request_key:
        _claim_key(tx, intent.request_key, audit_id)
    values = {"id": audit_id, "created_at": tx.now, **intent_values(intent), "owner": owner}
    tx.insert(exec_sessions, values, "exec.intent")


def _single_intent(
    audit_id: str, intent: ExecIntent, owner: str, rate: RateCheck | None = None
) -> Append:
    """``_insert_intent`` (under ``rate``: when the rate is not used up) as one statement."""
    return Append(
        exec_sessions,
        "exec.intent",
        audit_id,
        {"id": audit_id, **intent_values(intent), "owner": owner},
        "created_at",
        request_key=intent.request_key or None,
        guard=None if rate is None else _RATE_LEFT,
        guard_params={}
        if rate is None
        else {
            "principal": intent.principal,
            "rule_id": intent.rule_id,
            "since": rate.since,
            "limit": rate.limit,
        },
        guard_reads=frozenset(_RATE_READS),
        result=None if rate is None else False,
    )


class SqlAuditStore:
    """The hash-chained audit log in SQLite or PostgreSQL (see ``open_audit_store``).

    Every method raises AuditUnavailable when the database cannot be used; nothing is
    half-written: a row change and its chain event commit together.
    """

    def __init__(
        self,
        db: Db,
        checkpoint_path: Path | None,
        checkpoint_key: Ed25519PrivateKey | None,
        owner: str | None,
    ) -> None:
        self._db = db
        self._checkpoint_path = checkpoint_path
        self._public_key = None if checkpoint_key is None else checkpoint_key.public_key()
        self._owner = owner
        self._closed = False
        self.observer: AuditObserver | None = None

    # ------------------------------------------------------------------ execs

    async def record_intent(self, intent: ExecIntent) -> AuditId:
        """Write the intent row before anything runs; returns its audit id.

        Raises: DuplicateRequest when the intent's request key was recorded before (by
        any process on this database: nothing is written); AuditUnavailable.
        """
        audit_id = new_id(EXEC_PREFIX)
        owner = self._owner or current_owner()

        def body(tx: ChainTx) -> None:
            _insert_intent(tx, audit_id, intent, owner)

        t0 = time.perf_counter()
        single = _single_intent(audit_id, intent, owner)
        await self._db.write("record intent", body, single=single)
        self._observe_intent(AuditId(audit_id), intent, t0)
        return AuditId(audit_id)

    async def record_rated_intent(
        self, intent: ExecIntent, rate: RateCheck
    ) -> tuple[AuditId, bool]:
        """Write ``intent``, or ``rate.refusal`` when the intent's principal used up
        ``rate.limit`` under its rule since ``rate.since`` (counted in the same
        transaction); the bool says the refusal was written.

        Raises: DuplicateRequest (as ``record_intent``); AuditUnavailable.
        """
        audit_id = new_id(EXEC_PREFIX)
        owner = self._owner or current_owner()
        params = {
            "principal": intent.principal,
            "rule_id": intent.rule_id,
            "since": rate.since,
            "limit": rate.limit,
        }

        def body(tx: ChainTx) -> bool:
            if tx.prepared:
                used = prepared_select(tx.conn.dialect, _COUNT_UP_TO).scalar(tx.conn, params)
            else:
                used = tx.conn.scalar(_COUNT_UP_TO, params)
            used = int(used or 0)
            limited = used >= rate.limit
            _insert_intent(tx, audit_id, rate.refusal if limited else intent, owner)
            return limited

        t0 = time.perf_counter()
        single = _single_intent(audit_id, intent, owner, rate)
        limited = await self._db.write("record intent", body, single=single)
        self._observe_intent(AuditId(audit_id), rate.refusal if limited else intent, t0)
        return AuditId(audit_id), limited

    async def record_outcome(self, audit_id: AuditId, outcome: ExecOutcome) -> None:
        """Commit ``outcome``: when this returns, every connection to the database (any
        replica) reads it.

        On PostgreSQL the commit does not wait for its disk flush: the intent was
        durable before anything ran, and a database server crash within the WAL
        writer's delay after this returns loses the outcome alone, leaving the row
        RUNNING until the replica that ran it stops (its lease released or reaped, as
        for a replica that stopped mid-exec).

        Raises: ExecNotFound when there is no such exec; AuditUnavailable.
        """
        values = outcome_values(outcome)

        def body(tx: ChainTx) -> None:
            if not tx.update(exec_sessions, audit_id, {"outcome_at": tx.now, **values}, _OUTCOME):
                raise ExecNotFound(audit_id=audit_id)

        single = Append(exec_sessions, _OUTCOME, audit_id, values, "outcome_at", update=True)
        t0 = time.perf_counter()
        await self._db.write("record outcome", body, durable=False, single=single)
        if self.observer is not None:
            self.observer.write_committed("record outcome", time.perf_counter() - t0)
            self.observer.outcome_recorded(audit_id, outcome)

    def _observe_intent(self, audit_id: AuditId, intent: ExecIntent, t0: float) -> None:
        if self.observer is not None:
            self.observer.write_committed("record intent", time.perf_counter() - t0)
            self.observer.intent_recorded(audit_id, intent)

    async def open_counts(self, now: dt.datetime | None = None) -> dict[str, int]:
        """How many approvals are pending (not expired) and sessions open, now.

        Raises: AuditUnavailable.
        """
        at = now or dt.datetime.now(dt.UTC)
        pending = (
            sa.select(sa.func.count())
            .select_from(approvals)
            .where(approvals.c.state == ApprovalState.PENDING.value, approvals.c.expires_at > at)
        )
        open_sessions = (
            sa.select(sa.func.count())
            .select_from(conv_sessions)
            .where(conv_sessions.c.ended_at.is_(None))
        )

        def body(conn: Any) -> dict[str, int]:
            return {
                "approvals_pending": int(conn.scalar(pending) or 0),
                "sessions_open": int(conn.scalar(open_sessions) or 0),
            }

        return await self._db.read("count open approvals and sessions", body)

    async def get_exec(self, audit_id: AuditId) -> ExecRecord:
        """Raises: ExecNotFound when no such exec exists; AuditUnavailable."""
        query = sa.select(exec_sessions).where(exec_sessions.c.id == audit_id)
        row = await self._db.read("read exec", lambda conn: conn.execute(query).first())
        if row is None:
            raise ExecNotFound(audit_id=audit_id)
        return exec_record(row)

    async def list_execs(self, flt: AuditFilter) -> list[ExecRecord]:
        """Execs matching every given filter, newest first; ``since`` is inclusive,
        ``until`` exclusive; at most ``limit`` (capped at 10,000).

        Raises: AuditUnavailable.
        """
        c = exec_sessions.c
        query = sa.select(exec_sessions)
        exact = {
            c.principal: flt.principal,
            c.target: flt.target,
            c.function: flt.function,
            c.effect: flt.effect,
            c.status: flt.status,
            c.session_id: flt.session_id,
        }
        for column, value in exact.items():
            if value is not None:
                query = query.where(column == value)
        if flt.since is not None:
            query = query.where(c.created_at >= flt.since)
        if flt.until is not None:
            query = query.where(c.created_at < flt.until)
        limit = max(1, min(flt.limit, MAX_LIST))
        query = query.order_by(c.created_at.desc(), c.id.desc()).limit(limit)
        rows = await self._db.read("list execs", lambda conn: conn.execute(query).all())
        return [exec_record(r) for r in rows]

    async def find_by_request_key(self, request_key: str) -> AuditId | None:
        """The first exec recorded with ``request_key``, if any.

        Raises: AuditUnavailable.
        """
        c = exec_sessions.c
        query = (
            sa.select(c.id)
            .where(c.request_key == request_key)
            .order_by(c.created_at, c.id)
            .limit(1)
        )
        found = await self._db.read("find exec by request key", lambda conn: conn.scalar(query))
        return None if found is None else AuditId(found)

    async def mark_interrupted(self) -> int:
        """Mark RUNNING intents whose owner process on this host is gone (or whose pid
        now belongs to another process) as INTERRUPTED; return how many.

        Raises: AuditUnavailable.
        """
        c = exec_sessions.c
        running = c.status == ExecStatus.RUNNING.value
        mine = c.owner.startswith(hostname() + ":", autoescape=True)
        query = sa.select(c.id, c.owner).where(running, mine)
        rows = await self._db.read("find running execs", lambda conn: conn.execute(query).all())
        dead = [r.id for r in rows if owner_is_dead(r.owner)]
        if not dead:
            return 0

        def body(tx: ChainTx) -> int:
            values = {
                "status": ExecStatus.INTERRUPTED.value,
                "outcome_at": tx.now,
                "error": INTERRUPTED_ERROR,
            }
            return sum(
                tx.update(exec_sessions, audit_id, values, "exec.interrupted", running)
                for audit_id in dead
            )

        count = await self._db.write("mark interrupted", body)
        if count:
            logger.warning("audit: marked %d exec(s) of stopped processes as interrupted", count)
        return count

    @property
    def owner(self) -> str:
        """The tag this store writes on the intents it records."""
        return self._owner or current_owner()

    async def renew_lease(self, ttl: float) -> bool:
        """Hold this store's owner lease ``ttl`` more seconds (``policies.audit.leases``);
        False when there was no lease to renew.

        Raises: AuditUnavailable.
        """
        return await leases.renew(self._db, self.owner, ttl)

    async def reap_expired_leases(self) -> int:
        """Mark the RUNNING rows of every expired lease interrupted; return how many.

        Raises: AuditUnavailable.
        """
        return await leases.reap(self._db)

    async def release_lease(self) -> int:
        """Give up this store's lease, marking its RUNNING rows interrupted.

        Raises: AuditUnavailable.
        """
        return await leases.release(self._db, self.owner)

    async def check_ready(self) -> None:
        """Whether this store can serve: the database answers and its schema is current.

        Raises: AuditUnavailable.
        """
        await check_database(self._db)

    # ------------------------------------------------------------------ approvals

    async def create_approval(self, request: ApprovalRequest) -> ApprovalRecord:
        """Raises: ExecNotFound (no such exec), ValueError (threshold < 1, TTL <= 0),
        AuditUnavailable."""
        return await approval_ops.create_approval(self._db, request)

    async def get_approval(self, approval_id: ApprovalId) -> ApprovalRecord:
        """Raises: ApprovalNotFound, AuditUnavailable."""
        return await approval_ops.get_approval(self._db, approval_id)

    async def list_approvals(self, state: ApprovalState | None = None) -> list[ApprovalRecord]:
        """Newest first, at most 1,000. Raises: AuditUnavailable."""
        return await approval_ops.list_approvals(self._db, state)

    async def add_approval_vote(
        self, approval_id: ApprovalId, approver: str, approve: bool
    ) -> ApprovalRecord:
        """Record one approver's vote atomically and return the updated record.

        APPROVED once ``threshold`` distinct approvers approved; DENIED on any deny (even
        from an approver who approved before). A repeated approval is not counted twice.

        Raises: ApprovalNotFound, ApprovalAlreadyDecided, ApprovalExpired,
        SelfApprovalRefused (the requester approving), AuditUnavailable.
        """
        return await approval_ops.add_approval_vote(self._db, approval_id, approver, approve)

    async def claim_approved(self, approval_id: ApprovalId) -> ApprovalRecord | None:
        """Atomically move APPROVED -> EXECUTED; None when someone else claimed it (or
        it is not approved). The approved exec's row moves to RUNNING under this process,
        so a crash during the run is later marked interrupted.

        Raises: ApprovalNotFound, AuditUnavailable.
        """
        return await approval_ops.claim_approved(
            self._db, approval_id, self._owner or current_owner()
        )

    async def withdraw_approval(self, approval_id: ApprovalId, requester: str) -> ApprovalRecord:
        """PENDING -> WITHDRAWN, by its requester only.

        Raises: ApprovalNotFound (also for anyone but the requester),
        ApprovalAlreadyDecided, ApprovalExpired, AuditUnavailable.
        """
        return await approval_ops.withdraw_approval(self._db, approval_id, requester)

    async def expire_approvals(self, now: dt.datetime | None = None) -> int:
        """Raises: AuditUnavailable."""
        return await approval_ops.expire_approvals(self._db, now)

    # ------------------------------------------------------------------ sessions

    async def create_session(
        self, *, principal: str, target: str, reason: str, cwd: str
    ) -> SessionRecord:
        """Raises: AuditUnavailable."""
        return await session_ops.create_session(
            self._db, principal=principal, target=target, reason=reason, cwd=cwd
        )

    async def get_session(self, session_id: SessionId) -> SessionRecord:
        """Raises: SessionNotFound, AuditUnavailable."""
        return await session_ops.get_session(self._db, session_id)

    async def update_session(
        self,
        session_id: SessionId,
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        anchor: str | None = None,
    ) -> SessionRecord:
        """Raises: SessionNotFound, AuditUnavailable."""
        return await session_ops.update_session(
            self._db, session_id, cwd=cwd, env=env, anchor=anchor
        )

    async def find_session(self, anchor: str) -> SessionRecord | None:
        """The newest session shown at ``anchor``, if any. Raises: AuditUnavailable."""
        return await session_ops.find_session(self._db, anchor)

    async def end_session(self, session_id: SessionId, reason: str) -> SessionRecord:
        """Raises: SessionNotFound, AuditUnavailable."""
        return await session_ops.end_session(self._db, session_id, reason)

    # ------------------------------------------------------------------ integrity

    async def verify(self, *, strict: bool = False) -> VerifyReport:
        """Walk the chain and report the first edited, deleted or truncated event, a bad
        checkpoint, or a row that disagrees with its events; count the events no signed
        checkpoint vouches for (``strict``: they fail the check).

        Raises: AuditUnavailable when the database cannot be read.
        """
        if self._db.checkpoints is not None:
            await self._db.checkpoints.flush()
        return await verify_store(self._db, self._checkpoint_path, self._public_key, strict=strict)

    async def claim_nonce(self, key: str, ttl: float) -> bool:
        """Use the one-time ``key`` (``policies.audit.nonces``); False when it was used.

        Raises: AuditUnavailable.
        """
        return await nonces.claim(self._db, key, ttl)

    async def put_nonce(self, key: str, value: str, ttl: float) -> None:
        """Hold ``value`` under ``key`` for one ``take_nonce``. Raises: AuditUnavailable."""
        await nonces.put(self._db, key, value, ttl)

    async def take_nonce(self, key: str) -> str | None:
        """The value held under ``key``, once. Raises: AuditUnavailable."""
        return await nonces.take(self._db, key)

    def browser(self) -> AuditBrowser:
        """Read-only queries for the review console over this store's database."""
        return AuditBrowser(self._db, self._checkpoint_path, self._public_key)

    async def aclose(self) -> None:
        """Write the last checkpoint and close the database connections."""
        if not self._closed:
            self._closed = True
            await self._db.aclose()


async def open_audit_store(
    url: str,
    *,
    checkpoint_path: Path | None,
    checkpoint_key: Ed25519PrivateKey | None = None,
    owner: str | None = None,
    publish: Publish | None = None,
    anchor_interval_s: float = 60.0,
    new_log: bool = False,
) -> SqlAuditStore:
    """Open the audit store at ``url`` (``sqlite+aiosqlite:///PATH`` or
    ``postgresql+asyncpg://...``). The schema must exist: run ``migrate.upgrade`` first.

    ``checkpoint_path`` is where the checkpoint signed with ``checkpoint_key`` (Ed25519)
    is kept, outside the database; None disables the tail-truncation check. ``publish``
    sends a written checkpoint outside the host (an anchor), at most every
    ``anchor_interval_s`` and at close. ``owner`` overrides the ``host:pid:nonce`` tag
    written on intents (for tests).

    A missing checkpoint is begun (signed, vouching for no events) only when ``new_log``
    says this is a new log; otherwise it was deleted, and the store refuses to open.

    Raises: ConfigError for an unsupported URL; AuditUnavailable when the database
    cannot be reached within a few seconds, has no schema or an outdated one, the
    checkpoint directory cannot be created, or the checkpoint is missing (kind
    ``checkpoint_missing``).
    """
    backend = open_backend(url)
    db = Db(backend)
    try:
        await check_database(db)
        if checkpoint_path is not None:
            if checkpoint_key is None:
                raise ConfigError("a checkpoint path needs a checkpoint signing key")
            with audit_errors("create checkpoint directory"):
                await asyncio.to_thread(checkpoint_path.parent.mkdir, parents=True, exist_ok=True)
            await _begin_or_refuse(checkpoint_path, checkpoint_key, new_log)
            db.checkpoints = CheckpointWriter(
                checkpoint_path,
                checkpoint_key,
                publish=publish,
                anchor_interval_s=anchor_interval_s,
            )
    except BaseException:
        await backend.dispose()
        raise
    return SqlAuditStore(db, checkpoint_path, checkpoint_key, owner)


async def _begin_or_refuse(path: Path, key: Ed25519PrivateKey, new_log: bool) -> None:
    with audit_errors("write checkpoint"):
        if new_log:
            await asyncio.to_thread(start_checkpoint, path, key)
            return
        exists = await asyncio.to_thread(path.exists)
    if not exists:
        raise AuditUnavailable(
            "the audit checkpoint is missing but its signing key exists: this log was "
            "signed before and its checkpoint was deleted; restore the checkpoint, or run "
            "`execgate db upgrade --new-log` to start a new audit log deliberately",
            kind="checkpoint_missing",
        )


async def check_database(db: Db) -> None:
    unreachable = "the audit database cannot be reached"
    with audit_errors("connect", unreachable):
        async with asyncio.timeout(CONNECT_TIMEOUT_S * 2):
            await db.backend.read(lambda conn: conn.execute(sa.text("SELECT 1")).all())
    no_schema = "the audit database has no schema; run `execgate db upgrade`"
    with audit_errors("check schema", no_schema):
        query = sa.text("SELECT version_num FROM alembic_version")
        version = await db.backend.read(lambda conn: conn.scalar(query))
    expected = SCHEMA_HEAD
    if version != expected:
        raise AuditUnavailable(
            "the audit database schema is not current; run `execgate db upgrade`",
            found=str(version),
            expected=expected,
        )
