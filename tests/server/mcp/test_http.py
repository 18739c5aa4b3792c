"""MCP over streamable HTTP at /mcp of the real server app under uvicorn: bearer tokens
mapped to principals, 401 before MCP for anyone else, DNS-rebinding protection, and the
whole troubleshooting story with a human approving through the CLI."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import ResourceLink, TextResourceContents
from opentelemetry.sdk.trace import TracerProvider

from server.serve import running_server
from server.settings import load_settings
from tests.e2e.conftest import Served, write_config
from tests.server.mcp.conftest import data, error_code
from tests.server.mcp.http_client import mcp_client, token_config
from tests.server.mcp.story import troubleshooting_story

TOKEN = "test-token-for-the-http-assistant"
OTHER_TOKEN = "test-token-for-another-assistant"
READ_ONLY_TOKEN = "test-token-for-a-read-only-assistant"
READ_ONLY_TOOLS = {"list_instances", "explain", "audit_search", "approval_status"}
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}


@dataclass
class HttpServed:
    url: str  # .../mcp
    served: Served  # the same config, for the CLI


@contextlib.asynccontextmanager
async def http_server(
    tmp_path: Path,
    database_url: str,
    *,
    extra: str = "",
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[HttpServed]:
    """The server with the tokens above (``extra``: more of its config file)."""
    extra += (
        token_config("http-assistant", TOKEN)
        + token_config("other-assistant", OTHER_TOKEN)
        + token_config("http-assistant", READ_ONLY_TOKEN, read_only=True)
    )
    config, data_dir = write_config(tmp_path, database_url, extra=extra)
    settings = load_settings(config, environ={})
    async with running_server(settings, port=0, tracer_provider=tracer_provider) as running:
        instance_id = running.manager.list("demo-api")[0].instance_id
        served = Served(config, data_dir, f"demo-api/{instance_id}", instance_id)
        yield HttpServed(running.url + "/mcp", served)


async def test_token_holder_runs_the_troubleshooting_story_as_its_client(
    tmp_path: Path, migrated_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with http_server(tmp_path, migrated_url) as server:
        async with mcp_client(server.url, TOKEN) as client:
            await troubleshooting_story(client, server.served, "mcp:http-assistant")
        async with mcp_client(server.url, OTHER_TOKEN) as other:
            result = await other.call_tool("audit_search", {})
    assert result.structured_content is not None
    assert result.structured_content["records"] == []
    assert TOKEN not in caplog.text


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "missing_token"),
        ("Basic dXNlcjpwYXNz", "missing_token"),
        ("Bearer", "missing_token"),
        ("Bearer not-a-configured-token", "invalid_token"),
    ],
    ids=["no-header", "basic-scheme", "empty-token", "unknown-token"],
)
async def test_request_without_a_valid_token_gets_401_json_with_a_bearer_challenge(
    tmp_path: Path,
    migrated_url: str,
    authorization: str | None,
    code: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    headers = {"Authorization": authorization} if authorization else {}
    async with http_server(tmp_path, migrated_url) as server, httpx2.AsyncClient() as http:
        response = await http.post(server.url, json=PING, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer realm="execgate-mcp"')
    assert response.json()["error"]["code"] == code
    assert "not-a-configured-token" not in caplog.text


async def test_mcp_client_without_a_valid_token_cannot_connect(
    tmp_path: Path, migrated_url: str
) -> None:
    async with http_server(tmp_path, migrated_url) as server:
        with pytest.raises(ExceptionGroup) as raised:
            async with mcp_client(server.url, "wrong-token"):
                pass
    assert raised.group_contains(MCPError)


async def test_unknown_host_header_is_refused_by_dns_rebinding_protection(
    tmp_path: Path, migrated_url: str
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Host": "attacker.example"}
    async with http_server(tmp_path, migrated_url) as server, httpx2.AsyncClient() as http:
        response = await http.post(server.url, json=PING, headers=headers)
    assert response.status_code == 421


async def test_read_only_token_is_offered_and_can_call_only_the_read_only_tools(
    tmp_path: Path, migrated_url: str
) -> None:
    async with http_server(tmp_path, migrated_url) as server:
        async with mcp_client(server.url, TOKEN) as full:
            everything = {tool.name for tool in (await full.list_tools()).tools}
            ran = await full.call_tool(
                "exec", {"target": server.served.instance, "argv": ["uptime"], "reason": "x"}
            )
        async with mcp_client(server.url, READ_ONLY_TOKEN) as reader:
            offered = {tool.name for tool in (await reader.list_tools()).tools}
            refused = await reader.call_tool(
                "exec", {"target": server.served.instance, "argv": ["uptime"], "reason": "x"}
            )
            records = await reader.call_tool("audit_search", {})
    assert {"exec", "session_exec", "collect_artifact"} <= everything
    assert not ran.is_error
    assert offered == READ_ONLY_TOOLS
    assert error_code(refused) == "unknown_tool"
    # The same client reads its records: one exec, the one the full token ran.
    assert [r["argv"] for r in data(records)["records"]] == [["uptime"]]


async def test_bad_arguments_over_http_are_a_structured_error(
    tmp_path: Path, migrated_url: str
) -> None:
    async with http_server(tmp_path, migrated_url) as server:
        async with mcp_client(server.url, TOKEN) as client:
            result = await client.call_tool("exec", {"target": server.served.instance})
    assert error_code(result) == "invalid_arguments"
    assert result.structured_content is not None
    assert set(result.structured_content["error"]["fields"]) == {"reason"}


async def test_full_output_is_read_as_a_resource_over_http(
    tmp_path: Path, migrated_url: str
) -> None:
    lines = "".join(f"line {i:05d}\n" for i in range(5000))  # past the 16 KB inline view
    async with http_server(tmp_path, migrated_url) as server:
        served = server.served
        tmp = served.data_dir / "instances" / "demo-api" / served.instance_id / "tmp"
        tmp.joinpath("big.log").write_text(lines)
        async with mcp_client(server.url, TOKEN) as client:
            result = await client.call_tool(
                "exec",
                {
                    "target": served.instance,
                    "argv": ["head", "-n", "9999", "/tmp/big.log"],
                    "reason": "x",
                },
            )
            (link,) = [block for block in result.content if isinstance(block, ResourceLink)]
            read = await client.read_resource(link.uri)
        async with mcp_client(server.url, OTHER_TOKEN) as other:
            with pytest.raises(MCPError):
                await other.read_resource(link.uri)
    assert data(result)["truncated"] is True
    assert data(result)["resources"]["stdout"] == str(link.uri)
    (content,) = read.contents
    assert isinstance(content, TextResourceContents)
    assert content.text == lines
