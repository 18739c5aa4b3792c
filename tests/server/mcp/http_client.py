"""Reaching ExecGate's MCP endpoint over streamable HTTP as a real MCP client does:
bearer tokens in the config, and the SDK's client with one of them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from server.mcp.auth import token_sha256


def token_config(client: str, token: str, *, read_only: bool = False) -> str:
    """The `[[mcp.tokens]]` entry giving ``token`` to the MCP client ``client``."""
    entry = f'[[mcp.tokens]]\nclient = "{client}"\nsha256 = "{token_sha256(token)}"\n'
    return entry + ("read_only = true\n" if read_only else "")


@contextlib.asynccontextmanager
async def mcp_client(
    url: str, token: str | None, *, headers: dict[str, str] | None = None
) -> AsyncIterator[Client]:
    """An initialized MCP client session at ``url`` (…/mcp), with ``token`` as bearer
    and ``headers`` on every request."""
    headers = dict(headers or {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            yield client
