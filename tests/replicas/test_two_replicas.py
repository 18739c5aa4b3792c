"""Two `execgate serve` replicas on one PostgreSQL behind haproxy (round robin): what
must hold whichever replica a request lands on, and when one of them dies."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from bot.cards import APPROVE_ACTION
from tests.bot.test_slack_exec import context_text, to
from tests.replicas.deployment import (
    HEARTBEAT,
    LEASE_TTL,
    MCP_TOKEN,
    Deployment,
    Replica,
    SlackThroughProxy,
    deployment,
)

pytestmark = pytest.mark.postgres
FORM = "application/x-www-form-urlencoded"


@contextlib.asynccontextmanager
async def mcp_client(base: str) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {MCP_TOKEN}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http:
        async with Client(streamable_http_client(base + "/mcp", http_client=http)) as client:
            yield client


def _structured(result: Any) -> dict[str, Any]:
    content = result.structured_content
    assert isinstance(content, dict), result
    return content


async def _log_says(replica: Replica, text: str) -> None:
    with anyio.fail_after(30):
        while text not in replica.log.read_text(errors="replace"):
            await anyio.sleep(0.05)


def _to(d: Deployment, replica: Replica, first_id: int) -> SlackThroughProxy:
    return SlackThroughProxy(
        d.slack.running,
        d.fake,
        d.slack.http,
        d.slack.instance,
        d.slack.data_dir,
        itertools.count(first_id),
        base=replica.url,
    )


async def test_a_slack_retry_landing_on_the_other_replica_runs_nothing(tmp_path: Path) -> None:
    async with deployment(tmp_path) as d:
        a, b = d.replicas
        body, name = d.slack.command_body("UALICE", f"{d.host.instance} id")
        key = f"slack:cmd:{dict(x.split('=', 1) for x in body.decode().split('&'))['trigger_id']}"

        first = await _to(d, a, 100).post(body, FORM)
        await d.fake.wait_call("response_url", to(name, "in_channel"))
        retry = await _to(d, b, 200).post(
            body, FORM, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
        )
        await _log_says(b, "duplicate slack delivery ignored")

        rows = await d.scalar("SELECT count(*) FROM exec_sessions WHERE request_key = :k", k=key)
    assert (first.status_code, retry.status_code) == (200, 200)
    assert rows == 1


async def test_two_deliveries_of_one_command_on_both_replicas_at_once_run_once(
    tmp_path: Path,
) -> None:
    async with deployment(tmp_path) as d:
        a, b = d.replicas
        body, name = d.slack.command_body("UALICE", f"{d.host.instance} id")
        retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}

        answers = await asyncio.gather(
            _to(d, a, 100).post(body, FORM), _to(d, b, 200).post(body, FORM, headers=retry)
        )
        await d.fake.wait_call("response_url", to(name, "in_channel"))
        with anyio.fail_after(30):
            while not any(
                "duplicate slack delivery ignored" in r.log.read_text(errors="replace")
                for r in (a, b)
            ):
                await anyio.sleep(0.05)
        rows = await d.scalar("SELECT count(*) FROM exec_sessions")
        results = d.fake.of("response_url")
    assert [r.status_code for r in answers] == [200, 200]
    assert rows == 1
    assert len([c for c in results if to(name, "in_channel")(c)]) == 1


async def test_concurrent_approval_clicks_on_both_replicas_run_the_command_once(
    tmp_path: Path,
) -> None:
    async with deployment(tmp_path) as d:
        a, b = d.replicas
        _, name = await d.slack.command(
            "UALICE", f'--reason "INC-7" {d.host.instance} touch /tmp/capture.pcap'
        )
        pending = await d.fake.wait_call("response_url", to(name))
        approval_id = next(
            p.strip("`") for p in context_text(pending).split() if p.strip("`").startswith("ap_")
        )
        card = await d.slack.card_for(approval_id)

        clicks = await asyncio.gather(
            _to(d, a, 300).click("UBOB", card, APPROVE_ACTION),
            _to(d, b, 400).click("UCAROL", card, APPROVE_ACTION),
        )
        await d.fake.wait_call("response_url", to(name, "in_channel"))
        await d.fake.wait_call(
            "chat.postEphemeral",
            lambda c: (
                c.data.get("user") in ("UBOB", "UCAROL")
                and "code `approval_decided`" in context_text(c)
            ),
        )
        audit_id = await d.scalar("SELECT audit_id FROM approvals WHERE id = :a", a=approval_id)
        outcomes = await d.scalar(
            "SELECT count(*) FROM audit_events WHERE subject = :s AND kind = 'exec.outcome'",
            s=audit_id,
        )
        status = await d.scalar("SELECT status FROM exec_sessions WHERE id = :s", s=audit_id)
    assert [c.status_code for c in clicks] == [200, 200]
    assert outcomes == 1
    assert status == "completed"


async def test_a_session_alternating_replicas_continues_the_same_session(tmp_path: Path) -> None:
    async with deployment(tmp_path) as d, mcp_client(d.proxy.url) as client:
        started = _structured(
            await client.call_tool("session_start", {"target": d.host.instance, "reason": "INC-9"})
        )
        session_id = started["session_id"]
        await client.call_tool("session_exec", {"session_id": session_id, "command": "cd /tmp"})
        outs = [
            _structured(
                await client.call_tool("session_exec", {"session_id": session_id, "command": "pwd"})
            )
            for _ in range(3)
        ]
        owners = await d.scalar(
            "SELECT count(DISTINCT owner) FROM exec_sessions WHERE session_id = :s", s=session_id
        )
    assert [o["stdout"].strip() for o in outs] == ["/tmp"] * 3
    assert [o["exit_code"] for o in outs] == [0] * 3
    assert owners == 2  # the session's commands were run by both replicas


async def test_a_replica_killed_mid_exec_has_its_exec_marked_interrupted_by_the_other(
    tmp_path: Path,
) -> None:
    measured: dict[str, Any] = {}
    async with deployment(tmp_path) as d:
        a, b = d.replicas
        # The client's connection dies with its replica: what was measured is checked below.
        with contextlib.suppress(Exception):
            async with mcp_client(a.url) as client:
                await _kill_mid_exec(d, a, client, measured)
        await a.reap()
        assert "killed_at" in measured, "the exec did not start"
        audit_id = measured["audit_id"]
        with anyio.fail_after(LEASE_TTL + HEARTBEAT + 10):
            while (
                await d.scalar("SELECT status FROM exec_sessions WHERE id = :i", i=audit_id)
            ) == "running":
                await anyio.sleep(0.05)
        measured["failover"] = time.monotonic() - measured["killed_at"]
        status = await d.scalar("SELECT status FROM exec_sessions WHERE id = :i", i=audit_id)
        alive = b.proc is not None and b.proc.returncode is None
    failover = measured["failover"]
    print(f"failover: interrupted {failover:.2f} s after kill -9 (lease {LEASE_TTL} s)")
    assert status == "interrupted"
    assert alive
    assert failover <= LEASE_TTL + HEARTBEAT + 1


async def _kill_mid_exec(
    d: Deployment, a: Replica, client: Client, measured: dict[str, Any]
) -> None:
    call = asyncio.create_task(
        client.call_tool(
            "exec", {"target": d.host.instance, "argv": ["sleep", "600"], "reason": "INC-3"}
        )
    )
    call.add_done_callback(lambda t: t.cancelled() or t.exception())
    with anyio.fail_after(30):
        while not (
            audit_id := await d.scalar(
                "SELECT id FROM exec_sessions WHERE status = 'running' "
                "AND argv::text LIKE '%sleep%'"
            )
        ):
            await anyio.sleep(0.05)
    measured["audit_id"] = audit_id
    a.kill()  # SIGKILL: nothing of the replica gets to clean up
    measured["killed_at"] = time.monotonic()
    call.cancel()


async def test_a_rolling_restart_drops_no_acknowledged_request(tmp_path: Path) -> None:
    async with deployment(tmp_path) as d, mcp_client(d.proxy.url) as client:
        answered: list[dict[str, Any]] = []
        failed: list[BaseException] = []
        done = asyncio.Event()

        async def load() -> None:
            while not done.is_set():
                try:
                    result = await client.call_tool(
                        "exec", {"target": d.host.instance, "argv": ["id"], "reason": "load"}
                    )
                except Exception as exc:  # a request the proxy could not place
                    failed.append(exc)  # the test fails on it: no point in going on
                    return
                answered.append(_structured(result))

        task = asyncio.create_task(load())
        for replica in d.replicas:  # one at a time, as a rolling deploy does
            before = len(answered)
            await replica.stop()
            await replica.start()
            with anyio.fail_after(30):
                while len(answered) < before + 3 and not task.done():
                    await anyio.sleep(0.05)
        done.set()
        await task
        statuses = [
            await d.scalar("SELECT status FROM exec_sessions WHERE id = :i", i=out["audit_id"])
            for out in answered
        ]
    assert failed == []
    assert answered and {o["exit_code"] for o in answered} == {0}
    assert set(statuses) == {"completed"}
