"""The sandbox provider: ExecGate's InstanceProvider over the local instance manager."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from policies.errors import InstanceNotRunning
from policies.instances.local import InstanceManager, LocalFunction
from policies.instances.sandbox import SandboxRunner
from policies.instances.sandbox_provider import SandboxProvider
from policies.ports import InstanceProvider
from policies.types import Limits, Target
from tests.policies.instances.sandbox_helpers import (
    Output,
    env_of,
    open_pidfds,
    pids_with,
    unique_sleep_seconds,
    wait_exited,
)

LIMITS = Limits(timeout=30.0, idle_timeout=30.0)


@pytest.fixture
async def manager(runner: SandboxRunner, tmp_path: Path) -> AsyncIterator[InstanceManager]:
    fn = LocalFunction(name="demo-api", env={"APP_ENV": "demo"}, provisioned=1)
    mgr = InstanceManager([fn], runner, tmp_path)
    await mgr.start()
    yield mgr
    await mgr.aclose()


async def test_instances_are_listed_under_the_provider_name(manager: InstanceManager) -> None:
    provider: InstanceProvider = SandboxProvider("sandbox", manager)
    [info] = await provider.list_instances("demo-api")
    assert info.provider == "sandbox"
    assert info.sandboxed == manager.sandboxed


async def test_exec_runs_on_the_target_instance(manager: InstanceManager) -> None:
    provider = SandboxProvider("sandbox", manager)
    [info] = await provider.list_instances("demo-api", qualifier="LATEST")
    out = Output()
    target = Target.parse(f"sandbox:demo-api/{info.instance_id}")
    with anyio.fail_after(30):
        result = await provider.exec(target, ["env"], limits=LIMITS, on_output=out)
    assert result.exit_code == 0
    assert env_of(out)["APP_ENV"] == "demo"


async def test_exec_on_an_unknown_instance_says_it_is_not_running(
    manager: InstanceManager,
) -> None:
    provider = SandboxProvider("sandbox", manager)
    with pytest.raises(InstanceNotRunning) as caught:
        await provider.exec(
            Target.parse("demo-api/c-00000000-00000000-000000000000"),
            ["true"],
            limits=LIMITS,
            on_output=Output(),
        )
    assert caught.value.code == "instance_not_running"


async def test_closing_the_provider_leaves_the_manager_running(manager: InstanceManager) -> None:
    provider = SandboxProvider("sandbox", manager)
    await provider.aclose()
    assert len(await provider.list_instances("demo-api")) == 1
    assert await manager.invoke("demo-api")


async def test_cancelling_an_exec_kills_the_command_and_its_children(
    manager: InstanceManager,
) -> None:
    # What a vanished MCP client or Slack worker does: the service task is cancelled.
    provider = SandboxProvider("sandbox", manager)
    [info] = await provider.list_instances("demo-api")
    seconds = unique_sleep_seconds()
    out = Output(wait_for=b"started")
    with anyio.fail_after(30):
        task = asyncio.create_task(
            provider.exec(
                Target("demo-api", info.instance_id),
                ["sh", "-c", f"sleep {seconds} & echo started; sleep {seconds}"],
                limits=LIMITS,
                on_output=out,
            )
        )
        await out.seen.wait()
        pidfds = open_pidfds(pids_with(seconds))
        assert len(pidfds) >= 2
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_exited(pidfds)
    assert pids_with(seconds) == []
