"""An instance is a running sandbox: exec enters it and sees the function's process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from policies.errors import InstanceNotRunning
from policies.instances.local import InstanceManager, LocalFunction
from policies.instances.sandbox import SandboxRunner
from policies.types import Limits
from tests.policies.instances.sandbox_helpers import (
    Output,
    env_of,
    open_pidfds,
    pids_with,
    require_bwrap,
    unique_sleep_seconds,
    wait_exited,
)
from tests.support.fchost import FakeClock

pytestmark = pytest.mark.bwrap
LIMITS = Limits(timeout=30.0, idle_timeout=30.0)


@pytest.fixture
def marker() -> str:
    return unique_sleep_seconds()


@pytest.fixture
async def manager(tmp_path: Path, marker: str) -> AsyncIterator[InstanceManager]:
    require_bwrap()
    fn = LocalFunction(
        "svc",
        env={"APP_ENV": "demo", "DB_PASSWORD": "hunter2"},
        provisioned=2,
        command=("sleep", marker),
        listens=False,
        idle_release_seconds=60.0,
    )
    clock = FakeClock()
    mgr = InstanceManager([fn], SandboxRunner("bwrap"), tmp_path / "data", clock=clock)
    await mgr.start()
    try:
        yield mgr
    finally:
        await mgr.aclose()


async def run(manager: InstanceManager, instance: str, *argv: str) -> Output:
    out = Output()
    with anyio.fail_after(30):
        result = await manager.exec("svc", instance, argv, limits=LIMITS, on_output=out)
    assert result.exit_code == 0, out.text("stderr")
    return out


def ids(manager: InstanceManager) -> list[str]:
    return [i.instance_id for i in manager.list("svc")]


async def test_ps_in_an_exec_shows_the_function_process(
    manager: InstanceManager, marker: str
) -> None:
    out = await run(manager, ids(manager)[0], "ps", "aux")
    assert f"sleep {marker}" in out.text("stdout")


async def test_the_shell_of_an_exec_has_the_environment_of_the_function_process(
    manager: InstanceManager,
) -> None:
    instance = ids(manager)[0]
    shell = env_of(await run(manager, instance, "env"))
    pid = (await run(manager, instance, "pgrep", "-x", "sleep")).text("stdout").split()[0]
    raw = (await run(manager, instance, "cat", f"/proc/{pid}/environ")).data("stdout")
    function = dict(item.decode().partition("=")[::2] for item in raw.split(b"\0") if item)
    assert function["DB_PASSWORD"] == "hunter2" and function["FC_INSTANCE_ID"] == instance
    shell.pop("PWD", None)  # where each process happens to be
    function.pop("PWD", None)
    assert shell == function


async def test_two_execs_on_one_instance_share_files_and_processes_and_two_instances_do_not(
    manager: InstanceManager,
) -> None:
    first, second = ids(manager)
    await run(manager, first, "sh", "-c", "echo written-by-exec-1 > shared.txt")
    seen = await run(manager, first, "cat", "shared.txt")
    assert seen.text("stdout") == "written-by-exec-1\n"
    other = await run(manager, second, "ls", "-a", "/tmp")
    assert "shared.txt" not in other.text("stdout")
    pids = []
    for instance in (first, second):
        out = await run(manager, instance, "sh", "-c", "cat /proc/$(pgrep -x sleep)/environ")
        assert f"FC_INSTANCE_ID={instance}".encode() in out.data("stdout")
        pids.append(out)
    # Each instance sees its own function process, and only its own.
    for instance in (first, second):
        count = await run(manager, instance, "pgrep", "-c", "-x", "sleep")
        assert count.text("stdout").strip() == "1"


async def test_capabilities_exist_only_inside_the_instance_user_namespace(
    manager: InstanceManager,
) -> None:
    instance = ids(manager)[0]
    inside = await run(manager, instance, "cat", "/proc/self/uid_map")
    # Root inside is a mapped id of a user namespace of its own, not the host's.
    assert inside.text("stdout").split() != ["0", "0", "4294967295"]
    status = await run(manager, instance, "grep", "CapEff", "/proc/self/status")
    assert status.text("stdout").split()[1] != "0000000000000000"  # tcpdump can capture


async def test_a_released_instance_is_gone_with_its_processes(tmp_path: Path, marker: str) -> None:
    require_bwrap()
    fn = LocalFunction(
        "svc",
        env={},
        provisioned=0,
        command=("sleep", marker),
        listens=False,
        idle_release_seconds=1.0,
    )
    clock = FakeClock()
    manager = InstanceManager([fn], SandboxRunner("bwrap"), tmp_path / "data", clock=clock)
    await manager.start()
    try:
        instance = await manager.invoke("svc")
        manager.release_invocation(instance)
        running = pids_with(marker)
        assert running  # the function process was there
        pidfds = open_pidfds(running)
        clock.advance(5.0)
        assert manager.release_idle() == [instance]
        with anyio.fail_after(30):
            await wait_exited(pidfds)
        with pytest.raises(InstanceNotRunning):
            await manager.exec("svc", instance, ["true"], limits=LIMITS, on_output=Output())
    finally:
        await manager.aclose()


# A background process in its own session, a double fork into another one (neither is
# in the command's process group; both are reparented to the instance's init), and a
# process cloned with CLONE_PARENT: the sibling of the exec's main process, a child of
# the host-side nsenter, reparented on the host when nsenter exits.
_CLONE_PARENT = (
    "import ctypes, os, sys\n"
    "pid = ctypes.CDLL(None).syscall(56, 0x8000 | 17, 0, 0, 0, 0)  # clone(CLONE_PARENT)\n"
    "if pid == 0:\n"
    "    os.setsid(); os.closerange(0, 3); os.execvp('sleep', ['sleep', sys.argv[1]])\n"
    "print('started', flush=True)\n"
    "if sys.argv[2] == 'stay':\n"
    "    os.execvp('sleep', ['sleep', '1000'])\n"
)


def _escape(marker: str, stay: bool) -> str:
    """The exec's main process ends as the python process that cloned."""
    return (
        f"setsid sleep {marker} </dev/null >/dev/null 2>&1 & "
        f"(setsid sh -c 'sleep {marker}' &); "
        f'exec python3 -c "{_CLONE_PARENT}" {marker} {"stay" if stay else "exit"}'
    )


