"""The sandbox runner, in bubblewrap and in the unsandboxed fallback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from policies.errors import CommandRejected, ConfigError
from policies.instances.sandbox import SandboxRunner, SandboxSpec
from policies.types import Limits, Stream
from tests.policies.instances.sandbox_helpers import (
    Output,
    env_of,
    feed,
    open_pidfds,
    pids_with,
    unique_sleep_seconds,
    wait_exited,
)

LIMITS = Limits(timeout=30.0, idle_timeout=30.0)


def spec_for(tmp_path: Path, env: dict[str, str] | None = None) -> SandboxSpec:
    return SandboxSpec(env=env or {}, state_dir=tmp_path / "state")


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["true"], 0),
        (["false"], 1),
        (["sh", "-c", "exit 3"], 3),
        (["no-such-command-anywhere"], 127),
        (["/usr/bin/no-such-command"], 127),
        (["sh", "-c", "kill -TERM $$"], 128 + 15),
    ],
    ids=["zero", "one", "three", "missing-in-path", "missing-absolute", "killed-by-signal"],
)
async def test_exit_code_of_the_command_is_reported(
    runner: SandboxRunner, tmp_path: Path, argv: list[str], code: int
) -> None:
    with anyio.fail_after(30):
        result = await runner.run(argv, spec_for(tmp_path), limits=LIMITS, on_output=Output())
    assert result.exit_code == code
    assert not result.timed_out and not result.idle_timed_out


async def test_a_file_without_execute_permission_exits_126(
    runner: SandboxRunner, tmp_path: Path
) -> None:
    spec = spec_for(tmp_path)
    spec.state_dir.mkdir(parents=True)
    (spec.state_dir / "script.sh").write_text("echo hi\n")
    with anyio.fail_after(30):
        result = await runner.run(["./script.sh"], spec, limits=LIMITS, on_output=Output())
    assert result.exit_code == 126


async def test_stdout_and_stderr_arrive_on_their_own_streams(
    runner: SandboxRunner, tmp_path: Path
) -> None:
    out = Output()
    argv = ["sh", "-c", "echo to-out; echo to-err >&2; echo more-out"]
    with anyio.fail_after(30):
        result = await runner.run(argv, spec_for(tmp_path), limits=LIMITS, on_output=out)
    assert result.exit_code == 0
    assert out.text("stdout") == "to-out\nmore-out\n"
    assert out.text("stderr") == "to-err\n"


async def test_several_megabytes_of_output_arrive_whole_and_in_order(
    runner: SandboxRunner, tmp_path: Path
) -> None:
    out = Output()
    argv = ["sh", "-c", "seq 1 600000; seq 600000 -1 1 >&2"]
    with anyio.fail_after(60):
        result = await runner.run(argv, spec_for(tmp_path), limits=LIMITS, on_output=out)
    assert result.exit_code == 0
    forward = "".join(f"{i}\n" for i in range(1, 600001))
    assert len(forward) > 4_000_000
    assert out.text("stdout") == forward
    assert out.text("stderr") == "".join(f"{i}\n" for i in range(600000, 0, -1))
    assert max(len(data) for _, data in out.chunks) <= 64 * 1024


async def test_stdin_is_fed_to_the_command_and_closed_at_its_end(
    runner: SandboxRunner, tmp_path: Path
) -> None:
    out = Output()
    chunks = [b"first line\n", b"", b"x" * 200_000, b"\nlast line\n"]
    with anyio.fail_after(30):
        # cat ends only when its stdin is closed.
        result = await runner.run(
            ["cat"], spec_for(tmp_path), limits=LIMITS, on_output=out, stdin=feed(*chunks)
        )
    assert result.exit_code == 0
    assert out.data("stdout") == b"".join(chunks)


async def test_without_stdin_the_command_reads_end_of_file(
    runner: SandboxRunner, tmp_path: Path
) -> None:
    out = Output()
    with anyio.fail_after(30):
        result = await runner.run(["wc", "-c"], spec_for(tmp_path), limits=LIMITS, on_output=out)
    assert result.exit_code == 0
    assert out.text("stdout").strip() == "0"


async def test_a_command_that_ignores_its_stdin_still_ends(
    runner: SandboxRunner, tmp_path: Path
) -> None:
    never = asyncio.Event()

    async def endless() -> None:
        await never.wait()

    async def stdin() -> AsyncIterator[bytes]:
        yield b"ignored\n"
        await endless()
        yield b"never sent"

    with anyio.fail_after(30):
        result = await runner.run(
            ["true"], spec_for(tmp_path), limits=LIMITS, on_output=Output(), stdin=stdin()
        )
    assert result.exit_code == 0


async def test_the_function_env_is_visible_and_the_host_env_is_not(
    runner: SandboxRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXECGATE_TEST_HOST_MARKER", "host-only")
    out = Output()
    spec = spec_for(tmp_path, {"APP_ENV": "demo", "PATH": "/usr/bin:/bin"})
    with anyio.fail_after(30):
        result = await runner.run(["env"], spec, limits=LIMITS, on_output=out)
    assert result.exit_code == 0
    env = env_of(out)
    assert env["APP_ENV"] == "demo"
    assert env["PATH"] == "/usr/bin:/bin"
    assert env["LANG"] == "C.UTF-8"
    assert "EXECGATE_TEST_HOST_MARKER" not in env


async def test_files_in_the_working_directory_live_in_the_state_directory(
    runner: SandboxRunner, tmp_path: Path
) -> None:
    spec = spec_for(tmp_path)
    with anyio.fail_after(30):
        first = await runner.run(
            ["sh", "-c", "echo kept > note.txt"], spec, limits=LIMITS, on_output=Output()
        )
        out = Output()
        second = await runner.run(["cat", "note.txt"], spec, limits=LIMITS, on_output=out)
    assert (first.exit_code, second.exit_code) == (0, 0)
    assert out.text("stdout") == "kept\n"
    assert (spec.state_dir / "note.txt").read_text() == "kept\n"


async def test_the_timeout_kills_the_whole_process_tree(
    runner: SandboxRunner, tmp_path: Path
) -> None:
    seconds = unique_sleep_seconds()
    out = Output(wait_for=b"started")
    pidfds: list[int] = []

    async def run() -> None:
        script = f"sleep {seconds} & echo started; wait"
        result = await runner.run(
            ["sh", "-c", script],
            spec_for(tmp_path),
            limits=Limits(timeout=0.5, idle_timeout=30.0),
            on_output=out,
        )
        assert result.exit_code is None
        assert result.timed_out and not result.idle_timed_out

    with anyio.fail_after(30):
        task = asyncio.create_task(run())
        await out.seen.wait()
        pids = pids_with(seconds)
        pidfds = open_pidfds(pids)
        assert len(pidfds) >= 2  # the shell and its background child, at least
        await task
        if runner.sandboxed:
            # The pid namespace is torn down and reaped before the run returns.
            assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
        await wait_exited(pidfds)
    assert all(_dead(pid) for pid in pids)


async def test_the_idle_timeout_fires_when_the_command_is_silent(
    runner: SandboxRunner, tmp_path: Path
) -> None:
    with anyio.fail_after(30):
        result = await runner.run(
            ["sleep", unique_sleep_seconds()],
            spec_for(tmp_path),
            limits=Limits(timeout=30.0, idle_timeout=0.5),
            on_output=Output(),
        )
    assert result.exit_code is None
    assert result.idle_timed_out and not result.timed_out


async def test_output_keeps_the_idle_timeout_away(runner: SandboxRunner, tmp_path: Path) -> None:
    with anyio.fail_after(30):
        result = await runner.run(
            ["sh", "-c", "while :; do echo tick; sleep 0.05; done"],
            spec_for(tmp_path),
            limits=Limits(timeout=1.0, idle_timeout=10.0),
            on_output=Output(),
        )
    assert result.timed_out and not result.idle_timed_out


async def test_cancelling_a_run_kills_the_whole_process_tree(
    runner: SandboxRunner, tmp_path: Path
) -> None:
    seconds = unique_sleep_seconds()
    out = Output(wait_for=b"started")
    with anyio.fail_after(30):
        task = asyncio.create_task(
            runner.run(
                ["sh", "-c", f"sleep {seconds} & echo started; wait"],
                spec_for(tmp_path),
                limits=LIMITS,
                on_output=out,
            )
        )
        await out.seen.wait()
        pidfds = open_pidfds(pids_with(seconds))
        assert pidfds
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_exited(pidfds)


async def test_a_failing_output_callback_stops_the_command_and_propagates(
    runner: SandboxRunner, tmp_path: Path
) -> None:
    seconds = unique_sleep_seconds()
    pidfds: list[int] = []

    async def refuse(stream: Stream, data: bytes) -> None:
        pidfds.extend(open_pidfds(pids_with(seconds)))
        raise CommandRejected("the reader went away", kind="test")

    with anyio.fail_after(30):
        with pytest.raises(CommandRejected):
            await runner.run(
                ["sh", "-c", f"sleep {seconds} & echo hello; wait"],
                spec_for(tmp_path),
                limits=LIMITS,
                on_output=refuse,
            )
        assert pidfds
        await wait_exited(pidfds)


async def test_an_environment_that_could_smuggle_arguments_is_refused(
    runner: SandboxRunner, tmp_path: Path
) -> None:
    spec = spec_for(tmp_path, {"EVIL": "x\0--bind\0/\0/tmp"})
    with pytest.raises(ConfigError):
        await runner.run(["true"], spec, limits=LIMITS, on_output=Output())


async def test_an_empty_command_is_rejected(runner: SandboxRunner, tmp_path: Path) -> None:
    with pytest.raises(CommandRejected) as caught:
        await runner.run([], spec_for(tmp_path), limits=LIMITS, on_output=Output())
    assert caught.value.code == "command_rejected"


def _dead(pid: int) -> bool:
    """Gone, or a zombie waiting for a reaper outside the tree: nothing runs any more."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] in {"Z", "X"}
