"""Read-only queries behind the audit review console: filtered pages of execs with
keyset pagination, counts for charts, and a record's events in the hash chain.

Pages are ordered newest first on ``(created_at, id)`` and continue after a cursor
(the last row's pair), so page N costs the same as page 1 (indexes from revision 0007).
Free text over the command is found through the text index of revision 0010 (FTS5
trigrams on SQLite, pg_trgm on PostgreSQL), after a look at the newest rows first: a
common word fills its page from those, a rare one from the index, so neither scans
the log. Nothing here decides who may see what: the service narrows the filter first.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import Connection

from policies.audit.anchors import (
    AnchorState,
    AnchorStore,
    anchor_names,
    anchored_events,
    judge_anchor,
    read_anchor,
)
from policies.audit.checkpoint import Checkpoint, read_checkpoint
from policies.audit.db import Db
from policies.audit.records import exec_record
from policies.audit.tables import audit_events, exec_sessions, to_utc
from policies.ports import ExecRecord

MAX_PAGE = 500
T = TypeVar("T")
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


def _where(flt: BrowseFilter, dialect: str, *, text: bool = True) -> list[sa.ColumnElement[bool]]:
    """``flt`` as conditions on ``exec_sessions`` (``text=False``: all but its free text)."""
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
    if flt.text and text:
        where.append(_indexed_text(flt.text, dialect))
    return where


def _contains(columns: Any, text: str) -> sa.ColumnElement[bool]:
    """``text`` in the command text or argv of ``columns`` (a table's or a subquery's),
    case-insensitively: the meaning of free text, whichever way rows are found."""
    pattern = f"%{_escape(text)}%"
    return sa.or_(
        columns.command_text.ilike(pattern, escape="\\"),
        sa.cast(columns.argv, sa.Text).ilike(pattern, escape="\\"),
    )


# SQLite's trigram table (revision 0010): the exec id and its texts.
_EXEC_TEXT = sa.table("exec_text", sa.column("id"))
TRIGRAM = 3  # the shortest text the trigram index can find


def _indexed_text(text: str, dialect: str) -> sa.ColumnElement[bool]:
    """``_contains`` in a form the text index serves. PostgreSQL's pg_trgm indexes serve
    ILIKE itself; on SQLite the FTS5 phrase query finds the candidates (every row holding
    the text, case folded) and ILIKE keeps the exact meaning. Shorter texts than a
    trigram have no index to use and are matched by scanning."""
    contains = _contains(exec_sessions.c, text)
    if dialect != "sqlite" or len(text) < TRIGRAM:
        return contains
    phrase = '"' + text.replace('"', '""') + '"'
    found = sa.select(_EXEC_TEXT.c.id).where(
        sa.literal_column("exec_text").op("MATCH")(sa.literal(phrase, sa.Text))
    )
    return sa.and_(exec_sessions.c.id.in_(found), contains)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# Free text looks at this many of the newest rows of the rest of the filter before it
# asks the text index (see ``AuditBrowser.page``).
LOOK_FIRST = 2000


def _after(query: sa.Select[Any], after: Cursor | None) -> sa.Select[Any]:
    if after is None:
        return query
    c = exec_sessions.c
    return query.where(
        sa.or_(
            c.created_at < after.created_at,
            sa.and_(c.created_at == after.created_at, c.id < after.audit_id),
        )
    )


def _newest(query: sa.Select[Any], columns: Any) -> sa.Select[Any]:
    return query.order_by(columns.created_at.desc(), columns.id.desc())


def _newest_first(
    flt: BrowseFilter, after: Cursor | None, limit: int, dialect: str
) -> sa.Select[Any]:
    """Up to ``limit`` rows holding ``flt.text`` among the newest ``LOOK_FIRST`` rows
    of the rest of ``flt`` (after ``after``): a walk down the (created_at, id) index."""
    rest = sa.select(exec_sessions).where(*_where(flt, dialect, text=False))
    window = _newest(_after(rest, after), exec_sessions.c).limit(LOOK_FIRST).subquery()
    assert flt.text
    return _newest(sa.select(window).where(_contains(window.c, flt.text)), window.c).limit(limit)


def _narrowed_by_index(flt: BrowseFilter) -> bool:
    """Whether ``flt`` names a principal, target, function or session: columns with an
    index of their own that finds a few of the rows in the log."""
    return any(v is not None for v in (flt.principal, flt.target, flt.function, flt.session_id))


def _equal_step(starts: Sequence[dt.datetime], end: dt.datetime) -> float | None:
    """The buckets' common length in seconds (the last one may end early); None when
    they differ."""
    steps = {(b - a).total_seconds() for a, b in itertools.pairwise(starts)}
    step = steps.pop() if len(steps) == 1 else None
    if not starts or steps or (step is None and len(starts) > 1):
        return None
    if step is None:
        step = (end - starts[0]).total_seconds()
    return step if 0 < (end - starts[-1]).total_seconds() <= step else None


def _bucket_of(dialect: str, origin: float, step: float) -> sa.ColumnElement[int]:
    """The number of the bucket (of ``step`` seconds from ``origin``) of a row."""
    c = exec_sessions.c
    if dialect == "postgresql":
        seconds: sa.ColumnElement[Any] = sa.extract("epoch", c.created_at)
        return sa.cast(sa.func.floor((seconds - origin) / step), sa.Integer)
    # SQLite keeps naive UTC text; whole seconds are enough, as buckets start on them.
    seconds = sa.cast(sa.func.strftime("%s", c.created_at), sa.Integer)
    return sa.cast((seconds - int(origin)) / int(step), sa.Integer)


class AuditBrowser:
    """The console's queries over one audit database (read transactions only)."""

    def __init__(
        self, db: Db, checkpoint_path: Path | None, public_key: Ed25519PublicKey | None
    ) -> None:
        self._db = db
        self._checkpoint_path = checkpoint_path
        self._public_key = public_key

    async def _read(self, operation: str, body: Callable[[Connection], T]) -> T:
        """``body`` in a read transaction. On PostgreSQL each statement is planned for
        its own values: a generic plan of a prepared statement cannot know that a text
        pattern is rare or a time range short, and scans the log instead of using the
        text or time index."""

        def planned(conn: Connection) -> T:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SET LOCAL plan_cache_mode = force_custom_plan"))
            return body(conn)

        return await self._db.read(operation, planned)

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

        With free text, the newest ``LOOK_FIRST`` rows of the rest of the filter are
        searched first (a common word fills its page there, without the index); a page
        they do not fill is found through the text index.

        Raises: AuditUnavailable.
        """
        limit = max(1, min(limit, MAX_PAGE))

        def body(conn: Connection) -> Sequence[sa.Row[Any]]:
            dialect = conn.dialect.name
            if flt.text:
                rows = conn.execute(_newest_first(flt, after, limit + 1, dialect)).all()
                if len(rows) > limit:
                    return rows
            query = _after(sa.select(exec_sessions).where(*_where(flt, dialect)), after)
            return conn.execute(_newest(query, exec_sessions.c).limit(limit + 1)).all()

        rows = await self._read("browse execs", body)
        records = tuple(exec_record(r) for r in rows[:limit])
        more = len(rows) > limit
        last = records[-1] if records else None
        cursor = Cursor(last.created_at, last.audit_id) if more and last else None
        return Page(records, cursor)

    async def batches(self, flt: BrowseFilter, *, batch: int = MAX_PAGE) -> AsyncIterator[Page]:
        """Every page of ``flt``, ``batch`` records at a time, each read when the one
        before was taken (for exports that stream). Raises: AuditUnavailable."""
        after: Cursor | None = None
        while True:
            page = await self.page(flt, after=after, limit=batch)
            yield page
            if page.next_cursor is None:
                return
            after = page.next_cursor

    async def all_matching(self, flt: BrowseFilter, *, batch: int = MAX_PAGE) -> list[Page]:
        """Every page of ``flt`` at once. Raises: AuditUnavailable."""
        return [page async for page in self.batches(flt, batch=batch)]

    async def counts(
        self, flt: BrowseFilter, starts: Sequence[dt.datetime], end: dt.datetime
    ) -> list[BucketCount]:
        """Execs matching ``flt`` per effect in each bucket ``[starts[i], starts[i+1])``
        (the last ends at ``end``), oldest bucket first.

        Over the whole log (or one effect, status, surface or rule): one range count per
        bucket and effect in a single statement, each reading only its slice of the
        (effect, created_at) index, with no per-row date arithmetic. When free text or
        a principal, target, function or session narrows the rows, their own index finds
        them and they are counted by bucket in one pass (buckets of equal length).

        Raises: AuditUnavailable.
        """
        if not starts:
            return []
        step = _equal_step(starts, end)
        if step is not None and (flt.text or _narrowed_by_index(flt)):
            return await self._counts_by_arithmetic(flt, starts, end, step)
        c = exec_sessions.c
        edges = [*starts, end]
        # The buckets bound the time: a second range on created_at from the filter would
        # lead the planner away from the (effect, created_at) index.
        unbounded = dataclasses.replace(flt, since=None, until=None)
        cells: list[tuple[dt.datetime, str]] = []

        def body(conn: Connection) -> Sequence[Any]:
            where = _where(unbounded, conn.dialect.name)
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
            return tuple(conn.execute(sa.select(*columns)).one())

        row = await self._read("count execs", body)
        return [
            BucketCount(start, effect, int(n))
            for (start, effect), n in zip(cells, row, strict=True)
            if n
        ]

    async def _counts_by_arithmetic(
        self, flt: BrowseFilter, starts: Sequence[dt.datetime], end: dt.datetime, step: float
    ) -> list[BucketCount]:
        c = exec_sessions.c
        lo = max(starts[0], flt.since) if flt.since else starts[0]
        hi = min(end, flt.until) if flt.until else end
        origin = to_utc(starts[0]).timestamp()

        def body(conn: Connection) -> Sequence[sa.Row[Any]]:
            bucket = _bucket_of(conn.dialect.name, origin, step).label("bucket")
            unbounded = dataclasses.replace(flt, since=None, until=None)
            query = (
                sa.select(bucket, c.effect, sa.func.count().label("n"))
                .where(*_where(unbounded, conn.dialect.name), c.created_at >= lo, c.created_at < hi)
                .group_by(bucket, c.effect)
            )
            return conn.execute(query).all()

        rows = await self._read("count execs", body)
        found = [
            BucketCount(starts[int(r.bucket)], str(r.effect), int(r.n))
            for r in rows
            if 0 <= int(r.bucket) < len(starts) and r.effect in EFFECTS
        ]
        return sorted(found, key=lambda b: (b.start, EFFECTS.index(b.effect)))

    async def top_denied_rules(self, flt: BrowseFilter, n: int = 5) -> list[tuple[str, int]]:
        """The rules that denied most often under ``flt``, with their counts.

        Raises: AuditUnavailable.
        """
        c = exec_sessions.c
        rule = sa.func.coalesce(c.rule_id, "(no rule)").label("rule")
        denied = dataclasses.replace(flt, effect="deny")

        def body(conn: Connection) -> Sequence[sa.Row[Any]]:
            query = (
                sa.select(rule, sa.func.count().label("n"))
                .where(*_where(denied, conn.dialect.name))
                .group_by(rule)
                .order_by(sa.func.count().desc(), rule)
                .limit(n)
            )
            return conn.execute(query).all()

        rows = await self._read("count denials", body)
        return [(str(r.rule), int(r.n)) for r in rows]

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
        rows = await self._read("read chain events", lambda conn: conn.execute(query).all())
        return [ChainEvent(r.seq, r.kind, r.created_at, r.prev_hash, r.hash) for r in rows]

    async def anchor_states(
        self, store: AnchorStore, *, limit: int = 20
    ) -> tuple[list[AnchorState], int]:
        """The newest ``limit`` anchors in ``store``, each with whether its signature
        holds and the chain still has the hashes it records; and how many there are.

        Raises: ArtifactError (the anchors cannot be listed or read), AuditUnavailable.
        """
        names = anchor_names(await store.list_anchors())
        read = [
            (name, read_anchor(await store.get_anchor(name), self._public_key))
            for name in names[:limit]
        ]
        wanted = set().union(*(anchored_events(cp) for _, cp in read if isinstance(cp, Checkpoint)))
        e = audit_events.c
        query = sa.select(e.seq, e.prev_hash, e.hash).where(e.seq.in_(sorted(wanted)))

        def body(conn: Connection) -> dict[int, tuple[str, str]]:
            if not wanted:
                return {}
            return {int(r.seq): (r.prev_hash, r.hash) for r in conn.execute(query)}

        chain = await self._read("read anchored events", body)
        states = [judge_anchor(name, cp, chain) for name, cp in read]
        return states, len(names)

    async def head_seq(self) -> int:
        """The newest event's sequence number (0: empty). Raises: AuditUnavailable."""
        query = sa.select(sa.func.max(audit_events.c.seq))
        found = await self._read("read chain head", lambda conn: conn.scalar(query))
        return int(found or 0)