@pytest.mark.parametrize("ending", ["exit", "timeout", "cancel"])
async def test_nothing_an_exec_started_outlives_it_and_the_function_keeps_running(
    manager: InstanceManager, marker: str, ending: str
) -> None:
    instance = ids(manager)[0]
    escaped = unique_sleep_seconds()
    out = Output(wait_for=b"started")
    limits = Limits(timeout=1.0 if ending == "timeout" else 30.0, idle_timeout=30.0)
    script = _escape(escaped, stay=ending != "exit")
    with anyio.fail_after(30):
        run = manager.exec("svc", instance, ["sh", "-c", script], limits=limits, on_output=out)
        if ending == "cancel":
            task = asyncio.create_task(run)
            await out.seen.wait()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        else:
            result = await run
            assert result.exit_code == 0 if ending == "exit" else result.timed_out
    assert out.seen.is_set()  # the command really started its background processes
    assert pids_with(escaped) == []
    assert pids_with(marker), "the function's process must keep running"
    # The instance still serves execs afterwards.
    assert (await run_ok(manager, instance, "echo", "alive")).text("stdout") == "alive\n"


async def run_ok(manager: InstanceManager, instance: str, *argv: str) -> Output:
    return await run(manager, instance, *argv)


async def test_an_exec_that_ends_leaves_the_processes_of_a_running_exec_alone(
    manager: InstanceManager,
) -> None:
    instance = ids(manager)[0]
    child = unique_sleep_seconds()
    out = Output(wait_for=b"started")
    script = f"sleep {child} & echo started; wait"
    first = asyncio.create_task(
        manager.exec("svc", instance, ["sh", "-c", script], limits=LIMITS, on_output=out)
    )
    try:
        with anyio.fail_after(30):
            await out.seen.wait()
            await run(manager, instance, "true")  # another exec starts and ends
        assert pids_with(child), "a running exec's background child was killed"
    finally:
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
    assert pids_with(child) == []


async def test_execs_starting_while_others_end_all_run_to_their_end(
    manager: InstanceManager,
) -> None:
    # Each ending exec sweeps the instance: one that is still being started (its
    # nsenter not yet known to ExecGate) must not be taken for a leftover.
    instance = ids(manager)[0]
    with anyio.fail_after(60):
        outs = await asyncio.gather(
            *(run(manager, instance, "sh", "-c", f"echo {i}") for i in range(24))
        )
    assert [o.text("stdout") for o in outs] == [f"{i}\n" for i in range(24)]
