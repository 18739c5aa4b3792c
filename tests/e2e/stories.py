"""What the three troubleshooting stories need on any surface (CLI, MCP): load on the
demo function, the commands they ask for, a second person approving through the CLI,
fetching a collected file, and what a valid capture and profile look like."""

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

from bench.deployment import EXECGATE
from policies.instances.userns import find_mapping
from server.settings import DEMO_ENV
from tests.e2e.conftest import Served

PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"}
SLOW_PORT = "9100"  # demo-api's downstream dependency
PACKETS = 30
SECOND_PERSON = "local:second-person"
HOT_FUNCTION = "compute_price_report"  # demo-api's CPU-heavy path


def capture_argv(name: str) -> list[str]:
    """S2: the traffic to the slow dependency, written to /tmp/NAME."""
    write = ["-c", str(PACKETS), "-w", f"/tmp/{name}"]
    return ["tcpdump", "-i", "any", *write, "tcp", "port", SLOW_PORT]


def profile_argv(pid: str, name: str) -> list[str]:
    """S3: a speedscope profile of the function process, written to /tmp/NAME."""
    return [
        "py-spy",
        "record",
        "--pid",
        pid,
        "--duration",
        "4",
        "--format",
        "speedscope",
        "-o",
        f"/tmp/{name}",
    ]


def require_full_mapping() -> None:
    mapping = find_mapping()
    if isinstance(mapping, str):  # tcpdump cannot switch to its user without it
        pytest.fail(f"packet captures need the full id mapping: {mapping}; run `make tools`")


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


async def approve(served: Served, approval_id: str) -> dict[str, object]:
    """A second person approves with the CLI and the held request runs: the vote's JSON."""
    done = await served.cli("approvals", "approve", "--json", approval_id, principal=SECOND_PERSON)
    assert done.code == 0, done.stderr
    return done.json()


async def download(link: str) -> bytes:
    """The collected file behind an artifact link."""
    async with httpx.AsyncClient(trust_env=False) as client:
        answer = await client.get(link)
    assert answer.status_code == 200
    return answer.content


def assert_env_scrubbed(stdout: str) -> None:
    """S1: the live env, with the names of demo-api's fake credentials but not their values."""
    assert "APP_ENV=demo" in stdout and "FC_INSTANCE_ID=" in stdout
    assert "ALIBABA_CLOUD_ACCESS_KEY_SECRET=" in stdout  # the name is shown...
    for name in ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ALIBABA_CLOUD_SECURITY_TOKEN", "DB_PASSWORD"):
        assert DEMO_ENV[name] not in stdout  # ...its value is not


def function_pid(ps_stdout: str) -> str:
    """The function process's pid in `ps aux` from an exec."""
    lines = [line for line in ps_stdout.splitlines() if "/code/server.py" in line]
    assert lines, ps_stdout  # ps from an exec shows the function's process
    return lines[-1].split()[1]


def assert_capture_of_the_slow_dependency(capture: bytes, scratch: Path) -> None:
    """S2: a valid pcap (magic number) whose packets all go to or come from the slow
    dependency's port, as tcpdump itself reads it."""
    assert capture[:4] in PCAP_MAGICS
    local = scratch / "capture.cap"
    local.write_bytes(capture)
    read = subprocess.run(
        [shutil.which("tcpdump") or "tcpdump", "-nn", "-r", str(local)],
        capture_output=True,
        text=True,
        check=True,
    )
    packets = read.stdout.splitlines()
    assert len(packets) == PACKETS
    assert all(f".{SLOW_PORT}" in line for line in packets)


def assert_profile_names_the_hot_function(profile: bytes) -> None:
    """S3: a speedscope JSON profile naming demo-api's CPU-heavy function."""
    names = {frame["name"] for frame in json.loads(profile)["shared"]["frames"]}
    assert HOT_FUNCTION in names
