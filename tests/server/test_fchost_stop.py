"""A stopped command is stopped: the FC client against the local host, which (like
Function Compute) does nothing to a command when its exec socket closes."""

from __future__ import annotations

import asyncio
import contextlib
import select
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from policies.errors import ExecGateError
from policies.instances.fc import Credentials, FcEndpoint, FcProvider
from policies.instances.fc.client import server_idle_timeout
from policies.instances.fc.signing import signed_headers
from policies.types import Limits, Stream, Target
from tests.policies.instances.sandbox_helpers import (
    open_pidfds,
    pids_with,
    unique_sleep_seconds,
    wait_exited,
)
from tests.support.fchost import ACCOUNT_ID, KEY_ID, KEY_SECRET, REGION, LocalFc, local_fc

BOUND = 60  # seconds: a bound on hangs, not a timing assertion


@pytest.fixture
async def fc(tmp_path: Path) -> AsyncIterator[LocalFc]:
    async with local_fc(tmp_path) as fc:
        yield fc


def _quick_provider(fc: LocalFc) -> FcProvider:
    """A provider whose commands get one second between TERM and KILL."""
    return fc.provider_with(kill_grace=1)


class Started:
    """An on_output that notes when the command printed ``started``."""

    def __init__(self) -> None:
        self.seen = asyncio.Event()
        self.stdout = b""

    async def __call__(self, stream: Stream, data: bytes) -> None:
        if stream == "stdout":
            self.stdout += data
            if b"started" in self.stdout:
                self.seen.set()


async def _run_until_started(
    fc: LocalFc, provider: FcProvider, script: str, marker: str, limits: Limits
) -> tuple[asyncio.Task[object], list[int]]:
    """Start the exec; once the command said ``started``, pidfds of its processes."""
    out = Started()
    task: asyncio.Task[object] = asyncio.create_task(
        provider.exec(
            Target("demo", fc.instance_ids()[0]),
            ["sh", "-c", script],
            limits=limits,
            on_output=out,
        )
    )
    await out.seen.wait()
    pidfds = open_pidfds(pids_with(marker))
    assert pidfds  # the processes ran: there is something that must be killed
    return task, pidfds


async def test_a_timed_out_command_is_reported_as_such_and_no_longer_runs(fc: LocalFc) -> None:
    seconds = unique_sleep_seconds()
    with anyio.fail_after(BOUND):
        task, pidfds = await _run_until_started(
            fc,
            _quick_provider(fc),
            f"echo started; sleep {seconds}",
            seconds,
            Limits(timeout=1.0, idle_timeout=600.0),
        )
        result = await task
        await wait_exited(pidfds)
    assert getattr(result, "timed_out", None) is True
    assert pids_with(seconds) == []


async def test_a_command_that_ignores_term_is_killed_after_the_grace(fc: LocalFc) -> None:
    seconds = unique_sleep_seconds()
    script = f"trap '' TERM; echo started; sleep {seconds} & sleep {seconds}"
    with anyio.fail_after(BOUND):
        task, pidfds = await _run_until_started(
            fc, _quick_provider(fc), script, seconds, Limits(timeout=1.0, idle_timeout=600.0)
        )
        result = await task
        await wait_exited(pidfds)
    assert getattr(result, "timed_out", None) is True
    assert pids_with(seconds) == []


async def test_background_children_are_killed_with_the_timed_out_command(
    fc: LocalFc,
) -> None:
    seconds = unique_sleep_seconds()
    with anyio.fail_after(BOUND):
        task, pidfds = await _run_until_started(
            fc,
            _quick_provider(fc),
            f"sleep {seconds} & echo started; sleep {seconds}",
            seconds,
            Limits(timeout=1.0, idle_timeout=600.0),
        )
        assert len(pidfds) >= 2
        await task
        await wait_exited(pidfds)
    assert pids_with(seconds) == []


async def test_a_cancelled_exec_leaves_no_process_behind(fc: LocalFc) -> None:
    seconds = unique_sleep_seconds()
    with anyio.fail_after(BOUND):
        task, pidfds = await _run_until_started(
            fc,
            _quick_provider(fc),
            f"sleep {seconds} & echo started; sleep {seconds}",
            seconds,
            Limits(timeout=600.0, idle_timeout=600.0),
        )
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_exited(pidfds)
    assert pids_with(seconds) == []


async def test_an_exec_cancelled_by_an_anyio_scope_leaves_no_process_behind(
    fc: LocalFc,
) -> None:
    seconds = unique_sleep_seconds()
    provider = _quick_provider(fc)
    out = Started()
    pidfds: list[int] = []
    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as group:

            async def cancel_when_started() -> None:
                await out.seen.wait()
                pidfds.extend(open_pidfds(pids_with(seconds)))
                group.cancel_scope.cancel()

            group.start_soon(cancel_when_started)
            await provider.exec(
                Target("demo", fc.instance_ids()[0]),
                ["sh", "-c", f"echo started; sleep {seconds}"],
                limits=Limits(timeout=600.0, idle_timeout=600.0),
                on_output=out,
            )
        assert pidfds
        await wait_exited(pidfds)
    assert pids_with(seconds) == []


