"""Progress notifications while a command runs: output chunks become progress updates.

The updates count output; they never carry it (the output reaches the model only in
the result, fenced as untrusted data). They are spaced out so that a chatty command
does not flood the client, and a client that stopped listening cannot fail the exec.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from mcp.server.mcpserver import Context

from policies.types import Stream

logger = logging.getLogger(__name__)

MIN_INTERVAL_SECONDS = 0.5


class OutputProgress:
    """An ``on_output`` sink for ExecService that reports progress on ``ctx``."""

    def __init__(self, ctx: Context[Any, Any], *, min_interval: float = MIN_INTERVAL_SECONDS):
        self._ctx = ctx
        self._min_interval = min_interval
        self._chars: dict[Stream, int] = {"stdout": 0, "stderr": 0}
        self._last = -math.inf

    async def __call__(self, stream: Stream, text: str) -> None:
        self._chars[stream] += len(text)
        now = time.monotonic()
        if now - self._last < self._min_interval:
            return
        self._last = now
        total = self._chars["stdout"] + self._chars["stderr"]
        message = (
            f"running: {self._chars['stdout']} stdout and {self._chars['stderr']} stderr "
            "characters so far"
        )
        try:
            await self._ctx.report_progress(total, None, message)
        except Exception:
            # Progress is a courtesy; the command and its audit record matter more.
            logger.warning("could not send a progress notification", exc_info=True)
