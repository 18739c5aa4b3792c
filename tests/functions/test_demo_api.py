"""demo-api's HTTP server (the one asyncio loop the function runs), on a real unix
socket in this process: kept-alive connections, its paths, and bad requests."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from server.settings import DEMO_API_CODE


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_api_server", DEMO_API_CODE / "server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = _load()


@pytest.fixture
async def sock(tmp_path: Path) -> AsyncIterator[str]:
    path = str(tmp_path / "invoke.sock")
    server = await asyncio.start_unix_server(demo.serving(demo.api), path)
    try:
        yield path
    finally:
        server.close()
        await server.wait_closed()


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes, Any]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    body = json.loads(await reader.readexactly(length))
    return int(head.split(b" ")[1]), head, body


def post(path: str, body: bytes = b"", extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


async def test_one_connection_carries_many_invocations(sock: str) -> None:
    reader, writer = await asyncio.open_unix_connection(sock)
    try:
        answers = [await _exchange(reader, writer, post("/", b"{}")) for _ in range(3)]
    finally:
        writer.close()
    assert [(status, body["ok"]) for status, _, body in answers] == [(200, True)] * 3
    assert all(b"Connection: close" not in head for _, head, _ in answers)


async def test_the_report_path_answers_with_the_computed_report(sock: str) -> None:
    reader, writer = await asyncio.open_unix_connection(sock)
    try:
        status, _, body = await _exchange(reader, writer, post("/report?rounds=1000"))
    finally:
        writer.close()
    assert (status, body) == (200, {"report": demo.compute_price_report(1000)})


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(post("/nope"), 404, id="unknown-path"),
        pytest.param(post("/report?rounds=many"), 400, id="bad-number"),
        pytest.param(post("/", extra="Connection: close\r\n"), 200, id="client-closes"),
    ],
)
async def test_a_request_gets_its_answer(sock: str, request_bytes: bytes, status: int) -> None:
    reader, writer = await asyncio.open_unix_connection(sock)
    try:
        answered, _, _ = await _exchange(reader, writer, request_bytes)
    finally:
        writer.close()
    assert answered == status


async def test_a_request_that_is_not_http_is_answered_400_and_the_connection_closed(
    sock: str,
) -> None:
    reader, writer = await asyncio.open_unix_connection(sock)
    try:
        status, head, _ = await _exchange(reader, writer, b"HELLO\r\n\r\n")
        rest = await reader.read()
    finally:
        writer.close()
    assert status == 400 and b"Connection: close" in head
    assert rest == b""
