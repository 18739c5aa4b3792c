"""Collecting files and large output end to end: a real `execgate serve` (FC-compatible
local host, bwrap sandboxes, /artifacts links) and the real `execgate` CLI."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from server.cli.exits import EXIT_DENIED, EXIT_PENDING
from tests.e2e.conftest import Served, module_server
from tests.support.databases import MigratedDatabase

PERMISSIVE_POLICY = """
version: 1
roles:
  operators: { local_users: ["*"] }
  approvers: { local_users: ["*"] }
targets:
  demo: { functions: ["demo-*"] }
rules:
  - id: everything-readable
    description: collect globs that reach kernel file systems, to show the instance refuses
    effect: allow
    who: [operators]
    where: [demo]
    commands: [[uptime]]
    collect: ["/dev/*", "/proc/**", "/sys/**"]
  - id: heap-dumps
    effect: approve
    who: [operators]
    where: [demo]
    commands: [[stat, "{f:path(/tmp/*.hprof)}"]]
    approval: { approvers: [approvers], threshold: 1, ttl: 15m }
    limits: { max_output: 64MiB }
    collect: ["/tmp/*.hprof"]
"""


@pytest_asyncio.fixture(scope="module")
async def shared_served_permissive(
    tmp_path_factory: pytest.TempPathFactory, migrated_database: MigratedDatabase
) -> AsyncIterator[Served]:
    """`execgate serve` with PERMISSIVE_POLICY, shared by the tests of this module."""
    policy = tmp_path_factory.mktemp("policy") / "permissive.yaml"
    policy.write_text(PERMISSIVE_POLICY)
    async with module_server(
        tmp_path_factory, migrated_database, "served-permissive", policy=policy
    ) as served:
        yield served


async def fetch(link: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=60) as client:
        return await client.get(link)


def write_random(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        for _ in range(size // (1 << 20)):
            block = os.urandom(1 << 20)
            digest.update(block)
            fh.write(block)
    return digest.hexdigest()


async def test_a_capture_on_the_instance_comes_back_as_a_link_with_the_same_bytes(
    shared_served: Served,
) -> None:
    digest = write_random(shared_served.state_tmp() / "trace.pcap", 6 << 20)
    result = await shared_served.cli(
        "collect", "--json", shared_served.instance, "/tmp/trace.pcap", "--reason", "slow upstream"
    )
    assert result.code == 0, result.stderr
    data = result.json()
    assert (data["effect"], data["rule"], data["status"]) == (
        "allow",
        "collect-debug-files",
        "completed",
    )
    artifact = data["artifact"]
    assert isinstance(artifact, dict)
    assert (artifact["size"], artifact["sha256"]) == (6 << 20, digest)
    answer = await fetch(str(data["link"]))
    assert answer.status_code == 200
    assert hashlib.sha256(answer.content).hexdigest() == digest
    shown = await shared_served.cli("audit", "show", "--json", str(data["audit_id"]))
    outcome = shown.json()["outcome"]
    assert isinstance(outcome, dict)
    assert outcome["artifacts"] == [artifact]


async def test_plain_collect_prints_only_the_link_on_stdout(shared_served: Served) -> None:
    (shared_served.state_tmp() / "cpu.pprof").write_bytes(b"pprof bytes")
    result = await shared_served.cli("collect", shared_served.instance, "/tmp/cpu.pprof")
    assert result.code == 0, result.stderr
    answer = await fetch(result.stdout.strip())
    assert answer.content == b"pprof bytes"


@pytest.mark.parametrize(
    ("setup", "path", "code"),
    [
        pytest.param(None, "/tmp/../etc/passwd", "path_traversal", id="traversal"),
        pytest.param(
            lambda t: (t / "escape.pcap").symlink_to("/etc/hostname"),
            "/tmp/escape.pcap",
            "symlink_escape",
            id="symlink-escape",
        ),
        pytest.param(
            lambda t: os.mkfifo(t / "pipe.pcap"), "/tmp/pipe.pcap", "not_regular", id="fifo"
        ),
        pytest.param(
            lambda t: os.truncate(_touch(t / "huge.hprof"), 257 << 20),
            "/tmp/huge.hprof",
            "too_large",
            id="over-the-256MiB-cap",
        ),
        pytest.param(None, "/dev/zero", "denied", id="device-outside-policy"),
        pytest.param(None, "/proc/kcore", "denied", id="kcore-denied-by-name"),
    ],
)
async def test_refused_collects_fetch_nothing(
    shared_served: Served, setup: object, path: str, code: str
) -> None:
    if callable(setup):
        setup(shared_served.state_tmp())
    result = await shared_served.cli("collect", "--json", shared_served.instance, path)
    assert result.code == EXIT_DENIED, result.stderr
    data = result.json()
    error = data["error"]
    assert isinstance(error, dict) and error["code"] == code
    assert data["link"] is None and data["artifact"] is None


async def test_the_instance_refuses_devices_and_proc_even_when_the_policy_allows_them(
    shared_served_permissive: Served,
) -> None:
    served = shared_served_permissive
    for path in ("/dev/zero", "/dev/null", "/proc/version", "/proc/loadavg"):
        result = await served.cli("collect", "--json", served.instance, path)
        assert result.code == EXIT_DENIED, result.stderr
        error = result.json()["error"]
        assert isinstance(error, dict)
        assert error["code"] == "special_file", path


async def test_an_approved_collect_hands_the_link_to_the_approver_and_requester(
    shared_served_permissive: Served,
) -> None:
    served = shared_served_permissive
    (served.state_tmp() / "heap.hprof").write_bytes(b"heap dump bytes")
    asked = await served.cli(
        "collect", "--json", served.instance, "/tmp/heap.hprof", principal="local:alice"
    )
    assert asked.code == EXIT_PENDING, asked.stderr
    approval_id = str(asked.json()["approval_id"])
    vote = await served.cli("approvals", "approve", "--json", approval_id, principal="local:bob")
    assert vote.code == 0, vote.stderr
    result = vote.json()["result"]
    assert isinstance(result, dict)
    links = result["links"]
    assert isinstance(links, dict)
    assert (await fetch(str(links["artifact"]))).content == b"heap dump bytes"


async def test_large_output_comes_back_truncated_with_a_link_to_all_of_it_scrubbed(
    shared_served: Served,
) -> None:
    row = "{:05d} request ok DB_PASSWORD=hunter2-demo-password " + "z" * 400 + "\n"
    (shared_served.state_tmp() / "big.log").write_text("".join(row.format(i) for i in range(10000)))
    result = await shared_served.cli(
        "exec", "--json", shared_served.instance, "--", "head", "-n", "10000", "/tmp/big.log"
    )
    assert result.code == 0, result.stderr
    data = result.json()
    assert data["truncated"] is True
    assert len(str(data["stdout"])) < 70_000
    links = data["links"]
    assert isinstance(links, dict) and set(links) == {"stdout"}
    answer = await fetch(str(links["stdout"]))
    assert answer.status_code == 200
    full = answer.text
    assert full.count("\n") == 10000
    assert len(full) > 4_000_000
    assert "hunter2" not in full


def _touch(path: Path) -> Path:
    path.touch()
    return path
