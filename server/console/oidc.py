"""OpenID Connect sign-in for the console (Authlib), e.g. "Sign in with Slack".

The provider's ID token (signature, issuer, audience, nonce checked by Authlib) names
the user; the configured claim becomes the principal the policy already uses, so a
Slack user id ``U…`` signs in as ``slack:U…``. The policy then decides what they see.
The login's state (its nonce and PKCE verifier) waits in the audit database, not in one
process: the callback may reach any replica, and is accepted once.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from authlib.integrations.starlette_client import OAuth, OAuthError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from policies.errors import ConfigError, ExecGateError
from policies.service.review import ReviewService
from server.console.pages import error_page, start_session
from server.console.signin import SignInRefused
from server.settings import OidcSettings, Settings

logger = logging.getLogger(__name__)


def principal_from_claims(cfg: OidcSettings, claims: dict[str, Any]) -> str:
    """The principal an ID token's claims name. Raises: SignInRefused."""
    value = claims.get(cfg.principal_claim) or claims.get("sub")
    if not isinstance(value, str) or not value or ":" in value:
        raise SignInRefused("the identity provider did not name a user ExecGate knows")
    return f"{cfg.principal_kind}:{value}"


class StateCache:
    """Authlib's cache of login state, in the audit database: ``get`` takes the value
    (nobody gets it again), so a callback is accepted once on any replica."""

    def __init__(self, review: ReviewService) -> None:
        self._review = review

    async def get(self, key: str) -> str | None:
        return await self._review.take_state(f"oidc:{key}")

    async def set(self, key: str, value: str, expires: int | None = None) -> None:
        await self._review.hold_state(f"oidc:{key}", value, float(expires or STATE_TTL))

    async def delete(self, key: str) -> None:
        await self._review.take_state(f"oidc:{key}")


STATE_TTL = 600.0


def oidc_routes(settings: Settings, review: ReviewService) -> list[BaseRoute]:
    """/oidc/login and /oidc/callback for the configured provider.

    Raises: ConfigError when the client id or secret is missing.
    """
    cfg = settings.console.oidc
    secret = cfg.client_secret.load(os.environ)
    if not cfg.client_id or secret is None:
        raise ConfigError("console.oidc needs client_id and a client secret")
    oauth = OAuth(cache=StateCache(review))
    oauth.register(
        name="execgate",
        client_id=cfg.client_id,
        client_secret=secret.get_secret_value(),
        server_metadata_url=cfg.issuer.rstrip("/") + "/.well-known/openid-configuration",
        # PKCE as well as the client secret: a stolen code alone is worth nothing.
        client_kwargs={"scope": cfg.scope, "code_challenge_method": "S256"},
    )
    client: Any = oauth.create_client("execgate")

    async def login(request: Request) -> Response:
        redirect_uri = str(request.url_for("oidc_callback"))
        try:
            response: Response = await client.authorize_redirect(request, redirect_uri)
        except ExecGateError as exc:
            return error_page(request, exc)
        return response

    async def callback(request: Request) -> Response:
        try:
            token = await client.authorize_access_token(request)
        except ExecGateError as exc:
            return error_page(request, exc)
        except OAuthError:
            logger.warning("console OIDC sign-in failed", exc_info=True)
            return error_page(request, SignInRefused("the identity provider refused the sign-in"))
        claims = dict(token.get("userinfo") or {})
        try:
            principal = principal_from_claims(cfg, claims)
        except SignInRefused as exc:
            return error_page(request, exc)
        start_session(request, principal)
        return RedirectResponse("/console/", status_code=303)

    return [
        Route("/oidc/login", login),
        Route("/oidc/callback", callback, name="oidc_callback"),
    ]
