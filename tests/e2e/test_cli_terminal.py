"""What terminal users hit, end to end: a real `execgate serve` and the real `execgate`
command (options around `--`, `--json` on failures, streamed output, approvals and
audit rendering, database preparation by every entry point)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
import pytest_asyncio

from server.cli.exits import EXIT_PENDING, EXIT_UNAVAILABLE
from tests.e2e.conftest import CliResult, Served, module_server
from tests.support.databases import MigratedDatabase

EXECGATE = str(Path(sys.executable).parent / "execgate")

COLLECT_POLICY = """
version: 1
roles:
  operators: { local_users: ["*"] }
  approvers: { local_users: ["*"] }
targets:
  demo: { functions: ["demo-*"] }
rules:
  - id: diagnostics
    effect: allow
    who: [operators]
    where: [demo]
    commands: [[uptime], [tail, -n, "{n:int(1..100000)}", "{f:path(/tmp/**)}"]]
  - id: package-install
    effect: approve
    who: [operators]
    where: [demo]
    commands: [[apt-get, update]]
    approval: { approvers: [approvers], threshold: 1, ttl: 15m }
  - id: heap-dumps
    effect: approve
    who: [operators]
    where: [demo]
    commands: [[stat, "{f:path(/tmp/*.hprof)}"]]
    approval: { approvers: [approvers], threshold: 1, ttl: 15m }
    collect: ["/tmp/*.hprof"]
