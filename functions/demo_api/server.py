"""demo-api: the demo function of ExecGate's local instances (stdlib only).

Started FC custom-runtime style inside its instance: it listens on
``127.0.0.1:$FC_SERVER_PORT`` (what exec's ``curl`` and ``ss`` see) and on the unix
socket ``/run/fc/invoke.sock``, through which the local host forwards invocations.

Paths:
- ``/``                 a quick JSON answer (load with ``execgate invoke``);
- ``/checkout``         calls the downstream inventory service over TCP and waits for it;
                        ``?delay_ms=N`` makes it slow, ``?down=1`` unreachable (S2);
- ``/report``           CPU-heavy: ``compute_price_report`` burns CPU a profile shows (S3).

The downstream inventory service runs in this instance too, on 127.0.0.1:9100 (the
instance has its own network namespace; tcpdump on ``any`` sees the traffic to it).

One asyncio loop serves every connection, HTTP/1.1 with keep-alive: the host keeps its
connections to the function open, so a quick invocation costs a parse and a write, not a
connection and a thread. The CPU-heavy path runs in a worker thread, so quick
invocations are still answered while a report is computed.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

INVOKE_SOCKET = "/run/fc/invoke.sock"
DOWNSTREAM_PORT = 9100
UNREACHABLE_PORT = 9101
DEFAULT_DELAY_MS = int(os.environ.get("DOWNSTREAM_DELAY_MS", "800"))
DOWNSTREAM_TIMEOUT = 5.0
MAX_HEAD = 64 * 1024
MAX_BODY = 16 << 20
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 413: "Payload Too Large"}
REASONS |= {500: "Internal Server Error", 504: "Gateway Timeout"}

Reply = tuple[int, dict[str, object]]
Handler = Callable[[str, dict[str, list[str]]], Awaitable[Reply]]
Connection = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def compute_price_report(rounds: int) -> int:
    """Deliberately slow arithmetic: the hot function of a profile."""
    total = 0
    for i in range(rounds):
        total = (total * 31 + i * i) % 1_000_003
    return total


async def call_downstream(delay_ms: int, down: bool) -> tuple[int, float]:
    """GET the inventory service (a fresh TCP connection, as a plain client makes)."""
    port = UNREACHABLE_PORT if down else DOWNSTREAM_PORT
    started = time.monotonic()
    async with asyncio.timeout(DOWNSTREAM_TIMEOUT + delay_ms / 1000):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(
                f"GET /inventory?delay_ms={delay_ms} HTTP/1.1\r\nHost: inventory\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            status_line = await reader.readline()
            await reader.read()
        finally:
            writer.close()
    parts = status_line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        raise ConnectionError("the inventory service did not answer with HTTP")
    return int(parts[1]), time.monotonic() - started


def _number(query: dict[str, list[str]], name: str, default: int) -> int:
    try:
        return int(query.get(name, [str(default)])[0])
    except ValueError:
        raise BadRequest(400, f"{name} must be a number") from None


async def api(path: str, query: dict[str, list[str]]) -> Reply:
    if path in ("/", "/invoke"):
        return 200, {"ok": True, "function": os.environ.get("FC_FUNCTION_NAME")}
    if path == "/checkout":
        delay = _number(query, "delay_ms", DEFAULT_DELAY_MS)
        try:
            status, took = await call_downstream(delay, query.get("down") == ["1"])
        except (OSError, TimeoutError) as exc:
            return 504, {"error": f"downstream failed: {exc.__class__.__name__}"}
        return 200, {"downstream_status": status, "seconds": round(took, 3)}
    if path == "/report":
        rounds = _number(query, "rounds", 300_000)
        return 200, {"report": await asyncio.to_thread(compute_price_report, rounds)}
    return 404, {"error": "no such path"}


async def inventory(path: str, query: dict[str, list[str]]) -> Reply:
    """The downstream dependency: answers after ``delay_ms``."""
    delay = _number(query, "delay_ms", 0)
    await asyncio.sleep(min(max(delay, 0), 30_000) / 1000)
    return 200, {"in_stock": 3}


def _response(status: int, body: dict[str, object], keep_alive: bool) -> bytes:
    data = json.dumps(body).encode()
    close = "" if keep_alive else "Connection: close\r\n"
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n{close}\r\n"
    )
    return head.encode("ascii") + data


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, list[str]], bool]:
    """One request: its path, query and whether the connection stays open.

    Raises: BadRequest; asyncio.IncompleteReadError at the end of the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise BadRequest(400, "request head too large") from None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(400, "not an HTTP/1.x request")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if "transfer-encoding" in headers:
        raise BadRequest(400, "chunked request bodies are not supported")
    length = headers.get("content-length", "0")
    if not length.isdigit():
        raise BadRequest(400, "bad Content-Length")
    if int(length) > MAX_BODY:
        raise BadRequest(413, "request body too large")
    await reader.readexactly(int(length))
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" and (parts[2] == "HTTP/1.1" or connection == "keep-alive")
    url = urlsplit(parts[1])
    return url.path, parse_qs(url.query), keep_alive


def serving(handler: Handler) -> Connection:
    """A connection callback answering requests with ``handler`` until either side closes."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                body: dict[str, object]
                try:
                    path, query, keep_alive = await _read_request(reader)
                except BadRequest as exc:
                    status, body, keep_alive = exc.status, {"error": str(exc)}, False
                else:
                    try:
                        status, body = await handler(path, query)
                    except BadRequest as exc:
                        status, body = exc.status, {"error": str(exc)}
                    except Exception as exc:  # an answer, not a dropped connection
                        status, body = 500, {"error": exc.__class__.__name__}
                writer.write(_response(status, body, keep_alive))
                await writer.drain()
                if not keep_alive:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the peer closed the connection
        finally:
            writer.close()

    return connection


async def main(invoke_socket: bool) -> None:
    port = int(os.environ.get("FC_SERVER_PORT", "9000"))
    servers = [
        await asyncio.start_server(serving(inventory), "127.0.0.1", DOWNSTREAM_PORT, backlog=1024),
        await asyncio.start_server(serving(api), "127.0.0.1", port, backlog=1024, limit=MAX_HEAD),
    ]
    if invoke_socket:
        try:
            os.unlink(INVOKE_SOCKET)
        except FileNotFoundError:
            pass
        servers.append(
            await asyncio.start_unix_server(
                serving(api), INVOKE_SOCKET, backlog=1024, limit=MAX_HEAD
            )
        )
    await asyncio.gather(*(server.serve_forever() for server in servers))


if __name__ == "__main__":
    asyncio.run(main(os.path.exists(os.path.dirname(INVOKE_SOCKET))))
