"""Exports of the activity filter: CSV (spreadsheet-safe) and JSON Lines. Pure."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

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


def csv_lines(records: Iterable[ExecRecord]) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    for record in records:
        values = row(record)
        writer.writerow([_cell(values[c]) for c in COLUMNS])
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    if buf.tell():
        yield buf.getvalue()
