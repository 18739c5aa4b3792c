"""Anchors: signed checkpoints published outside the database host.

Whoever owns the database host can rewrite the database, the checkpoint file, and (if
they can read it) sign with the host's private key. A checkpoint already published to
object storage they cannot rewrite (S3 Object Lock, an OSS retention policy, or simply
another account's bucket) still records the hashes the log had; ``verify --anchors``
holds the chain to every one of them.

Each anchor is the checkpoint file's text, stored once under its own name
``<last event, 12 digits>-<sha256 of the text, 16 hex>.json`` (never overwritten).
"""

from __future__ import annotations

import hashlib
import re
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from policies.audit.checkpoint import Checkpoint, decode_checkpoint
from policies.errors import AuditIntegrityError

_NAME = re.compile(r"[0-9]{12}-[0-9a-f]{16}\.json")


class AnchorStore(Protocol):
    """Where anchors go: write-once named objects under a fixed prefix."""

    name: str

    async def put_anchor(self, name: str, body: bytes) -> None:
        """Store ``body`` as ``name`` (with retention where configured).

        Raises: ArtifactError."""
        ...

    async def list_anchors(self) -> list[str]:
        """The names of every anchor stored. Raises: ArtifactError."""
        ...

    async def get_anchor(self, name: str) -> bytes:
        """Raises: ArtifactError."""
        ...

    async def aclose(self) -> None: ...


def anchor_name(last: int, text: str) -> str:
    digest = hashlib.sha256(text.encode("ascii")).hexdigest()[:16]
    return f"{last:012d}-{digest}.json"


class AnchorPublisher:
    """The ``publish`` hook of a checkpoint writer: one anchor per call."""

    def __init__(self, store: AnchorStore) -> None:
        self._store = store

    async def __call__(self, last: int, text: str) -> None:
        await self._store.put_anchor(anchor_name(last, text), text.encode("ascii"))


async def load_anchors(
    store: AnchorStore, public: Ed25519PublicKey
) -> list[tuple[str, Checkpoint]]:
    """Every anchor in ``store``, oldest first, each checked against ``public``.

    Raises: AuditIntegrityError (kind "anchor") naming the first anchor that is
    malformed or not signed by the private half of ``public``; ArtifactError.
    """
    out: list[tuple[str, Checkpoint]] = []
    for name in sorted(n for n in await store.list_anchors() if _NAME.fullmatch(n)):
        body = await store.get_anchor(name)
        try:
            cp = decode_checkpoint(body.decode("ascii", errors="replace"), public)
        except AuditIntegrityError as exc:
            raise AuditIntegrityError(
                f"anchor {name}: {exc.safe_message}", kind="anchor", anchor=name
            ) from exc
        out.append((name, cp))
    return out
