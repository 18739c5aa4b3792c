"""A missing sandbox refuses to run local instances; no mode lets a command read
ExecGate's own keys, database or config; ``ps`` in an instance shows no host paths and
no exit-code nonce."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from policies.errors import ProviderUnavailable
from policies.instances.fc.framing import new_nonce, wrap_argv
from policies.instances.local import InstanceManager, LocalFunction
from policies.instances.sandbox import SandboxMode, SandboxRunner, SandboxSpec
from policies.types import Limits
from tests.policies.instances.sandbox_helpers import Output

LIMITS = Limits(timeout=30.0, idle_timeout=30.0)
SECRETS = {
    "artifact-signing.key": "ARTIFACT-SIGNING-KEY-SECRET",
    "audit-checkpoint.key": "CHECKPOINT-KEY-SECRET",
    "audit.db": "AUDIT-DATABASE-ROWS",
}
CONFIG_SECRET = "CONFIG-SLACK-TOKEN-SECRET"


@pytest.fixture
def world() -> Iterator[Path]:
    """A directory every user can traverse, unlike pytest's own 0700 tmp_path: a read
    refused below it is refused by ExecGate, not by where the test happens to run."""
    root = Path(tempfile.mkdtemp(prefix="execgate-world-", dir="/var/tmp"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _execgate_files(world: Path) -> tuple[Path, Path]:
    data = world / "data"
    data.mkdir(mode=0o755)
    for name, secret in SECRETS.items():
        (data / name).write_text(secret + "\n")
        (data / name).chmod(0o644)
    config = world / "execgate.toml"
    config.write_text(f'bot_token = "{CONFIG_SECRET}"\n')
    config.chmod(0o644)
    (world / "public.txt").write_text("PUBLIC-CONTROL\n")
    (world / "public.txt").chmod(0o644)
    return data, config


async def test_mode_auto_refuses_to_run_anything_when_bwrap_does_not_work(
    tmp_path: Path,
) -> None:
    tried = tmp_path / "bwrap-was-tried"
    fake = tmp_path / "bwrap"
    fake.write_text(
        f"#!/bin/sh\ntouch {tried}\necho 'bwrap: No permissions to create new namespace' >&2\n"
        "exit 1\n"
    )
    fake.chmod(0o755)
    runner = SandboxRunner("auto", bwrap_path=str(fake))
    with pytest.raises(ProviderUnavailable) as caught:
        await runner.probe()
    assert caught.value.code == "provider_unavailable"
    assert "apt-get install -y bubblewrap" in caught.value.safe_message
    assert 'sandbox = "none"' in caught.value.safe_message
    assert tried.exists()  # the probe really ran bubblewrap, and it refused
    marker = tmp_path / "state" / "ran"
    with pytest.raises(ProviderUnavailable):
        await runner.run(
            ["touch", str(marker)],
            SandboxSpec(env={}, state_dir=tmp_path / "state"),
            limits=LIMITS,
            on_output=Output(),
        )
    assert not marker.exists()
    assert not runner.sandboxed


async def test_a_manager_without_a_working_sandbox_does_not_start(tmp_path: Path) -> None:
    runner = SandboxRunner("auto", bwrap_path=str(tmp_path / "no-bwrap"))
    manager = InstanceManager([LocalFunction("demo", env={})], runner, tmp_path / "data")
    with pytest.raises(ProviderUnavailable):
        await manager.start()
    assert not (tmp_path / "data" / "instances.json").exists()


@pytest.mark.parametrize(
    "mode", [pytest.param("bwrap", marks=pytest.mark.bwrap), "none"], ids=["bwrap", "none"]
)
async def test_no_sandbox_mode_lets_a_command_read_execgate_keys_database_or_config(
    mode: SandboxMode, world: Path, unsandboxed_tmp: Path
) -> None:
    data, config = _execgate_files(world)
    runner = SandboxRunner(mode, protected=[config], unsandboxed_tmp=unsandboxed_tmp)
    manager = InstanceManager([LocalFunction("demo", env={})], runner, data)
    if mode == "none":
        # A config file the unsandboxed user could read: refused before anything runs.
        with pytest.raises(ProviderUnavailable) as caught:
            await manager.start()
        assert caught.value.fields["path"] == str(config)
        config.chmod(0o600)
        runner = SandboxRunner(mode, protected=[config], unsandboxed_tmp=unsandboxed_tmp)
        manager = InstanceManager([LocalFunction("demo", env={})], runner, data)
    await manager.start()
    try:
        (instance,) = manager.list("demo")
        targets = [str(data / name) for name in SECRETS] + [str(config)]
        control = str(world / "public.txt") if mode == "none" else "/etc/hostname"
        for path in [*targets, control]:
            out = Output()
            with anyio.fail_after(30):
                result = await manager.exec(
                    "demo",
                    instance.instance_id,
                    ["head", "-n", "2", path],
                    limits=LIMITS,
                    on_output=out,
                )
            if path == control:
                # The same command, same instance, reads what it may: it really ran.
                assert result.exit_code == 0, out.text("stderr")
                assert out.data("stdout")
            else:
                assert result.exit_code != 0, path
                assert out.data("stdout") == b""
                assert out.data("stderr")  # head said why (no such file / permission)
                for secret in [*SECRETS.values(), CONFIG_SECRET]:
                    assert secret not in out.text("stdout") + out.text("stderr")
    finally:
        await manager.aclose()


async def test_mode_none_refuses_to_start_without_root_to_drop_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    runner = SandboxRunner("none")
    with pytest.raises(ProviderUnavailable) as caught:
        await runner.probe()
    assert "bubblewrap" in caught.value.safe_message


@pytest.mark.bwrap
async def test_ps_in_an_instance_shows_no_host_path_and_no_exit_code_nonce(
    tmp_path: Path,
) -> None:
    runner = SandboxRunner("bwrap")
    data = tmp_path / "data-dir-on-the-host"
    manager = InstanceManager([LocalFunction("demo", env={})], runner, data)
    await manager.start()
    try:
        (instance,) = manager.list("demo")
        nonce = new_nonce()
        out = Output()
        with anyio.fail_after(30):
            result = await manager.exec(
                "demo",
                instance.instance_id,
                wrap_argv(["ps", "-efww"], nonce, run_id=new_nonce()),
                limits=LIMITS,
                on_output=out,
            )
        listing = out.text("stdout")
        assert result.exit_code == 0
        assert "ps -efww" in listing  # ps listed the instance's processes, itself included
        assert nonce not in listing
        assert str(tmp_path) not in listing
        assert str(data) not in listing
    finally:
        await manager.aclose()


async def test_mode_none_refuses_an_instances_tmp_root_another_user_owns(world: Path) -> None:
    squatted = world / "execgate-instances"
    squatted.mkdir(mode=0o777)
    os.chown(squatted, 65534, 65534)  # made first by the user commands run as
    runner = SandboxRunner("none", unsandboxed_tmp=squatted)
    with pytest.raises(ProviderUnavailable) as caught:
        await runner.probe()
    assert caught.value.fields["path"] == str(squatted)
    assert runner.identity is None


@pytest.mark.bwrap
async def test_a_link_planted_in_tmp_does_not_tell_whether_a_host_file_exists(
    world: Path, tmp_path: Path
) -> None:
    # ExecGate looks a command up on the host before entering the sandbox; through a
    # link to the host's / that look-up must not answer "exists" (126) or "missing"
    # (127) for ExecGate's own files.
    data, _ = _execgate_files(world)
    data.chmod(0o700)
    manager = InstanceManager(
        [LocalFunction("demo", env={}, command=("sleep", "infinity"), listens=False)],
        SandboxRunner("bwrap"),
        tmp_path / "data",
    )
    await manager.start()
    try:
        (instance,) = manager.list("demo")

        async def code_of(*argv: str) -> tuple[int | None, str]:
            out = Output()
            with anyio.fail_after(30):
                result = await manager.exec(
                    "demo", instance.instance_id, argv, limits=LIMITS, on_output=out
                )
            return result.exit_code, out.text("stderr")

        assert (await code_of("sh", "-c", "ln -s / /tmp/hostroot"))[0] == 0
        present = await code_of(f"/tmp/hostroot{data}/artifact-signing.key")
        absent = await code_of(f"/tmp/hostroot{data}/no-such.key")
    finally:
        await manager.aclose()
    assert present[0] == absent[0]
    assert present[1].replace("artifact-signing", "X") == absent[1].replace("no-such", "X")
