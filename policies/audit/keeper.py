"""``LeaseKeeper``: renews a replica's lease and reaps the expired leases of others.

Run by `execgate serve` for as long as it serves (see ``policies.audit.leases``). A
renewal or a reap that fails (the database is away) is logged and tried again on the
next beat; the lease only has to be renewed once per ``ttl``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from policies.errors import AuditUnavailable

logger = logging.getLogger("policies.audit")


@runtime_checkable
class Leases(Protocol):
    @property
    def owner(self) -> str: ...

    async def renew_lease(self, ttl: float) -> bool: ...

    async def reap_expired_leases(self) -> int: ...

    async def release_lease(self) -> int: ...


class LeaseKeeper:
    """Beats every ``every`` seconds: renew this replica's lease for ``ttl``, then reap."""

    def __init__(self, leases: Leases, *, ttl: float, every: float) -> None:
        if not 0 < every < ttl:
            raise ValueError("the heartbeat must be shorter than the lease")
        self._leases = leases
        self._ttl = ttl
        self._every = every
        self.beats = 0
        self.beat = asyncio.Event()  # set after each beat (tests wait on it)

    async def beat_once(self, *, first: bool = False) -> None:
        held = await self._leases.renew_lease(self._ttl)
        if not held and not first:
            logger.error(
                "audit: the lease of %s had expired and was taken; its running execs were "
                "marked interrupted by another replica",
                self._leases.owner,
            )
        await self._leases.reap_expired_leases()
        self.beats += 1
        self.beat.set()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            try:
                await self.beat_once()
            except AuditUnavailable:
                logger.warning("audit: lease renewal failed; retrying", exc_info=True)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LeaseKeeper]:
        """Hold the lease (taken before this yields) until exit, then release it.

        Raises: AuditUnavailable when the first renewal fails.
        """
        await self.beat_once(first=True)
        task = asyncio.create_task(self._run(), name="execgate-lease")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            try:
                await self._leases.release_lease()
            except AuditUnavailable:
                logger.warning("audit: could not release the lease at shutdown", exc_info=True)
