"""Read-only queries behind the audit review console: filtered pages of execs with
keyset pagination, counts for charts, and a record's events in the hash chain.

Pages are ordered newest first on ``(created_at, id)`` and continue after a cursor
(the last row's pair), so page N costs the same as page 1 (indexes from revision 0007).
Nothing here decides who may see what: the service narrows the filter first.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from policies.audit.checkpoint import Checkpoint, read_checkpoint
from policies.audit.db import Db
from policies.audit.records import exec_record
from policies.audit.tables import audit_events, exec_sessions, to_utc
from policies.ports import ExecRecord

MAX_PAGE = 500
EFFECTS = ("allow", "approve", "deny")


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ends: the (created_at, audit id) of its last row."""

    created_at: dt.datetime
    audit_id: str

    def encode(self) -> str:
        raw = f"{to_utc(self.created_at).isoformat()}|{self.audit_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Raises: ValueError for anything that is not a cursor this module wrote."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            when, audit_id = raw.split("|", 1)
            return cls(to_utc(dt.datetime.fromisoformat(when)), audit_id)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError("not a page cursor") from exc


@dataclass(frozen=True, slots=True)
class BrowseFilter:
    """Exact matches on the named columns, a time range (since inclusive, until
    exclusive) and ``text``, a case-insensitive substring of the command."""

    principal: str | None = None
    target: str | None = None
    function: str | None = None
    surface: str | None = None
    effect: str | None = None
    status: str | None = None
    rule: str | None = None
    session_id: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    text: str | None = None
    nothing: bool = False  # match no record at all

    def narrowed_to(self, principal: str) -> BrowseFilter:
        """This filter limited to ``principal``'s own records (whatever it asked)."""
        if self.principal not in (None, principal):
            # Asking for someone else's records: match nothing rather than widen.
            return dataclasses.replace(self, principal=principal, nothing=True)
        return dataclasses.replace(self, principal=principal)


@dataclass(frozen=True, slots=True)
class Page:
    records: tuple[ExecRecord, ...]
    next_cursor: Cursor | None


@dataclass(frozen=True, slots=True)
class BucketCount:
    start: dt.datetime
    effect: str
    count: int


@dataclass(frozen=True, slots=True)
class ChainEvent:
    seq: int
    kind: str
    created_at: dt.datetime
    prev_hash: str
    hash: str


