"""What a surface adds to the HTTP app `execgate serve` runs: routes, and optionally a
lifespan (the MCP session manager needs one)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from starlette.routing import BaseRoute


@dataclass
class Mounted:
    routes: list[BaseRoute] = field(default_factory=list)
    lifespan: Callable[[], AbstractAsyncContextManager[None]] | None = None
