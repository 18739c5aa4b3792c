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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

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


AnchorVerdict = Literal["agrees", "differs", "ahead", "invalid", "unchecked"]


@dataclass(frozen=True, slots=True)
class AnchorState:
    """One anchor as the review console lists it."""

    name: str
    last: int | None  # the last event it records (None: unreadable)
    verdict: AnchorVerdict
    detail: str


def anchor_names(names: list[str]) -> list[str]:
    """The anchor names among ``names``, newest (highest event) first."""
    return sorted((n for n in names if _NAME.fullmatch(n)), reverse=True)


def read_anchor(
    body: bytes, public: Ed25519PublicKey | None
) -> Checkpoint | AuditIntegrityError | None:
    """The checkpoint an anchor's ``body`` holds, or why it does not verify; None
    without a public key to check it with."""
    if public is None:
        return None
    try:
        return decode_checkpoint(body.decode("ascii", errors="replace"), public)
    except AuditIntegrityError as exc:
        return exc


def anchored_events(cp: Checkpoint) -> set[int]:
    """The events whose hashes ``judge_anchor`` compares: each run's first and last."""
    return {seq for seg in cp.segments for seq in (seg.first, seg.last)}


def judge_anchor(
    name: str,
    cp: Checkpoint | AuditIntegrityError | None,
    chain: Mapping[int, tuple[str, str]],
) -> AnchorState:
    """Whether the anchor ``name`` (as ``read_anchor`` read it) is signed by this log's
    key and the chain still holds the hashes it records: ``chain`` maps an event number
    to its (prev_hash, hash), for at least its ``anchored_events``."""
    if cp is None:
        return AnchorState(name, None, "unchecked", "no public key to check its signature")
    if isinstance(cp, AuditIntegrityError):
        return AnchorState(name, None, "invalid", cp.safe_message)
    for seg in cp.segments:
        for seq in (seg.first, seg.last):
            if seq not in chain:
                return AnchorState(
                    name, cp.last, "ahead", f"event {seq} it records is not in the log"
                )
        if chain[seg.first][0] != seg.prev_hash or chain[seg.last][1] != seg.hash:
            bad = seg.first if chain[seg.first][0] != seg.prev_hash else seg.last
            return AnchorState(name, cp.last, "differs", f"event {bad} has another hash in the log")
    detail = f"the log holds the hashes it records up to event {cp.last}"
    return AnchorState(name, cp.last, "agrees", detail)
