"""Streamable HTTP mount of the MCP server at /mcp.

Requests pass the bearer-token check first (``server.mcp.auth``; a read-only token is
served by a second server that has only the read-only tools), then the SDK's
transport, whose DNS-rebinding protection accepts only the Host (and Origin) names this
server is reached by: the listen address, ``server.public_url`` and
``mcp.allowed_hosts``.

With ``mcp.stateless_http`` (the default) every request stands alone: no MCP session
lives in one process's memory, so requests may land on any replica behind a
round-robin balancer, and the progress of a tool call travels on that call's own
response stream. ExecGate's conversational sessions live in the audit database.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import Route

from policies.service.core import ExecService
from server.mcp.auth import BearerAuth, principal_of_request
from server.mcp.registry import build_server
from server.mounts import Mounted
from server.settings import Settings

MCP_PATH = "/mcp"
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return not host


def _host_name(host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    return f"[{host}]" if address.version == 6 else host


def allowed_hosts(settings: Settings) -> list[str]:
    """Host header values /mcp accepts: each name bare (default port) and ``name:*``."""
    names: list[str] = list(_LOOPBACK_NAMES)
    if not _is_wildcard(settings.server.host):
        names.append(_host_name(settings.server.host))
    public = urlsplit(settings.server.public_url).hostname if settings.server.public_url else None
    if public:
        names.append(_host_name(public))
    hosts = [form for name in dict.fromkeys(names) for form in (name, f"{name}:*")]
    return list(dict.fromkeys([*hosts, *settings.mcp.allowed_hosts]))


def transport_security(settings: Settings) -> TransportSecuritySettings:
    hosts = allowed_hosts(settings)
    origins = [f"{scheme}://{host}" for host in hosts for scheme in ("http", "https")]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


def mcp_mount(settings: Settings, service: ExecService) -> Mounted | None:
    """Routes and lifespan for /mcp.

    Always mounted: without configured tokens every request gets a 401 that says what
    is missing.

    Raises: ConfigError for a token whose client name ExecGate cannot use.
    """
    servers = [
        build_server(service, settings, principal_of_request, read_only=read_only)
        for read_only in (False, True)
    ]
    full, read_only = (
        server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            stateless_http=settings.mcp.stateless_http,
            transport_security=transport_security(settings),
            host=settings.server.host,
        )
        for server in servers
    )

    @contextlib.asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        # The SDK apps route on the full path themselves; their own lifespans are not
        # run by a Route, so their session managers run in the host app's lifespan.
        async with contextlib.AsyncExitStack() as stack:
            for server in servers:
                await stack.enter_async_context(server.session_manager.run())
            yield

    guarded = BearerAuth(full, settings.mcp.tokens, read_only_app=read_only)
    return Mounted(routes=[Route(MCP_PATH, guarded)], lifespan=lifespan)
