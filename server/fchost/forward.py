"""Forward one invocation to a local function's HTTP server over its unix socket.

FC's custom runtime receives invocations as HTTP requests on the function's port; the
local host reaches the function through ``/run/fc/invoke.sock`` in its instance (the
instance's network namespace is its own). One connection per invocation, closed by the
function after its response (``Connection: close``): no pool to keep consistent with
instances coming and going.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from policies.instances.live import unix_socket_nofollow

MAX_RESPONSE_BYTES = 16 << 20
INVOKE_TIMEOUT = 60.0


class ForwardError(Exception):
    """The function did not answer with an HTTP response."""


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
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n"
        f"x-fc-request-id: {request_id}\r\n\r\n"
    )
    return head.encode("ascii") + body


def parse_response(raw: bytes) -> FunctionResponse:
    """Raises: ForwardError for bytes that are not an HTTP/1.x response."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if not sep or len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ForwardError("the function's answer is not an HTTP response")
    content_type = "application/octet-stream"
    length: int | None = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"content-type":
            content_type = value.strip().decode("latin-1")
        elif key == b"content-length" and value.strip().isdigit():
            length = int(value.strip())
    if length is not None:
        body = body[:length]
    return FunctionResponse(int(parts[1]), content_type, body)


async def forward(socket_path: str, path: str, body: bytes, request_id: str) -> FunctionResponse:
    """``socket_path``'s last component must be the socket, not a link to one (the
    instance writes its directory).

    Raises: ForwardError (also when the function does not answer in time)."""
    request = build_request(path, body, request_id)
    try:
        async with asyncio.timeout(INVOKE_TIMEOUT):
            with unix_socket_nofollow(socket_path) as own:
                reader, writer = await asyncio.open_unix_connection(own)
            try:
                writer.write(request)
                await writer.drain()
                raw = await reader.read(MAX_RESPONSE_BYTES)
                while chunk := await reader.read(MAX_RESPONSE_BYTES):
                    raw += chunk
                    if len(raw) > MAX_RESPONSE_BYTES:
                        raise ForwardError("the function's answer is too large")
            finally:
                writer.close()
    except (OSError, TimeoutError) as exc:
        raise ForwardError("the function did not answer") from exc
    return parse_response(raw)
