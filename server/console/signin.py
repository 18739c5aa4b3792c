"""One-time sign-in links for the review console.

A link carries a token signed with the console key in the data directory (mode 0600,
shared by `execgate serve` and `execgate console link`; replicas share it too), naming
the principal, a random nonce and its expiry. The nonce is used up in the audit
database on first use, so a link signs in once whichever replica it reaches, also after
a restart: a link that was used, or that expired, signs nobody in. Whoever can read the
data directory can already act as any local principal through the CLI, so holding the
key grants nothing new.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import quote

from itsdangerous import BadSignature, URLSafeTimedSerializer

from policies.errors import ConfigError, ExecGateError
from policies.service.review import ReviewService
from server.localstate import _create_private

CONSOLE_KEY_FILE = "console-signing.key"
_SALT = "execgate-console-signin"


class SignInRefused(ExecGateError):
    code = "signin_refused"
    default_message = "this sign-in link is not valid (used, expired or altered); ask for a new one"


def console_key(data_dir: Path) -> bytes:
    """The key that signs sign-in links and console sessions, made on first use.

    Raises: ConfigError when it cannot be read.
    """
    path = data_dir / CONSOLE_KEY_FILE
    _create_private(path, secrets.token_hex(32).encode())
    try:
        return path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the console signing key in {path}") from exc


def make_link(key: bytes, base_url: str, principal: str) -> str:
    """A one-time sign-in URL for ``principal`` under ``base_url`` (the server's)."""
    token = URLSafeTimedSerializer(key, salt=_SALT).dumps(
        {"p": principal, "n": secrets.token_urlsafe(16)}
    )
    return f"{base_url.rstrip('/')}/console/signin?token={quote(token)}"


class LinkRedeemer:
    """Turns a link's token into its principal, once per nonce (kept in the database)."""

    def __init__(self, key: bytes, ttl_seconds: float, review: ReviewService) -> None:
        self._serializer = URLSafeTimedSerializer(key, salt=_SALT)
        self._ttl = ttl_seconds
        self._review = review

    async def redeem(self, token: str) -> str:
        """The principal the token names. Raises: SignInRefused, AuditUnavailable."""
        try:
            data = self._serializer.loads(token, max_age=int(self._ttl))
        except BadSignature:
            raise SignInRefused() from None
        if not isinstance(data, dict):
            raise SignInRefused()
        principal, nonce = data.get("p"), data.get("n")
        if not isinstance(principal, str) or not isinstance(nonce, str):
            raise SignInRefused()
        # Kept a little past the token's own expiry, so it never outlives its nonce.
        if not await self._review.use_nonce(f"link:{nonce}", self._ttl + 60):
            raise SignInRefused()
        return principal
