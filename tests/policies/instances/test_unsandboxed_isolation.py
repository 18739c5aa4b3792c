"""Sandbox mode ``none`` still keeps instance commands off ExecGate's host services and
away from each other: no network (not the host's loopback, where ExecGate's database
and HTTP port listen), no view of another instance's /tmp or processes, and nothing a
command starts outlives it, whether it ends, times out or escapes into its own session."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from policies.instances.local import InstanceManager, LocalFunction
from policies.instances.sandbox import SandboxRunner
from policies.types import Limits, RunResult
from tests.policies.instances.sandbox_helpers import Output, pids_with, unique_sleep_seconds
from tests.support.fchost import FakeClock

LIMITS = Limits(timeout=30.0, idle_timeout=30.0)
BOUND = 60


@pytest.fixture
async def manager(tmp_path: Path, unsandboxed_tmp: Path) -> AsyncIterator[InstanceManager]:
    fn = LocalFunction("svc", env={"SVC_TOKEN": "instance-one-secret"}, provisioned=2)
    runner = SandboxRunner("none", unsandboxed_tmp=unsandboxed_tmp)
    started = InstanceManager([fn], runner, tmp_path / "data", clock=FakeClock())
    await started.start()
    try:
        yield started
    finally:
        await started.aclose()


async def run(
    manager: InstanceManager,
    index: int,
    script: str,
    limits: Limits = LIMITS,
    out: Output | None = None,
) -> tuple[RunResult, Output]:
    out = out or Output()
    instance = manager.list("svc")[index].instance_id
    with anyio.fail_after(BOUND):
        result = await manager.exec(
            "svc", instance, ["sh", "-c", script], limits=limits, on_output=out
        )
    return result, out


async def test_an_unsandboxed_command_cannot_connect_to_the_hosts_loopback(
    manager: InstanceManager,
) -> None:
    connected: list[bool] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.append(True)
        writer.close()

    # Stands for ExecGate's PostgreSQL, Redis or HTTP port on the host's loopback.
    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result, out = await run(
            manager,
            0,
            f"echo ran; exec bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port} && echo CONNECTED'",
        )
    finally:
        server.close()
    assert out.text("stdout").startswith("ran")  # the command really ran
    assert "IN" not in out.text("stdout")
    assert connected == []
    assert result.exit_code != 0


async def test_an_unsandboxed_instance_cannot_read_another_instances_tmp_or_processes(
    manager: InstanceManager, tmp_path: Path
) -> None:
    marker = unique_sleep_seconds()
    first, _ = await run(manager, 0, "echo one-private > /tmp/private")
    assert first.exit_code == 0
    instance = manager.list("svc")[0].instance_id
    other_tmp = os.readlink(tmp_path / "data" / "instances" / "svc" / instance / "tmp")
    # A long-running command of the first instance, with its environment.
    started = Output(wait_for=b"started")
    background = asyncio.create_task(
        run(manager, 0, f"echo started; exec sleep {marker}", out=started)
    )
    try:
        with anyio.fail_after(BOUND):
            await started.seen.wait()
        _, out = await run(
            manager,
            1,
            f"cat {other_tmp}/private; ls {other_tmp}; "
            f"for p in /proc/[0-9]*; do tr '\\0' ' ' <$p/environ; done 2>/dev/null; "
            f"ps -ef; echo done",
        )
    finally:
        background.cancel()
        await asyncio.gather(background, return_exceptions=True)
    text = out.text("stdout")
    assert text.rstrip().endswith("done")
    assert "one-private" not in text
    assert marker not in text  # the other instance's process is not visible
    assert "instance-one-secret" not in text.replace("SVC_TOKEN=instance-one-secret", "", 1)


@pytest.mark.parametrize("ending", ["exit", "timeout"])
async def test_an_unsandboxed_command_leaves_no_process_behind(
    manager: InstanceManager, ending: str
) -> None:
    marker = unique_sleep_seconds()
    escape = (
        f"setsid sleep {marker} </dev/null >/dev/null 2>&1 & (setsid sh -c 'sleep {marker}' &) ; "
    )
    if ending == "exit":
        result, _ = await run(manager, 0, escape + "echo started")
        assert result.exit_code == 0
    else:
        result, _ = await run(
            manager, 0, escape + "exec sleep 1000", Limits(timeout=1.0, idle_timeout=30.0)
        )
        assert result.timed_out
    assert pids_with(marker) == []


async def test_an_unsandboxed_command_reaches_no_host_unix_socket_under_run(
    manager: InstanceManager,
) -> None:
    connected: list[bool] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.append(True)
        writer.close()

    # Stands for /run/postgresql/.s.PGSQL.5432 (trust for local connections is common).
    run_dir = Path(tempfile.mkdtemp(prefix="execgate-test-", dir="/run"))
    run_dir.chmod(0o755)
    path = run_dir / ".s.PGSQL.5432"
    server = await asyncio.start_unix_server(accept, path=str(path))
    path.chmod(0o777)
    connect = f"import socket; socket.socket(socket.AF_UNIX).connect('{path}'); print('IN')"
    try:
        result, out = await run(manager, 0, f'echo ran; python3 -c "{connect}"')
    finally:
        server.close()
        shutil.rmtree(run_dir, ignore_errors=True)
    assert out.text("stdout").startswith("ran")
    assert "IN" not in out.text("stdout")
    assert connected == []
    assert result.exit_code != 0


async def test_tmp_of_an_unsandboxed_command_is_its_instances_not_the_hosts(
    manager: InstanceManager,
) -> None:
    # A policy's /tmp/** paths mean the instance's /tmp, as they do in a sandbox.
    host_file = Path(tempfile.mkstemp(prefix="execgate-host-", dir="/tmp")[1])
    host_file.write_text("HOST-TMP-FILE\n")
    host_file.chmod(0o644)
    try:
        _, out = await run(
            manager, 0, f"echo mine > /tmp/own; cat /tmp/own; head -n 1 {host_file}; pwd"
        )
    finally:
        host_file.unlink()
    lines = out.text("stdout").splitlines()
    assert lines[0] == "mine"
    assert "HOST-TMP-FILE" not in out.text("stdout")
    assert lines[-1] == "/tmp"
