"""Alibaba Cloud access keys for Function Compute, with a repr that never shows secrets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from policies.errors import ConfigError

ENV_ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"  # noqa: S105 - a variable name
ENV_SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"  # noqa: S105 - a variable name


def mask_key_id(access_key_id: str) -> str:
    """Enough of a key id to tell keys apart in logs, never the whole id."""
    if len(access_key_id) <= 10:
        return "***"
    return f"{access_key_id[:4]}***{access_key_id[-3:]}"


@dataclass(frozen=True, slots=True, repr=False)
class Credentials:
    """An access key pair, plus the STS token when the key is temporary.

    Raises: ConfigError when the id or the secret is empty.
    """

    access_key_id: str
    access_key_secret: str
    security_token: str | None = None

    def __post_init__(self) -> None:
        if not self.access_key_id.strip() or not self.access_key_secret.strip():
            raise ConfigError("Function Compute credentials need an access key id and secret")

    def __repr__(self) -> str:
        token = "'***'" if self.security_token else "None"
        return (
            f"Credentials(access_key_id={mask_key_id(self.access_key_id)!r}, "
            f"access_key_secret='***', security_token={token})"
        )

    __str__ = __repr__


def credentials_from_env(environ: Mapping[str, str]) -> Credentials:
    """Read the standard ``ALIBABA_CLOUD_*`` variables.

    Raises: ConfigError naming the variables that are missing (never their values).
    """
    key_id = environ.get(ENV_ACCESS_KEY_ID, "").strip()
    secret = environ.get(ENV_ACCESS_KEY_SECRET, "").strip()
    missing = [
        name
        for name, value in ((ENV_ACCESS_KEY_ID, key_id), (ENV_ACCESS_KEY_SECRET, secret))
        if not value
    ]
    if missing:
        raise ConfigError(
            "Function Compute credentials are missing: set " + " and ".join(missing),
            missing=",".join(missing),
        )
    token = environ.get(ENV_SECURITY_TOKEN, "").strip() or None
    return Credentials(key_id, secret, token)
