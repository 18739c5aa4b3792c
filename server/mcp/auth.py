"""Who is calling the MCP tools.

Over stdio the caller is the local user who started `execgate mcp`: the principal is
``mcp:<mcp.stdio_client>`` (default: the OS user name). Over HTTP every request carries
``Authorization: Bearer <token>``; the token's SHA-256 is looked up among the configured
``[[mcp.tokens]]`` and the request runs as ``mcp:<client>``. A missing or unknown token
is answered with 401 before the MCP app sees the request. Tokens are never stored or
logged, only their digests are configured.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from policies.errors import ConfigError, UnknownPrincipal
from policies.types import Principal, PrincipalKind
from server.settings import McpToken, Settings

logger = logging.getLogger(__name__)

# Where the bearer middleware leaves the verified principal in the ASGI scope; the MCP
# transport hands the request (and so the scope) to every tool call it carries.
SCOPE_KEY = "execgate.principal"
REALM = "execgate-mcp"
_CLIENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,127}$")

Identify = Callable[[Any], Principal]


def token_sha256(token: str) -> str:
    """The hex digest configured for a bearer token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _client_principal(client: str, where: str) -> Principal:
    if not _CLIENT_NAME.match(client):
        raise ConfigError(f"{where}: {client!r} is not a valid MCP client name")
    return Principal(PrincipalKind.MCP, client)


def stdio_principal(settings: Settings) -> Principal:
    """``mcp:<stdio_client>``, or ``mcp:<OS user>`` when the config names none.

    Raises: ConfigError for a client name ExecGate cannot use.
    """
    return _client_principal(settings.mcp.stdio_client or getpass.getuser(), "mcp.stdio_client")


def match_entry(token: str, tokens: Sequence[McpToken]) -> McpToken | None:
    """The configured token whose digest matches ``token``, or None.

    Every configured digest is compared in constant time, so the answer's timing does
    not say which digest came close.
    """
    digest = token_sha256(token).encode()
    found: McpToken | None = None
    for entry in tokens:
        if hmac.compare_digest(digest, entry.sha256.encode()):
            found = entry
    return found


def match_token(token: str, tokens: Sequence[McpToken]) -> str | None:
    """The client whose configured digest matches ``token``, or None."""
    entry = match_entry(token, tokens)
    return entry.client if entry is not None else None


def principal_of_request(request: Any) -> Principal:
    """The principal the bearer middleware verified for this HTTP request.

    Raises: UnknownPrincipal when the request did not pass through it (fail closed).
    """
    scope = getattr(request, "scope", None)
    principal = scope.get(SCOPE_KEY) if isinstance(scope, dict) else None
    if not isinstance(principal, Principal):
        raise UnknownPrincipal()
    return principal


class BearerAuth:
    """ASGI middleware: a valid bearer token, or 401 with a JSON body.

    A token configured ``read_only`` is served by ``read_only_app`` (a server that only
    has the tools that change nothing); without one, such a token is refused.
    """

    def __init__(
        self, app: ASGIApp, tokens: Sequence[McpToken], read_only_app: ASGIApp | None = None
    ) -> None:
        self._app = app
        self._read_only_app = read_only_app
        self._tokens = tuple(tokens)
        for entry in self._tokens:
            _client_principal(entry.client, "mcp.tokens")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        header = Headers(scope=scope).get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            await _unauthorized(
                send,
                "missing_token",
                "this endpoint needs `Authorization: Bearer <token>`; ask an ExecGate admin "
                "for an MCP token",
            )
            return
        entry = match_entry(token, self._tokens)
        if entry is None:
            logger.warning("MCP request with an unknown bearer token refused")
            await _unauthorized(
                send,
                "invalid_token",
                "the bearer token is not one ExecGate knows; check the token or ask an "
                "ExecGate admin for a new one",
            )
            return
        app = self._app
        if entry.read_only:
            if self._read_only_app is None:  # fail closed: never the full server
                await _unauthorized(send, "invalid_token", "this token cannot be served here")
                return
            app = self._read_only_app
        scope[SCOPE_KEY] = Principal(PrincipalKind.MCP, entry.client)
        await app(scope, receive, send)


async def _unauthorized(send: Send, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    challenge = f'Bearer realm="{REALM}"'
    if code == "invalid_token":
        challenge += ', error="invalid_token"'
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", challenge.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
