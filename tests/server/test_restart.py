"""A server that starts again finds the execs a killed process left ``running`` and
ends them ``interrupted``."""

from __future__ import annotations

from pathlib import Path

from policies.audit import SqlAuditStore
from policies.ports import ExecStatus
from server.settings import DatabaseSettings, ProviderSettings, Settings
from server.wiring import open_service
from tests.policies.audit.support import writer_process


async def test_a_server_starting_again_ends_a_killed_process_exec_interrupted(
    tmp_path: Path, migrated_url: str, audit_store: SqlAuditStore
) -> None:
    async with writer_process(migrated_url) as (proc, audit_id):
        assert (await audit_store.get_exec(audit_id)).intent.status is ExecStatus.RUNNING
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
