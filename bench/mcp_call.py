"""mcp_call: the MCP ``exec`` tool over streamable HTTP versus a direct ExecService call.

An in-process ``execgate serve`` (plain-subprocess instances, FC client to its local
host) serves /mcp with a bearer token. The MCP client (the SDK's ``Client`` over
``streamable_http_client``) calls ``exec`` with argv ``["true"]``; the baseline is the
same request made straight to the server's own ``ExecService`` (same principal,
surface and inline limit). The two alternate call by call; the overhead is the
difference of the medians. The client runs in the same process and event loop as the
server, so its own work (JSON-RPC, SSE parsing) is counted too: what ExecGate adds is
at most this.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bench.common import Result, median, percentile, result, rounded, skipped
from bench.rig import Rig, mounted, serving
from policies.types import ExecRequest, Principal, PrincipalKind, Surface
from server.settings import McpSettings, McpToken

NAME = "mcp_call"
TARGET_OVERHEAD_MS = 5.0
CLIENT = "bench-assistant"
ARGV = ("true",)


@asynccontextmanager
async def _client(url: str, token: str) -> AsyncIterator[Any]:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            yield client


async def _direct(rig: Rig, inline: int) -> float:
    request = ExecRequest(
        principal=Principal(PrincipalKind.MCP, CLIENT),
        surface=Surface.MCP,
        target=rig.target(),
        argv=ARGV,
        reason="bench",
    )
    start = time.perf_counter()
    out = await rig.service.exec(request, inline_limit=inline)
    elapsed = (time.perf_counter() - start) * 1000
    if out.exit_code != 0:
        raise RuntimeError(f"direct exec failed: {out.error_code}")
    return elapsed


async def _over_mcp(client: Any, rig: Rig) -> float:
    arguments = {"target": str(rig.target()), "argv": list(ARGV), "reason": "bench"}
    start = time.perf_counter()
    out = await client.call_tool("exec", arguments)
    elapsed = (time.perf_counter() - start) * 1000
    content = out.structured_content or {}
    if out.is_error or content.get("exit_code") != 0:
        raise RuntimeError(f"MCP exec failed: {content}")
    return elapsed


async def _run(quick: bool) -> Result:
    from server.mcp.auth import token_sha256

    calls = 20 if quick else 300
    token = secrets.token_urlsafe(24)
    mcp = McpSettings(tokens=(McpToken(client=CLIENT, sha256=token_sha256(token)),))
    with tempfile.TemporaryDirectory(prefix="execgate-bench-") as root:
        async with serving(Path(root), sandbox="subprocess", mcp=mcp) as rig:
            url = rig.running.asgi.url + "/mcp"
            if not await mounted(url):
                return skipped(NAME, "this build serves no MCP at /mcp (server/mcp/http.py)")
            inline = rig.settings.output.mcp_inline_bytes
            async with _client(url, token) as client:
                for _ in range(max(5, calls // 10)):
                    await _over_mcp(client, rig)
                    await _direct(rig, inline)
                direct: list[float] = []
                over: list[float] = []
                for i in range(calls):
                    if i % 2:
                        direct.append(await _direct(rig, inline))
                        over.append(await _over_mcp(client, rig))
                    else:
                        over.append(await _over_mcp(client, rig))
                        direct.append(await _direct(rig, inline))
    base, mid = median(direct), median(over)
    overhead = mid - base
    return result(
        NAME,
        overhead_ms=rounded(overhead),
        baseline_ms=rounded(base),
        median_ms=rounded(mid),
        p90_ms=rounded(percentile(over, 90)),
        baseline_p90_ms=rounded(percentile(direct, 90)),
        ratio=round(mid / base, 3),
        calls_per_side=calls,
        command=" ".join(ARGV),
        baseline="the same request straight to the server's ExecService",
        transport="streamable HTTP, bearer token, client in the same process",
        target=f"median overhead < {TARGET_OVERHEAD_MS:g} ms",
        met=overhead < TARGET_OVERHEAD_MS,
    )


def run(quick: bool) -> Result:
    return asyncio.run(_run(quick))
