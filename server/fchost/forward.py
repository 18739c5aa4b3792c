"""Forward invocations to a local function's HTTP server over its unix socket.

FC's custom runtime receives invocations as HTTP requests on the function's port; the
local host reaches the function through ``/run/fc/invoke.sock`` in its instance (the
instance's network namespace is its own).

Connections are kept alive and reused, per instance (:class:`FunctionConnections`): a
quick invocation then costs one write and one read on each side instead of a connect,
an accept and a close. A connection goes back to its instance's idle list only after a
complete response the function allowed to keep alive; an invocation sent on a reused
connection the function had closed meanwhile (no byte of a response came back) is sent
again on the next idle connection or a fresh one.
Instances are keyed by id, so a released instance's connections are never handed to
another one; they end when its function does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import httptools

from policies.instances.live import unix_socket_nofollow

MAX_RESPONSE_BYTES = 16 << 20
INVOKE_TIMEOUT = 60.0
MAX_IDLE_PER_INSTANCE = 256


class ForwardError(Exception):
    """The function did not answer with an HTTP response."""


class _StaleConnection(ForwardError):
    """A reused connection ended before any byte of the response: safe to retry."""


@dataclass(frozen=True, slots=True)
class FunctionResponse:
    status: int
    content_type: str
    body: bytes


def build_request(path: str, body: bytes, request_id: str) -> bytes:
    """The HTTP/1.1 request the function receives (pure)."""
    if not path.startswith("/") or any(c in path for c in "\r\n "):
        raise ValueError("the invocation path must start with / and hold no spaces")
    head = (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n"
        f"x-fc-request-id: {request_id}\r\n\r\n"
    )
    return head.encode("ascii") + body


class _Response:
    """One HTTP/1.x response read from bytes as they arrive (httptools callbacks)."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self.content_type = "application/octet-stream"
        self._body: list[bytes] = []
        self._size = 0
        self.received = False  # any byte of the response arrived
        self.headers_done = False
        self._framed = False  # a length or chunks say where the body ends
        self.complete = False
        self.keep_alive = False
        self.error: ForwardError | None = None

    def feed(self, data: bytes) -> None:
        self.received = True
        if self.complete or self.error is not None:
            self.keep_alive = False  # bytes nobody asked for: not reusable
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if not self.complete and self.error is None:
                self.error = ForwardError("the function's answer is not an HTTP response")
            self.keep_alive = False  # bytes after a complete response only end reuse

    def eof(self) -> None:
        """The connection ended: a response without a length (or chunks) ends with it."""
        if self.complete or self.error is not None:
            return
        if self.headers_done and not self._framed:
            self.complete = True
        elif not self.received:
            self.error = ForwardError("the function closed the connection without answering")
        else:
            self.error = ForwardError("the function closed the connection mid-answer")

    def result(self) -> FunctionResponse:
        """Raises: ForwardError unless a complete response was read."""
        if self.error is not None:
            raise self.error
        if not self.complete:
            raise ForwardError("the function's answer is not an HTTP response")
        return FunctionResponse(
            self._parser.get_status_code(), self.content_type, b"".join(self._body)
        )

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.lower()
        if key == b"content-type":
            self.content_type = value.decode("latin-1").strip()
        elif key in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.keep_alive = self._parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_RESPONSE_BYTES:
            self.error = ForwardError("the function's answer is too large")
            raise self.error  # stops the parser
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self._parser.should_keep_alive()
        self.complete = True


def parse_response(raw: bytes) -> FunctionResponse:
    """The response in ``raw``, the whole of what a connection carried (pure).

    Raises: ForwardError for bytes that are not an HTTP/1.x response."""
    response = _Response()
    response.feed(raw)
    response.eof()
    return response.result()


