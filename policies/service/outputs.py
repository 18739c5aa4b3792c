"""Where output that does not fit inline goes: spill files, the artifact store, and
expiring links to what was stored."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from policies.artifacts.keys import link_label
from policies.artifacts.spill import StoredOutput, store_spills
from policies.errors import ArtifactError
from policies.ports import ArtifactStore, ExecOutcome
from policies.service.output import CollectedOutput
from policies.types import AuditId

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outputs:
    """The artifact side of the service. Without a store there is nowhere to link
    spilled output, so nothing is spilled."""

    artifacts: ArtifactStore | None
    spill_root: Path | None
    link_ttl: float
    prefix: str
    clock: Callable[[], dt.datetime]

    def spill_dir(self, audit_id: AuditId) -> Path | None:
        if self.artifacts is None or self.spill_root is None:
            return None
        return self.spill_root / audit_id

    async def store(self, out: CollectedOutput, target: str, audit_id: AuditId) -> StoredOutput:
        """The full output of streams that did not fit inline, stored and linked."""
        if self.artifacts is None or not out.spill_files:
            return StoredOutput()
        return await store_spills(
            self.artifacts,
            out.spill_files,
            when=self.clock(),
            target=target,
            audit_id=audit_id,
            ttl_seconds=self.link_ttl,
            prefix=self.prefix,
        )

    async def links_for(self, outcome: ExecOutcome | None) -> dict[str, str]:
        """Fresh links to what a recorded run stored (none when a link fails)."""
        links: dict[str, str] = {}
        if self.artifacts is None or outcome is None:
            return links
        for info in outcome.artifacts:
            try:
                links[link_label(info.key)] = await self.artifacts.link(
                    info.key, ttl_seconds=self.link_ttl
                )
            except ArtifactError as exc:
                logger.warning("no link for %s: %s", info.key, exc.safe_message)
        return links

    def link_expiry(self) -> str:
        return (self.clock() + dt.timedelta(seconds=self.link_ttl)).isoformat()


def discard_spill(spill: Path | None) -> None:
    """Spilled output of a run that failed: nothing will link it, so it goes."""
    if spill is not None:
        shutil.rmtree(spill, ignore_errors=True)
