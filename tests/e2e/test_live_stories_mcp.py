"""The three troubleshooting stories through a real MCP client: the SDK's client over
streamable HTTP with a bearer token, against a real `execgate serve` (bubblewrap) on
loopback. The assistant asks; a second person approves with the CLI; the assistant
reads the result and collects the file. Each story reads only its own results, so the
module shares one server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from mcp import Client

from tests.e2e import stories
from tests.e2e.conftest import Served, module_server
from tests.server.mcp.conftest import SECRETS, data
from tests.server.mcp.http_client import mcp_client, token_config
from tests.support.databases import MigratedDatabase

pytestmark = [pytest.mark.bwrap, pytest.mark.usefixtures("story_tools")]
TOKEN = "test-token-for-the-troubleshooting-assistant"


@pytest_asyncio.fixture(scope="module")
async def mcp_served(
    tmp_path_factory: pytest.TempPathFactory, migrated_database: MigratedDatabase
) -> AsyncIterator[Served]:
    """`execgate serve` (default policy) that takes TOKEN at /mcp, shared by the module."""
    extra = token_config("troubleshooting-assistant", TOKEN)
    async with module_server(
        tmp_path_factory, migrated_database, "served-mcp", extra=extra
    ) as served:
        yield served


async def run(client: Client, served: Served, *argv: str) -> dict[str, Any]:
    result = data(
        await client.call_tool(
            "exec", {"target": served.instance, "argv": list(argv), "reason": "troubleshooting"}
        )
    )
    assert (result["effect"], result["exit_code"]) == ("allow", 0), result
    return result


async def approved(client: Client, served: Served, tool: str, **args: Any) -> dict[str, Any]:
    """Ask through MCP; a second person approves with the CLI; the approval as the
    assistant then reads it through MCP."""
    held = data(await client.call_tool(tool, {"target": served.instance, **args}))
    assert (held["effect"], held["status"]) == ("approve", "pending_approval"), held
    await stories.approve(served, held["approval_id"])
    done = data(await client.call_tool("approval_status", {"approval_id": held["approval_id"]}))
    assert (done["state"], done["approvals"]) == ("executed", [stories.SECOND_PERSON]), done
    return done


async def approved_exec(client: Client, served: Served, *argv: str) -> dict[str, Any]:
    """A held command asked for through MCP, approved: its result."""
    done = await approved(client, served, "exec", argv=list(argv), reason="troubleshooting")
    result = done["result"]
    assert isinstance(result, dict), done
    return result


async def collected(client: Client, served: Served, path: str) -> bytes:
    """The file at ``path`` through the collect tool (assistants collect only after a
    human approved) and the link it gives."""
    done = await approved(client, served, "collect_artifact", path=path, reason="troubleshooting")
    link = done["artifact"]["link"]
    assert link, done
    return await stories.download(link)


async def test_s1_env_through_mcp_is_scrubbed(mcp_served: Served) -> None:
    async with mcp_client(mcp_served.url + "/mcp", TOKEN) as client:
        env = await client.call_tool(
            "exec", {"target": mcp_served.instance, "argv": ["env"], "reason": "check config"}
        )
    stories.assert_env_scrubbed(data(env)["stdout"])
    everything = json.dumps(env.model_dump(mode="json"))  # text and structured content
    for secret in SECRETS:
        assert secret not in everything


async def test_s2_a_capture_asked_through_mcp_is_approved_collected_and_valid(
    mcp_served: Served, tmp_path: Path
) -> None:
    stories.require_full_mapping()
    async with mcp_client(mcp_served.url + "/mcp", TOKEN) as client:
        async with stories.traffic(mcp_served, "/checkout?delay_ms=200", rate=10):
            result = await approved_exec(client, mcp_served, *stories.capture_argv("mcp-slow.cap"))
        assert result["exit_code"] == 0, result  # tcpdump stopped after its packets
        capture = await collected(client, mcp_served, "/tmp/mcp-slow.cap")
    stories.assert_capture_of_the_slow_dependency(capture, tmp_path)


async def test_s3_a_profile_asked_through_mcp_is_approved_collected_and_names_the_hot_function(
    mcp_served: Served,
) -> None:
    async with mcp_client(mcp_served.url + "/mcp", TOKEN) as client:
        pid = stories.function_pid((await run(client, mcp_served, "ps", "aux"))["stdout"])
        async with stories.traffic(mcp_served, "/report?rounds=2000000", rate=3):
            result = await approved_exec(
                client, mcp_served, *stories.profile_argv(pid, "mcp-profile.json")
            )
        assert result["exit_code"] == 0, result
        profile = await collected(client, mcp_served, "/tmp/mcp-profile.json")
    stories.assert_profile_names_the_hot_function(profile)
