"""mcp_call: the MCP ``exec`` tool over streamable HTTP versus a direct ExecService call.

An in-process ``execgate serve`` (plain-subprocess instances, FC client to its local
host) serves /mcp with a bearer token. An MCP client (the SDK's ``Client`` over
``streamable_http_client``) calls ``exec`` with argv ``["true"]``; the baseline is the
same request made straight to the server's own ``ExecService`` (same principal,
surface and inline limit). The two alternate call by call; the overhead is the
difference of the medians.

Headline: the client in a process of its own, as an assistant would be (it times its
own calls). Also measured: the client in the server's own process and event loop, where
the client's work (JSON-RPC, SSE parsing, output-schema validation) is counted as well.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bench.common import Result, median, percentile, quiet_logging, result, rounded, skipped
from bench.rig import Rig, mounted, serving
from policies.types import ExecRequest, Principal, PrincipalKind, Surface
from server.settings import McpSettings, McpToken

NAME = "mcp_call"
TARGET_OVERHEAD_MS = 5.0
CLIENT = "bench-assistant"
ARGV = ("true",)

Call = Callable[[], Awaitable[float]]


@asynccontextmanager
async def _client(url: str, token: str) -> AsyncIterator[Any]:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            yield client


async def _over_mcp(client: Any, target: str) -> float:
    arguments = {"target": target, "argv": list(ARGV), "reason": "bench"}
    start = time.perf_counter()
    out = await client.call_tool("exec", arguments)
    elapsed = (time.perf_counter() - start) * 1000
    content = out.structured_content or {}
    if out.is_error or content.get("exit_code") != 0:
        raise RuntimeError(f"MCP exec failed: {content}")
    return elapsed


def _direct(rig: Rig) -> Call:
    request = ExecRequest(
        principal=Principal(PrincipalKind.MCP, CLIENT),
        surface=Surface.MCP,
        target=rig.target(),
        argv=ARGV,
        reason="bench",
    )
    inline = rig.settings.output.mcp_inline_bytes

    async def call() -> float:
        start = time.perf_counter()
        out = await rig.service.exec(request, inline_limit=inline)
        elapsed = (time.perf_counter() - start) * 1000
        if out.exit_code != 0:
            raise RuntimeError(f"direct exec failed: {out.error_code}")
        return elapsed

    return call


@asynccontextmanager
async def _client_process(url: str, token: str, target: str) -> AsyncIterator[Call]:
    """An MCP client in its own process: each line sent makes one call; it answers
    with the milliseconds the call took, as it timed it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        __name__,
        "--client",
        url,
        target,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout
    stdin.write(token.encode() + b"\n")

    async def call() -> float:
        stdin.write(b"call\n")
        line = await stdout.readline()
        if not line:
            raise RuntimeError("the MCP client process ended")
        return float(line)

    try:
        yield call
    finally:
        stdin.close()
        await proc.wait()


async def _alternate(over: Call, direct: Call, calls: int) -> tuple[list[float], list[float]]:
    for _ in range(max(5, calls // 10)):
        await over()
        await direct()
    overs: list[float] = []
    directs: list[float] = []
    for i in range(calls):
        if i % 2:
            directs.append(await direct())
            overs.append(await over())
        else:
            overs.append(await over())
            directs.append(await direct())
    return overs, directs


def _figures(overs: list[float], directs: list[float]) -> dict[str, float]:
    base, mid = median(directs), median(overs)
    return {
        "overhead_ms": rounded(mid - base),
        "baseline_ms": rounded(base),
        "median_ms": rounded(mid),
        "p90_ms": rounded(percentile(overs, 90)),
        "baseline_p90_ms": rounded(percentile(directs, 90)),
    }


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
            target = str(rig.target())
            async with _client_process(url, token, target) as remote:
                apart = _figures(*await _alternate(remote, _direct(rig), calls))
            async with _client(url, token) as client:

                async def local() -> float:
                    return await _over_mcp(client, target)

                together = _figures(*await _alternate(local, _direct(rig), calls))
    overhead = apart["overhead_ms"]
    return result(
        NAME,
        **apart,
        in_process_client=together,
        calls_per_side=calls,
        command=" ".join(ARGV),
        baseline="the same request straight to the server's ExecService",
        transport="streamable HTTP, bearer token; client in its own process",
        target=f"median overhead < {TARGET_OVERHEAD_MS:g} ms",
        met=overhead < TARGET_OVERHEAD_MS,
    )


def run(quick: bool) -> Result:
    return asyncio.run(_run(quick))


async def _serve_calls(url: str, target: str) -> None:
    token = (await asyncio.to_thread(sys.stdin.readline)).strip()
    async with _client(url, token) as client:
        while await asyncio.to_thread(sys.stdin.readline):
            elapsed = await _over_mcp(client, target)
            sys.stdout.write(f"{elapsed}\n")
            sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--client", nargs=2, metavar=("URL", "TARGET"), required=True)
    args = parser.parse_args()
    quiet_logging()
    asyncio.run(_serve_calls(*args.client))


if __name__ == "__main__":
    main()
