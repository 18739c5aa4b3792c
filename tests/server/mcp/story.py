"""The troubleshooting story an assistant runs end to end, over any transport:
list instances, read env (secrets redacted), ask for a packet capture, wait for a human
to approve it with the CLI, read the result, find it all in the audit log."""

from __future__ import annotations

import json

import anyio
from mcp import Client

from tests.e2e.conftest import Served
from tests.server.mcp.conftest import SECRETS, Progress, data

# A held command that ends at once once approved: a local instance has no eth0 (only its
# own loopback), so tcpdump stops with "no such device" instead of waiting for packets.
CAPTURE = ["tcpdump", "-i", "eth0", "-c", "10", "-w", "/tmp/story.pcap", "port", "80"]
HUMAN = "local:approver-1"


async def troubleshooting_story(client: Client, served: Served, principal: str) -> None:
    listed = data(await client.call_tool("list_instances", {"function": "demo-api"}))
    targets = [i["target"] for i in listed["instances"]]
    assert f"local:{served.instance}" in targets

    progress = Progress()
    env = await client.call_tool(
        "exec",
        {"target": targets[0], "argv": ["env"], "reason": "check config"},
        progress_callback=progress,
    )
    env_out = data(env)
    with anyio.fail_after(10):  # the client hands progress to its callback in a task
        await progress.arrived.wait()
    assert (env.is_error, env_out["exit_code"]) == (False, 0)
    assert "APP_ENV=demo" in env_out["stdout"]
    seen = json.dumps(env_out) + json.dumps([c.model_dump() for c in env.content])
    for secret in SECRETS:
        assert secret not in seen

    held = data(
        await client.call_tool(
            "exec", {"target": targets[0], "argv": CAPTURE, "reason": "lost packets"}
        )
    )
    assert (held["effect"], held["status"]) == ("approve", "pending_approval")
    pending = data(await client.call_tool("approval_status", {"approval_id": held["approval_id"]}))
    assert pending["state"] == "pending"

    vote = await served.cli("approvals", "approve", "--json", held["approval_id"], principal=HUMAN)
    assert vote.json()["approval"]["state"] == "executed", vote.stderr  # type: ignore[index]

    done = data(await client.call_tool("approval_status", {"approval_id": held["approval_id"]}))
    assert done["state"] == "executed"
    assert done["approvals"] == [HUMAN]
    assert done["result"]["audit_id"] == held["audit_id"]
    assert done["result"]["exit_code"] is not None

    records = data(await client.call_tool("audit_search", {}))["records"]
    assert [r["audit_id"] for r in records] == [held["audit_id"], env_out["audit_id"]]
    assert {(r["principal"], r["surface"]) for r in records} == {(principal, "mcp")}
    assert records[0]["approvers"] == [HUMAN]
