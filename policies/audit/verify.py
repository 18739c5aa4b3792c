"""``verify``: walk the chain, compare it with the signed checkpoint (and the anchors
published outside the host), and check that every row table still says what its events
say. Reports the first problem found; events no signed checkpoint vouches for are
counted, and fail a strict check.

Memory stays bounded: events are read in seq order in batches, and each projection is
checked a batch of rows at a time against just those rows' events.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import Connection

from policies.audit.chain import GENESIS_HASH, event_hash, json_value
from policies.audit.checkpoint import Checkpoint, Segment, read_checkpoint
from policies.audit.db import Db
from policies.audit.records import Row
from policies.audit.tables import PROJECTIONS, approval_votes, audit_events
from policies.errors import AuditIntegrityError
from policies.ports import VerifyReport

BATCH = 500
_VOTE_KIND = "approval.vote"


@dataclass(frozen=True, slots=True)
class Claim:
    """What a signed document says about one event: its hash, or its link."""

    source: str  # "checkpoint" or "anchor NAME"
    value: str


@dataclass(slots=True)
class _Walk:
    rows: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS_HASH
    problem: VerifyReport | None = None


@dataclass(slots=True)
class Claims:
    """The hashes (``lasts``) and links (``firsts``) signed documents record."""

    firsts: dict[int, list[Claim]] = field(default_factory=dict)
    lasts: dict[int, list[Claim]] = field(default_factory=dict)

    def add(self, source: str, segments: Sequence[Segment]) -> None:
        for seg in segments:
            self.firsts.setdefault(seg.first, []).append(Claim(source, seg.prev_hash))
            self.lasts.setdefault(seg.last, []).append(Claim(source, seg.hash))


def _bad(walk_rows: int, seq: int | None, problem: str, detail: str) -> VerifyReport:
    return VerifyReport(
        ok=False, rows_checked=walk_rows, first_bad_seq=seq, problem=problem, detail=detail
    )


def _fetch(query: sa.Select[*tuple[Any, ...]], conn: Connection) -> Sequence[Row]:
    return conn.execute(query).all()


def _problem_of(source: str) -> str:
    return "truncated" if source == "checkpoint" else "anchor"


def _check_claims(walk: _Walk, ev: Row, claims: Claims) -> VerifyReport | None:
    for claim in claims.firsts.get(ev.seq, ()):
        if claim.value != ev.prev_hash:
            detail = f"event {ev.seq} differs from the {claim.source}"
            return _bad(walk.rows, ev.seq, _problem_of(claim.source), detail)
    for claim in claims.lasts.get(ev.seq, ()):
        if claim.value != ev.hash:
            detail = f"event {ev.seq} differs from the {claim.source}"
            return _bad(walk.rows, ev.seq, _problem_of(claim.source), detail)
    return None


async def _walk_chain(db: Db, claims: Claims, walk: _Walk) -> None:
    """Walk on from ``walk``'s head to the newest event, or to the first problem.

    The first batch has no lower bound: an event numbered below 1 is outside the chain
    and is reported, never skipped."""
    cols = audit_events.c
    while walk.problem is None:
        query = sa.select(audit_events).order_by(cols.seq).limit(BATCH)
        if walk.rows:
            query = query.where(cols.seq > walk.head_seq)
        batch = await db.read("verify audit chain", functools.partial(_fetch, query))
        if not batch:
            return
        for ev in batch:
            walk.problem = _check_event(walk, ev, claims)
            if walk.problem is not None:
                return
            walk.rows += 1
            walk.head_seq, walk.head_hash = ev.seq, ev.hash


def _check_event(walk: _Walk, ev: Row, claims: Claims) -> VerifyReport | None:
    expected = walk.head_seq + 1
    if ev.seq < 1:
        detail = f"event {ev.seq} is numbered outside the chain (events start at 1)"
        return _bad(walk.rows, ev.seq, "outside", detail)
    if ev.seq != expected:
        missing = f"{expected}" if ev.seq == expected + 1 else f"{expected}..{ev.seq - 1}"
        return _bad(walk.rows, expected, "deleted", f"events {missing} are missing")
    digest = event_hash(ev.prev_hash, ev.seq, ev.kind, ev.subject, ev.payload, ev.created_at)
    if digest != ev.hash:
        detail = f"event {ev.seq} ({ev.kind} {ev.subject}) was changed"
        return _bad(walk.rows, ev.seq, "edited", detail)
    if ev.prev_hash != walk.head_hash:
        detail = f"event {ev.seq} does not link to event {ev.seq - 1}"
        return _bad(walk.rows, ev.seq, "deleted", detail)
    return _check_claims(walk, ev, claims)


def _count_events(conn: Connection, head: int) -> tuple[int, int | None, int | None]:
    cols = audit_events.c
    inside = sa.select(sa.func.count(), sa.func.min(cols.seq)).where(cols.seq <= head)
    count, lowest = conn.execute(inside).one()
    below = conn.scalar(sa.select(sa.func.min(cols.seq)).where(cols.seq < 1))
    return int(count), lowest, below


async def _account_for_every_event(db: Db, walk: _Walk) -> VerifyReport | None:
    """Every event row up to the walked head was walked: as many rows as the walk
    counted, the lowest numbered 1 (nothing inserted below or between while walking)."""
    count, lowest, below = await db.read(
        "verify audit chain", functools.partial(_count_events, head=walk.head_seq), snapshot=True
    )
    if below is not None:
        detail = f"event {below} is numbered outside the chain (events start at 1)"
        return _bad(walk.rows, below, "outside", detail)
    if count != walk.rows or (count and lowest != 1):
        detail = f"the database holds {count} events up to {walk.head_seq}; {walk.rows} link"
        return _bad(walk.rows, None, "outside", detail)
    return None


def _check_tail(walk: _Walk, source: str, cp: Checkpoint) -> VerifyReport | None:
    if walk.head_seq < cp.last:
        return _bad(
            walk.rows,
            walk.head_seq + 1,
            _problem_of(source),
            f"the {source} vouches for events up to {cp.last}; the database has {walk.rows}",
        )
    return None


def unvouched_ranges(segments: Sequence[Segment], head: int) -> list[tuple[int, int]]:
    """The runs of events ``1..head`` that no segment covers."""
    out: list[tuple[int, int]] = []
    nxt = 1
    for seg in segments:
        if seg.first > nxt:
            out.append((nxt, min(seg.first - 1, head)))
        nxt = max(nxt, seg.last + 1)
        if nxt > head:
            break
    if nxt <= head:
        out.append((nxt, head))
    return [(a, b) for a, b in out if a <= b]


def _ranges_text(ranges: Sequence[tuple[int, int]]) -> str:
    shown = [f"{a}" if a == b else f"{a}..{b}" for a, b in ranges[:5]]
    more = f" and {len(ranges) - 5} more runs" if len(ranges) > 5 else ""
    return ", ".join(shown) + more


@dataclass(slots=True)
class _Expected:
    columns: dict[str, Any] = field(default_factory=dict)
    votes: list[dict[str, Any]] = field(default_factory=list)
    last_seq: int = 0


def _replay(events: Sequence[Row]) -> dict[str, _Expected]:
    out: dict[str, _Expected] = {}
    for ev in events:
        state = out.setdefault(ev.subject, _Expected())
        changes = json.loads(ev.payload)
        if ev.kind == _VOTE_KIND:
            state.votes.append(changes)
        else:
            state.columns.update(changes)
        state.last_seq = ev.seq
    return out


def _as_json(table: sa.Table, row: Row) -> dict[str, Any]:
    return {col.name: json_value(row._mapping[col]) for col in table.columns}


@dataclass(slots=True)
class _Batch:
    """One batch of a projection: row ids in creation order, their rows, events, votes."""

    ids: list[str]
    rows: dict[str, Row]
    events: Sequence[Row]
    votes: dict[str, list[dict[str, Any]]]


def _read_batch(conn: Connection, *, name: str, after: int) -> tuple[int, _Batch] | None:
    table, create_kind = PROJECTIONS[name]
    ev = audit_events.c
    creates = conn.execute(
        sa.select(ev.seq, ev.subject)
        .where(ev.kind == create_kind, ev.seq > max(after, 0))
        .order_by(ev.seq)
        .limit(BATCH)
    ).all()
    if not creates:
        return None
    ids = [c.subject for c in creates]
    rows = {r.id: r for r in conn.execute(sa.select(table).where(table.c.id.in_(ids)))}
    events = conn.execute(
        sa.select(ev.seq, ev.kind, ev.subject, ev.payload)
        .where(ev.subject.in_(ids), ev.seq >= 1)
        .order_by(ev.seq)
    ).all()
    votes: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    if name == "approval":
        vote_cols = [c for c in approval_votes.columns if c.name != "id"]
        query = (
            sa.select(*vote_cols)
            .where(approval_votes.c.approval_id.in_(ids))
            .order_by(approval_votes.c.id)
        )
        for vote in conn.execute(query):
            votes[vote.approval_id].append(
                {c.name: json_value(vote._mapping[c]) for c in vote_cols}
            )
    return creates[-1].seq, _Batch(ids, rows, events, votes)


def _compare(name: str, table: sa.Table, batch: _Batch, rows_checked: int) -> VerifyReport | None:
    expected = _replay(batch.events)
    for subject in batch.ids:
        want = expected[subject]
        row = batch.rows.get(subject)
        if row is None:
            detail = f"{name} {subject}: its row is missing"
            return _bad(rows_checked, want.last_seq, "deleted", detail)
        actual = _as_json(table, row)
        columns = {col.name: want.columns.get(col.name) for col in table.columns}
        if actual != columns or batch.votes[subject] != want.votes:
            changed = sorted(k for k in columns if actual[k] != columns[k]) or ["votes"]
            detail = f"{name} {subject}: {', '.join(changed)} disagree with its audit events"
            return _bad(rows_checked, want.last_seq, "edited", detail)
    return None


async def _check_projection(db: Db, name: str, walk: _Walk) -> tuple[VerifyReport | None, int]:
    """Compare every row of projection ``name`` with its events; returns the first
    problem and the newest event the comparison used (the walk must reach it)."""
    table, _ = PROJECTIONS[name]
    after = used = 0
    while True:
        # Rows and their events are read in one snapshot, so concurrent writers cannot
        # make them disagree.
        read = await db.read(
            "verify audit rows",
            functools.partial(_read_batch, name=name, after=after),
            snapshot=True,
        )
        if read is None:
            return None, used
        after, batch = read
        used = max([used, after, *(ev.seq for ev in batch.events)])
        problem = _compare(name, table, batch, walk.rows)
        if problem is not None:
            return problem, used


def _find_strays(conn: Connection) -> tuple[int, list[tuple[str, str]]]:
    """The newest event, and rows (of any audited table) no creating event numbered
    from 1 up to it backs: read in one snapshot, so a row committed with its events
    is never a stray."""
    ev = audit_events.c
    head = int(conn.scalar(sa.select(sa.func.coalesce(sa.func.max(ev.seq), 0))) or 0)
    strays: list[tuple[str, str]] = []

    def created(column: sa.ColumnElement[Any], kind: str) -> sa.Exists:
        return sa.exists().where(ev.subject == column, ev.kind == kind, ev.seq >= 1, ev.seq <= head)

    for name, (table, kind) in PROJECTIONS.items():
        stray = conn.scalar(sa.select(table.c.id).where(~created(table.c.id, kind)).limit(1))
        if stray is not None:
            strays.append((name, str(stray)))
    vote = approval_votes.c
    _, approval_kind = PROJECTIONS["approval"]
    stray_vote = conn.scalar(
        sa.select(vote.approval_id).where(~created(vote.approval_id, approval_kind)).limit(1)
    )
    if stray_vote is not None:
        strays.append(("approval vote of", str(stray_vote)))
    return head, strays


async def _check_rows(db: Db, claims: Claims, walk: _Walk) -> VerifyReport | None:
    """Every row of every audited table agrees with, and is backed by, events of the
    walked chain (the walk goes on to cover events the rows were compared with)."""
    used = 0
    for name in PROJECTIONS:
        problem, newest = await _check_projection(db, name, walk)
        if problem is not None:
            return problem
        used = max(used, newest)
    head, strays = await db.read("verify audit rows", _find_strays, snapshot=True)
    if strays:
        name, row_id = strays[0]
        return _bad(walk.rows, None, "edited", f"{name} {row_id}: a row with no audit events")
    used = max(used, head)
    if used > walk.head_seq:
        await _walk_chain(db, claims, walk)
        if walk.problem is not None:
            return walk.problem
    if used > walk.head_seq:
        detail = f"rows rely on event {used}; the chain ends at {walk.head_seq}"
        return _bad(walk.rows, walk.head_seq + 1, "deleted", detail)
    return await _account_for_every_event(db, walk)


async def verify_store(
    db: Db,
    checkpoint_path: Path | None,
    public_key: Ed25519PublicKey | None,
    *,
    strict: bool = False,
    anchors: Sequence[tuple[str, Checkpoint]] | None = None,
) -> VerifyReport:
    """See ``AuditStore.verify``. ``strict``: events no signed checkpoint vouches for
    fail the check (otherwise they are counted and named). ``anchors``: checkpoints
    published outside the host (already signature-checked), each named; the chain must
    still hold every event they record.

    Raises: AuditUnavailable when the database cannot be read.
    """
    cp: Checkpoint | None = None
    cp_error: AuditIntegrityError | None = None
    # Read the checkpoint before walking: it can then only describe events the walk sees.
    if checkpoint_path is not None and public_key is not None:
        try:
            cp = await asyncio.to_thread(read_checkpoint, checkpoint_path, public_key)
        except AuditIntegrityError as exc:
            cp_error = exc
    claims = Claims()
    if cp is not None:
        claims.add("checkpoint", cp.segments)
    for name, anchored in anchors or ():
        claims.add(f"anchor {name}", anchored.segments)
    walk = _Walk()
    await _walk_chain(db, claims, walk)
    if walk.problem is not None:
        return walk.problem
    problem = await _account_for_every_event(db, walk)
    if problem is not None:
        return problem
    if cp_error is not None:
        return _bad(walk.rows, None, "checkpoint", cp_error.safe_message)
    for name, anchored in anchors or ():
        problem = _check_tail(walk, f"anchor {name}", anchored)
        if problem is not None:
            return problem
    if anchors is not None and not anchors and walk.rows:
        return _bad(walk.rows, None, "anchor", "no published checkpoint (anchor) was found")
    segments: tuple[Segment, ...] = ()
    if checkpoint_path is None or public_key is None:
        tail = "tail truncation cannot be checked: no checkpoint is configured"
    elif cp is None:
        # A signed log has a checkpoint from its start: an empty database without one
        # is a log emptied along with its checkpoint, not a new log.
        return _bad(walk.rows, None, "checkpoint", "the audit checkpoint file is missing")
    else:
        problem = _check_tail(walk, "checkpoint", cp)
        if problem is not None:
            return problem
        segments = cp.segments
        tail = f"signed checkpoint vouches up to event {cp.last}"
    problem = await _check_rows(db, claims, walk)
    if problem is not None:
        return problem
    if anchors:
        tail += f"; {len(anchors)} anchors agree"
    unvouched = unvouched_ranges(segments, walk.head_seq) if public_key is not None else []
    count = sum(b - a + 1 for a, b in unvouched)
    if unvouched:
        tail += f"; events {_ranges_text(unvouched)} are unvouched (no signed checkpoint)"
        if strict:
            return VerifyReport(
                ok=False,
                rows_checked=walk.rows,
                first_bad_seq=unvouched[0][0],
                problem="unvouched",
                detail=f"{walk.rows} events intact; {tail}",
                unvouched=count,
            )
    return VerifyReport(
        ok=True,
        rows_checked=walk.rows,
        detail=f"{walk.rows} events intact; {tail}",
        unvouched=count,
    )
