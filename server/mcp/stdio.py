"""`execgate mcp`: the MCP server over stdio for a desktop assistant."""

from __future__ import annotations

import sys

from server.settings import Settings


def run_stdio(settings: Settings) -> int:
    print("execgate mcp: not available yet", file=sys.stderr)
    return 69
