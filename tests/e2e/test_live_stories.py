"""The three stories ExecGate exists for, against a real `execgate serve` (bubblewrap)
and the real CLI: S1 the live env (scrubbed), S2 a packet capture of the traffic to a
slow dependency, S3 a profile of the function process under load."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest

from policies.instances.userns import find_mapping
from server.cli.exits import EXIT_PENDING
from server.settings import DEMO_ENV
from tests.e2e.conftest import EXECGATE, Served
from tests.policies.instances.sandbox_helpers import require_bwrap

pytestmark = pytest.mark.bwrap
PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"}


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_bwrap()
    for tool in ("/usr/local/bin/py-spy", shutil.which("tcpdump")):
        if tool is None or not os.path.exists(tool):
            pytest.fail("local instances need tcpdump and py-spy on the host: run `make tools`")


@asynccontextmanager
async def traffic(served: Served, path: str, rate: int) -> AsyncIterator[None]:
    """`execgate invoke` sending load in the background for as long as the block runs
    (approvals through the CLI take a while on a busy machine)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EXECGATE_")}
    environ["EXECGATE_CONFIG"] = str(served.config)
    proc = await asyncio.create_subprocess_exec(
        EXECGATE,
        "invoke",
        "demo-api",
        "--path",
        path,
        "--rate",
        str(rate),
        "--duration",
        "600",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=environ,
    )
    try:
        yield
    finally:
        assert proc.returncode is None  # the load ran the whole time
        proc.terminate()
        with anyio.fail_after(30):
            await proc.wait()


async def approved(served: Served, *argv: str) -> dict[str, object]:
    asked = await served.cli("exec", "--json", served.instance, "--", *argv)
    assert asked.code == EXIT_PENDING, asked.stderr
    approval_id = str(asked.json()["approval_id"])
    done = await served.cli(
        "approvals", "approve", "--json", approval_id, principal="local:second-person"
    )
    result = done.json()["result"]
    assert isinstance(result, dict), done.stdout
    return result


async def collected(served: Served, path: str) -> bytes:
    result = await served.cli("collect", "--json", served.instance, path)
    assert result.code == 0, result.stderr
    async with httpx.AsyncClient(trust_env=False) as client:
        answer = await client.get(str(result.json()["link"]))
    assert answer.status_code == 200
    return answer.content


async def function_pid(served: Served) -> str:
    ps = await served.cli("exec", "--json", served.instance, "--", "ps", "aux")
    assert ps.code == 0, ps.stderr
    stdout = str(ps.json()["stdout"])
    lines = [line for line in stdout.splitlines() if "/code/server.py" in line]
    assert lines, stdout  # ps from an exec shows the function's process
    return lines[-1].split()[1]


async def test_s1_env_of_the_live_instance_is_scrubbed(served: Served) -> None:
    result = await served.cli("exec", "--json", served.instance, "--", "env")
    assert result.code == 0, result.stderr
    stdout = str(result.json()["stdout"])
    assert "APP_ENV=demo" in stdout and "FC_INSTANCE_ID=" in stdout
    assert "ALIBABA_CLOUD_ACCESS_KEY_SECRET=" in stdout  # the name is shown...
    for name in ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ALIBABA_CLOUD_SECURITY_TOKEN", "DB_PASSWORD"):
        assert DEMO_ENV[name] not in stdout  # ...its value is not


async def test_s2_a_capture_of_the_slow_dependency_is_approved_collected_and_valid(
    served: Served, tmp_path: Path
) -> None:
    mapping = find_mapping()
    if isinstance(mapping, str):  # tcpdump cannot switch to its user without it
        pytest.fail(f"packet captures need the full id mapping: {mapping}; run `make tools`")
    async with traffic(served, "/checkout?delay_ms=200", rate=10):
        result = await approved(
            served, "tcpdump", "-i", "any", "-c", "30", "-w", "/tmp/slow.cap", "tcp", "port", "9100"
        )
    assert result["exit_code"] == 0, result  # tcpdump stopped after its 30 packets
    capture = await collected(served, "/tmp/slow.cap")
    assert capture[:4] in PCAP_MAGICS
    local = tmp_path / "slow.cap"
    local.write_bytes(capture)
    read = subprocess.run(
        [shutil.which("tcpdump") or "tcpdump", "-nn", "-r", str(local)],
        capture_output=True,
        text=True,
        check=True,
    )
    packets = read.stdout.splitlines()
    assert len(packets) == 30
    assert all(".9100" in line for line in packets)


async def test_s3_a_profile_under_load_is_approved_collected_and_names_the_hot_function(
    served: Served,
) -> None:
    pid = await function_pid(served)
    async with traffic(served, "/report?rounds=2000000", rate=3):
        result = await approved(
            served,
            "py-spy",
            "record",
            "--pid",
            pid,
            "--duration",
            "4",
            "--format",
            "speedscope",
            "-o",
            "/tmp/profile.json",
        )
    assert result["exit_code"] == 0, result
    profile = json.loads(await collected(served, "/tmp/profile.json"))
    names = {frame["name"] for frame in profile["shared"]["frames"]}
    assert "compute_price_report" in names
