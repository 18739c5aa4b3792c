"""`execgate audit verify | public-key` and `db upgrade`'s new-log step: audit integrity
from the terminal. Verification reads only the database, the checkpoint, the anchors
and a public key; it writes nothing."""

from __future__ import annotations

import argparse
import asyncio
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from policies.audit.anchors import AnchorStore
from policies.audit.checkpoint import key_id
from policies.audit.review import verify_log
from policies.errors import AuditIntegrityError, ConfigError
from server.cli import render
from server.localstate import (
    CHECKPOINT_FILE,
    PUBLIC_KEY_FILE,
    SIGNING_KEY_FILE,
    audit_signing_key,
    load_public_key,
    public_pem,
)
from server.settings import Settings
from server.wiring import (
    audit_key,
    database_missing,
    open_anchor_store,
    prepare_database,
    start_new_log,
)


def _public_key(args: argparse.Namespace, settings: Settings) -> Ed25519PublicKey | None:
    if args.public_key is not None:
        return load_public_key(args.public_key)
    if (settings.data_dir / PUBLIC_KEY_FILE).exists():
        return load_public_key(settings.data_dir / PUBLIC_KEY_FILE)
    if (settings.data_dir / SIGNING_KEY_FILE).exists():
        return audit_signing_key(settings.data_dir).public_key()
    return None  # no log was ever signed here


async def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Raises: AuditIntegrityError when the check fails; ConfigError; AuditUnavailable."""
    public = _public_key(args, settings)
    if public is None and (args.strict or args.anchors):
        raise ConfigError("no audit public key here: pass --public-key FILE")
    anchors: AnchorStore | None = None
    if args.anchors:
        anchors = open_anchor_store(settings)
        if anchors is None:
            raise ConfigError("--anchors needs artifacts.anchors = true")
    try:
        report = await verify_log(
            settings.database_url,
            checkpoint_path=settings.data_dir / CHECKPOINT_FILE,
            public_key=public,
            strict=args.strict,
            anchors=anchors,
        )
    finally:
        if anchors is not None:
            await anchors.aclose()
    render.verify(report)
    if not report.ok:
        raise AuditIntegrityError(
            f"audit log verification failed at row {report.first_bad_seq}: {report.problem}",
            problem=report.problem,
            first_bad_seq=report.first_bad_seq,
        )
    return 0


async def cmd_public_key(args: argparse.Namespace, settings: Settings) -> int:
    """Print the public key that verifies this deployment's checkpoints (to pin it)."""
    key = audit_key(settings.data_dir).public_key()
    sys.stdout.write(public_pem(key).decode("ascii"))
    print(f"key id: {key_id(key)}", file=sys.stderr)
    return 0


async def cmd_db_upgrade(settings: Settings, *, new_log: bool = False) -> None:
    """Create or migrate the database. When it was missing, or ``new_log`` asks for it,
    a new audit log is started: the previous log's checkpoint is moved aside (kept) and
    a new one is begun."""
    missing = await database_missing(settings.database_url)
    await prepare_database(settings, force=True)
    if missing or new_log:
        retired = await asyncio.to_thread(start_new_log, settings.data_dir)
        kept = "" if retired is None else f"; the previous log's checkpoint is kept as {retired}"
        print(f"started a new audit log{kept}", file=sys.stderr)