async def test_an_exec_whose_output_callback_fails_leaves_no_process_behind(
    fc: LocalFc,
) -> None:
    seconds = unique_sleep_seconds()
    pidfds: list[int] = []

    async def refuse(stream: Stream, data: bytes) -> None:
        pidfds.extend(open_pidfds(pids_with(seconds)))
        raise ExecGateError("the reader went away")

    with anyio.fail_after(BOUND):
        with pytest.raises(ExecGateError):
            await _quick_provider(fc).exec(
                Target("demo", fc.instance_ids()[0]),
                ["sh", "-c", f"sleep {seconds} & echo hello; wait"],
                limits=Limits(timeout=600.0, idle_timeout=600.0),
                on_output=refuse,
            )
        assert pidfds
        await wait_exited(pidfds)
    assert pids_with(seconds) == []


async def test_a_silent_command_stopped_by_the_idle_timeout_no_longer_runs(fc: LocalFc) -> None:
    seconds = unique_sleep_seconds()
    with anyio.fail_after(BOUND):
        task, pidfds = await _run_until_started(
            fc,
            _quick_provider(fc),
            f"echo started; sleep {seconds}",
            seconds,
            Limits(timeout=600.0, idle_timeout=1.0),
        )
        result = await task
        await wait_exited(pidfds)
    assert getattr(result, "idle_timed_out", None) is True
    assert pids_with(seconds) == []


async def test_the_host_does_not_stop_a_command_when_its_socket_closes(fc: LocalFc) -> None:
    # What FC does, and why the client must stop commands itself: a raw client that
    # just closes the socket leaves the command running.
    seconds = unique_sleep_seconds()
    target = fc.provider.endpoint.exec(
        "demo",
        None,
        fc.instance_ids()[0],
        ["sh", "-c", f"echo started; sleep {seconds}"],
        stdin=False,
        idle_timeout=600,
    )
    headers = signed_headers(
        "GET",
        target.path,
        Credentials(KEY_ID, KEY_SECRET),
        account_id=ACCOUNT_ID,
        timestamp=time.time(),
    )
    with anyio.fail_after(BOUND):
        async with connect(
            fc.provider.endpoint.ws_url(target), additional_headers=headers, proxy=None
        ) as ws:
            assert await ws.recv() == "\x01started\n"
        pidfds = open_pidfds(pids_with(seconds))
        assert pidfds
        # A whole other exec later (the host has long seen the close), still running.
        result, _ = await fc.run(fc.instance_ids()[0], ["true"])
        assert result.exit_code == 0
        ready, _, _ = select.select(pidfds, [], [], 0)
        assert ready == []
        for fd in pidfds:  # the test's own clean-up
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        await wait_exited(pidfds)


@pytest.mark.parametrize(
    ("limits", "idle"),
    [
        (Limits(timeout=60.0, idle_timeout=600.0), 66),
        (Limits(timeout=600.0, idle_timeout=30.0), 30),
        (Limits(timeout=10.0, idle_timeout=30.5), 16),
        (Limits(timeout=600.0, idle_timeout=7.9), 7),
        (Limits(timeout=0.5, idle_timeout=0.2), 1),
    ],
    ids=["capped-by-timeout", "rule-idle", "fraction-of-timeout", "never-above-rule", "minimum"],
)
def test_the_idle_timeout_sent_fits_the_rule(limits: Limits, idle: int) -> None:
    assert server_idle_timeout(limits, grace=5) == idle


async def test_the_exec_url_carries_the_derived_idle_timeout() -> None:
    seen: list[str] = []

    def refuse(connection: ServerConnection, request: Request) -> Response:
        seen.append(request.path)
        return Response(403, "Forbidden", Headers(), b'{"Code":"AccessDenied","Message":"no"}')

    async with serve(lambda ws: ws.close(), "127.0.0.1", 0, process_request=refuse) as server:
        port = server.sockets[0].getsockname()[1]
        endpoint = FcEndpoint(ACCOUNT_ID, REGION, endpoint=f"http://127.0.0.1:{port}")
        provider = FcProvider("fc", endpoint, Credentials(KEY_ID, KEY_SECRET))
        try:
            with anyio.fail_after(BOUND), pytest.raises(ExecGateError):
                await provider.exec(
                    Target("demo", "c-1"),
                    ["true"],
                    limits=Limits(timeout=20.0, idle_timeout=300.0),
                    on_output=Started(),
                )
        finally:
            await provider.aclose()
    [path] = seen
    assert parse_qs(urlsplit(path).query)["idleTimeout"] == ["26"]
