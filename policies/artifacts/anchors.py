"""The anchor store (``policies.audit.anchors.AnchorStore``) on an artifact store:
signed audit checkpoints under a fixed prefix, written once, never overwritten.

- local: files under ``<artifact dir>/audit-anchors/``, created exclusively, read-only.
- S3: objects under ``<prefix>audit-anchors/``; with ``retention_days`` each one carries
  an Object Lock retention (the bucket must have Object Lock enabled), so not even the
  account that wrote it can delete or overwrite it before the date.
- OSS: objects under the same prefix; immutability comes from the bucket's retention
  (WORM) policy, which applies to every object in it.

Anchors are listed and read through the store's ``list`` and ``read``; each store's
``put_object`` writes them (with the retention where the store has one).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from policies.artifacts.local import LocalArtifactStore
from policies.errors import ArtifactError
from policies.ports import ArtifactStore

ANCHOR_FOLDER = "audit-anchors"
# A checkpoint names each writer run's first and last event: a few KiB in practice.
MAX_ANCHOR_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class Retention:
    days: float
    mode: Literal["GOVERNANCE", "COMPLIANCE"] = "COMPLIANCE"

    def until(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(days=self.days)


class AnchorTarget(ArtifactStore, Protocol):
    """An artifact store that also writes whole objects once (see each store)."""

    def put_object(
        self,
        key: str,
        data: bytes,
        content_type: str,
        retain_until: dt.datetime | None = None,
        lock_mode: str | None = None,
    ) -> None: ...


class StoreAnchors:
    """Anchors in ``store`` under ``prefix``."""

    def __init__(
        self, store: AnchorTarget, prefix: str = "", retention: Retention | None = None
    ) -> None:
        self.name = store.name
        self._store = store
        self._prefix = prefix
        self._retention = retention

    async def put_anchor(self, name: str, body: bytes) -> None:
        until = None if self._retention is None else self._retention.until()
        mode = None if self._retention is None else self._retention.mode
        key = self._prefix + name
        await asyncio.to_thread(self._store.put_object, key, body, "application/json", until, mode)

    async def list_anchors(self) -> list[str]:
        keys = await self._store.list(self._prefix)
        return sorted(k[len(self._prefix) :] for k in keys)

    async def get_anchor(self, name: str) -> bytes:
        return await self._store.read(self._prefix + name, max_bytes=MAX_ANCHOR_BYTES)

    async def aclose(self) -> None:
        await self._store.aclose()


def local_anchors(root: Path) -> StoreAnchors:
    """Anchors in ``<root>/audit-anchors/``, ``root`` being the local artifact directory."""
    store = LocalArtifactStore(
        root, signing_key=secrets.token_bytes(32), base_url=_no_links, folder=ANCHOR_FOLDER
    )
    return StoreAnchors(store)


def bucket_anchors(
    store: AnchorTarget, prefix: str = "", retention: Retention | None = None
) -> StoreAnchors:
    """Anchors in a bucket store under ``prefix + "audit-anchors/"``."""
    return StoreAnchors(store, f"{prefix}{ANCHOR_FOLDER}/", retention)


def _no_links() -> str:
    raise ArtifactError("audit anchors are not linked")
