"""`execgate mcp` over real stdio, as a desktop assistant starts it, against a running
`execgate serve` (both subprocesses), with a human approving through the CLI."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from mcp import Client, StdioServerParameters

from bench.deployment import EXECGATE
from server.cli.exits import EXIT_CONFIG
from tests.e2e.conftest import Served, serve_process, write_config
from tests.server.mcp.conftest import error_code
from tests.server.mcp.story import troubleshooting_story

STDIO_CONFIG = '[mcp]\nstdio_client = "desk-assistant"\n'


@contextlib.asynccontextmanager
async def served_with_stdio_client(tmp_path: Path, migrated_url: str) -> AsyncIterator[Served]:
    """`execgate serve` on a database already at the newest schema."""
    config, data_dir = write_config(tmp_path, migrated_url, extra=STDIO_CONFIG)
    async with serve_process(config, data_dir) as served:
        yield served


def stdio_params(config: Path) -> StdioServerParameters:
    return StdioServerParameters(
        command=EXECGATE, args=["mcp"], env={"EXECGATE_CONFIG": str(config)}
    )


async def test_desktop_assistant_runs_the_troubleshooting_story_over_stdio(
    tmp_path: Path, migrated_url: str
) -> None:
    async with served_with_stdio_client(tmp_path, migrated_url) as served:
        async with Client(stdio_params(served.config)) as client:
            await troubleshooting_story(client, served, "mcp:desk-assistant")


async def test_refusal_over_stdio_is_a_tool_error_with_an_audit_id(
    tmp_path: Path, migrated_url: str
) -> None:
    async with served_with_stdio_client(tmp_path, migrated_url) as served:
        async with Client(stdio_params(served.config)) as client:
            result = await client.call_tool(
                "exec",
                {"target": served.instance, "command": "cat /etc/passwd; id", "reason": "x"},
            )
    assert error_code(result) == "command_rejected"
    assert result.structured_content is not None
    assert result.structured_content["audit_id"].startswith("ex_")


async def test_bad_stdio_client_name_exits_with_the_config_code(tmp_path: Path) -> None:
    config = tmp_path / "execgate.toml"
    config.write_text(f'data_dir = "{tmp_path}/data"\n[mcp]\nstdio_client = "not a name"\n')
    result = await Served(config, tmp_path / "data", "", "").cli("mcp")
    assert result.code == EXIT_CONFIG
    assert result.stdout == ""  # stdout belongs to the protocol
    assert "mcp.stdio_client" in result.stderr
