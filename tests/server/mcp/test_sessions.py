"""Conversational sessions through the MCP tools: state kept between commands, every
command audited under the session, and the ways a session ends."""

from __future__ import annotations

from mcp import Client

from server.mcp.registry import build_server
from tests.server.mcp.conftest import OTHER, InProcess, data, error_code


async def test_session_keeps_cwd_and_env_between_commands_and_audits_each(
    inproc: InProcess,
) -> None:
    inproc.state_tmp().joinpath("app").mkdir()
    async with Client(inproc.server) as client:
        started = data(
            await client.call_tool(
                "session_start", {"target": inproc.instance, "reason": "debug app"}
            )
        )
        sid = started["session_id"]
        assert (started["ended"], started["cwd"]) == (False, "")

        async def run(command: str) -> dict[str, object]:
            result = await client.call_tool("session_exec", {"session_id": sid, "command": command})
            assert not result.is_error, result.content
            return data(result)

        cd = await run("cd /tmp/app")
        assert (cd["rule"], cd["exit_code"], cd["cwd"]) == ("session-builtin", 0, "/tmp/app")
        assert (await run("pwd"))["stdout"] == "/tmp/app\n"
        await run("export TRACE_ID=abc123")
        printed = await run("env")
        assert "TRACE_ID=abc123\n" in str(printed["stdout"])
        assert printed["session_id"] == sid

        audit = data(await client.call_tool("audit_search", {"session_id": sid}))["records"]
    assert [r["command_text"] for r in reversed(audit)] == [
        "cd /tmp/app",
        "pwd",
        "export TRACE_ID=abc123",
        "env",
    ]
    assert {r["session_id"] for r in audit} == {sid}
    assert {r["reason"] for r in audit} == {"debug app"}


async def test_session_commands_obey_the_policy(inproc: InProcess) -> None:
    async with Client(inproc.server) as client:
        sid = data(
            await client.call_tool("session_start", {"target": inproc.instance, "reason": "x"})
        )["session_id"]
        result = await client.call_tool(
            "session_exec", {"session_id": sid, "command": "rm -rf /tmp"}
        )
    assert error_code(result) == "denied"
    assert data(result)["rule"] == "no-destructive"


async def test_ended_session_refuses_further_commands(inproc: InProcess) -> None:
    async with Client(inproc.server) as client:
        sid = data(
            await client.call_tool("session_start", {"target": inproc.instance, "reason": "x"})
        )["session_id"]
        ended = data(await client.call_tool("session_end", {"session_id": sid}))
        again = data(await client.call_tool("session_end", {"session_id": sid}))
        refused = await client.call_tool("session_exec", {"session_id": sid, "command": "pwd"})
    assert ended["ended"] is True
    assert again["end_reason"] == ended["end_reason"]
    assert error_code(refused) == "session_ended"


async def test_session_on_a_released_instance_ends_with_a_clear_refusal(
    inproc: InProcess,
) -> None:
    instance_id = await inproc.manager.invoke("demo-worker")
    inproc.manager.release_invocation(instance_id)
    async with Client(inproc.server) as client:
        sid = data(
            await client.call_tool(
                "session_start", {"target": f"demo-worker/{instance_id}", "reason": "queue"}
            )
        )["session_id"]
        first = await client.call_tool("session_exec", {"session_id": sid, "command": "pwd"})
        assert not first.is_error
        inproc.clock.advance(3600)
        assert inproc.manager.release_idle() == [instance_id]
        released = await client.call_tool("session_exec", {"session_id": sid, "command": "pwd"})
        later = await client.call_tool("session_exec", {"session_id": sid, "command": "pwd"})
    assert error_code(released) == "session_ended"
    assert data(released)["error"]["audit_id"] is not None
    assert error_code(later) == "session_ended"


async def test_session_cannot_start_on_an_instance_that_is_not_live(inproc: InProcess) -> None:
    async with Client(inproc.server) as client:
        result = await client.call_tool(
            "session_start", {"target": "demo-api/c-gone", "reason": "x"}
        )
    assert error_code(result) == "instance_not_running"


async def test_session_of_another_client_is_not_found(inproc: InProcess) -> None:
    async with Client(inproc.server) as client:
        sid = data(
            await client.call_tool("session_start", {"target": inproc.instance, "reason": "x"})
        )["session_id"]
    other = build_server(inproc.service, inproc.settings, lambda _request: OTHER)
    async with Client(other) as client:
        run = await client.call_tool("session_exec", {"session_id": sid, "command": "pwd"})
        end = await client.call_tool("session_end", {"session_id": sid})
    assert error_code(run) == "session_not_found"
    assert error_code(end) == "session_not_found"