class _Connection(asyncio.Protocol):
    """One keep-alive connection to a function; one request at a time."""

    def __init__(self, on_lost: Callable[[_Connection], None]) -> None:
        self._on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.used = False  # served a response before: its failure may be staleness
        self._response: _Response | None = None
        self._done: asyncio.Future[None] | None = None

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        response = self._response
        if response is None:  # nothing asked: the connection is out of step
            self.close()
            return
        response.feed(data)
        if response.complete or response.error is not None:
            self._finish()

    def eof_received(self) -> bool | None:
        if self._response is not None:
            self._response.eof()
            self._finish()
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._response is not None and not self._response.complete:
            self._response.eof()
        self._finish()
        self._on_lost(self)

    def _finish(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    async def exchange(self, request: bytes) -> tuple[FunctionResponse, bool]:
        """Send ``request`` and read its response; with whether the connection is
        reusable. Raises: ForwardError (_StaleConnection for a retryable failure)."""
        if self.transport is None or self.transport.is_closing():
            raise _StaleConnection("the connection is closed")
        response = self._response = _Response()
        self._done = asyncio.get_running_loop().create_future()
        try:
            self.transport.write(request)
            await self._done
        finally:
            self._response = self._done = None
        if response.error is not None and self.used and not response.received:
            raise _StaleConnection("the function closed an idle connection")
        answer = response.result()
        self.used = True
        return answer, response.keep_alive and self.open

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class FunctionConnections:
    """Keep-alive connections to the functions of live instances, per instance id."""

    def __init__(self, max_idle: int = MAX_IDLE_PER_INSTANCE) -> None:
        self._idle: dict[str, list[_Connection]] = {}
        self._max_idle = max_idle

    def idle_count(self, instance_id: str) -> int:
        return len(self._idle.get(instance_id, ()))

    async def forward(
        self, instance_id: str, socket_path: str, path: str, body: bytes, request_id: str
    ) -> FunctionResponse:
        """Raises: ValueError for a bad path; ForwardError (also when the function does
        not answer in time)."""
        request = build_request(path, body, request_id)
        try:
            async with asyncio.timeout(INVOKE_TIMEOUT):
                while (conn := self._take(instance_id)) is not None:
                    try:
                        return await self._exchange(instance_id, conn, request)
                    except _StaleConnection:
                        continue  # the next idle one, or a fresh connection
                conn = await self._connect(instance_id, socket_path)
                return await self._exchange(instance_id, conn, request)
        except (OSError, TimeoutError) as exc:
            raise ForwardError("the function did not answer") from exc

    async def _exchange(
        self, instance_id: str, conn: _Connection, request: bytes
    ) -> FunctionResponse:
        try:
            answer, reusable = await conn.exchange(request)
        except BaseException:
            conn.close()  # a timeout or cancellation leaves it mid-response
            raise
        if reusable and self.idle_count(instance_id) < self._max_idle:
            self._idle.setdefault(instance_id, []).append(conn)
        else:
            conn.close()
        return answer

    def _take(self, instance_id: str) -> _Connection | None:
        idle = self._idle.get(instance_id)
        while idle:
            conn = idle.pop()
            if conn.open:
                return conn
        return None

    async def _connect(self, instance_id: str, socket_path: str) -> _Connection:
        """A new connection to the socket at ``socket_path``, whose last component must
        be the socket itself, not a link to one (the instance writes its directory)."""
        loop = asyncio.get_running_loop()
        with unix_socket_nofollow(socket_path) as own:
            _, conn = await loop.create_unix_connection(
                lambda: _Connection(lambda lost: self._drop(instance_id, lost)), own
            )
        return conn

    def _drop(self, instance_id: str, conn: _Connection) -> None:
        idle = self._idle.get(instance_id)
        if idle is None:
            return
        if conn in idle:
            idle.remove(conn)
        if not idle:
            del self._idle[instance_id]

    def close(self) -> None:
        """Close every idle connection."""
        for idle in list(self._idle.values()):
            for conn in list(idle):
                conn.close()
        self._idle.clear()
