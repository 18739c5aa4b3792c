"""Verify an audit log from outside: the database, the checkpoint file and the public
key, with no private key and no writer (``execgate audit verify --public-key``)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from policies.audit.anchors import AnchorStore, load_anchors
from policies.audit.backend import open_backend
from policies.audit.checkpoint import Checkpoint
from policies.audit.db import Db
from policies.audit.store import check_database
from policies.audit.verify import verify_store
from policies.errors import AuditIntegrityError
from policies.ports import VerifyReport


async def verify_log(
    url: str,
    *,
    checkpoint_path: Path,
    public_key: Ed25519PublicKey | None,
    strict: bool = False,
    anchors: AnchorStore | None = None,
) -> VerifyReport:
    """Verify the log at ``url`` against the checkpoint signed by ``public_key`` (and
    every anchor in ``anchors``). Writes nothing.

    Raises: AuditUnavailable when the database cannot be read; ArtifactError when the
    anchors cannot be listed or fetched.
    """
    db = Db(open_backend(url))
    try:
        await check_database(db)
        anchored: list[tuple[str, Checkpoint]] | None = None
        if anchors is not None and public_key is not None:
            try:
                anchored = await load_anchors(anchors, public_key)
            except AuditIntegrityError as exc:
                return VerifyReport(
                    ok=False, rows_checked=0, problem="anchor", detail=exc.safe_message
                )
        return await verify_store(db, checkpoint_path, public_key, strict=strict, anchors=anchored)
    finally:
        await db.aclose()
