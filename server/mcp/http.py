"""Streamable HTTP mount of the MCP server at /mcp."""

from __future__ import annotations

from policies.service import ExecService
from server.mounts import Mounted
from server.settings import Settings


def mcp_mount(settings: Settings, service: ExecService) -> Mounted | None:
    """Routes and lifespan for /mcp; None when MCP over HTTP is not set up."""
    return None
