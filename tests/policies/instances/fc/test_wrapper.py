"""The exec wrapper under real shells (dash, bash, busybox sh), as on an instance: it
enforces the timeout on its own, kills the whole process group, and can be stopped by a
second exec, because Function Compute does none of that when the socket closes."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from policies.instances.fc.framing import (
    EXIT_TIMEOUT,
    ExitStatus,
    TrailerStripper,
    new_nonce,
    stop_argv,
    wrap_argv,
)
from tests.policies.instances.sandbox_helpers import (
    open_pidfds,
    pids_with,
    unique_sleep_seconds,
    wait_exited,
)

BOUND = 30  # seconds: a bound on hangs, not a timing assertion


def _shell(name: str) -> list[str]:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is needed for this test: apt-get install -y {name}")
    return [path, "sh"] if name == "busybox" else [path]


SHELLS = [
    pytest.param("dash", id="dash"),
    pytest.param("bash", id="bash"),
    pytest.param("busybox", id="busybox-sh"),
]


@dataclass
class Ran:
    returncode: int
    status: ExitStatus | None
    stdout: bytes
    stderr: bytes


class Wrapped:
    """One wrapped command started under a given shell, like the instance would run it."""

    def __init__(self, shell: str, tmp: Path, env: dict[str, str] | None = None) -> None:
        self.shell = _shell(shell)
        self.nonce, self.run_id = new_nonce(), new_nonce()
        self.env = {"PATH": os.environ["PATH"], "TMPDIR": str(tmp), **(env or {})}
        self.started = asyncio.Event()
        self._stdout = b""

    async def run(self, argv: Sequence[str], *, timeout: int = 60, grace: int = 1) -> Ran:
        wrapped = wrap_argv(argv, self.nonce, run_id=self.run_id, timeout=timeout, grace=grace)
        proc = await asyncio.create_subprocess_exec(
            *self.shell,
            *wrapped[1:],
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
        )
        assert proc.stdout is not None and proc.stderr is not None
        err = asyncio.create_task(proc.stderr.read())
        while chunk := await proc.stdout.read(4096):
            self._stdout += chunk
            if b"started" in self._stdout:
                self.started.set()
        stripper = TrailerStripper(self.nonce)
        out = stripper.feed(await err)
        rest, status = stripper.finish()
        return Ran(await proc.wait(), status, self._stdout, out + rest)

    async def stop(self) -> int:
        proc = await asyncio.create_subprocess_exec(
            *self.shell, *stop_argv(self.run_id, wait=5)[1:], env=self.env
        )
        return await proc.wait()


@pytest.mark.parametrize("shell", SHELLS)
async def test_the_timeout_kills_the_command_and_its_background_children(
    shell: str, tmp_path: Path
) -> None:
    seconds = unique_sleep_seconds()
    wrapped = Wrapped(shell, tmp_path)
    with anyio.fail_after(BOUND):
        run = asyncio.create_task(
            wrapped.run(["sh", "-c", f"sleep {seconds} & echo started; sleep {seconds}"], timeout=1)
        )
        await wrapped.started.wait()
        pidfds = open_pidfds(pids_with(seconds))
        assert len(pidfds) >= 2  # both sleeps ran: there was something to kill
        ran = await run
        await wait_exited(pidfds)
    assert ran.status == ExitStatus(None, timed_out=True)
    assert ran.returncode == EXIT_TIMEOUT
    assert pids_with(seconds) == []


@pytest.mark.parametrize("shell", SHELLS)
async def test_a_command_that_ignores_term_is_killed_after_the_grace(
    shell: str, tmp_path: Path
) -> None:
    seconds = unique_sleep_seconds()
    script = f"trap 'echo got-term' TERM; echo started; while :; do sleep {seconds} & wait; done"
    wrapped = Wrapped(shell, tmp_path)
    with anyio.fail_after(BOUND):
        run = asyncio.create_task(wrapped.run(["sh", "-c", script], timeout=1, grace=1))
        await wrapped.started.wait()
        pidfds = open_pidfds(pids_with(seconds))
        ran = await run
        await wait_exited(pidfds)
    assert b"got-term" in ran.stdout  # TERM came first and was ignored
    assert ran.status == ExitStatus(None, timed_out=True)
    assert pids_with(seconds) == []


@pytest.mark.parametrize("shell", SHELLS)
async def test_background_children_do_not_outlive_a_command_that_exits(
    shell: str, tmp_path: Path
) -> None:
    seconds = unique_sleep_seconds()
    wrapped = Wrapped(shell, tmp_path)
    pidfds: list[int] = []
    with anyio.fail_after(BOUND):
        # The command itself shows the child running before it exits with 3.
        ran = await wrapped.run(
            ["sh", "-c", f"sleep {seconds} & kill -0 $! && echo child-alive; exit 3"]
        )
        pidfds = open_pidfds(pids_with(seconds))
        await wait_exited(pidfds)
    assert ran.stdout == b"child-alive\n"
    assert ran.status == ExitStatus(3)
    assert pids_with(seconds) == []


@pytest.mark.parametrize("shell", SHELLS)
async def test_a_second_exec_stops_the_command(shell: str, tmp_path: Path) -> None:
    seconds = unique_sleep_seconds()
    wrapped = Wrapped(shell, tmp_path)
    with anyio.fail_after(BOUND):
        run = asyncio.create_task(
            wrapped.run(["sh", "-c", f"sleep {seconds} & echo started; wait"], timeout=600)
        )
        await wrapped.started.wait()
        pidfds = open_pidfds(pids_with(seconds))
        assert pidfds
        assert await wrapped.stop() == 0
        ran = await run
        await wait_exited(pidfds)
    assert ran.status is not None and ran.status.timed_out
    assert pids_with(seconds) == []
    assert list(tmp_path.iterdir()) == []  # the run and stop files are gone


@pytest.mark.parametrize("shell", SHELLS)
async def test_stopping_a_command_that_already_ended_does_nothing(
    shell: str, tmp_path: Path
) -> None:
    wrapped = Wrapped(shell, tmp_path)
    with anyio.fail_after(BOUND):
        ran = await wrapped.run(["true"])
        assert await wrapped.stop() == 0
    assert ran.status == ExitStatus(0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("shell", SHELLS)
async def test_quick_commands_report_their_status_without_waiting_for_the_watchdog(
    shell: str, tmp_path: Path
) -> None:
    with anyio.fail_after(BOUND):
        for _ in range(10):
            ran = await Wrapped(shell, tmp_path).run(["sh", "-c", "exit 5"], timeout=1)
            assert ran.status == ExitStatus(5)


@pytest.mark.parametrize("shell", SHELLS)
async def test_a_tmp_the_wrapper_cannot_write_costs_neither_the_status_nor_a_word_of_output(
    shell: str, tmp_path: Path
) -> None:
    nowhere = tmp_path / "no-such-dir"  # the run file cannot be created here
    with anyio.fail_after(BOUND):
        ran = await Wrapped(shell, nowhere).run(["sh", "-c", "echo hi; exit 3"], timeout=5)
    assert ran.status == ExitStatus(3)
    assert ran.stdout == b"hi\n"
    assert ran.stderr == b""


async def test_without_setsid_the_timeout_stops_the_main_process_and_says_so(
    tmp_path: Path,
) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("sh", "sleep", "rm", "mv"):
        found = shutil.which(tool)
        assert found is not None
        (tools / tool).symlink_to(found)
    state = tmp_path / "tmp"
    state.mkdir()
    seconds = unique_sleep_seconds()
    wrapped = Wrapped("dash", state, env={"PATH": str(tools)})
    with anyio.fail_after(BOUND):
        ran = await wrapped.run(["sleep", seconds], timeout=1)
    assert ran.status == ExitStatus(None, timed_out=True)
    assert b"setsid is missing" in ran.stderr
    assert pids_with(seconds) == []


@pytest.mark.parametrize("shell", SHELLS)
async def test_an_open_command_costs_its_instance_one_timer_not_a_process_each_second(
    shell: str, tmp_path: Path
) -> None:
    timeout = 600 + secrets.randbelow(10**6)
    # After its first second the watchdog sleeps the rest of the timeout at once.
    timer = f"sleep {timeout - 1}"
    # The command says it started once the watchdog's timer runs.
    command = (
        f"until ps -eo args= | grep -qx '{timer}'; do sleep 0.1; done; echo started;"
        f" exec sleep {unique_sleep_seconds()}"
    )
    wrapped = Wrapped(shell, tmp_path)
    with anyio.fail_after(BOUND):
        run = asyncio.create_task(wrapped.run(["sh", "-c", command], timeout=timeout))
        await wrapped.started.wait()
        timers = pids_with(timer.replace(" ", "\0") + "\0")
        assert await wrapped.stop() == 0
        ran = await run
    # The watchdog waits on one timer and its FIFO rather than polling with `sleep 1`
    # all along; the stop woke it.
    assert len(timers) == 1
    assert ran.status is not None and ran.status.timed_out
    assert list(tmp_path.iterdir()) == []
