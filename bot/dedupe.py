"""Slack delivers again what it thinks was not acknowledged (``X-Slack-Retry-Num``).

Each delivery gets a stable key; a key seen before is acknowledged and dropped here, and
the same key travels to the service as ``ExecRequest.request_key`` so that even a
delivery reaching another ExecGate process never runs a command twice.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any


def _digest(payload: Mapping[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def command_key(payload: Mapping[str, Any]) -> str:
    """A slash command's key: its trigger id (unique per invocation), else its digest."""
    trigger = payload.get("trigger_id")
    return f"slack:cmd:{trigger}" if trigger else f"slack:cmd:{_digest(payload)}"


def event_key(body: Mapping[str, Any]) -> str:
    """An Events API delivery's key: its event id, else the event's digest."""
    event_id = body.get("event_id")
    if event_id:
        return f"slack:event:{event_id}"
    return f"slack:event:{_digest(body.get('event') or body)}"


class RecentKeys:
    """Keys seen in the last ``ttl`` seconds, at most ``max_size`` of them."""

    def __init__(
        self,
        *,
        ttl: float = 3600.0,
        max_size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max = max_size
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, key: str) -> bool:
        """True the first time ``key`` is offered (within the window), False after."""
        now = self._clock()
        while self._seen and (
            len(self._seen) >= self._max or next(iter(self._seen.values())) <= now
        ):
            self._seen.popitem(last=False)
        if key in self._seen:
            return False
        self._seen[key] = now + self._ttl
        return True
