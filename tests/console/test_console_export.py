"""Exports of the activity filter stream: the console reads one batch of records from
the database at a time while the response is being sent, so an export of any size
holds one batch in memory. Tested on a few thousand rows through the console app, with
its ASGI messages watched as they are sent."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest

from policies.audit import SqlAuditStore
from policies.audit.db_engine import create_engine
from policies.audit.tables import exec_sessions
from policies.service.review import EXPORT_BATCH
from server.console.signin import console_key, make_link
from tests.console.conftest import BASE, console_app, replica, shared_settings

ROWS = 2 * EXPORT_BATCH + 123
NOW = dt.datetime.now(dt.UTC)


def row(i: int, created_at: dt.datetime, **changes: Any) -> dict[str, Any]:
    values = {
        "id": f"ex_export{i:08d}",
        "created_at": created_at,
        "principal": f"local:user{i % 3}",
        "surface": "cli",
        "target": "local:demo-api/c-1",
        "provider": "local",
        "function": "demo-api",
        "instance": "c-1",
        "argv": ["echo", f"row {i}"],
        "command_text": f"echo row {i}",
        "reason": "export test",
        "effect": "allow",
        "rule_id": "diagnostics",
        "decision_reason": "test",
        "status": "completed",
        "outcome_at": created_at,
        "exit_code": 0,
    }
    return {**values, **changes}


async def insert(url: str, rows: list[dict[str, Any]]) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(exec_sessions.insert(), rows)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_an_export_streams_its_batches_and_holds_every_record_in_order(
    fmt: str, tmp_path: Path, audit_store: SqlAuditStore, migrated_url: str
) -> None:
    await insert(migrated_url, [row(i, NOW - dt.timedelta(seconds=ROWS - i)) for i in range(ROWS)])
    settings = shared_settings(tmp_path)
    async with replica(settings, audit_store) as client:
        link = make_link(console_key(tmp_path), BASE, "local:audra")
        assert (await client.get(link.removeprefix(BASE))).status_code == 303
        cookie = f"execgate_console={client.cookies['execgate_console']}"
    app = console_app(settings, audit_store)

    # Rows older than every other are written once the first chunk has been sent: an
    # export read before its first byte cannot hold them, a streamed one ends with them.
    late = [row(ROWS + i, NOW - dt.timedelta(days=30, seconds=i)) for i in range(3)]
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if requested:  # the client stays connected until the response ends
            await asyncio.Event().wait()
        requested = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            if message.get("body"):
                chunks.append(message["body"])
                if len(chunks) == 1:
                    await insert(migrated_url, late)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "server": ("console", 80),
        "path": f"/console/export.{fmt}",
        "raw_path": f"/console/export.{fmt}".encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"console"), (b"cookie", cookie.encode())],
    }
    await app(scope, receive, send)

    assert start["status"] == 200
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    assert "content-length" not in headers
    assert headers["content-disposition"] == f'attachment; filename="execgate-audit.{fmt}"'
    # A chunk per batch (and the CSV header): never the whole export at once.
    assert len(chunks) >= ROWS // EXPORT_BATCH + 1
    assert max(len(c) for c in chunks) < len(b"".join(chunks)) / 2
    text = b"".join(chunks).decode()
    if fmt == "csv":
        records = list(csv.DictReader(io.StringIO(text)))
        argv = [json.loads(r["argv"]) for r in records]
    else:
        records = [json.loads(line) for line in text.splitlines()]
        argv = [r["argv"] for r in records]
    total = ROWS + len(late)
    assert len(records) == total
    assert [r["audit_id"] for r in records] == [f"ex_export{i:08d}" for i in range(total)][
        ROWS - 1 :: -1
    ] + [f"ex_export{ROWS + i:08d}" for i in range(len(late))]
    assert argv[0] == ["echo", f"row {ROWS - 1}"]
    assert records[-1]["principal"] == f"local:user{(ROWS + 2) % 3}"
    assert {r["status"] for r in records} == {"completed"}
