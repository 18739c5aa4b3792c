"""Approval requests and votes.

Every change runs in a chain transaction, which holds the database-wide write lock, so
reading an approval and changing it is atomic across processes: two votes, or two
claims, never interleave.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from policies.audit.chain import ChainTx
from policies.audit.db import Db
from policies.audit.ids import APPROVAL_PREFIX, new_id
from policies.audit.records import Row, approval_record
from policies.audit.tables import approval_votes, approvals, exec_sessions, to_utc
from policies.errors import (
    ApprovalAlreadyDecided,
    ApprovalExpired,
    ApprovalNotFound,
    ExecNotFound,
    SelfApprovalRefused,
)
from policies.ports import ApprovalRecord, ApprovalRequest, ApprovalState, ExecStatus
from policies.types import ApprovalId

# ``list_approvals`` returns at most this many, newest first.
LIST_LIMIT = 1000
_PENDING = approvals.c.state == ApprovalState.PENDING.value
# How a decided state reads in "already decided (...)".
_DECIDED = {ApprovalState.EXECUTED: "approved", ApprovalState.WITHDRAWN: "withdrawn"}


def _votes(conn: Connection, ids: list[str]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {i: [] for i in ids}
    if ids:
        rows = conn.execute(
            sa.select(approval_votes)
            .where(approval_votes.c.approval_id.in_(ids))
            .order_by(approval_votes.c.id)
        )
        for vote in rows:
            out[vote.approval_id].append(vote)
    return out


def _row(conn: Connection, approval_id: str) -> Row | None:
    return conn.execute(sa.select(approvals).where(approvals.c.id == approval_id)).first()


def _load(conn: Connection, approval_id: str) -> ApprovalRecord:
    row = _row(conn, approval_id)
    if row is None:
        raise ApprovalNotFound(approval_id=approval_id)
    return approval_record(row, _votes(conn, [approval_id])[approval_id])


async def create_approval(db: Db, request: ApprovalRequest) -> ApprovalRecord:
    """Store a PENDING approval request for the exec ``request.audit_id``.

    Raises: ExecNotFound when there is no such exec; ValueError for a threshold below 1
    or a TTL that is not positive; AuditUnavailable.
    """
    if request.threshold < 1 or request.ttl_seconds <= 0:
        raise ValueError("an approval needs a threshold of at least 1 and a positive TTL")
    approval_id = new_id(APPROVAL_PREFIX)

    def body(tx: ChainTx) -> ApprovalRecord:
        audit_id = request.audit_id
        exists = tx.conn.scalar(sa.select(exec_sessions.c.id).where(exec_sessions.c.id == audit_id))
        if exists is None:
            raise ExecNotFound(audit_id=audit_id)
        values: dict[str, Any] = {
            "id": approval_id,
            "audit_id": audit_id,
            "request_hash": request.request_hash,
            "requester": request.requester,
            "target": request.target,
            "argv": list(request.argv),
            "reason": request.reason,
            "rule_id": request.rule_id,
            "approver_roles": list(request.approver_roles),
            "threshold": request.threshold,
            "created_at": tx.now,
            "expires_at": tx.now + dt.timedelta(seconds=request.ttl_seconds),
            "state": ApprovalState.PENDING.value,
            "denied_by": None,
            "decided_at": None,
            "surface": request.surface,
            "context": {str(k): str(v) for k, v in request.context.items()},
        }
        tx.insert(approvals, values, "approval.created")
        return _load(tx.conn, approval_id)

    return await db.write("create approval", body)


async def get_approval(db: Db, approval_id: ApprovalId) -> ApprovalRecord:
    """Raises: ApprovalNotFound, AuditUnavailable."""
    return await db.read("read approval", lambda conn: _load(conn, approval_id))


async def list_approvals(db: Db, state: ApprovalState | None) -> list[ApprovalRecord]:
    """Approvals (in ``state`` when given), newest first, at most LIST_LIMIT.

    Raises: AuditUnavailable.
    """
    query = sa.select(approvals).order_by(approvals.c.created_at.desc(), approvals.c.id.desc())
    if state is not None:
        query = query.where(approvals.c.state == ApprovalState(state).value)

    def body(conn: Connection) -> list[ApprovalRecord]:
        rows = conn.execute(query.limit(LIST_LIMIT)).all()
        votes = _votes(conn, [r.id for r in rows])
        return [approval_record(r, votes[r.id]) for r in rows]

    return await db.read("list approvals", body)


def _decide(
    tx: ChainTx, approval_id: str, state: ApprovalState, denied_by: str | None = None
) -> None:
    values: dict[str, Any] = {"state": state.value, "decided_at": tx.now}
    if denied_by is not None:
        values["denied_by"] = denied_by
    tx.update(approvals, approval_id, values, "approval.state", _PENDING)


def _refuse_if_closed(row: Row) -> None:
    state = ApprovalState(row.state)
    if state is ApprovalState.EXPIRED:
        raise ApprovalExpired(approval_id=row.id)
    if state is not ApprovalState.PENDING:
        raise ApprovalAlreadyDecided(
            f"this request was already decided ({_DECIDED.get(state, state.value)})",
            approval_id=row.id,
            state=state.value,
        )


def _vote(tx: ChainTx, row: Row, approver: str, approve: bool) -> None:
    if approve and approver == row.requester:
        raise SelfApprovalRefused(approval_id=row.id)
    previous = tx.conn.execute(
        sa.select(approval_votes.c.approve).where(
            approval_votes.c.approval_id == row.id, approval_votes.c.approver == approver
        )
    ).first()
    if previous is None:
        vote = {"approval_id": row.id, "approver": approver, "approve": approve, "voted_at": tx.now}
        tx.insert(approval_votes, vote, "approval.vote", subject=row.id)
    elif approve:
        return  # the same approver again: not counted twice
    if not approve:
        _decide(tx, row.id, ApprovalState.DENIED, denied_by=approver)
        return
    granted = tx.conn.scalar(
        sa.select(sa.func.count())
        .select_from(approval_votes)
        .where(approval_votes.c.approval_id == row.id, approval_votes.c.approve.is_(True))
    )
    if int(granted or 0) >= row.threshold:
        _decide(tx, row.id, ApprovalState.APPROVED)


async def add_approval_vote(
    db: Db, approval_id: ApprovalId, approver: str, approve: bool
) -> ApprovalRecord:
    """Record one vote; see ``SqlAuditStore.add_approval_vote``.

    Raises: ApprovalNotFound, ApprovalAlreadyDecided, ApprovalExpired (the request is
    marked EXPIRED first), SelfApprovalRefused, AuditUnavailable.
    """

    def body(tx: ChainTx) -> ApprovalRecord | None:
        row = _row(tx.conn, approval_id)
        if row is None:
            raise ApprovalNotFound(approval_id=approval_id)
        _refuse_if_closed(row)
        if tx.now >= row.expires_at:
            # Record the expiry (commit), then refuse the vote.
            _decide(tx, approval_id, ApprovalState.EXPIRED)
            return None
        _vote(tx, row, approver, approve)
        return _load(tx.conn, approval_id)

    record = await db.write("record approval vote", body)
    if record is None:
        raise ApprovalExpired(approval_id=approval_id)
    return record


async def withdraw_approval(db: Db, approval_id: ApprovalId, requester: str) -> ApprovalRecord:
    """PENDING -> WITHDRAWN by its requester; see ``SqlAuditStore.withdraw_approval``.

    Raises: ApprovalNotFound (also for anyone but the requester), ApprovalAlreadyDecided,
    ApprovalExpired (the request is marked EXPIRED first), AuditUnavailable.
    """

    def body(tx: ChainTx) -> ApprovalRecord | None:
        row = _row(tx.conn, approval_id)
        if row is None or row.requester != requester:
            raise ApprovalNotFound(approval_id=approval_id)
        _refuse_if_closed(row)
        if tx.now >= row.expires_at:
            _decide(tx, approval_id, ApprovalState.EXPIRED)
            return None
        _decide(tx, approval_id, ApprovalState.WITHDRAWN)
        return _load(tx.conn, approval_id)

    record = await db.write("withdraw approval", body)
    if record is None:
        raise ApprovalExpired(approval_id=approval_id)
    return record


async def claim_approved(db: Db, approval_id: ApprovalId, owner: str) -> ApprovalRecord | None:
    """Move APPROVED -> EXECUTED, and the exec it approves to RUNNING under ``owner``
    (so a crash mid-run reads as interrupted); None when it is not (or no longer)
    APPROVED.

    Raises: ApprovalNotFound, AuditUnavailable.
    """

    def body(tx: ChainTx) -> ApprovalRecord | None:
        claimed = tx.update(
            approvals,
            approval_id,
            {"state": ApprovalState.EXECUTED.value},
            "approval.state",
            approvals.c.state == ApprovalState.APPROVED.value,
        )
        record = _load(tx.conn, approval_id)
        if not claimed:
            return None
        running = {"status": ExecStatus.RUNNING.value, "owner": owner}
        tx.update(exec_sessions, record.audit_id, running, "exec.started")
        return record

    return await db.write("claim approval", body)


async def expire_approvals(db: Db, now: dt.datetime | None) -> int:
    """Move PENDING approvals past their expiry to EXPIRED; return how many.

    Raises: AuditUnavailable.
    """
    cutoff = to_utc(now) if now is not None else dt.datetime.now(dt.UTC)
    overdue = _PENDING & (approvals.c.expires_at <= cutoff)
    query = sa.select(approvals.c.id).where(overdue)
    ids = await db.read("find expired approvals", lambda conn: list(conn.scalars(query)))
    if not ids:
        return 0  # the common case takes no write lock

    def body(tx: ChainTx) -> int:
        values = {"state": ApprovalState.EXPIRED.value, "decided_at": tx.now}
        return sum(
            tx.update(approvals, approval_id, values, "approval.state", overdue)
            for approval_id in ids
        )

    return await db.write("expire approvals", body)
