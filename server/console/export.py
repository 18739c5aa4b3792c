"""Exports of the activity filter: CSV (spreadsheet-safe) and JSON Lines, streamed a
batch of records at a time (``stream``); the rest is pure."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any, Literal

from policies.ports import ExecRecord

COLUMNS = (
    "audit_id",
    "created_at",
    "principal",
    "surface",
    "target",
    "argv",
    "command_text",
    "reason",
    "effect",
    "rule",
    "status",
    "exit_code",
    "duration_ms",
    "approvers",
    "error",
)
# A cell starting with one of these is a formula to a spreadsheet.
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def row(record: ExecRecord) -> dict[str, Any]:
    intent, outcome = record.intent, record.outcome
    duration = None
    if outcome and outcome.started_at and outcome.ended_at:
        duration = int((outcome.ended_at - outcome.started_at).total_seconds() * 1000)
    return {
        "audit_id": record.audit_id,
        "created_at": record.created_at.isoformat(),
        "principal": intent.principal,
        "surface": intent.surface,
        "target": intent.target,
        "argv": list(intent.argv),
        "command_text": intent.command_text,
        "reason": intent.reason,
        "effect": intent.effect,
        "rule": intent.rule_id,
        "status": str(outcome.status if outcome else intent.status),
        "exit_code": outcome.exit_code if outcome else None,
        "duration_ms": duration,
        "approvers": list(outcome.approvers) if outcome else [],
        "error": outcome.error if outcome else None,
    }


def jsonl(records: Iterable[ExecRecord]) -> Iterator[str]:
    for record in records:
        yield json.dumps(row(record), separators=(",", ":")) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = json.dumps(value) if isinstance(value, list) else str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def csv_rows(records: Iterable[ExecRecord], *, header: bool = False) -> Iterator[str]:
    """CSV lines of ``records`` (after the column names when ``header``)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    if header:
        writer.writerow(COLUMNS)
    for record in records:
        values = row(record)
        writer.writerow([_cell(values[c]) for c in COLUMNS])
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    if buf.tell():
        yield buf.getvalue()


def csv_lines(records: Iterable[ExecRecord]) -> Iterator[str]:
    """A whole CSV file of ``records``."""
    return csv_rows(records, header=True)


Format = Literal["csv", "jsonl"]
MEDIA: dict[str, str] = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


async def stream(batches: AsyncIterable[Iterable[ExecRecord]], fmt: Format) -> AsyncIterator[bytes]:
    """The export file, one chunk per batch of records, each batch read from the
    database only when the one before was sent."""
    if fmt == "csv":
        yield "".join(csv_rows((), header=True)).encode()
    async for records in batches:
        lines = csv_rows(records) if fmt == "csv" else jsonl(records)
        chunk = "".join(lines)
        if chunk:
            yield chunk.encode()
