"""The Function Compute client: signed HTTP calls (httpx) and the exec WebSocket loop.

Everything protocol-shaped lives in the pure modules (``endpoint``, ``signing``,
``framing``, ``responses``); this module only moves bytes and keeps time.

Proxies: both the WebSocket (``proxy=None``) and httpx (``trust_env=False``) connect
directly, so the exec channel and the API calls always take the same route.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)

from policies.errors import CommandRejected, ExecGateError, ProviderUnavailable
from policies.instances.fc.credentials import Credentials
from policies.instances.fc.endpoint import FcEndpoint, RequestTarget
from policies.instances.fc.framing import (
    ExitStatus,
    FramingError,
    OutputChunk,
    ServerError,
    StdinEncoder,
    StdinFrame,
    TrailerStripper,
    UnknownChannel,
    new_nonce,
    parse_server_message,
    stop_argv,
    wrap_argv,
)
from policies.instances.fc.responses import InstancePage, classify_error, parse_instances
from policies.instances.fc.signing import HEADER_INSTANCE_ID, HEADER_REQUEST_ID, signed_headers
from policies.ports import OutputCallback
from policies.types import InstanceInfo, Limits, RunResult

logger = logging.getLogger(__name__)

USER_AGENT = "execgate-fc-client"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_LIST_PAGES = 50
# The wrapper ends the command at its deadline and reports it; the client's own deadline
# is a backstop this much later, for a wrapper that could not report.
CLIENT_DEADLINE_SLACK_SECONDS = 3.0
# A socket closed without a trailer after at least the server idle timeout minus this
# much silence was closed by the server's idle timeout.
SERVER_IDLE_TOLERANCE_SECONDS = 0.5
# The exec that stops a command waits for the wrapper this much longer than the grace.
STOP_EXTRA_SECONDS = 3
_HTTP_TIMEOUT = httpx.Timeout(30.0)
_CLOSE_TIMEOUT = 5.0

NO_EXIT_STATUS = "the exec session ended before the command reported its exit status"


def wrapper_timeout(limits: Limits) -> int:
    """The deadline the wrapper enforces on the instance: the rule's timeout, whole seconds."""
    return max(1, math.ceil(limits.timeout))


def server_idle_timeout(limits: Limits, grace: int) -> int:
    """The ``idleTimeout`` sent on the exec URL, in whole seconds.

    It is the server's backstop for a client that vanished (FC keeps the instance active
    while the socket is open): never longer than the rule's idle timeout, and never
    longer than the command can run (the wrapper's deadline plus the kill grace, plus a
    second for the watchdog's tick). At least one second.
    """
    cap = wrapper_timeout(limits) + grace + 1
    return max(1, min(math.floor(limits.idle_timeout), cap))


@dataclass(frozen=True, slots=True)
class InvokeResult:
    instance_id: str | None
    body: bytes
    request_id: str | None


