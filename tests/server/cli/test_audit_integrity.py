"""`execgate audit verify --strict/--public-key/--anchors`, `audit public-key`, and the
refusal to re-create a deleted audit database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from policies.audit import open_audit_store
from policies.audit.anchors import AnchorPublisher
from policies.audit.checkpoint import read_checkpoint
from policies.errors import AuditUnavailable
from server.cli.exits import EXIT_CHECK_FAILED, EXIT_UNAVAILABLE
from server.cli.main import main
from server.localstate import CHECKPOINT_FILE, PUBLIC_KEY_FILE, audit_signing_key, public_pem
from server.settings import Settings, load_settings
from server.wiring import audit_key, open_anchor_store, prepare_database
from tests.policies.audit.support import INTENT, execute


def _public_of(settings: Settings) -> Ed25519PublicKey:
    return audit_signing_key(settings.data_dir).public_key()


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "execgate.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    return config


async def _record(settings: Settings, count: int) -> None:
    """Execs written the way `execgate serve` writes them (checkpoint and anchors)."""
    await prepare_database(settings)
    anchors = open_anchor_store(settings)
    assert anchors is not None
    store = await open_audit_store(
        settings.database_url,
        checkpoint_path=settings.data_dir / CHECKPOINT_FILE,
        checkpoint_key=audit_key(settings.data_dir),
        publish=AnchorPublisher(anchors),
    )
    try:
        for _ in range(count):
            await store.record_intent(INTENT)
    finally:
        await store.aclose()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = _config(tmp_path)
    asyncio.run(_record(load_settings(path, {}), 3))
    return path


def test_verify_passes_on_an_untouched_log_and_strict_fails_on_unvouched_rows(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(config), "audit", "verify", "--strict"]) == 0
    settings = load_settings(config, {})

    async def append_unvouched() -> None:
        # A row appended by raw SQL with a hash the chain accepts: recompute it properly.
        from tests.policies.audit.test_integrity import _forge_event

        await _forge_event(settings.database_url, 4)

    asyncio.run(append_unvouched())

    assert main(["--config", str(config), "audit", "verify"]) == 0
    assert main(["--config", str(config), "audit", "verify", "--strict"]) == EXIT_CHECK_FAILED


def test_verify_with_a_pinned_public_key_refuses_a_key_swapped_on_the_host(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(config), "audit", "public-key"]) == 0
    pinned = tmp_path / "pinned.pub"
    pinned.write_text(capsys.readouterr().out)
    data = load_settings(config, {}).data_dir
    assert pinned.read_bytes() == (data / PUBLIC_KEY_FILE).read_bytes()
    # The host's owner replaces the key pair and re-signs a checkpoint of their own.
    mallory = Ed25519PrivateKey.generate()
    (data / PUBLIC_KEY_FILE).write_bytes(public_pem(mallory.public_key()))
    from policies.audit.checkpoint import encode_checkpoint, read_checkpoint

    cp = read_checkpoint(data / CHECKPOINT_FILE, audit_signing_key(data).public_key())
    assert cp is not None
    (data / CHECKPOINT_FILE).write_text(encode_checkpoint(cp.segments, mallory))

    assert main(["--config", str(config), "audit", "verify"]) == 0  # fooled by the host key
    code = main(["--config", str(config), "audit", "verify", "--public-key", str(pinned)])
    assert code == EXIT_CHECK_FAILED


def test_verify_anchors_catches_a_cut_tail_with_a_resigned_checkpoint(config: Path) -> None:
    settings = load_settings(config, {})
    data = settings.data_dir
    from policies.audit.chain import GENESIS_HASH
    from policies.audit.checkpoint import Segment, encode_checkpoint
    from tests.policies.audit.support import scalar

    async def cut() -> str:
        await execute(settings.database_url, "DELETE FROM audit_events WHERE seq > 1")
        await execute(settings.database_url, "DELETE FROM exec_sessions")
        return str(await scalar(settings.database_url, "SELECT hash FROM audit_events"))

    head = asyncio.run(cut())
    key = audit_signing_key(data)
    (data / CHECKPOINT_FILE).write_text(encode_checkpoint([Segment(1, GENESIS_HASH, 1, head)], key))

    assert main(["--config", str(config), "audit", "verify", "--anchors"]) == EXIT_CHECK_FAILED


def test_a_deleted_database_is_refused_not_recreated_until_db_upgrade(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings(config, {})
    db_file = settings.data_dir / "audit.db"
    assert db_file.exists()  # control: the log was there
    db_file.unlink()

    with pytest.raises(AuditUnavailable) as refused:
        asyncio.run(prepare_database(settings))
    code = main(["--config", str(config), "audit", "list"])

    assert refused.value.fields["kind"] == "database_missing"
    assert code == EXIT_UNAVAILABLE
    assert not db_file.exists()
    assert main(["--config", str(config), "db", "upgrade"]) == 0
    assert db_file.exists()
    assert list(settings.data_dir.glob(CHECKPOINT_FILE + ".retired-*"))  # kept aside
    new_log = read_checkpoint(settings.data_dir / CHECKPOINT_FILE, _public_of(settings))
    assert new_log is not None and new_log.segments == ()  # a new log, begun signed
    assert main(["--config", str(config), "audit", "list"]) == 0


def test_a_fresh_data_directory_creates_its_database_and_key(tmp_path: Path) -> None:
    config = _config(tmp_path)

    assert main(["--config", str(config), "audit", "list"]) == 0

    data = load_settings(config, {}).data_dir
    assert (data / "audit.db").exists()
    assert (data / PUBLIC_KEY_FILE).exists()


def test_an_emptied_log_without_its_checkpoint_fails_strict_verify_and_is_not_restarted(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(config), "audit", "public-key"]) == 0
    pinned = tmp_path / "pinned.pub"
    pinned.write_text(capsys.readouterr().out)
    strict = ["--config", str(config), "audit", "verify", "--strict", "--public-key", str(pinned)]
    assert main(strict) == 0  # control: the log of 3 execs verifies
    settings = load_settings(config, {})

    async def empty() -> None:
        for table in ("approval_votes", "approvals", "exec_sessions", "conv_sessions"):
            await execute(settings.database_url, f"DELETE FROM {table}")
        await execute(settings.database_url, "DELETE FROM audit_events")

    asyncio.run(empty())
    (settings.data_dir / CHECKPOINT_FILE).unlink()

    assert main(strict) == EXIT_CHECK_FAILED
    assert main(["--config", str(config), "audit", "list"]) == EXIT_UNAVAILABLE
    assert not (settings.data_dir / CHECKPOINT_FILE).exists()  # no new chain was started
    # Starting over is explicit, and leaves a new signed, empty log.
    assert main(["--config", str(config), "db", "upgrade", "--new-log"]) == 0
    assert main(strict) == 0
    assert main(["--config", str(config), "audit", "list"]) == 0
