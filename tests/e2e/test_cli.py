"""The CLI end to end: a real `execgate serve` (FC-compatible local host, bwrap
sandboxes) and the real `execgate` command talking to it over the FC exec protocol."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import anyio
import pytest

from policies.instances.userns import find_mapping
from server.cli.exits import EXIT_DENIED, EXIT_PENDING, EXIT_TIMEOUT
from server.settings import DEMO_ENV
from tests.e2e.conftest import Served


async def test_env_prints_the_environment_with_the_fake_secret_redacted(
    shared_served: Served,
) -> None:
    result = await shared_served.cli("exec", shared_served.instance, "env")
    assert result.code == 0, result.stderr
    assert "APP_ENV=demo" in result.stdout
    for name in ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ALIBABA_CLOUD_SECURITY_TOKEN", "DB_PASSWORD"):
        assert DEMO_ENV[name] not in result.stdout
        assert DEMO_ENV[name] not in result.stderr
    assert "ALIBABA_CLOUD_ACCESS_KEY_SECRET=[REDACTED" in result.stdout


async def test_json_result_carries_the_documented_fields(shared_served: Served) -> None:
    result = await shared_served.cli("exec", "--json", shared_served.instance, "--", "ls", "/tmp")
    assert result.code == 0, result.stderr
    data = result.json()
    for key in ("effect", "rule", "reason", "exit_code", "stdout", "stderr", "truncated"):
        assert key in data
    assert {"audit_id", "approval_id", "links"} <= set(data)
    assert data["effect"] == "allow"
    assert data["rule"] == "read-only-diagnostics"
    assert data["exit_code"] == 0
    assert str(data["audit_id"]).startswith("ex_")


async def test_json_result_marks_a_stream_that_printed_bytes_that_are_not_text(
    shared_served: Served,
) -> None:
    shared_served.state_tmp().joinpath("blob.bin").write_bytes(b"head\x00\xff\xfe tail\n")
    shared_served.state_tmp().joinpath("text.log").write_text("plain ✓\n")
    blob = await shared_served.cli(
        "exec", "--json", shared_served.instance, "--", "head", "-n", "5", "/tmp/blob.bin"
    )
    text = await shared_served.cli(
        "exec", "--json", shared_served.instance, "--", "head", "-n", "5", "/tmp/text.log"
    )
    assert (blob.code, text.code) == (0, 0), blob.stderr + text.stderr
    assert blob.json()["binary"] == {"stdout": True, "stderr": False}
    assert "tail" in str(blob.json()["stdout"])
    assert text.json()["binary"] == {"stdout": False, "stderr": False}
    assert text.json()["stdout"] == "plain ✓\n"


async def test_shell_syntax_is_refused_and_nothing_starts(shared_served: Served) -> None:
    result = await shared_served.cli(
        "exec", "--json", shared_served.instance, "cat /etc/passwd; id"
    )
    assert result.code == EXIT_DENIED
    data = result.json()
    assert data["effect"] == "deny"
    assert data["rule"] == "command-syntax"
    assert data["status"] == "denied"
    assert data["exit_code"] is None


async def test_denied_command_never_starts_a_process(shared_served: Served) -> None:
    marker = shared_served.state_tmp() / "pwned"
    result = await shared_served.cli(
        "exec", "--json", shared_served.instance, "--", "touch", "/tmp/pwned"
    )
    assert result.code == EXIT_DENIED
    assert result.json()["effect"] == "deny"
    assert not marker.exists()
    # The same argv through a rule-less shell wrapper is refused too.
    wrapped = await shared_served.cli(
        "exec", shared_served.instance, "--", "sh", "-c", "touch /tmp/pwned"
    )
    assert wrapped.code == EXIT_DENIED
    assert not marker.exists()
    # Control: an allowed command on the same instance runs and sees the /tmp looked in.
    marker.with_name("canary").write_text("canary\n")
    listed = await shared_served.cli("exec", shared_served.instance, "--", "ls", "/tmp")
    assert listed.code == 0, listed.stderr
    assert "canary" in listed.stdout.split()


async def test_sh_exit_3_is_refused_by_the_default_policy(shared_served: Served) -> None:
    result = await shared_served.cli(
        "exec", "--json", shared_served.instance, "--", "sh", "-c", "exit 3"
    )
    assert result.code == EXIT_DENIED
    assert result.json()["rule"] == "no-shells-or-wrappers"


async def test_allowed_command_exits_with_the_instance_exit_code(shared_served: Served) -> None:
    (shared_served.state_tmp() / "hello.txt").write_text("hello from the instance\n")
    ok = await shared_served.cli(
        "exec", shared_served.instance, "--", "head", "-n", "5", "/tmp/hello.txt"
    )
    assert ok.code == 0
    assert ok.stdout == "hello from the instance\n"
    missing = await shared_served.cli(
        "exec", shared_served.instance, "--", "ls", "/tmp/does-not-exist"
    )
    assert missing.code == 2  # ls's own exit status for a missing operand
    assert "does-not-exist" in missing.stderr


async def test_instances_list_shows_fc_style_instances(shared_served: Served) -> None:
    result = await shared_served.cli("instances", "list", "demo-api", "--json")
    assert result.code == 0, result.stderr
    rows = result.json()
    assert isinstance(rows, list)
    ids = [row["instance_id"] for row in rows]
    assert shared_served.instance_id in ids
    assert all(i.startswith("c-") for i in ids)


async def test_instances_list_shows_the_isolation_mode_the_local_host_chose(
    shared_served: Served,
) -> None:
    # The full id mapping when the host has a subordinate id range for this user.
    chosen = "bwrap-single" if isinstance(find_mapping(), str) else "bwrap-mapped"
    listed = await shared_served.cli("instances", "list", "demo-api", "--json")
    assert [row["isolation"] for row in json.loads(listed.stdout)] == [chosen]
    table = await shared_served.cli("instances", "list", "demo-api")
    assert table.code == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.split()[-1] == "SANDBOX"
    assert row.split()[0] == shared_served.instance_id
    assert row.split()[-1] == chosen


async def test_approval_flow_runs_the_command_once_a_second_person_approves(
    shared_served: Served,
) -> None:
    served = shared_served
    asked = await served.cli(
        "exec", "--json", "--reason", "install tools", served.instance, "--", "apt-get", "update"
    )
    assert asked.code == EXIT_PENDING
    request = asked.json()
    assert request["effect"] == "approve"
    approval_id = str(request["approval_id"])
    assert approval_id.startswith("ap_")

    self_vote = await served.cli("approvals", "approve", approval_id)
    assert self_vote.code == EXIT_DENIED
    assert "approve your own" in self_vote.stderr

    listed = await served.cli("approvals", "list", "--json", principal="local:bob")
    assert approval_id in listed.stdout

    approved = await served.cli(
        "approvals", "approve", "--json", approval_id, principal="local:bob"
    )
    data = approved.json()
    assert data["approval"]["state"] == "executed"  # type: ignore[index]
    outcome = data["result"]
    assert outcome["status"] == "completed"  # type: ignore[index]
    assert isinstance(outcome["exit_code"], int)  # type: ignore[index]

    shown = await served.cli("audit", "show", "--json", str(request["audit_id"]))
    record = shown.json()
    assert record["outcome"]["approvers"] == ["local:bob"]  # type: ignore[index]

    again = await served.cli("approvals", "approve", approval_id, principal="local:carol")
    assert again.code == EXIT_DENIED


async def test_expired_approval_is_refused(shared_served_custom: Served) -> None:
    served = shared_served_custom
    asked = await served.cli("exec", "--json", served.instance, "--", "uptime")
    assert asked.code == EXIT_PENDING
    approval_id = str(asked.json()["approval_id"])
    late = await served.cli("approvals", "approve", approval_id, principal="local:bob")
    assert late.code == EXIT_DENIED
    assert "expired" in late.stderr


async def test_threshold_two_needs_two_distinct_approvers(shared_served_custom: Served) -> None:
    served = shared_served_custom
    asked = await served.cli("exec", "--json", served.instance, "--", "id")
    approval_id = str(asked.json()["approval_id"])
    outsider = await served.cli("approvals", "approve", approval_id, principal="local:bob")
    assert outsider.code == EXIT_DENIED  # bob is not a lead
    first = await served.cli(
        "approvals", "approve", "--json", approval_id, principal="local:lead-1"
    )
    assert first.json()["result"] is None
    repeat = await served.cli(
        "approvals", "approve", "--json", approval_id, principal="local:lead-1"
    )
    assert repeat.json()["result"] is None  # the same approver does not count twice
    second = await served.cli(
        "approvals", "approve", "--json", approval_id, principal="local:lead-2"
    )
    result = second.json()["result"]
    assert result["exit_code"] == 0  # type: ignore[index]
    assert "uid=" in result["stdout"]  # type: ignore[index]


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


async def test_timeout_kills_the_whole_process_tree(shared_served_custom: Served) -> None:
    result = await shared_served_custom.cli(
        "exec",
        "--json",
        shared_served_custom.instance,
        "--",
        "sh",
        "-c",
        "sleep 987654 & sleep 987655",
    )
    assert result.code == EXIT_TIMEOUT
    data = result.json()
    assert data["status"] == "timeout"
    assert data["error"]["code"] == "timeout"  # type: ignore[index]
    # The sandbox's pid namespace is torn down before the exec returns; allow the
    # kernel a bounded moment to reap.
    with anyio.fail_after(10):
        while _processes_with("98765"):
            await anyio.sleep(0.05)


@pytest.mark.parametrize(
    ("command", "code", "stdout", "stderr"),
    [
        pytest.param("exit 3", 3, "", "", id="exit-3"),
        pytest.param("echo out; echo err >&2; exit 1", 1, "out\n", "err\n", id="streams-and-1"),
    ],
)
async def test_exit_status_and_streams_match_the_sandbox(
    shared_served_custom: Served, command: str, code: int, stdout: str, stderr: str
) -> None:
    result = await shared_served_custom.cli(
        "exec", shared_served_custom.instance, "--", "sh", "-c", command
    )
    assert result.code == code
    assert result.stdout == stdout
    assert result.stderr.startswith(stderr)


# A fresh server: this test edits the database behind the shared log, which would break
# `audit verify` for every later test on a shared one.
async def test_audit_verify_is_ok_and_catches_a_hand_edited_row(
    served: Served, database_url: str
) -> None:
    await served.cli("exec", served.instance, "env")
    await served.cli("exec", served.instance, "cat /etc/passwd; id")
    ok = await served.cli("audit", "verify")
    assert ok.code == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("OK")

    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE exec_sessions SET exit_code = 99 WHERE exit_code = 0"))
    await engine.dispose()
    bad = await served.cli("audit", "verify")
    assert bad.code == 1
    assert "FAILED" in bad.stdout


async def test_audit_list_and_export_show_every_request(shared_served: Served) -> None:
    # The server is shared: this test's requests are the ones of a principal of its own.
    lister = "local:lister"
    mine = ("--principal", lister)
    await shared_served.cli("exec", shared_served.instance, "env", principal=lister)
    await shared_served.cli(
        "exec", shared_served.instance, "--", "touch", "/tmp/x", principal=lister
    )
    listed = await shared_served.cli("audit", "list", "--json", *mine)
    rows = listed.json()
    assert isinstance(rows, list)
    assert [r["effect"] for r in rows] == ["deny", "allow"]
    assert {r["principal"] for r in rows} == {lister}
    denied = await shared_served.cli("audit", "list", "--json", "--decision", "deny", *mine)
    assert len(denied.json()) == 1
    export = await shared_served.cli("audit", "export", "--format", "csv", *mine)
    assert export.code == 0
    rows_csv = list(csv.DictReader(io.StringIO(export.stdout)))
    assert sorted(r["effect"] for r in rows_csv) == ["allow", "deny"]
    assert all(r["audit_id"].startswith("ex_") for r in rows_csv)