class FcClient:
    """Signed calls to one FC endpoint with one set of credentials.

    ``wall_clock`` gives the ``Date`` header's time (tests pin it).
    """

    def __init__(
        self,
        endpoint: FcEndpoint,
        credentials: Credentials,
        *,
        provider_name: str = "fc",
        http: httpx.AsyncClient | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.endpoint = endpoint
        self._credentials = credentials
        self._provider_name = provider_name
        self._http = http or httpx.AsyncClient(timeout=_HTTP_TIMEOUT, trust_env=False)
        self._wall_clock = wall_clock

    def _headers(
        self, method: str, target: RequestTarget, body: bytes | None = None
    ) -> dict[str, str]:
        return signed_headers(
            method,
            target.path,
            self._credentials,
            account_id=self.endpoint.account_id,
            timestamp=self._wall_clock(),
            content_type="application/octet-stream" if body is not None else None,
            body=body,
        )

    async def _request(
        self, method: str, target: RequestTarget, function: str, body: bytes | None = None
    ) -> httpx.Response:
        headers = {**self._headers(method, target, body), "User-Agent": USER_AGENT}
        try:
            response = await self._http.request(
                method, self.endpoint.url(target), headers=headers, content=body
            )
        except httpx.HTTPError as exc:
            logger.warning("Function Compute request failed: %s", type(exc).__name__)
            raise ProviderUnavailable(
                f"the provider {self._provider_name} could not be reached"
            ) from exc
        if response.status_code >= 300:
            raise classify_error(
                response.status_code,
                response.content,
                function=function,
                request_id_header=response.headers.get(HEADER_REQUEST_ID),
            )
        return response

    async def list_instances(
        self, function: str, qualifier: str | None = None
    ) -> list[InstanceInfo]:
        """Live instances of ``function`` (following ``nextToken`` pages).

        Raises: ProviderUnavailable, ProviderAuthError, ProviderAccessDenied.
        """
        found: list[InstanceInfo] = []
        target = self.endpoint.instances(function, qualifier)
        for _ in range(MAX_LIST_PAGES):
            response = await self._request("GET", target, function)
            page: InstancePage = parse_instances(
                response.content,
                function=function,
                provider=self._provider_name,
                qualifier=qualifier,
            )
            found.extend(page.instances)
            if page.next_token is None:
                break
            target = RequestTarget(target.path, [*target.query, ("nextToken", page.next_token)])
        return found

    async def invoke(
        self, function: str, payload: bytes = b"", qualifier: str | None = None
    ) -> InvokeResult:
        """InvokeFunction; the answer names the instance that served it.

        Raises: ProviderUnavailable, ProviderAuthError, ProviderAccessDenied.
        """
        target = self.endpoint.invocations(function, qualifier)
        response = await self._request("POST", target, function, body=payload)
        return InvokeResult(
            instance_id=response.headers.get(HEADER_INSTANCE_ID),
            body=response.content,
            request_id=response.headers.get(HEADER_REQUEST_ID),
        )

    async def exec(
        self,
        function: str,
        instance: str,
        argv: Sequence[str],
        *,
        qualifier: str | None = None,
        limits: Limits,
        on_output: OutputCallback,
        stdin: AsyncIterator[bytes] | None = None,
    ) -> RunResult:
        """Run argv on the instance over InstanceExec and report its exit status.

        argv runs under the exit-status wrapper (``framing.wrap_argv``); the trailer it
        prints never reaches ``on_output``.

        Raises: CommandRejected for an empty argv or stdin that text mode cannot carry;
        InstanceNotRunning, ProviderAuthError, ProviderAccessDenied, ProviderUnavailable.
        """
        if not argv:
            raise CommandRejected("the command is empty", kind="empty")
        nonce, run_id = new_nonce(), new_nonce()
        grace = self.endpoint.kill_grace
        idle = server_idle_timeout(limits, grace)
        wrapped = wrap_argv(
            argv, nonce, run_id=run_id, timeout=wrapper_timeout(limits), grace=grace
        )
        target = self.endpoint.exec(
            function, qualifier, instance, wrapped, stdin=stdin is not None, idle_timeout=idle
        )
        ws = await self._open(target, function, instance, min(limits.timeout, 30.0))
        encoder = StdinEncoder(self.endpoint.stdin_mode)
        deadline = wrapper_timeout(limits) + grace + CLIENT_DEADLINE_SLACK_SECONDS
        session = _ExecSession(
            ws, TrailerStripper(nonce), encoder, limits, on_output, stdin, deadline, idle
        )
        try:
            try:
                result, reported = await session.run()
            finally:
                await ws.close()
        except BaseException:
            # Cancelled, or on_output / stdin failed: closing the socket does not stop
            # the command on FC, so a second exec does, whatever happens meanwhile.
            await _uncancellable(self._stop(function, qualifier, instance, run_id))
            raise
        if not reported:
            await _uncancellable(self._stop(function, qualifier, instance, run_id))
        return result

    async def _open(
        self, target: RequestTarget, function: str, instance: str, open_timeout: float
    ) -> ClientConnection:
        headers = self._headers("GET", target)
        try:
            return await connect(
                self.endpoint.ws_url(target),
                additional_headers=headers,
                user_agent_header=USER_AGENT,
                proxy=None,
                open_timeout=open_timeout,
                ping_interval=self.endpoint.ping_interval,
                ping_timeout=self.endpoint.ping_interval,
                close_timeout=_CLOSE_TIMEOUT,
                max_size=MAX_MESSAGE_BYTES,
                # No permessage-deflate: its two zlib streams cost ~90 KB per open exec
                # (both ends), more than everything else a session holds, and output is
                # capped per exec: memory for many long sessions counts more than bytes.
                compression=None,
            )
        except InvalidStatus as exc:
            raise classify_error(
                exc.response.status_code,
                bytes(exc.response.body or b""),
                function=function,
                instance=instance,
                request_id_header=exc.response.headers.get(HEADER_REQUEST_ID),
                provider=self._provider_name,
            ) from exc
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            logger.warning("Function Compute exec connection failed: %s", type(exc).__name__)
            raise ProviderUnavailable(
                f"the provider {self._provider_name} could not open an exec session"
            ) from exc

    async def _stop(self, function: str, qualifier: str | None, instance: str, run_id: str) -> None:
        """Stop the command of run ``run_id`` with a second, short exec; failures are logged."""
        grace = self.endpoint.kill_grace
        budget = grace + STOP_EXTRA_SECONDS
        argv = stop_argv(run_id, wait=grace + 2)
        target = self.endpoint.exec(
            function, qualifier, instance, argv, stdin=False, idle_timeout=budget
        )
        try:
            async with asyncio.timeout(budget + 2):
                ws = await self._open(target, function, instance, float(budget))
                try:
                    async for _ in ws:
                        pass  # the stop exec prints nothing; its end is the socket's close
                finally:
                    await ws.close()
        except (ExecGateError, ConnectionClosed, TimeoutError, OSError) as exc:
            logger.warning(
                "could not stop the command on instance %s: %s", instance, type(exc).__name__
            )

    async def aclose(self) -> None:
        await self._http.aclose()


class _ExecSession:
    """One open exec socket: output in, stdin out, timeouts watched."""

    def __init__(
        self,
        ws: ClientConnection,
        stripper: TrailerStripper,
        encoder: StdinEncoder,
        limits: Limits,
        on_output: OutputCallback,
        stdin: AsyncIterator[bytes] | None,
        deadline: float,
        server_idle: int,
    ) -> None:
        self._ws = ws
        self._deadline = deadline
        self._server_idle = server_idle
        self._stripper = stripper
        self._encoder = encoder
        self._limits = limits
        self._on_output = on_output
        self._stdin = stdin
        self._loop = asyncio.get_running_loop()
        self._last_activity = self._loop.time()
        self._idle = False
        self._stdin_failure: BaseException | None = None
        self._server_errors = 0

    def _touch(self) -> None:
        self._last_activity = self._loop.time()

    async def run(self) -> tuple[RunResult, bool]:
        """The result, and whether the wrapper reported how the command ended."""
        helpers = [asyncio.create_task(self._watch_idle())]
        if self._stdin is not None:
            helpers.append(asyncio.create_task(self._pump_stdin(self._stdin)))
        timed_out = False
        deadline = asyncio.timeout(self._deadline)
        try:
            async with deadline:
                await self._receive()
        except TimeoutError:
            if not deadline.expired():
                raise  # raised by on_output, not by the deadline
            timed_out = True
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        rest, status = self._stripper.finish()
        if rest:
            await self._on_output("stderr", rest)
        return self._result(status, timed_out), status is not None

    def _result(self, status: ExitStatus | None, timed_out: bool) -> RunResult:
        if self._stdin_failure is not None:
            raise self._stdin_failure
        if status is not None:  # the wrapper reported, even if a limit fired just then
            return RunResult(exit_code=status.code, timed_out=status.timed_out)
        if timed_out:
            return RunResult(exit_code=None, timed_out=True)
        silent = self._loop.time() - self._last_activity
        if self._idle or silent >= self._server_idle - SERVER_IDLE_TOLERANCE_SECONDS:
            return RunResult(exit_code=None, idle_timed_out=True)
        extra = " (the provider reported an error)" if self._server_errors else ""
        return RunResult(exit_code=None, error=NO_EXIT_STATUS + extra)

    async def _receive(self) -> None:
        while True:
            try:
                # Bytes either way: the channel byte and the payload are parsed as bytes.
                message = await self._ws.recv(decode=False)
            except ConnectionClosedOK:
                return
            except ConnectionClosed as exc:
                logger.warning(
                    "exec session closed abnormally (code %s)", exc.rcvd and exc.rcvd.code
                )
                return
            self._touch()
            event = parse_server_message(message)
            if isinstance(event, OutputChunk):
                data = self._stripper.feed(event.data) if event.stream == "stderr" else event.data
                if data:
                    await self._on_output(event.stream, data)
            elif isinstance(event, ServerError):
                self._server_errors += 1
                # The text is the provider's: it goes to the log, not to a surface.
                logger.warning("the provider reported an exec error: %.500s", event.message)
            elif isinstance(event, UnknownChannel):
                logger.debug("ignoring exec message on channel %d", event.channel)

    async def _watch_idle(self) -> None:
        while True:
            remaining = self._last_activity + self._limits.idle_timeout - self._loop.time()
            if remaining <= 0:
                self._idle = True
                await self._ws.close()
                return
            await asyncio.sleep(remaining)

    async def _send(self, frame: StdinFrame) -> None:
        await self._ws.send(frame.payload, text=frame.text)
        self._touch()

    async def _pump_stdin(self, stdin: AsyncIterator[bytes]) -> None:
        try:
            async for chunk in stdin:
                for frame in self._encoder.encode(chunk):
                    await self._send(frame)
            await self._send(self._encoder.end())
        except ConnectionClosed:
            pass  # the command ended (or the session did) before reading all of stdin
        except FramingError as exc:
            self._stdin_failure = CommandRejected(str(exc), kind="stdin")
            await self._ws.close()
        except Exception as exc:  # the caller's stdin iterator failed: end the session
            self._stdin_failure = exc
            await self._ws.close()


async def _uncancellable(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` to its end even if the caller is cancelled meanwhile (natively or by
    an anyio cancel scope), then let the cancellation through. ``coro`` bounds itself.
    """
    task = asyncio.create_task(coro)
    cancelled: asyncio.CancelledError | None = None
    with anyio.CancelScope(shield=True):
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError as exc:
                cancelled = exc
    if cancelled is not None:
        raise cancelled
