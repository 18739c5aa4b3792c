"""Several writers on one database never fork the chain: in one process, across store
instances, and across processes."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import anyio

from policies.audit import SqlAuditStore, open_audit_store
from policies.audit.checkpoint import read_checkpoint
from policies.errors import ExecNotFound
from policies.ports import AuditFilter, ExecOutcome, ExecStatus
from policies.types import AuditId
from tests.conftest import CHECKPOINT_KEY
from tests.policies.audit.support import INTENT

REPO = Path(__file__).resolve().parents[3]

CHILD = """
import asyncio, pathlib, sys
from policies.audit import open_audit_store
from policies.ports import ExecOutcome, ExecStatus
from tests.conftest import CHECKPOINT_KEY
from tests.policies.audit.support import INTENT

async def main() -> None:
    store = await open_audit_store(
        sys.argv[1], checkpoint_path=pathlib.Path(sys.argv[2]), checkpoint_key=CHECKPOINT_KEY
    )
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    for _ in range(int(sys.argv[3])):
        audit_id = await store.record_intent(INTENT)
        await store.record_outcome(audit_id, ExecOutcome(status=ExecStatus.COMPLETED))
    await store.aclose()

asyncio.run(main())
"""


async def _execs(store: SqlAuditStore, count: int) -> None:
    async def one() -> None:
        audit_id = await store.record_intent(INTENT)
        await store.record_outcome(audit_id, ExecOutcome(status=ExecStatus.COMPLETED, exit_code=0))

    await asyncio.gather(*(one() for _ in range(count)))


async def test_two_stores_appending_concurrently_keep_one_valid_chain(
    audit_store: SqlAuditStore, other_store: SqlAuditStore, checkpoint_path: Path
) -> None:
    await asyncio.gather(_execs(audit_store, 40), _execs(other_store, 40))
    await other_store.aclose()

    report = await audit_store.verify()

    assert (report.ok, report.rows_checked) == (True, 160)
    assert len(await audit_store.list_execs(AuditFilter(limit=1000))) == 80
    checkpoint = read_checkpoint(checkpoint_path, CHECKPOINT_KEY.public_key())
    assert checkpoint is not None
    assert [(s.first, s.last) for s in checkpoint.segments] == [(1, 160)]


async def test_another_process_appending_at_the_same_time_keeps_one_valid_chain(
    audit_store: SqlAuditStore, migrated_url: str, checkpoint_path: Path
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        migrated_url,
        str(checkpoint_path),
        "40",
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        with anyio.fail_after(60):
            assert await proc.stdout.readline() == b"ready\n"
        # Both start writing now.
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        await _execs(audit_store, 40)
    finally:
        proc.stdin.close()  # releases the child even when the test failed early
        with anyio.fail_after(60):
            assert await proc.wait() == 0

    await audit_store.aclose()
    store = await open_audit_store(
        migrated_url, checkpoint_path=checkpoint_path, checkpoint_key=CHECKPOINT_KEY
    )
    try:
        report = await store.verify()
    finally:
        await store.aclose()

    assert (report.ok, report.rows_checked) == (True, 160)
    checkpoint = read_checkpoint(checkpoint_path, CHECKPOINT_KEY.public_key())
    assert checkpoint is not None
    assert [(s.first, s.last) for s in checkpoint.segments] == [(1, 160)]


async def test_a_failing_write_among_concurrent_ones_rolls_back_only_itself(
    audit_store: SqlAuditStore,
) -> None:
    async def fail() -> None:
        await audit_store.record_outcome(AuditId("ex_missing"), ExecOutcome(ExecStatus.FAILED))

    results = await asyncio.gather(
        *(audit_store.record_intent(INTENT) for _ in range(10)),
        fail(),
        *(audit_store.record_intent(INTENT) for _ in range(10)),
        fail(),
        return_exceptions=True,
    )

    assert [type(r) for r in results].count(ExecNotFound) == 2
    assert all(isinstance(r, str) for r in results[:10] + results[11:21])
    report = await audit_store.verify()
    assert (report.ok, report.rows_checked) == (True, 20)
