"""The README's contract for MCP results, through mcp.Client in process over a real
ExecService: every tool error is a structured ``error`` object, next steps name tools,
audit_search takes targets as exec does, approval_status shows what an approved collect
stored, and stored output and files are readable as MCP resources by their owner only."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, BlobResourceContents, ResourceLink, TextResourceContents

from policies.types import ApprovalId, Principal, PrincipalKind
from server.mcp.registry import build_server
from tests.server.mcp.conftest import (
    APPROVER,
    OTHER,
    SECRETS,
    InProcess,
    data,
    error_code,
    text_of,
)
from tests.server.mcp.story import CAPTURE

HUMAN = Principal(PrincipalKind.LOCAL, "bob")


def resource_links(result: Any) -> list[ResourceLink]:
    return [block for block in result.content if isinstance(block, ResourceLink)]


@pytest.mark.parametrize(
    ("tool", "arguments", "field"),
    [
        ("exec", {"target": "demo-api/c-1", "argv": ["uptime"]}, "reason"),
        ("exec", {"target": "demo-api/c-1", "argv": "uptime", "reason": "x"}, "argv"),
        ("approval_status", {"approval_id": "ap_1", "wait_seconds": 100000}, "wait_seconds"),
        ("audit_search", {"since": "yesterday-ish"}, "since"),
        ("audit_search", {"limit": 0}, "limit"),
    ],
    ids=["missing-reason", "argv-not-a-list", "wait-out-of-range", "bad-since", "bad-limit"],
)
async def test_argument_errors_are_structured_errors_naming_the_field(
    inproc: InProcess, tool: str, arguments: dict[str, Any], field: str
) -> None:
    async with Client(inproc.server) as client:
        result = await client.call_tool(tool, arguments)
    assert error_code(result) == "invalid_arguments"
    error = data(result)["error"]
    assert list(error["fields"]) == [field]
    assert error["next_step"]
    seen = text_of(result) + json.dumps(data(result))
    assert "pydantic" not in seen
    assert "https://" not in seen


async def test_calling_a_tool_that_does_not_exist_is_a_structured_error(
    inproc: InProcess,
) -> None:
    async with Client(inproc.server) as client:
        result = await client.call_tool("approve", {"approval_id": "ap_1"})
    assert error_code(result) == "unknown_tool"


async def test_instance_not_running_tells_the_model_which_tool_to_call(inproc: InProcess) -> None:
    async with Client(inproc.server) as client:
        result = await client.call_tool(
            "exec", {"target": "demo-api/c-gone", "argv": ["uptime"], "reason": "x"}
        )
    assert error_code(result) == "instance_not_running"
    error = data(result)["error"]
    assert error["next_step"].startswith("call list_instances with function='demo-api'")
    assert "execgate " not in text_of(result)


async def test_audit_search_finds_records_by_the_target_form_exec_accepts(
    inproc: InProcess,
) -> None:
    async with Client(inproc.server) as client:
        ran = data(await client.call_tool("exec", inproc.exec_args("uptime")))
        short = data(await client.call_tool("audit_search", {"target": inproc.instance}))
        full = data(await client.call_tool("audit_search", {"target": f"local:{inproc.instance}"}))
        other = data(await client.call_tool("audit_search", {"target": "demo-api/c-other"}))
    assert [r["audit_id"] for r in short["records"]] == [ran["audit_id"]]
    assert full["records"] == short["records"]
    assert other["records"] == []


@pytest.mark.parametrize(
    ("arguments", "field"),
    [({"effect": "allowed"}, "effect"), ({"status": "done"}, "status")],
    ids=["effect", "status"],
)
async def test_audit_search_refuses_unknown_effect_and_status_values(
    inproc: InProcess, arguments: dict[str, str], field: str
) -> None:
    async with Client(inproc.server) as client:
        await client.call_tool("exec", inproc.exec_args("uptime"))
        result = await client.call_tool("audit_search", arguments)
        known = await client.call_tool("audit_search", {"effect": "allow", "status": "completed"})
    assert error_code(result) == "invalid_arguments"
    assert list(data(result)["error"]["fields"]) == [field]
    assert len(data(known)["records"]) == 1


async def test_approved_collect_shows_the_stored_file_and_reads_as_a_resource(
    inproc: InProcess,
) -> None:
    capture = b"\xd4\xc3\xb2\xa1" + bytes(range(256)) * 8
    inproc.state_tmp().joinpath("story.pcap").write_bytes(capture)
    async with Client(inproc.server) as client:
        held = data(
            await client.call_tool(
                "collect_artifact",
                {"target": inproc.instance, "path": "/tmp/story.pcap", "reason": "analyse"},
            )
        )
        await inproc.service.vote(ApprovalId(held["approval_id"]), HUMAN, approve=True)
        status = await client.call_tool("approval_status", {"approval_id": held["approval_id"]})
        artifact = data(status)["artifact"]
        (link,) = resource_links(status)
        read = await client.read_resource(link.uri)
    assert data(status)["next_step"] is None
    assert artifact["size"] == len(capture)
    assert artifact["sha256"] == hashlib.sha256(capture).hexdigest()
    assert artifact["content_type"] == "application/vnd.tcpdump.pcap"
    assert artifact["link"].startswith("http://execgate.test/")
    assert artifact["resource_uri"] == str(link.uri)
    assert artifact["sha256"] in text_of(status)
    (content,) = read.contents
    assert isinstance(content, BlobResourceContents)
    assert base64.b64decode(content.blob) == capture


async def test_failed_collect_after_approval_reports_its_own_error(inproc: InProcess) -> None:
    inproc.state_tmp().joinpath("gone.pcap").write_bytes(b"\xd4\xc3\xb2\xa1")
    async with Client(inproc.server) as client:
        held = data(
            await client.call_tool(
                "collect_artifact",
                {"target": inproc.instance, "path": "/tmp/gone.pcap", "reason": "analyse"},
            )
        )
        inproc.state_tmp().joinpath("gone.pcap").unlink()
        await inproc.service.vote(ApprovalId(held["approval_id"]), HUMAN, approve=True)
        status = data(
            await client.call_tool("approval_status", {"approval_id": held["approval_id"]})
        )
    error = status["result"]["error"]
    assert error["code"] == "not_found"
    assert error["message"] != status["result"]["reason"]
    assert status["artifact"] is None


async def test_denied_approval_does_not_ask_for_approval_again(inproc: InProcess) -> None:
    async with Client(inproc.server) as client:
        held = data(
            await client.call_tool(
                "exec", {"target": inproc.instance, "argv": CAPTURE, "reason": "capture"}
            )
        )
        assert held["next_step"]  # pending: the hint is there
        await inproc.service.vote(ApprovalId(held["approval_id"]), APPROVER, approve=False)
        result = await client.call_tool("approval_status", {"approval_id": held["approval_id"]})
    status = data(result)
    assert status["state"] == "denied"
    assert status["next_step"] is None
    assert status["result"]["next_step"] is None
    assert "Next:" not in text_of(result)


async def test_full_output_is_a_resource_only_its_owner_can_read(inproc: InProcess) -> None:
    lines = "".join(f"line {i:05d}\n" for i in range(3000))
    inproc.state_tmp().joinpath("big.log").write_text(lines + f"DB_PASSWORD={SECRETS[3]}\n")
    async with Client(inproc.server) as client:
        result = await client.call_tool(
            "exec", inproc.exec_args("head", "-n", "10000", "/tmp/big.log", reason="read")
        )
        out = data(result)
        (link,) = resource_links(result)
        read = await client.read_resource(link.uri)
    assert out["truncated"] is True
    assert out["resources"]["stdout"] == str(link.uri)
    (content,) = read.contents
    assert isinstance(content, TextResourceContents)
    assert content.text.startswith(lines)  # the whole output, not the inline view
    assert SECRETS[3] not in content.text
    other = build_server(inproc.service, inproc.settings, lambda _request: OTHER)
    async with Client(other) as client:
        with pytest.raises(MCPError) as refused:
            await client.read_resource(link.uri)
    assert refused.value.error.code == INVALID_PARAMS  # "no such resource", as for any id
    assert lines[:20] not in refused.value.error.message


async def test_output_that_is_not_text_is_marked_binary(inproc: InProcess) -> None:
    inproc.state_tmp().joinpath("blob.bin").write_bytes(b"head\x00\xff\xfe tail\n")
    inproc.state_tmp().joinpath("text.log").write_text("plain text ✓\n")
    async with Client(inproc.server) as client:
        blob = data(
            await client.call_tool("exec", inproc.exec_args("head", "-n", "5", "/tmp/blob.bin"))
        )
        text = data(
            await client.call_tool("exec", inproc.exec_args("head", "-n", "5", "/tmp/text.log"))
        )
    assert blob["exit_code"] == 0
    assert blob["binary"] == {"stdout": True, "stderr": False}
    assert text["stdout"] == "plain text ✓\n"
    assert text["binary"] == {"stdout": False, "stderr": False}


def test_bytes_past_max_output_are_counted_in_the_result_and_said_in_the_text() -> None:
    from policies.ports import ExecStatus
    from policies.service.results import ExecResult
    from policies.types import AuditId, Effect
    from server.mcp.render import exec_out, exec_text

    result = ExecResult(
        effect=Effect.ALLOW,
        rule="read-only",
        reason="allowed",
        audit_id=AuditId("ex_1"),
        status=ExecStatus.COMPLETED,
        target="local:demo-api/c-1",
        exit_code=0,
        stdout="kept\n",
        stdout_bytes=2048,
        dropped_bytes=1024,
    )
    out = exec_out(result, inline_limit=16_384)
    assert out.dropped_bytes == 1024
    assert "1024 bytes past the rule's max_output were not kept" in exec_text(out)
    assert exec_out(replace(result, dropped_bytes=0), inline_limit=16_384).dropped_bytes == 0
