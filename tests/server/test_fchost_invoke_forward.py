"""The invocation forwarder: its HTTP framing fed bytes, and its kept-alive connections
to a function's HTTP server on a real unix socket."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from server.fchost.forward import (
    ForwardError,
    FunctionConnections,
    build_request,
    parse_response,
)


def test_the_request_carries_the_path_body_and_request_id() -> None:
    raw = build_request("/checkout?delay_ms=5", b"{}", "rid-1")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"POST /checkout?delay_ms=5 HTTP/1.1"
    assert b"Content-Length: 2" in head and b"x-fc-request-id: rid-1" in head
    assert body == b"{}"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/x\r\nX-Injected: 1", id="crlf-header-injection"),
        pytest.param("/x HTTP/1.0", id="space"),
        pytest.param("http://elsewhere/", id="absolute-url"),
        pytest.param("", id="empty"),
    ],
)
def test_a_path_that_could_change_the_request_is_refused(path: str) -> None:
    with pytest.raises(ValueError):
        build_request(path, b"", "rid")


def test_a_response_is_parsed_up_to_its_content_length() -> None:
    raw = (
        b"HTTP/1.1 504 Gateway Timeout\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\n\r\n{}trailing"
    )
    answer = parse_response(raw)
    assert (answer.status, answer.content_type, answer.body) == (504, "application/json", b"{}")


@pytest.mark.parametrize(
    "raw",
    [pytest.param(b"", id="empty"), pytest.param(b"garbage\r\n\r\n", id="no-status-line")],
)
def test_bytes_that_are_not_a_response_raise_forward_error(raw: bytes) -> None:
    with pytest.raises(ForwardError):
        parse_response(raw)


def test_a_chunked_response_is_joined() -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n"
    assert parse_response(raw).body == b"abc"


def test_a_response_without_a_length_ends_with_the_connection() -> None:
    assert parse_response(b"HTTP/1.0 200 OK\r\n\r\nall of it").body == b"all of it"


def test_a_response_cut_short_of_its_length_raises_forward_error() -> None:
    with pytest.raises(ForwardError):
        parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")


# A function's HTTP server on a real unix socket: what it answers, per connection.
Answer = Callable[[int], bytes | None]  # request number on the connection -> bytes; None: close


def ok(body: bytes = b"{}", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


@dataclass
class Function:
    socket: str
    connections: int = 0
    requests: int = 0


@asynccontextmanager
async def function(tmp_path: Path, answer: Answer) -> AsyncIterator[Function]:
    fn = Function(str(tmp_path / "invoke.sock"))

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        fn.connections += 1
        try:
            for number in itertools.count():
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                fn.requests += 1
                reply = answer(number)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
                if b"Connection: close" in reply:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_unix_server(connection, fn.socket)
    try:
        yield fn
    finally:
        server.close()
        await server.wait_closed()


async def test_invocations_of_one_instance_reuse_one_kept_alive_connection(
    tmp_path: Path,
) -> None:
    pool = FunctionConnections()
    async with function(tmp_path, lambda n: ok(b'{"n": %d}' % n)) as fn:
        bodies = [(await pool.forward("i-1", fn.socket, "/", b"", "r")).body for _ in range(3)]
        pool.close()
    assert bodies == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    assert fn.connections == 1


async def test_instances_never_share_a_connection(tmp_path: Path) -> None:
    pool = FunctionConnections()
    async with function(tmp_path, lambda n: ok()) as fn:
        for instance in ("i-1", "i-2", "i-1", "i-2"):
            await pool.forward(instance, fn.socket, "/", b"", "r")
        pool.close()
    assert fn.connections == 2


async def test_a_response_that_closes_the_connection_is_not_reused(tmp_path: Path) -> None:
    pool = FunctionConnections()
    async with function(tmp_path, lambda n: ok(extra=b"Connection: close\r\n")) as fn:
        for _ in range(2):
            await pool.forward("i-1", fn.socket, "/", b"", "r")
        assert pool.idle_count("i-1") == 0
    assert fn.connections == 2


async def test_a_kept_connection_the_function_dropped_is_retried_on_a_fresh_one(
    tmp_path: Path,
) -> None:
    pool = FunctionConnections()
    # Each connection serves one request, then drops the next without a byte.
    async with function(tmp_path, lambda n: ok() if n == 0 else None) as fn:
        for _ in range(3):
            assert (await pool.forward("i-1", fn.socket, "/", b"", "r")).status == 200
        pool.close()
    assert fn.connections == 3


async def test_a_fresh_connection_dropped_without_an_answer_is_not_retried(
    tmp_path: Path,
) -> None:
    pool = FunctionConnections()
    async with function(tmp_path, lambda n: None) as fn:
        with pytest.raises(ForwardError):
            await pool.forward("i-1", fn.socket, "/", b"", "r")
    assert fn.requests == 1


async def test_an_answer_cut_short_raises_forward_error(tmp_path: Path) -> None:
    pool = FunctionConnections()
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nshort"
    async with function(tmp_path, lambda n: cut) as fn:
        with pytest.raises(ForwardError):
            await pool.forward("i-1", fn.socket, "/", b"", "r")
    assert pool.idle_count("i-1") == 0


async def test_a_socket_nobody_listens_on_raises_forward_error(tmp_path: Path) -> None:
    with pytest.raises(ForwardError):
        await FunctionConnections().forward("i-1", str(tmp_path / "none.sock"), "/", b"", "r")
