"""What only a bubblewrap sandbox guarantees: read-only root, private /tmp, no network."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import anyio
import pytest

from policies.errors import ProviderUnavailable
from policies.instances.sandbox import SandboxRunner, SandboxSpec
from policies.types import Limits
from tests.policies.instances.sandbox_helpers import Output, require_bwrap

LIMITS = Limits(timeout=30.0, idle_timeout=30.0)


@pytest.mark.bwrap
async def test_the_root_file_system_is_read_only(
    bwrap_runner: SandboxRunner, tmp_path: Path
) -> None:
    spec = SandboxSpec(env={}, state_dir=tmp_path / "state")
    with anyio.fail_after(30):
        result = await bwrap_runner.run(
            ["sh", "-c", "echo x > /etc/execgate-test-file"],
            spec,
            limits=LIMITS,
            on_output=Output(),
        )
    assert result.exit_code not in (0, None)
    assert not Path("/etc/execgate-test-file").exists()
    # Control: the same shell in the same sandbox writes where writing is allowed.
    with anyio.fail_after(30):
        control = await bwrap_runner.run(
            ["sh", "-c", "echo x > /tmp/execgate-test-file"],
            spec,
            limits=LIMITS,
            on_output=Output(),
        )
    assert control.exit_code == 0
    assert (spec.state_dir / "execgate-test-file").read_text() == "x\n"


@pytest.mark.bwrap
async def test_tmp_is_the_instance_state_directory(
    bwrap_runner: SandboxRunner, tmp_path: Path
) -> None:
    spec = SandboxSpec(env={}, state_dir=tmp_path / "state", workdir="/")
    out = Output()
    with anyio.fail_after(30):
        result = await bwrap_runner.run(
            ["sh", "-c", "echo private > /tmp/mine && cat /tmp/mine && pwd"],
            spec,
            limits=LIMITS,
            on_output=out,
        )
    assert result.exit_code == 0
    assert out.text("stdout") == "private\n/\n"
    assert (spec.state_dir / "mine").read_text() == "private\n"


@pytest.mark.bwrap
async def test_the_host_home_is_not_visible(bwrap_runner: SandboxRunner, tmp_path: Path) -> None:
    spec = SandboxSpec(env={}, state_dir=tmp_path / "state")
    with anyio.fail_after(30):
        result = await bwrap_runner.run(
            ["ls", str(Path(__file__).parent)], spec, limits=LIMITS, on_output=Output()
        )
    assert result.exit_code not in (0, None)


@pytest.mark.bwrap
async def test_the_code_directory_is_mounted_read_only_at_code(
    bwrap_runner: SandboxRunner, tmp_path: Path
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.txt").write_text("v1\n")
    spec = SandboxSpec(env={}, state_dir=tmp_path / "state", code_dir=code, workdir="/code")
    out = Output()
    with anyio.fail_after(30):
        read = await bwrap_runner.run(["cat", "app.txt"], spec, limits=LIMITS, on_output=out)
        write = await bwrap_runner.run(
            ["sh", "-c", "echo v2 > /code/app.txt"], spec, limits=LIMITS, on_output=Output()
        )
    assert read.exit_code == 0 and out.text("stdout") == "v1\n"
    assert write.exit_code not in (0, None)
    assert (code / "app.txt").read_text() == "v1\n"


@pytest.mark.bwrap
async def test_the_command_has_no_capabilities(bwrap_runner: SandboxRunner, tmp_path: Path) -> None:
    spec = SandboxSpec(env={}, state_dir=tmp_path / "state")
    out = Output()
    with anyio.fail_after(30):
        await bwrap_runner.run(
            ["grep", "^CapEff", "/proc/self/status"], spec, limits=LIMITS, on_output=out
        )
    assert out.text("stdout").split() == ["CapEff:", "0000000000000000"]


async def test_a_sandboxed_command_cannot_reach_the_host_network(
    runner: SandboxRunner, tmp_path: Path
) -> None:
    bash = shutil.which("bash")
    if bash is None or not bash.startswith(("/usr/", "/bin/")):
        pytest.skip("needs bash from /usr or /bin for /dev/tcp")
    connections = 0

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    spec = SandboxSpec(env={}, state_dir=tmp_path / "state")
    try:
        with anyio.fail_after(30):
            result = await runner.run(
                [bash, "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"],
                spec,
                limits=LIMITS,
                on_output=Output(),
            )
    finally:
        server.close()
        await server.wait_closed()
    # Neither mode has the host's network: sandbox mode "none" gives each command an
    # empty network namespace of its own.
    assert result.exit_code != 0
    assert connections == 0


@pytest.mark.bwrap
async def test_the_sandbox_has_only_a_loopback_interface(
    bwrap_runner: SandboxRunner, tmp_path: Path
) -> None:
    spec = SandboxSpec(env={}, state_dir=tmp_path / "state")
    out = Output()
    with anyio.fail_after(30):
        await bwrap_runner.run(["cat", "/proc/net/dev"], spec, limits=LIMITS, on_output=out)
    lines = out.text("stdout").splitlines()[2:]
    assert [line.split(":")[0].strip() for line in lines] == ["lo"]


async def test_mode_bwrap_refuses_to_fall_back(tmp_path: Path) -> None:
    runner = SandboxRunner("bwrap", bwrap_path=str(tmp_path / "no-bwrap"))
    with pytest.raises(ProviderUnavailable) as caught:
        await runner.probe()
    assert caught.value.code == "provider_unavailable"
    with pytest.raises(ProviderUnavailable):
        await runner.run(
            ["true"],
            SandboxSpec(env={}, state_dir=tmp_path / "state"),
            limits=LIMITS,
            on_output=Output(),
        )
    assert not runner.sandboxed


@pytest.mark.bwrap
async def test_mode_auto_uses_bwrap_where_it_works() -> None:
    require_bwrap()
    runner = SandboxRunner("auto")
    assert runner.sandboxed is False  # not claimed before the probe
    assert await runner.probe() is True
    assert runner.sandboxed


@pytest.mark.bwrap
async def test_only_the_etc_files_programs_need_are_visible(
    bwrap_runner: SandboxRunner, tmp_path: Path
) -> None:
    spec = SandboxSpec(env={}, state_dir=tmp_path / "state")
    out = Output()
    script = (
        "for f in /etc/passwd /etc/group /etc/ld.so.cache /etc/shadow /etc/sudoers "
        "/etc/ssh /etc/postgresql; do test -e $f && echo seen $f || echo hidden $f; done; id"
    )
    with anyio.fail_after(30):
        result = await bwrap_runner.run(["sh", "-c", script], spec, limits=LIMITS, on_output=out)
    assert result.exit_code == 0
    lines = out.text("stdout").splitlines()
    assert lines[:7] == [
        "seen /etc/passwd",
        "seen /etc/group",
        "seen /etc/ld.so.cache",
        "hidden /etc/shadow",
        "hidden /etc/sudoers",
        "hidden /etc/ssh",
        "hidden /etc/postgresql",
    ]
    assert lines[7].startswith("uid=")  # user names still resolve
