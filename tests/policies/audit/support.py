"""Helpers for the audit store tests: sample records and raw SQL behind the store's back."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies.audit import open_audit_store
from policies.audit.anchors import AnchorPublisher, AnchorStore
from policies.audit.chain import GENESIS_HASH
from policies.audit.checkpoint import Segment, encode_checkpoint
from policies.audit.db_engine import create_engine
from policies.ports import ExecIntent
from policies.types import AuditId

INTENT = ExecIntent(
    principal="local:alice",
    surface="cli",
    target="demo-api/c-1a2b3c",
    provider="local",
    function="demo-api",
    instance="c-1a2b3c",
    argv=("ls", "-l", "/tmp"),
    command_text=None,
    reason="debugging",
    effect="allow",
    rule_id="read-only",
    decision_reason="read-only diagnostics are allowed",
)


def intent(**changes: Any) -> ExecIntent:
    return dataclasses.replace(INTENT, **changes)


async def execute(url: str, sql: str, params: Mapping[str, Any] | None = None) -> int:
    """Run one statement directly against the database (tampering, inspection);
    returns the affected row count."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(sa.text(sql), dict(params or {}))
            return result.rowcount if result.returns_rows is False else -1
    finally:
        await engine.dispose()


async def scalar(url: str, sql: str, params: Mapping[str, Any] | None = None) -> Any:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.scalar(sa.text(sql), dict(params or {}))
    finally:
        await engine.dispose()


async def record_anchored(
    url: str, checkpoint_path: Path, key: Ed25519PrivateKey, anchors: AnchorStore
) -> None:
    """A new log of four intents whose signed checkpoints are published to ``anchors``."""
    store = await open_audit_store(
        url,
        checkpoint_path=checkpoint_path,
        checkpoint_key=key,
        publish=AnchorPublisher(anchors),
        new_log=True,
    )
    try:
        for _ in range(4):
            await store.record_intent(INTENT)
    finally:
        await store.aclose()


async def cut_and_resign(url: str, checkpoint_path: Path, key: Ed25519PrivateKey) -> None:
    """What the host's owner can do: cut every event after the second and re-sign a
    matching checkpoint with the host's private ``key``."""
    await execute(url, "DELETE FROM audit_events WHERE seq > 2")
    head = await scalar(url, "SELECT hash FROM audit_events WHERE seq = 2")
    checkpoint_path.write_text(encode_checkpoint([Segment(1, GENESIS_HASH, 2, head)], key))


REPO = Path(__file__).resolve().parents[3]

# Records one intent, prints its id, then waits on stdin (to be killed or released).
CHILD = """
import asyncio, sys
from policies.audit import open_audit_store
from tests.policies.audit.support import INTENT, intent

async def main() -> None:
    store = await open_audit_store(sys.argv[1], checkpoint_path=None)
    print(await store.record_intent(INTENT), flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    await store.aclose()

asyncio.run(main())
"""


@asynccontextmanager
async def writer_process(url: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, AuditId]]:
    """A second process that recorded one running intent (its id given) and waits; it is
    killed on the way out unless it ended."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        url,
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        with anyio.fail_after(60):
            line = await proc.stdout.readline()
        assert line, "the writer process exited before recording"
        yield proc, AuditId(line.decode().strip())
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
