"""Local instances: provisioned and on-demand lifecycle, driven by a fake clock."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from policies.errors import ConfigError, InstanceNotRunning, ProviderUnavailable
from policies.instances.local import (
    InstanceLimitReached,
    InstanceManager,
    LocalFunction,
    UnknownFunction,
)
from policies.instances.sandbox import SandboxRunner
from policies.instances.unsandboxed import NOBODY, Identity, readable_by
from policies.types import Limits
from tests.policies.instances.sandbox_helpers import Output, env_of
from tests.support.fchost import FakeClock

LIMITS = Limits(timeout=30.0, idle_timeout=30.0)
IDLE = 60.0


def api(provisioned: int = 1, concurrency: int = 1, max_on_demand: int = 16) -> LocalFunction:
    return LocalFunction(
        name="demo-api",
        env={"APP_ENV": "demo"},
        provisioned=provisioned,
        idle_release_seconds=IDLE,
        instance_concurrency=concurrency,
        max_on_demand=max_on_demand,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def subprocess_runner(unsandboxed_tmp: Path) -> SandboxRunner:
    # Lifecycle tests that do not depend on the sandbox use the fast mode.
    return SandboxRunner("subprocess", unsandboxed_tmp=unsandboxed_tmp)


async def started(
    functions: list[LocalFunction], runner: SandboxRunner, data_dir: Path, clock: FakeClock
) -> InstanceManager:
    manager = InstanceManager(functions, runner, data_dir, clock=clock)
    await manager.start()
    return manager


@pytest.fixture
async def manager(
    subprocess_runner: SandboxRunner, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[InstanceManager]:
    mgr = await started([api(provisioned=0)], subprocess_runner, tmp_path, clock)
    yield mgr
    await mgr.aclose()


async def run(manager: InstanceManager, instance_id: str, *argv: str) -> Output:
    out = Output()
    with anyio.fail_after(30):
        result = await manager.exec("demo-api", instance_id, argv, limits=LIMITS, on_output=out)
    assert result.exit_code == 0, out.text("stderr")
    return out


async def test_provisioned_instances_keep_their_ids_and_files_across_restarts(
    runner: SandboxRunner, tmp_path: Path, clock: FakeClock
) -> None:
    first = await started([api(provisioned=2)], runner, tmp_path, clock)
    ids = [i.instance_id for i in first.list("demo-api")]
    await run(first, ids[0], "sh", "-c", "echo remembered > note")
    await first.aclose()

    second = await started([api(provisioned=2)], runner, tmp_path, clock)
    try:
        assert [i.instance_id for i in second.list("demo-api")] == ids
        out = await run(second, ids[0], "cat", "note")
        assert out.text("stdout") == "remembered\n"
    finally:
        await second.aclose()


async def test_instance_ids_look_like_function_compute_ids(
    subprocess_runner: SandboxRunner, tmp_path: Path, clock: FakeClock
) -> None:
    mgr = await started([api(provisioned=3)], subprocess_runner, tmp_path, clock)
    try:
        ids = [i.instance_id for i in mgr.list("demo-api")]
    finally:
        await mgr.aclose()
    assert len(set(ids)) == 3
    assert all(re.fullmatch(r"c-[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{12}", i) for i in ids)


async def test_fewer_provisioned_instances_after_a_restart_releases_the_extra_ones(
    subprocess_runner: SandboxRunner, tmp_path: Path, clock: FakeClock
) -> None:
    first = await started([api(provisioned=2)], subprocess_runner, tmp_path, clock)
    kept, dropped = (i.instance_id for i in first.list("demo-api"))
    await first.aclose()
    second = await started([api(provisioned=1)], subprocess_runner, tmp_path, clock)
    try:
        assert [i.instance_id for i in second.list("demo-api")] == [kept]
        with pytest.raises(InstanceNotRunning):
            await second.exec("demo-api", dropped, ["true"], limits=LIMITS, on_output=Output())
    finally:
        await second.aclose()
    assert not (tmp_path / "instances" / "demo-api" / dropped).exists()


async def test_a_second_manager_on_the_same_data_directory_is_refused(
    manager: InstanceManager, subprocess_runner: SandboxRunner, tmp_path: Path, clock: FakeClock
) -> None:
    other = InstanceManager([api()], subprocess_runner, tmp_path, clock=clock)
    with pytest.raises(ConfigError) as caught:
        await other.start()
    assert caught.value.code == "config_error"


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        json.dumps({"version": 99, "functions": {}}),
        json.dumps(
            {
                "version": 1,
                "functions": {"demo-api": [{"instance_id": "../../etc", "created_ms": 1}]},
            }
        ),
    ],
    ids=["not-json", "unknown-version", "path-in-instance-id"],
)
async def test_an_unreadable_instances_file_is_refused(
    subprocess_runner: SandboxRunner, tmp_path: Path, clock: FakeClock, content: str
) -> None:
    (tmp_path / "instances.json").write_text(content)
    mgr = InstanceManager([api()], subprocess_runner, tmp_path, clock=clock)
    with pytest.raises(ConfigError):
        await mgr.start()
    # The refusal released the data directory.
    (tmp_path / "instances.json").unlink()
    await mgr.start()
    await mgr.aclose()


async def test_list_describes_live_instances(manager: InstanceManager) -> None:
    instance_id = await manager.invoke("demo-api")
    [info] = manager.list("demo-api", qualifier="prod", provider="local-test")
    assert info.instance_id == instance_id
    assert (info.function, info.provider, info.status) == ("demo-api", "local-test", "Running")
    assert (info.version_id, info.qualifier) == ("LATEST", "prod")
    # The fixture's runner is the unsandboxed mode, and the listing says which it is.
    assert (info.sandboxed, info.isolation) == (False, "none")
    assert info.created_ms is not None and info.created_ms > 0


async def test_unknown_functions_are_reported(manager: InstanceManager) -> None:
    with pytest.raises(UnknownFunction) as caught:
        manager.list("no-such-function")
    assert caught.value.code == "unknown_function"
    with pytest.raises(UnknownFunction):
        await manager.invoke("no-such-function")
    with pytest.raises(UnknownFunction):
        await manager.exec("no-such-function", "c-1", ["true"], limits=LIMITS, on_output=Output())


async def test_invoke_starts_an_on_demand_instance_that_is_listed(
    manager: InstanceManager,
) -> None:
    assert manager.list("demo-api") == []
    instance_id = await manager.invoke("demo-api")
    assert [i.instance_id for i in manager.list("demo-api")] == [instance_id]


async def test_invocations_fill_an_instance_before_another_starts(
    subprocess_runner: SandboxRunner, tmp_path: Path, clock: FakeClock
) -> None:
    mgr = await started([api(provisioned=1, concurrency=2)], subprocess_runner, tmp_path, clock)
    try:
        [provisioned] = [i.instance_id for i in mgr.list("demo-api")]
        served = [await mgr.invoke("demo-api") for _ in range(3)]
        assert served[:2] == [provisioned, provisioned]
        assert served[2] != provisioned
        mgr.release_invocation(provisioned)
        assert await mgr.invoke("demo-api") == provisioned
    finally:
        await mgr.aclose()


async def test_invoke_refuses_more_on_demand_instances_than_allowed(
    subprocess_runner: SandboxRunner, tmp_path: Path, clock: FakeClock
) -> None:
    mgr = await started([api(provisioned=0, max_on_demand=1)], subprocess_runner, tmp_path, clock)
    try:
        await mgr.invoke("demo-api")
        with pytest.raises(InstanceLimitReached) as caught:
            await mgr.invoke("demo-api")
        assert caught.value.code == "instance_limit"
    finally:
        await mgr.aclose()


async def test_an_idle_on_demand_instance_is_released_and_exec_on_it_fails(
    manager: InstanceManager, clock: FakeClock, tmp_path: Path
) -> None:
    instance_id = await manager.invoke("demo-api")
    manager.release_invocation(instance_id)
    state = tmp_path / "instances" / "demo-api" / instance_id
    assert state.is_dir()

    clock.advance(IDLE - 1)
    assert manager.release_idle() == []
    clock.advance(2)
    assert manager.release_idle() == [instance_id]

    assert manager.list("demo-api") == []
    assert not state.exists()
    assert manager.was_released(instance_id)
    with pytest.raises(InstanceNotRunning) as caught:
        await manager.exec("demo-api", instance_id, ["true"], limits=LIMITS, on_output=Output())
    assert caught.value.code == "instance_not_running"
    assert caught.value.fields["instance"] == instance_id


async def test_an_open_invocation_keeps_an_instance_alive(
    manager: InstanceManager, clock: FakeClock
) -> None:
    instance_id = await manager.invoke("demo-api")
    clock.advance(IDLE * 10)
    assert manager.release_idle() == []
    manager.release_invocation(instance_id)
    clock.advance(IDLE + 1)
    assert manager.release_idle() == [instance_id]


async def test_an_open_exec_keeps_an_on_demand_instance_alive(
    manager: InstanceManager, clock: FakeClock
) -> None:
    instance_id = await manager.invoke("demo-api")
    manager.release_invocation(instance_id)
    go_on = asyncio.Event()
    out = Output(wait_for=b"ready")

    async def stdin() -> AsyncIterator[bytes]:
        yield b"ready\n"
        await go_on.wait()

    with anyio.fail_after(30):
        task = asyncio.create_task(
            manager.exec(
                "demo-api", instance_id, ["cat"], limits=LIMITS, on_output=out, stdin=stdin()
            )
        )
        await out.seen.wait()
        clock.advance(IDLE * 10)
        assert manager.release_idle() == []
        go_on.set()
        assert (await task).exit_code == 0
    # The end of the exec counts as activity: the idle period starts again.
    assert manager.release_idle() == []
    clock.advance(IDLE + 1)
    assert manager.release_idle() == [instance_id]


async def test_provisioned_instances_are_never_released_for_idleness(
    subprocess_runner: SandboxRunner, tmp_path: Path, clock: FakeClock
) -> None:
    mgr = await started([api(provisioned=1)], subprocess_runner, tmp_path, clock)
    try:
        clock.advance(IDLE * 100)
        assert mgr.release_idle() == []
        assert len(mgr.list("demo-api")) == 1
    finally:
        await mgr.aclose()


async def test_exec_works_while_invocations_saturate_the_instance(
    runner: SandboxRunner, tmp_path: Path, clock: FakeClock
) -> None:
    mgr = await started([api(provisioned=1, concurrency=1)], runner, tmp_path, clock)
    try:
        busy = await mgr.invoke("demo-api")
        assert await mgr.invoke("demo-api") != busy  # the instance has no free slot
        out = await run(mgr, busy, "env")
        assert env_of(out)["APP_ENV"] == "demo"
    finally:
        await mgr.aclose()


async def test_a_file_written_by_one_exec_is_seen_by_the_next_on_the_same_instance_only(
    runner: SandboxRunner, tmp_path: Path, clock: FakeClock
) -> None:
    mgr = await started([api(provisioned=2)], runner, tmp_path, clock)
    try:
        one, two = (i.instance_id for i in mgr.list("demo-api"))
        await run(mgr, one, "sh", "-c", "echo mine > note")
        assert (await run(mgr, one, "cat", "note")).text("stdout") == "mine\n"
        other = Output()
        result = await mgr.exec("demo-api", two, ["cat", "note"], limits=LIMITS, on_output=other)
        assert result.exit_code == 1
    finally:
        await mgr.aclose()


async def test_a_command_writes_and_reads_back_a_file_in_its_tmpdir(
    runner: SandboxRunner, tmp_path: Path, clock: FakeClock
) -> None:
    data = tmp_path / "data"
    mgr = await started([api(provisioned=1)], runner, data, clock)
    try:
        [instance_id] = [i.instance_id for i in mgr.list("demo-api")]
        script = 'echo kept > "${TMPDIR:-/tmp}/note" && cat "${TMPDIR:-/tmp}/note"'
        assert (await run(mgr, instance_id, "sh", "-c", script)).text("stdout") == "kept\n"
        # It is the instance's /tmp: the working directory of the next exec.
        assert (await run(mgr, instance_id, "cat", "note")).text("stdout") == "kept\n"
    finally:
        await mgr.aclose()
    # ...and ExecGate's data directory stayed closed to the user commands run as.
    assert data.stat().st_mode & 0o777 == 0o700
    assert not readable_by(data, Identity(NOBODY, NOBODY))


async def test_a_released_unsandboxed_instance_leaves_no_tmpdir_behind(
    manager: InstanceManager, clock: FakeClock, tmp_path: Path
) -> None:
    instance_id = await manager.invoke("demo-api")
    manager.release_invocation(instance_id)
    await run(manager, instance_id, "sh", "-c", "echo kept > /tmp/note")
    # The command's /tmp is the directory the instance's state directory links to.
    tmpdir = Path(os.readlink(tmp_path / "instances" / "demo-api" / instance_id / "tmp"))
    assert (tmpdir / "note").read_text() == "kept\n"
    clock.advance(IDLE + 1)
    assert manager.release_idle() == [instance_id]
    assert not tmpdir.exists()


async def test_closing_the_manager_stops_running_execs(
    runner: SandboxRunner, tmp_path: Path, clock: FakeClock
) -> None:
    mgr = await started([api(provisioned=1)], runner, tmp_path, clock)
    [instance_id] = [i.instance_id for i in mgr.list("demo-api")]
    out = Output(wait_for=b"started")
    with anyio.fail_after(30):
        task = asyncio.create_task(
            mgr.exec(
                "demo-api",
                instance_id,
                ["sh", "-c", "echo started; exec sleep 1000"],
                limits=LIMITS,
                on_output=out,
            )
        )
        await out.seen.wait()
        await mgr.aclose()
        with pytest.raises(ProviderUnavailable):
            await task


async def test_on_demand_instances_do_not_survive_a_restart(
    subprocess_runner: SandboxRunner, tmp_path: Path, clock: FakeClock
) -> None:
    first = await started([api(provisioned=0)], subprocess_runner, tmp_path, clock)
    instance_id = await first.invoke("demo-api")
    await first.aclose()
    second = await started([api(provisioned=0)], subprocess_runner, tmp_path, clock)
    try:
        assert second.list("demo-api") == []
        assert not (tmp_path / "instances" / "demo-api" / instance_id).exists()
    finally:
        await second.aclose()


async def test_invoke_before_start_is_refused(
    subprocess_runner: SandboxRunner, tmp_path: Path
) -> None:
    mgr = InstanceManager([api()], subprocess_runner, tmp_path)
    with pytest.raises(ProviderUnavailable):
        await mgr.invoke("demo-api")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "../escape"},
        {"name": "ok", "provisioned": -1},
        {"name": "ok", "instance_concurrency": 0},
        {"name": "ok", "idle_release_seconds": -1.0},
        {"name": "ok", "env": {"A": "x\0--bind"}},
        {"name": "ok", "env": {"A=B": "x"}},
    ],
    ids=[
        "path-in-name",
        "negative-provisioned",
        "zero-concurrency",
        "negative-idle",
        "nul-in-env-value",
        "equals-in-env-name",
    ],
)
def test_invalid_function_declarations_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        LocalFunction(**{"env": {}, **kwargs})  # type: ignore[arg-type]


def test_function_names_must_be_unique(subprocess_runner: SandboxRunner, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        InstanceManager([api(), api()], subprocess_runner, tmp_path)


async def test_open_execs_do_not_hold_a_thread_each(manager: InstanceManager) -> None:
    instance_id = await manager.invoke("demo-api")
    manager.release_invocation(instance_id)
    go_on = asyncio.Event()
    outputs = [Output(wait_for=b"ready") for _ in range(20)]
    threads_before = threading.active_count()

    async def stdin() -> AsyncIterator[bytes]:
        yield b"ready\n"
        await go_on.wait()

    with anyio.fail_after(30):
        tasks = [
            asyncio.create_task(
                manager.exec(
                    "demo-api", instance_id, ["cat"], limits=LIMITS, on_output=out, stdin=stdin()
                )
            )
            for out in outputs
        ]
        for out in outputs:
            await out.seen.wait()
        open_threads = threading.active_count()
        go_on.set()
        results = await asyncio.gather(*tasks)
    assert [r.exit_code for r in results] == [0] * 20
    # Child exits are learnt in the event loop: twenty open execs, not twenty threads more.
    assert open_threads - threads_before < 5