"""


@pytest_asyncio.fixture(scope="module")
async def shared_served_approvals(
    tmp_path_factory: pytest.TempPathFactory, migrated_database: MigratedDatabase
) -> AsyncIterator[Served]:
    """`execgate serve` with COLLECT_POLICY, shared by the tests of this module (each
    reads only its own requests and approvals)."""
    policy = tmp_path_factory.mktemp("policy") / "approvals.yaml"
    policy.write_text(COLLECT_POLICY)
    async with module_server(
        tmp_path_factory, migrated_database, "served-approvals", policy=policy
    ) as served:
        yield served


async def test_reason_between_target_and_double_dash_is_an_option_not_the_command(
    shared_served: Served,
) -> None:
    served = shared_served
    result = await served.cli(
        "exec", served.instance, "--reason", "debug 502s", "--", "apt-get", "update"
    )
    assert result.code == EXIT_PENDING, result.stderr
    listed = await served.cli("approvals", "list", "--json", principal="local:bob")
    held = json.loads(listed.stdout)
    (request,) = [r for r in held if r["approval_id"] == _approval_id(result)]
    assert request["argv"] == ["apt-get", "update"]
    assert request["reason"] == "debug 502s"


async def test_json_option_after_the_target_is_an_option_too(shared_served: Served) -> None:
    result = await shared_served.cli("exec", shared_served.instance, "--json", "--", "uptime")
    assert result.code == 0, result.stderr
    assert result.json()["argv"] == ["uptime"]


async def test_exec_json_prints_the_object_when_the_instance_is_unknown(
    shared_served: Served,
) -> None:
    known = await shared_served.cli("exec", "--json", shared_served.instance, "--", "uptime")
    assert known.code == 0, known.stderr
    unknown = await shared_served.cli(
        "exec", "--json", "demo-api/c-no-such-instance", "--", "uptime"
    )
    assert unknown.code == EXIT_UNAVAILABLE
    data = unknown.json()
    assert set(known.json()) == set(data)
    error = data["error"]
    assert isinstance(error, dict)
    assert error["code"] == "instance_not_running"
    assert str(data["audit_id"]).startswith("ex_")


async def test_exec_json_prints_the_object_when_the_endpoint_is_unreachable(
    shared_served: Served,
) -> None:
    environ = {"EXECGATE_DEFAULT_PROVIDER": "nowhere"}
    environ["EXECGATE_PROVIDERS__NOWHERE"] = json.dumps(
        {"type": "fc", "endpoint": "http://127.0.0.1:1", "account_id": "1", "region": "r"}
    )
    environ["ALIBABA_CLOUD_ACCESS_KEY_ID"] = "LTAIfortests"
    environ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"] = "not-a-secret"
    result = await shared_served.cli(
        "exec", "--json", "nowhere:demo-api/c-1", "--", "uptime", env=environ
    )
    assert result.code == EXIT_UNAVAILABLE, result.stderr
    error = result.json()["error"]
    assert isinstance(error, dict)
    assert error["code"]


async def test_streamed_output_to_a_file_is_not_reported_as_truncated(
    shared_served_approvals: Served,
) -> None:
    served = shared_served_approvals
    rows = [f"{i:05d} " + "x" * 100 for i in range(500)]
    (served.state_tmp() / "big.log").write_text("\n".join(rows) + "\n")
    result = await served.cli("exec", served.instance, "--", "tail", "-n", "500", "/tmp/big.log")
    assert result.code == 0, result.stderr
    assert result.stdout.splitlines() == rows  # all of it, well past the inline limit
    assert "truncated" not in result.stderr
    assert "[execgate] exit 0" in result.stderr


async def test_approving_a_collect_that_fails_says_why_not_that_it_needs_approval(
    shared_served_approvals: Served,
) -> None:
    served = shared_served_approvals
    asked = await served.cli("collect", served.instance, "/tmp/missing.hprof")
    assert asked.code == EXIT_PENDING, asked.stderr
    assert "needs approval" in asked.stderr  # the requester sees the approval block
    approval_id = _approval_id(asked)
    vote = await served.cli("approvals", "approve", approval_id, principal="local:bob")
    assert vote.code != 0
    assert "needs approval" not in vote.stderr
    assert "not_found" in vote.stderr or "no such file" in vote.stderr.lower()


async def test_approving_a_collect_that_succeeds_prints_its_link(
    shared_served_approvals: Served,
) -> None:
    served = shared_served_approvals
    (served.state_tmp() / "heap.hprof").write_bytes(b"heap dump bytes")
    asked = await served.cli("collect", served.instance, "/tmp/heap.hprof")
    assert asked.code == EXIT_PENDING, asked.stderr
    vote = await served.cli("approvals", "approve", _approval_id(asked), principal="local:bob")
    assert vote.code == 0, vote.stderr
    assert vote.stdout.strip().startswith("http://127.0.0.1:")
    assert "/artifacts/" in vote.stdout


async def test_approvals_list_shows_the_requesters_reason(
    shared_served_approvals: Served,
) -> None:
    served = shared_served_approvals
    asked = await served.cli(
        "exec", served.instance, "--reason", "INC-42 stale index", "--", "apt-get", "update"
    )
    assert asked.code == EXIT_PENDING, asked.stderr
    listed = await served.cli("approvals", "list", principal="local:bob")
    assert listed.code == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert "REASON" in header.split()
    # The server is shared: other tests' requests may be pending too.
    (row,) = [row for row in rows if row.split()[0] == _approval_id(asked)]
    assert row.endswith("INC-42 stale index")


async def test_approvals_deny_records_the_approvers_reason(shared_served_approvals: Served) -> None:
    served = shared_served_approvals
    asked = await served.cli("exec", served.instance, "--", "apt-get", "update")
    approval_id = _approval_id(asked)
    denied = await served.cli(
        "approvals", "deny", approval_id, "--reason", "use the image instead", principal="local:bob"
    )
    assert denied.code == 0, denied.stderr
    shown = await served.cli("audit", "show", "--json", _audit_id(asked))
    outcome = shown.json()["outcome"]
    assert isinstance(outcome, dict)
    assert outcome["status"] == "approval_denied"
    assert outcome["stderr_text"] == "denied by local:bob: use the image instead"


async def test_audit_show_of_an_approved_exec_names_its_approval_and_one_status(
    shared_served_approvals: Served,
) -> None:
    served = shared_served_approvals
    (served.state_tmp() / "x.hprof").write_bytes(b"x")
    asked = await served.cli("exec", served.instance, "--", "stat", "/tmp/x.hprof")
    approval_id = _approval_id(asked)
    vote = await served.cli("approvals", "approve", approval_id, principal="local:bob")
    assert vote.code == 0, vote.stderr
    shown = await served.cli("audit", "show", _audit_id(asked))
    assert shown.code == 0, shown.stderr
    fields = [line.split(None, 1) for line in shown.stdout.splitlines()]
    keys = [f[0] for f in fields]
    assert keys.count("status") == 1
    values = dict((f[0], f[1] if len(f) > 1 else "") for f in fields)
    assert values["status"] == "completed"
    assert values["approval_id"] == approval_id
    as_json = (await served.cli("audit", "show", "--json", _audit_id(asked))).json()
    assert as_json["approval_id"] == approval_id


def _approval_id(result: CliResult) -> str:
    for word in result.stderr.split():
        if word.startswith("ap_"):
            return word.rstrip(",")
    raise AssertionError("no approval id in:\n" + result.stderr)


def _audit_id(result: CliResult) -> str:
    for word in result.stderr.split():
        if word.startswith("ex_"):
            return word
    raise AssertionError("no audit id in:\n" + result.stderr)


# ------------------------------------------------------------------ database preparation


async def _run(config: Path, *args: str, stdin: bytes = b"") -> CliResult:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EXECGATE_")}
    environ["EXECGATE_CONFIG"] = str(config)
    proc = await asyncio.create_subprocess_exec(
        EXECGATE,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environ,
    )
    with anyio.fail_after(120):
        out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return CliResult(proc.returncode, out.decode(), err.decode())


def _fresh_config(tmp_path: Path, extra: str = "") -> tuple[Path, Path]:
    data_dir = tmp_path / "data"
    config = tmp_path / "execgate.toml"
    config.write_text(f'data_dir = "{data_dir}"\n[logging]\nformat = "json"\n{extra}')
    return config, data_dir


MCP_HELLO = (
    json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "1"},
            },
        }
    )
    + "\n"
).encode()


async def test_mcp_on_a_fresh_clone_prepares_the_database_like_serve(tmp_path: Path) -> None:
    config, data_dir = _fresh_config(tmp_path)
    result = await _run(config, "mcp", stdin=MCP_HELLO)
    assert result.code == 0, result.stderr
    assert '"serverInfo"' in result.stdout  # it served MCP
    assert '"level": "error"' not in result.stderr
    assert "Traceback" not in result.stderr
    current = await _run(config, "db", "current")
    assert current.code == 0, current.stderr
    assert current.stdout.strip() not in ("", "(empty)")
    assert (data_dir / "audit.db").exists()


@pytest.mark.parametrize("entry", ["mcp", "exec", "serve"])
async def test_without_auto_upgrade_every_entry_point_refuses_in_one_line_and_leaves_nothing(
    tmp_path: Path, entry: str
) -> None:
    config, data_dir = _fresh_config(
        tmp_path, '[database]\nauto_upgrade = false\n[server]\nhost = "127.0.0.1"\nport = 0\n'
    )
    argv = {"mcp": ["mcp"], "exec": ["exec", "demo-api/c-1", "--", "uptime"], "serve": ["serve"]}
    result = await _run(config, *argv[entry], stdin=MCP_HELLO)
    assert result.code == EXIT_UNAVAILABLE, result.stderr
    said = [line for line in result.stderr.splitlines() if line.strip()]
    assert any("execgate db upgrade" in line for line in said), result.stderr
    assert "Traceback" not in result.stderr
    assert '"level": "error"' not in result.stderr
    leftovers = sorted(p.name for p in data_dir.iterdir()) if data_dir.exists() else []
    assert not [name for name in leftovers if name.startswith(("audit", "artifact"))], leftovers
    # The same set-up starts once the database is made.
    upgraded = await _run(config, "db", "upgrade")
    assert upgraded.code == 0, upgraded.stderr
    assert (data_dir / "audit.db").exists()
    if entry == "mcp":
        again = await _run(config, "mcp", stdin=MCP_HELLO)
        assert again.code == 0, again.stderr
        assert '"serverInfo"' in again.stdout
