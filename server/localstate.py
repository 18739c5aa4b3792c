"""Files under the data directory that tie `execgate serve` and the CLI together:
the local host's keys, the address it listens on, and the audit signing key pair."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from policies.errors import ConfigError, ProviderUnavailable

KEYS_FILE = "local-host-keys.json"
ADDRESS_FILE = "local-host.json"
LEGACY_CHECKPOINT_KEY_FILE = "audit-checkpoint.key"  # HMAC key of older releases
SIGNING_KEY_FILE = "audit-signing.key"  # Ed25519 private key (PKCS#8 PEM, mode 0600)
PUBLIC_KEY_FILE = "audit-signing.pub"  # its public half, to pin and to verify with
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


def audit_signing_key(data_dir: Path) -> Ed25519PrivateKey:
    """The key that signs audit checkpoints, generated on first use; its public half
    is written to PUBLIC_KEY_FILE beside it.

    Raises: ConfigError when the key file cannot be read or is not an Ed25519 key.
    """
    path = data_dir / SIGNING_KEY_FILE
    pem = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    _create_private(path, pem)
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot read the audit signing key in {path}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"the audit signing key in {path} is not an Ed25519 key")
    public = data_dir / PUBLIC_KEY_FILE
    if not public.exists():
        tmp = public.with_name(public.name + f".{os.getpid()}.tmp")
        tmp.write_bytes(public_pem(key.public_key()))
        tmp.replace(public)
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Raises: ConfigError when ``path`` holds no Ed25519 public key."""
    try:
        key = load_pem_public_key(path.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot read an audit public key from {path}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path} is not an Ed25519 public key")
    return key


def audit_traces(data_dir: Path) -> list[str]:
    """The audit files in ``data_dir`` that show a log was kept here before."""
    names = (CHECKPOINT_FILE, SIGNING_KEY_FILE, LEGACY_CHECKPOINT_KEY_FILE)
    return [name for name in names if (data_dir / name).exists()]


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
