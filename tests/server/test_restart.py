"""A server that starts again finds the execs a killed process left ``running`` and
ends them ``interrupted``."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import anyio

from policies.audit import SqlAuditStore
from policies.ports import ExecStatus
from policies.types import AuditId
from server.settings import DatabaseSettings, ProviderSettings, Settings
from server.wiring import open_service

REPO = Path(__file__).resolve().parents[2]

# Records one running intent, prints its id, then waits to be killed.
CHILD = """
import asyncio, sys
from policies.audit import open_audit_store
from tests.policies.audit.support import INTENT

async def main() -> None:
    store = await open_audit_store(sys.argv[1], checkpoint_path=None, checkpoint_key=b"k")
    print(await store.record_intent(INTENT), flush=True)
    await asyncio.to_thread(sys.stdin.readline)

asyncio.run(main())
"""


async def test_a_server_starting_again_ends_a_killed_process_exec_interrupted(
    tmp_path: Path, migrated_url: str, audit_store: SqlAuditStore
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        migrated_url,
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        with anyio.fail_after(60):
            line = await proc.stdout.readline()
        assert line, "the writer process exited before recording"
        audit_id = AuditId(line.decode().strip())
        assert (await audit_store.get_exec(audit_id)).intent.status is ExecStatus.RUNNING
    finally:
        proc.kill()  # SIGKILL: nothing of the process gets to clean up
        await proc.wait()

    settings = Settings(
        data_dir=tmp_path / "data",
        database=DatabaseSettings(url=migrated_url),
        providers={"local": ProviderSettings(type="sandbox")},
    )
    async with open_service(settings) as service:
        record = await service.audit.get_exec(audit_id)
        verified = await service.audit_verify()

    assert record.intent.status is ExecStatus.INTERRUPTED
    assert record.outcome is not None and record.outcome.status is ExecStatus.INTERRUPTED
    assert verified.ok, verified
