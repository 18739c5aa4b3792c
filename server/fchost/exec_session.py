"""One InstanceExec WebSocket on the local host: a sandboxed command behind FC framing.

The host behaves as the real service does on the wire: output goes out in TEXT frames
behind channel bytes 1 and 2 (BINARY with the same prefix for chunks that are not UTF-8,
see ``policies.instances.fc.framing``), stdin is accepted both as raw BINARY frames and as
``\\x00``-prefixed TEXT, and the socket closes with code 1000 when the command ends or
after ``idleTimeout`` seconds without output or stdin. The protocol carries no exit code.

Like Function Compute, the host does NOT stop the command when the socket closes (the
client went away, or the idle timeout closed it): the command runs on, its output
dropped, until it ends by itself or the host shuts down. Stopping a command is the
client's job (ExecGate's wrapper enforces the timeout on the instance, and a second exec
stops a command whose client gave up), so tests against this host see what FC does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.datastructures import QueryParams
from starlette.websockets import WebSocket, WebSocketDisconnect

from policies.errors import ExecGateError
from policies.instances.fc.framing import (
    Message,
    OutputFramer,
    StdinData,
    StdinEof,
    parse_client_message,
    server_error_message,
)
from policies.instances.local import InstanceManager
from policies.types import Limits, Stream

logger = logging.getLogger(__name__)

DEFAULT_IDLE_TIMEOUT = 600
MAX_IDLE_TIMEOUT = 24 * 3600
# FC puts no wall-clock limit on an exec session; the host caps it generously.
MAX_SESSION_SECONDS = 24 * 3600.0
UNLIMITED_OUTPUT = 1 << 62
_STDIN_QUEUE = 16
CLOSE_NORMAL = 1000
CLOSE_INTERNAL_ERROR = 1011


class BadExecRequest(ValueError):
    """The exec query string is not one the host can serve."""


@dataclass(frozen=True, slots=True)
class ExecParams:
    argv: tuple[str, ...]
    stdin: bool
    stdout: bool
    stderr: bool
    idle_timeout: int


def _flag(query: QueryParams, name: str, default: bool) -> bool:
    value = query.get(name)
    if value is None:
        return default
    if value not in ("true", "false"):
        raise BadExecRequest(f"{name} must be true or false")
    return value == "true"


def parse_exec_query(query: QueryParams) -> ExecParams:
    """Raises: BadExecRequest."""
    argv = tuple(query.getlist("command"))
    if not argv or not argv[0]:
        raise BadExecRequest("command is required")
    if _flag(query, "tty", False):
        raise BadExecRequest("tty sessions are not supported by the local instance host")
    raw_idle = query.get("idleTimeout")
    try:
        idle = DEFAULT_IDLE_TIMEOUT if raw_idle is None else int(raw_idle)
    except ValueError:
        raise BadExecRequest("idleTimeout must be a whole number of seconds") from None
    if not 1 <= idle <= MAX_IDLE_TIMEOUT:
        raise BadExecRequest(f"idleTimeout must be between 1 and {MAX_IDLE_TIMEOUT}")
    return ExecParams(
        argv=argv,
        stdin=_flag(query, "stdin", False),
        stdout=_flag(query, "stdout", True),
        stderr=_flag(query, "stderr", True),
        idle_timeout=idle,
    )


class HostExecSession:
    """Runs one accepted exec socket to its end."""

    def __init__(
        self,
        websocket: WebSocket,
        manager: InstanceManager,
        function: str,
        instance: str,
        params: ExecParams,
    ) -> None:
        self._ws = websocket
        self._manager = manager
        self._function = function
        self._instance = instance
        self._params = params
        self._framers: dict[Stream, OutputFramer] = {
            "stdout": OutputFramer("stdout"),
            "stderr": OutputFramer("stderr"),
        }
        self._wanted: dict[Stream, bool] = {"stdout": params.stdout, "stderr": params.stderr}
        self._send_lock = asyncio.Lock()
        self._stdin: asyncio.Queue[bytes | None] = asyncio.Queue(_STDIN_QUEUE)
        self._stdin_closed = False
        self._gone = False  # the socket is closed: output is dropped from now on
        self._loop = asyncio.get_running_loop()
        self._last_activity = self._loop.time()

    async def run(self) -> None:
        command = asyncio.create_task(self._run_command())
        client = asyncio.create_task(self._read_client())
        idle = asyncio.create_task(self._watch_idle())
        try:
            await asyncio.wait({command, client, idle}, return_when=asyncio.FIRST_COMPLETED)
            if not command.done():
                # The client left or went idle: as on FC, the command runs on, unheard.
                self._gone = True
                self._end_stdin()
                await self._close(CLOSE_NORMAL, "idle timeout" if idle.done() else "")
                await asyncio.wait({command})
        finally:
            for task in (command, client, idle):
                task.cancel()
            await asyncio.gather(command, client, idle, return_exceptions=True)

    async def _watch_idle(self) -> None:
        limit = float(self._params.idle_timeout)
        while True:
            left = self._last_activity + limit - self._loop.time()
            if left <= 0:
                return
            await asyncio.sleep(left)

    def _end_stdin(self) -> None:
        if self._params.stdin and not self._stdin_closed:
            self._stdin_closed = True
            with contextlib.suppress(asyncio.QueueFull):
                self._stdin.put_nowait(None)

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self._ws.close(code, reason)

    async def _run_command(self) -> None:
        # The host streams all output, as FC does: output limits are the client's. Its
        # idle timeout closes the socket (``_watch_idle``) but does not stop the command.
        limits = Limits(
            timeout=MAX_SESSION_SECONDS,
            idle_timeout=MAX_SESSION_SECONDS,
            max_output_bytes=UNLIMITED_OUTPUT,
        )
        try:
            result = await self._manager.exec(
                self._function,
                self._instance,
                self._params.argv,
                limits=limits,
                on_output=self._on_output,
                stdin=self._stdin_chunks() if self._params.stdin else None,
            )
        except WebSocketDisconnect:
            return
        except ExecGateError as exc:
            logger.info("exec on %s failed: %s", self._instance, exc.code)
            await self._fail(exc.safe_message)
            return
        except Exception:
            logger.exception("exec session on %s failed", self._instance)
            await self._fail("the local instance host failed to run the command")
            return
        if result.idle_timed_out or result.timed_out:
            logger.info("exec on %s outlived the host's session limit", self._instance)
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            for stream, framer in self._framers.items():
                if self._wanted[stream]:
                    for frame in framer.flush():
                        await self._send(frame)
        await self._close(CLOSE_NORMAL, "")

    async def _fail(self, message: str) -> None:
        if self._gone:
            return
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self._send(server_error_message(message))
            await self._ws.close(CLOSE_INTERNAL_ERROR)

    async def _on_output(self, stream: Stream, data: bytes) -> None:
        self._last_activity = self._loop.time()
        if not self._wanted[stream] or self._gone:
            return
        for frame in self._framers[stream].feed(data):
            await self._send(frame)

    async def _send(self, frame: Message) -> None:
        # stdout and stderr are read by separate tasks: one frame on the wire at a time.
        async with self._send_lock:
            if self._gone:
                return
            try:
                if isinstance(frame, str):
                    await self._ws.send_text(frame)
                else:
                    await self._ws.send_bytes(frame)
            except (WebSocketDisconnect, RuntimeError, OSError):
                # The client is gone; the command is not stopped for it (see above).
                self._gone = True

    async def _stdin_chunks(self) -> AsyncIterator[bytes]:
        while (chunk := await self._stdin.get()) is not None:
            yield chunk

    async def _read_client(self) -> None:
        """Feed stdin until the client disconnects; returning means it is gone."""
        while True:
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            data: Message | None = message.get("bytes")
            if data is None:
                data = message.get("text") or ""
            self._last_activity = self._loop.time()
            event = parse_client_message(data)
            if not self._params.stdin or self._stdin_closed:
                continue
            if isinstance(event, StdinData):
                await self._stdin.put(event.data)
            elif isinstance(event, StdinEof):
                self._stdin_closed = True
                await self._stdin.put(None)
