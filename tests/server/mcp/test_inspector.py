"""An independent client: the MCP Inspector CLI (Node) lists ExecGate's tools with their
schemas and annotations and runs `exec` on a demo instance through `execgate mcp`.

The Inspector is pinned: 0.15.0 is the last release that runs on Node 20 and its CLI
takes ``--tool-arg``. CI pre-fetches it (see the README's MCP section); without npx the
test is skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import anyio
import pytest

from bench.deployment import EXECGATE
from tests.e2e.conftest import Served, serve_process, write_config
from tests.server.mcp.conftest import SECRETS

INSPECTOR = "@modelcontextprotocol/inspector@0.15.0"
NPX = shutil.which("npx")
# The first run may download the Inspector; later runs start in a few seconds
# (``--prefer-offline``: from npm's cache, without asking the registry again).
INSPECTOR_TIMEOUT = 300

pytestmark = pytest.mark.skipif(NPX is None, reason="npx (Node.js) is not installed")


async def inspector(served: Served, *args: str) -> dict[str, Any]:
    assert NPX is not None
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EXECGATE_")}
    proc = await asyncio.create_subprocess_exec(
        NPX,
        "-y",
        "--prefer-offline",
        INSPECTOR,
        "--cli",
        "-e",
        f"EXECGATE_CONFIG={served.config}",
        EXECGATE,
        "mcp",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environ,
    )
    with anyio.fail_after(INSPECTOR_TIMEOUT):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    answer: dict[str, Any] = json.loads(out)
    return answer


async def test_inspector_lists_the_tools_runs_exec_and_gets_structured_argument_errors(
    tmp_path: Path, database_url: str
) -> None:
    config, data_dir = write_config(
        tmp_path, database_url, extra='[mcp]\nstdio_client = "inspector"\n'
    )
    async with serve_process(config, data_dir) as served:
        listed = await inspector(served, "--method", "tools/list")
        called = await inspector(
            served,
            "--method",
            "tools/call",
            "--tool-name",
            "exec",
            "--tool-arg",
            f"target={served.instance}",
            "--tool-arg",
            'argv=["env"]',
            "--tool-arg",
            "reason=inspector check",
        )
        rejected = await inspector(
            served,
            "--method",
            "tools/call",
            "--tool-name",
            "approval_status",
            "--tool-arg",
            "approval_id=ap_1",
            "--tool-arg",
            "wait_seconds=100000",
        )
    assert rejected["isError"] is True
    assert rejected["structuredContent"]["error"]["code"] == "invalid_arguments"
    assert list(rejected["structuredContent"]["error"]["fields"]) == ["wait_seconds"]
    tools = {tool["name"]: tool for tool in listed["tools"]}
    assert {"exec", "session_exec", "list_instances", "audit_search"} <= set(tools)
    assert tools["exec"]["annotations"]["destructiveHint"] is True
    assert tools["exec"]["annotations"]["openWorldHint"] is True
    assert tools["audit_search"]["annotations"]["readOnlyHint"] is True
    assert tools["exec"]["inputSchema"]["required"] == ["target", "reason"]
    assert "stdout" in tools["exec"]["outputSchema"]["properties"]

    assert called["isError"] is False
    result = called["structuredContent"]
    assert (result["effect"], result["exit_code"]) == ("allow", 0)
    assert "APP_ENV=demo" in result["stdout"]
    for secret in SECRETS:
        assert secret not in json.dumps(called)