def _where(flt: BrowseFilter) -> list[sa.ColumnElement[bool]]:
    c = exec_sessions.c
    exact: dict[sa.Column[Any], str | None] = {
        c.principal: flt.principal,
        c.target: flt.target,
        c.function: flt.function,
        c.surface: flt.surface,
        c.effect: flt.effect,
        c.status: flt.status,
        c.rule_id: flt.rule,
        c.session_id: flt.session_id,
    }
    where = [column == value for column, value in exact.items() if value is not None]
    if flt.nothing:
        where.append(sa.false())
    if flt.since is not None:
        where.append(c.created_at >= flt.since)
    if flt.until is not None:
        where.append(c.created_at < flt.until)
    if flt.text:
        where.append(
            sa.or_(
                c.command_text.ilike(f"%{_escape(flt.text)}%", escape="\\"),
                sa.cast(c.argv, sa.Text).ilike(f"%{_escape(flt.text)}%", escape="\\"),
            )
        )
    return where


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class AuditBrowser:
    """The console's queries over one audit database (read transactions only)."""

    def __init__(
        self, db: Db, checkpoint_path: Path | None, public_key: Ed25519PublicKey | None
    ) -> None:
        self._db = db
        self._checkpoint_path = checkpoint_path
        self._public_key = public_key

    async def checkpoint(self) -> tuple[Checkpoint, dt.datetime] | None:
        """The signed checkpoint in force and when it was written; None without one.

        Raises: AuditIntegrityError when it does not verify.
        """
        path, public = self._checkpoint_path, self._public_key
        if path is None or public is None:
            return None
        found = await asyncio.to_thread(read_checkpoint, path, public)
        if found is None:
            return None
        stat = await asyncio.to_thread(path.stat)
        return found, dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC)

    async def page(
        self, flt: BrowseFilter, *, after: Cursor | None = None, limit: int = 50
    ) -> Page:
        """Up to ``limit`` execs matching ``flt``, newest first, after ``after``.

        Raises: AuditUnavailable.
        """
        c = exec_sessions.c
        limit = max(1, min(limit, MAX_PAGE))
        query = sa.select(exec_sessions).where(*_where(flt))
        if after is not None:
            query = query.where(
                sa.or_(
                    c.created_at < after.created_at,
                    sa.and_(c.created_at == after.created_at, c.id < after.audit_id),
                )
            )
        query = query.order_by(c.created_at.desc(), c.id.desc()).limit(limit + 1)
        rows = await self._db.read("browse execs", lambda conn: conn.execute(query).all())
        records = tuple(exec_record(r) for r in rows[:limit])
        more = len(rows) > limit
        last = records[-1] if records else None
        cursor = Cursor(last.created_at, last.audit_id) if more and last else None
        return Page(records, cursor)

    async def counts(
        self, flt: BrowseFilter, starts: Sequence[dt.datetime], end: dt.datetime
    ) -> list[BucketCount]:
        """Execs matching ``flt`` per effect in each bucket ``[starts[i], starts[i+1])``
        (the last ends at ``end``), oldest bucket first.

        One range count per bucket and effect in a single statement: each reads only
        its slice of the (effect, created_at) index, with no per-row date arithmetic.

        Raises: AuditUnavailable.
        """
        c = exec_sessions.c
        edges = [*starts, end]
        # The buckets bound the time: a second range on created_at from the filter would
        # lead the planner away from the (effect, created_at) index.
        where = _where(dataclasses.replace(flt, since=None, until=None))
        cells: list[tuple[dt.datetime, str]] = []
        columns: list[sa.Label[int]] = []
        for i, start in enumerate(starts):
            lo = max(start, flt.since) if flt.since else start
            hi = min(edges[i + 1], flt.until) if flt.until else edges[i + 1]
            for effect in EFFECTS:
                count = (
                    sa.select(sa.func.count())
                    .select_from(exec_sessions)
                    .where(*where, c.effect == effect, c.created_at >= lo, c.created_at < hi)
                    .scalar_subquery()
                )
                columns.append(count.label(f"c{len(columns)}"))
                cells.append((start, effect))
        if not columns:
            return []
        query = sa.select(*columns)
        row = await self._db.read("count execs", lambda conn: conn.execute(query).one())
        return [
            BucketCount(start, effect, int(n))
            for (start, effect), n in zip(cells, row, strict=True)
            if n
        ]

    async def top_denied_rules(self, flt: BrowseFilter, n: int = 5) -> list[tuple[str, int]]:
        """The rules that denied most often under ``flt``, with their counts.

        Raises: AuditUnavailable.
        """
        c = exec_sessions.c
        rule = sa.func.coalesce(c.rule_id, "(no rule)").label("rule")
        query = (
            sa.select(rule, sa.func.count().label("n"))
            .where(*_where(dataclasses.replace(flt, effect="deny")))
            .group_by(rule)
            .order_by(sa.func.count().desc(), rule)
            .limit(n)
        )
        rows = await self._db.read("count denials", lambda conn: conn.execute(query).all())
        return [(str(r.rule), int(r.n)) for r in rows]

    async def all_matching(self, flt: BrowseFilter, *, batch: int = MAX_PAGE) -> list[Page]:
        """Every page of ``flt`` (for exports). Raises: AuditUnavailable."""
        pages: list[Page] = []
        after: Cursor | None = None
        while True:
            page = await self.page(flt, after=after, limit=batch)
            pages.append(page)
            if page.next_cursor is None:
                return pages
            after = page.next_cursor

    async def events_of(self, subjects: Sequence[str]) -> list[ChainEvent]:
        """The chain events written for ``subjects`` (an exec, its approval), in order.

        Raises: AuditUnavailable.
        """
        e = audit_events.c
        query = (
            sa.select(e.seq, e.kind, e.created_at, e.prev_hash, e.hash)
            .where(e.subject.in_(list(subjects)))
            .order_by(e.seq)
        )
        rows = await self._db.read("read chain events", lambda conn: conn.execute(query).all())
        return [ChainEvent(r.seq, r.kind, r.created_at, r.prev_hash, r.hash) for r in rows]

    async def head_seq(self) -> int:
        """The newest event's sequence number (0: empty). Raises: AuditUnavailable."""
        query = sa.select(sa.func.max(audit_events.c.seq))
        found = await self._db.read("read chain head", lambda conn: conn.scalar(query))
        return int(found or 0)
