"""A request cancelled mid-run (a client gone, a worker stopped, Ctrl-C) ends with the
outcome ``cancelled`` and the output that arrived, never left ``running``."""

from __future__ import annotations

import asyncio

import anyio

from policies.ports import AuditFilter, ExecStatus
from policies.service.results import ExecResult
from policies.types import Stream
from tests.policies.service.conftest import Rig

SLOW = ("/bin/sh", "-c", "echo started; exec sleep 60")


async def test_a_cancelled_exec_is_recorded_cancelled_with_the_output_so_far(rig: Rig) -> None:
    started = anyio.Event()

    async def sink(stream: Stream, text: str) -> None:
        if "started" in text:
            started.set()

    task: asyncio.Task[ExecResult] = asyncio.create_task(
        rig.service.exec(rig.request(argv=SLOW), on_output=sink)
    )
    with anyio.fail_after(30):
        await started.wait()
    task.cancel()
    with anyio.fail_after(30):
        done, _ = await asyncio.wait({task})
    assert task in done and task.cancelled()

    (record,) = await rig.store.list_execs(AuditFilter())
    assert record.intent.argv == SLOW
    assert record.intent.status is ExecStatus.CANCELLED
    assert record.outcome is not None
    assert record.outcome.status is ExecStatus.CANCELLED
    assert record.outcome.error == "cancelled"
    assert record.outcome.stdout_text.strip() == "started"
    assert (await rig.store.verify()).ok
