"""An MCP client that cancels a tool call mid-run: the exec's audit row ends
``cancelled``, never left ``running``."""

from __future__ import annotations

import os

import anyio
from mcp import Client

from policies.ports import AuditFilter, ExecStatus
from tests.server.mcp.conftest import InProcess


async def test_a_cancelled_exec_call_leaves_its_audit_row_cancelled(inproc: InProcess) -> None:
    fifo = inproc.state_tmp() / "pipe"
    os.mkfifo(fifo)
    writer: int | None = None
    try:
        async with Client(inproc.server) as client:
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    # head blocks on the FIFO until a writer closes it.
                    tg.start_soon(
                        client.call_tool, "exec", inproc.exec_args("head", "-n", "1", "/tmp/pipe")
                    )
                    # Opening the write end returns once head opened the read end: the
                    # command is running on the instance.
                    writer = await anyio.to_thread.run_sync(os.open, fifo, os.O_WRONLY)
                    tg.cancel_scope.cancel()
        (record,) = await inproc.service.audit_list(AuditFilter())
        assert record.intent.argv == ("head", "-n", "1", "/tmp/pipe")
        assert record.intent.status is ExecStatus.CANCELLED
        assert record.outcome is not None and record.outcome.error == "cancelled"
        assert (await inproc.service.audit_verify()).ok
    finally:
        if writer is not None:
            os.close(writer)
