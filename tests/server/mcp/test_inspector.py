"""An independent client: the MCP Inspector CLI (Node) lists ExecGate's tools with their
schemas and annotations and runs `exec` on a demo instance through `execgate mcp`.

The Inspector is pinned: 0.15.0 is the last release that runs on Node 20 and its CLI
takes ``--tool-arg``. It is installed once per machine into a cache directory and its
``mcp-inspector`` command run with node (``npx -y`` would resolve the package again
for every call, a second each); without node and npm the test fails and says so.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest

from bench.deployment import EXECGATE
from tests.e2e.conftest import Served, serve_process, write_config
from tests.server.mcp.conftest import SECRETS

PACKAGE = "@modelcontextprotocol/inspector"
VERSION = "0.15.0"
NODE = shutil.which("node")
NPM = shutil.which("npm")
CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "execgate-tests"
    / f"inspector-{VERSION}"
)
# The first run may download the Inspector; later runs start in a few seconds.
INSPECTOR_TIMEOUT = 300


@pytest.fixture(scope="session")
def inspector_cli() -> Path:
    """The Inspector's ``mcp-inspector`` script, from its package installed in CACHE
    (installed there by the first session that needs it; the lock keeps two sessions
    from installing at once)."""
    if NODE is None or NPM is None:
        pytest.fail("the Inspector needs node and npm: run `make test-deps`", pytrace=False)
    CACHE.mkdir(parents=True, exist_ok=True)
    package = CACHE / "node_modules" / PACKAGE / "package.json"
    with (CACHE / "install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not package.exists() or json.loads(package.read_text())["version"] != VERSION:
            subprocess.run(
                [NPM, "install", "--prefix", str(CACHE), "--no-save", "--no-audit",
                 "--no-fund", "--prefer-offline", f"{PACKAGE}@{VERSION}"],
                check=True, stdin=subprocess.DEVNULL, timeout=INSPECTOR_TIMEOUT,
            )  # fmt: skip
    script: str = json.loads(package.read_text())["bin"]["mcp-inspector"]
    return package.parent / script


async def inspector(cli: Path, served: Served, *args: str) -> dict[str, Any]:
    assert NODE is not None
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EXECGATE_")}
    proc = await asyncio.create_subprocess_exec(
        NODE,
        str(cli),
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


def tool_call(tool: str, *arguments: str) -> list[str]:
    """The Inspector's arguments calling ``tool`` with ``name=value`` arguments."""
    call = ["--method", "tools/call", "--tool-name", tool]
    for argument in arguments:
        call += ["--tool-arg", argument]
    return call


async def test_inspector_lists_the_tools_runs_exec_and_gets_structured_argument_errors(
    tmp_path: Path, migrated_url: str, inspector_cli: Path
) -> None:
    config, data_dir = write_config(
        tmp_path, migrated_url, extra='[mcp]\nstdio_client = "inspector"\n'
    )
    async with serve_process(config, data_dir) as served:
        # Three Inspector runs, each with its own `execgate mcp`, at once.
        listed, called, rejected = await asyncio.gather(
            inspector(inspector_cli, served, "--method", "tools/list"),
            inspector(
                inspector_cli,
                served,
                *tool_call(
                    "exec", f"target={served.instance}", 'argv=["env"]', "reason=inspector check"
                ),
            ),
            inspector(
                inspector_cli,
                served,
                *tool_call("approval_status", "approval_id=ap_1", "wait_seconds=100000"),
            ),
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
