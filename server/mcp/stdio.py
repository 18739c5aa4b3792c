"""`execgate mcp`: the MCP server over stdio for a desktop assistant.

The assistant starts this process and speaks MCP on its stdin/stdout; logs go to
stderr. Tools run as ``mcp:<mcp.stdio_client or OS user>`` against the service the
configuration describes (by default the local host of a running `execgate serve`).
"""

from __future__ import annotations

import anyio

from policies.types import Principal
from server.mcp.auth import stdio_principal
from server.mcp.registry import build_server
from server.settings import Settings
from server.wiring import open_service


async def serve_stdio(settings: Settings) -> None:
    """Serve MCP on stdin/stdout until the client closes them.

    Raises: ConfigError, PolicyLoadError, AuditUnavailable (before serving).
    """
    principal = stdio_principal(settings)

    def identify(_request: object) -> Principal:
        return principal

    async with open_service(settings) as service:
        await build_server(service, settings, identify).run_stdio_async()


def run_stdio(settings: Settings) -> int:
    """Run :func:`serve_stdio`; the CLI maps ExecGateError to its exit codes.

    Raises: ConfigError, PolicyLoadError, AuditUnavailable.
    """
    anyio.run(serve_stdio, settings)
    return 0
