"""Run an ASGI app under uvicorn on 127.0.0.1, port 0, for the length of a test.

    async with serve_asgi(app) as base_url:   # "http://127.0.0.1:PORT"
        ...

Start-up is awaited (no sleeps): the helper waits until uvicorn reports ``started``,
bounded by ``anyio.fail_after``; a server that fails to start raises instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any, Literal

import anyio
import uvicorn

STARTUP_TIMEOUT = 10.0
SHUTDOWN_TIMEOUT = 10.0


class _Server(uvicorn.Server):
    """A uvicorn server that says when its start-up has finished (or failed)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.startup_done = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.startup_done.set()


async def _serve(server: _Server, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exc:  # uvicorn exits the process when start-up fails
        raise RuntimeError(f"the test server failed to start (exit {exc.code})") from None


@contextlib.asynccontextmanager
async def serve_asgi(
    app: Any,
    *,
    ws: Literal["websockets-sansio", "websockets", "wsproto"] = "websockets-sansio",
    lifespan: Literal["auto", "on", "off"] = "auto",
    ws_ping_interval: float | None = 20.0,
) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 (a free port) and yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        ws=ws,
        lifespan=lifespan,
        log_config=None,
        log_level="warning",
        ws_ping_interval=ws_ping_interval,
        timeout_graceful_shutdown=5,
    )
    server = _Server(config)
    task = asyncio.create_task(_serve(server, sock))
    ready = asyncio.create_task(server.startup_done.wait())
    try:
        try:
            with anyio.fail_after(STARTUP_TIMEOUT):
                await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if task.done():
            task.result()  # raises what stopped the server
        if not server.started:
            raise RuntimeError("the test server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with anyio.fail_after(SHUTDOWN_TIMEOUT):
            await asyncio.gather(task, return_exceptions=True)
        sock.close()
