"""Files under the data directory that tie `execgate serve` and the CLI together:
the local host's keys, the address it listens on, and the audit checkpoint key."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policies.errors import ConfigError, ProviderUnavailable

KEYS_FILE = "local-host-keys.json"
ADDRESS_FILE = "local-host.json"
CHECKPOINT_KEY_FILE = "audit-checkpoint.key"
CHECKPOINT_FILE = "audit-checkpoint.json"
ARTIFACT_KEY_FILE = "artifact-signing.key"


@dataclass(frozen=True, slots=True)
class LocalKeys:
    access_key_id: str
    access_key_secret: str

    def __repr__(self) -> str:
        return f"LocalKeys(access_key_id={self.access_key_id!r}, access_key_secret='********')"


def _create_private(path: Path, content: bytes) -> None:
    """Create ``path`` with mode 0600 unless it exists (first writer wins)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as fh:
        fh.write(content)


def local_keys(data_dir: Path) -> LocalKeys:
    """The local host's access key, generated on first use."""
    path = data_dir / KEYS_FILE
    generated = {
        "access_key_id": "LTAIlocal" + secrets.token_hex(8),
        "access_key_secret": secrets.token_urlsafe(30),
    }
    _create_private(path, json.dumps(generated).encode())
    try:
        data = json.loads(path.read_text())
        return LocalKeys(data["access_key_id"], data["access_key_secret"])
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"cannot read the local host keys in {path}") from exc


def checkpoint_key(data_dir: Path) -> bytes:
    path = data_dir / CHECKPOINT_KEY_FILE
    _create_private(path, secrets.token_hex(32).encode())
    try:
        return path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the audit checkpoint key in {path}") from exc


def artifact_signing_key(data_dir: Path) -> bytes:
    """The key that signs local artifact links (shared by `execgate serve` and the CLI)."""
    path = data_dir / ARTIFACT_KEY_FILE
    _create_private(path, secrets.token_hex(32).encode())
    try:
        return path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the artifact signing key in {path}") from exc


def write_address(data_dir: Path, url: str, account_id: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / (ADDRESS_FILE + ".tmp")
    tmp.write_text(json.dumps({"url": url, "account_id": account_id, "pid": os.getpid()}))
    tmp.replace(data_dir / ADDRESS_FILE)


def clear_address(data_dir: Path) -> None:
    with contextlib.suppress(OSError):
        data = json.loads((data_dir / ADDRESS_FILE).read_text())
        if data.get("pid") == os.getpid():
            (data_dir / ADDRESS_FILE).unlink()


def read_address(data_dir: Path) -> dict[str, Any]:
    """Where the running local host listens. Raises: ProviderUnavailable."""
    try:
        data: dict[str, Any] = json.loads((data_dir / ADDRESS_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ProviderUnavailable(
            "the local instance host is not running; start it with `make run` "
            "(or `execgate serve`) in another terminal"
        ) from exc
    return data
