"""Run an ASGI app under uvicorn inside the current event loop, and know when it listens.

    async with run_asgi(app, host="127.0.0.1", port=0) as running:
        print(running.url)          # the bound address, also for port 0
        await running.stopped()     # until SIGINT/SIGTERM or should_exit

Start-up is awaited on an event set by uvicorn's own start-up, not by polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import uvicorn

STARTUP_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 10.0


class _Server(uvicorn.Server):
    """A uvicorn server that says when its start-up has finished (or failed)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.startup_done = asyncio.Event()
        self._exit_asked = asyncio.Event()

    def ask_exit(self) -> None:
        """Stop serving now (uvicorn alone notices ``should_exit`` at its next tick)."""
        self.should_exit = True
        self._exit_asked.set()

    async def main_loop(self) -> None:
        # uvicorn's loop, but woken by ask_exit instead of only every 0.1 s.
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit_asked.wait(), 0.1)
            should_exit = await self.on_tick(counter)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.startup_done.set()


@dataclass
class RunningAsgi:
    url: str
    server: uvicorn.Server
    task: asyncio.Task[None]

    async def stopped(self) -> None:
        await asyncio.shield(self.task)


async def _serve(server: _Server, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exc:  # uvicorn exits the process when start-up fails
        raise RuntimeError(f"the server failed to start (exit {exc.code})") from None


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # An explicit IPPROTO_TCP makes asyncio set TCP_NODELAY on accepted connections
    # (it checks the socket's protocol); with 0, small responses wait on delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


@contextlib.asynccontextmanager
async def run_asgi(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ws: Literal["websockets-sansio", "websockets", "wsproto"] = "websockets-sansio",
    lifespan: Literal["auto", "on", "off"] = "auto",
    ws_ping_interval: float | None = 20.0,
    log_level: str = "warning",
) -> AsyncIterator[RunningAsgi]:
    """Serve ``app`` on ``host:port`` (0: a free port) until the block exits.

    Raises: OSError when the address cannot be bound; RuntimeError when start-up fails.
    """
    sock = _bind(host, port)
    bound = sock.getsockname()
    name = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    config = uvicorn.Config(
        app,
        ws=ws,
        lifespan=lifespan,
        log_config=None,
        log_level=log_level,
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
            raise RuntimeError("the server did not start")
        yield RunningAsgi(f"http://{name}:{bound[1]}", server, task)
    finally:
        server.ask_exit()
        with anyio.fail_after(SHUTDOWN_TIMEOUT):
            await asyncio.gather(task, return_exceptions=True)
        sock.close()
