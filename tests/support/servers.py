"""Run an ASGI app under uvicorn on 127.0.0.1, port 0, for the length of a test.

    async with serve_asgi(app) as base_url:   # "http://127.0.0.1:PORT"
        ...

Start-up is awaited (no sleeps): ``server.asgi_runner`` waits on uvicorn's own start-up
event, bounded by ``anyio.fail_after``; a server that fails to start raises instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, Literal

from server.asgi_runner import run_asgi


@contextlib.asynccontextmanager
async def serve_asgi(
    app: Any,
    *,
    ws: Literal["websockets-sansio", "websockets", "wsproto"] = "websockets-sansio",
    lifespan: Literal["auto", "on", "off"] = "auto",
    ws_ping_interval: float | None = 20.0,
) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 (a free port) and yield its base URL."""
    async with run_asgi(
        app, ws=ws, lifespan=lifespan, ws_ping_interval=ws_ping_interval
    ) as running:
        yield running.url
