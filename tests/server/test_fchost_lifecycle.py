"""On-demand instances through the local host: invoke starts one, it is listed, it is
released after its idle period unless an exec is open, and exec then fails cleanly.
The manager's clock is driven by the test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from policies.errors import InstanceNotRunning
from policies.instances.local import LocalFunction
from policies.types import Limits, Stream, Target
from tests.support.fchost import LocalFc, local_fc

BOUND = 60
IDLE = 300.0


@pytest.fixture
async def fc(tmp_path: Path) -> AsyncIterator[LocalFc]:
    functions = [
        LocalFunction(
            "demo", env={}, provisioned=0, idle_release_seconds=IDLE, instance_concurrency=1
        )
    ]
    async with local_fc(tmp_path, functions=functions) as fc:
        yield fc


async def _listed(fc: LocalFc) -> list[str]:
    return [info.instance_id for info in await fc.provider.list_instances("demo")]


async def test_invoke_starts_an_on_demand_instance_that_is_listed(fc: LocalFc) -> None:
    with anyio.fail_after(BOUND):
        assert await _listed(fc) == []
        invoked = await fc.provider.invoke("demo", b"payload")
        listed = await _listed(fc)
    assert invoked.instance_id is not None and invoked.instance_id.startswith("c-")
    assert invoked.body == b"payload"
    assert listed == [invoked.instance_id]


async def test_an_idle_on_demand_instance_is_released_and_exec_then_fails_cleanly(
    fc: LocalFc,
) -> None:
    with anyio.fail_after(BOUND):
        instance = (await fc.provider.invoke("demo")).instance_id
        assert instance is not None
        fc.clock.advance(IDLE / 2)
        fc.manager.release_idle()
        assert await _listed(fc) == [instance]
        fc.clock.advance(IDLE)
        fc.manager.release_idle()
        assert await _listed(fc) == []
        with pytest.raises(InstanceNotRunning) as caught:
            await fc.run(instance, ["true"])
    assert caught.value.fields["instance"] == instance
    assert caught.value.fields["function"] == "demo"


async def test_an_open_exec_keeps_the_instance_from_being_released(fc: LocalFc) -> None:
    started = anyio.Event()
    finish = anyio.Event()
    seen: list[bytes] = []

    async def on_output(stream: Stream, data: bytes) -> None:
        seen.append(data)
        if b"ready" in b"".join(seen):
            started.set()

    async def stdin() -> AsyncIterator[bytes]:
        await finish.wait()
        yield b"bye\n"

    with anyio.fail_after(BOUND):
        instance = (await fc.provider.invoke("demo")).instance_id
        assert instance is not None
        async with anyio.create_task_group() as tg:
            results = []

            async def run_exec() -> None:
                results.append(
                    await fc.provider.exec(
                        Target("demo", instance),
                        ["sh", "-c", "echo ready; cat"],
                        limits=Limits(),
                        on_output=on_output,
                        stdin=stdin(),
                    )
                )

            tg.start_soon(run_exec)
            await started.wait()
            fc.clock.advance(IDLE * 10)
            assert fc.manager.release_idle() == []
            assert await _listed(fc) == [instance]
            finish.set()
        assert results[0].exit_code == 0
        fc.clock.advance(IDLE * 10)
        fc.manager.release_idle()
        assert await _listed(fc) == []


async def test_exec_works_while_the_instance_concurrency_is_saturated(fc: LocalFc) -> None:
    with anyio.fail_after(BOUND):
        busy = await fc.manager.invoke("demo")  # held open: the instance's only slot
        try:
            second = (await fc.provider.invoke("demo")).instance_id
            result, out = await fc.run(busy, ["echo", "still reachable"])
        finally:
            fc.manager.release_invocation(busy)
    assert second is not None and second != busy
    assert (result.exit_code, out.stdout) == (0, b"still reachable\n")
