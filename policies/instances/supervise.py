"""Supervise one started command: stream its output, feed its stdin, enforce its limits.

The sandbox runner starts the process; this module moves its bytes and decides when it
ends: when the main process exited and both output streams reached EOF, or when the wall
clock or idle timeout fired and the whole process tree was killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from policies.ports import OutputCallback
from policies.types import Limits, RunResult, Stream

READ_CHUNK = 64 * 1024
# How long the tree may take to die after SIGKILL before the outer process is killed too.
_KILL_GRACE = 5.0
# After a timeout kill, output already written to the pipes is still delivered, briefly.
_DRAIN_GRACE = 1.0

Verdict = Literal["timeout", "idle"]


@dataclass(frozen=True)
class Spawned:
    """A started command and how to end it.

    ``kill_tree`` kills every process of the command's tree; ``after_exit`` runs once the
    main process exited on its own (to end stragglers that would hold the pipes open);
    ``after_end`` is awaited once the command ended however it ended (to wait until
    what it left behind is gone); ``close`` releases what ``kill_tree`` needed.
    """

    proc: asyncio.subprocess.Process
    kill_tree: Callable[[], None]
    after_exit: Callable[[], None]
    close: Callable[[], None]
    after_end: Callable[[], Awaitable[None]] | None = None


async def spawn_in_session(
    argv: list[str],
    *,
    env: Mapping[str, str],
    cwd: str | None,
    with_stdin: bool,
    pass_fds: tuple[int, ...] = (),
) -> asyncio.subprocess.Process:
    """Start argv with piped output as the leader of a new session, so that the whole
    group can be killed."""
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if with_stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
        pass_fds=pass_fds,
    )


def kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the process group the command leads (it was started in a new session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the group is already gone


def exit_code(returncode: int) -> int:
    """The shell convention: a normal exit keeps its code, death by signal N is 128+N."""
    return returncode if returncode >= 0 else 128 - returncode


async def supervise(
    spawned: Spawned,
    *,
    limits: Limits,
    on_output: OutputCallback,
    stdin: AsyncIterator[bytes] | None,
) -> RunResult:
    """Drive ``spawned`` to its end and report how it ended.

    If this coroutine is cancelled or ``on_output`` / ``stdin`` raise, the tree is
    killed before the exception propagates.
    """
    try:
        return await _Supervision(spawned, limits, on_output, stdin).run()
    finally:
        try:
            if spawned.proc.returncode is None:
                await stop(spawned)
            if spawned.after_end is not None:
                await spawned.after_end()
        finally:
            spawned.close()


async def stop(spawned: Spawned) -> None:
    """Kill the whole tree and wait until the main process is reaped."""
    spawned.kill_tree()
    try:
        await asyncio.wait_for(spawned.proc.wait(), _KILL_GRACE)
    except TimeoutError:
        kill_group(spawned.proc)
        await spawned.proc.wait()


class _Supervision:
    def __init__(
        self,
        spawned: Spawned,
        limits: Limits,
        on_output: OutputCallback,
        stdin: AsyncIterator[bytes] | None,
    ) -> None:
        self._spawned = spawned
        self._proc = spawned.proc
        self._limits = limits
        self._on_output = on_output
        self._stdin = stdin
        self._loop = asyncio.get_running_loop()
        self._last_activity = self._loop.time()

    def _touch(self) -> None:
        self._last_activity = self._loop.time()

    async def run(self) -> RunResult:
        proc = self._proc
        assert proc.stdout is not None and proc.stderr is not None
        readers = [
            asyncio.create_task(self._read(proc.stdout, "stdout")),
            asyncio.create_task(self._read(proc.stderr, "stderr")),
        ]
        waiter = asyncio.create_task(proc.wait())
        tasks: list[asyncio.Task[Any]] = [*readers, waiter]
        if self._stdin is not None:
            tasks.append(asyncio.create_task(self._feed(self._stdin)))
        try:
            verdict = await self._watch(tasks, readers, waiter)
            if verdict is None:
                return RunResult(exit_code=exit_code(waiter.result()))
            await stop(self._spawned)
            pending = [t for t in readers if not t.done()]
            if pending:
                await asyncio.wait(pending, timeout=_DRAIN_GRACE)
            return RunResult(
                exit_code=None, timed_out=verdict == "timeout", idle_timed_out=verdict == "idle"
            )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch(
        self,
        tasks: list[asyncio.Task[Any]],
        readers: list[asyncio.Task[None]],
        waiter: asyncio.Task[int],
    ) -> Verdict | None:
        """Wait until the command ended (None) or a limit fired."""
        deadline = self._loop.time() + self._limits.timeout
        exited = False
        while True:
            if waiter.done() and not exited:
                exited = True
                self._spawned.after_exit()
            if exited and all(t.done() for t in readers):
                return None
            now = self._loop.time()
            idle_deadline = self._last_activity + self._limits.idle_timeout
            if now >= deadline:
                return "timeout"
            if now >= idle_deadline:
                return "idle"
            running = [t for t in tasks if not t.done()]
            done, _ = await asyncio.wait(
                running,
                timeout=min(deadline, idle_deadline) - now,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in done:
                error = task.exception()
                if error is not None:
                    raise error

    async def _read(self, stream: asyncio.StreamReader, name: Stream) -> None:
        # One bounded read at a time: while on_output is busy the pipe fills and the
        # command blocks on write, so nothing buffers without bound.
        while chunk := await stream.read(READ_CHUNK):
            self._touch()
            await self._on_output(name, chunk)

    async def _feed(self, stdin: AsyncIterator[bytes]) -> None:
        pipe = self._proc.stdin
        assert pipe is not None
        try:
            async for chunk in stdin:
                self._touch()
                if chunk:
                    pipe.write(chunk)
                    await pipe.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the command closed its stdin or exited: the rest is not wanted
        finally:
            pipe.close()
