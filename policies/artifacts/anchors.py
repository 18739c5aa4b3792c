"""Anchor stores (``policies.audit.anchors.AnchorStore``) on the artifact stores:
signed audit checkpoints under a fixed prefix, written once, never overwritten.

- local: files under ``<artifact dir>/audit-anchors/``, created exclusively, read-only.
- S3: objects under ``<prefix>audit-anchors/``; with ``retention_days`` each one carries
  an Object Lock retention (the bucket must have Object Lock enabled), so not even the
  account that wrote it can delete or overwrite it before the date.
- OSS: objects under the same prefix; immutability comes from the bucket's retention
  (WORM) policy, which applies to every object in it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from policies.artifacts.oss import OssArtifactStore
from policies.artifacts.s3 import S3ArtifactStore
from policies.errors import ArtifactError

ANCHOR_FOLDER = "audit-anchors"


@dataclass(frozen=True, slots=True)
class Retention:
    days: float
    mode: Literal["GOVERNANCE", "COMPLIANCE"] = "COMPLIANCE"

    def until(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(days=self.days)


class LocalAnchors:
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root / ANCHOR_FOLDER

    def _put(self, name: str, body: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.root / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileExistsError:
            return  # the same name is the same content (its digest is in the name)
        with os.fdopen(fd, "wb") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())

    async def put_anchor(self, name: str, body: bytes) -> None:
        try:
            await asyncio.to_thread(self._put, name, body)
        except OSError as exc:
            raise ArtifactError("the audit anchor could not be stored") from exc

    async def list_anchors(self) -> list[str]:
        try:
            return await asyncio.to_thread(
                lambda: sorted(p.name for p in self.root.iterdir()) if self.root.exists() else []
            )
        except OSError as exc:
            raise ArtifactError("the audit anchors could not be listed") from exc

    async def get_anchor(self, name: str) -> bytes:
        try:
            return await asyncio.to_thread((self.root / name).read_bytes)
        except OSError as exc:
            raise ArtifactError("an audit anchor could not be read") from exc

    async def aclose(self) -> None:
        return None


class BucketAnchors:
    """Anchors in an S3 or OSS bucket under ``prefix + "audit-anchors/"``."""

    def __init__(
        self,
        store: S3ArtifactStore | OssArtifactStore,
        prefix: str = "",
        retention: Retention | None = None,
    ) -> None:
        self.name = store.name
        self._store = store
        self._prefix = f"{prefix}{ANCHOR_FOLDER}/"
        self._retention = retention

    async def put_anchor(self, name: str, body: bytes) -> None:
        until = None if self._retention is None else self._retention.until()
        mode = None if self._retention is None else self._retention.mode
        await asyncio.to_thread(
            self._store.put_object, self._prefix + name, body, "application/json", until, mode
        )

    async def list_anchors(self) -> list[str]:
        keys = await asyncio.to_thread(self._store.list_keys, self._prefix)
        return sorted(k[len(self._prefix) :] for k in keys)

    async def get_anchor(self, name: str) -> bytes:
        return await asyncio.to_thread(self._store.get_bytes, self._prefix + name)

    async def aclose(self) -> None:
        await self._store.aclose()
