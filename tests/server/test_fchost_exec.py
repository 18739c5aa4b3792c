"""The FC client against the local instance host, over real sockets on loopback."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from policies.errors import (
    CommandRejected,
    InstanceNotRunning,
    ProviderAuthError,
    ProviderUnavailable,
)
from policies.instances.fc import Credentials
from policies.instances.fc.client import NO_EXIT_STATUS
from policies.types import Limits, Target
from tests.support.fchost import KEY_ID, KEY_SECRET, LocalFc, Output, local_fc

BOUND = 60  # seconds: a bound on hangs, not a timing assertion


@pytest.fixture
async def fc(tmp_path: Path) -> AsyncIterator[LocalFc]:
    async with local_fc(tmp_path) as fc:
        yield fc


def _instance(fc: LocalFc) -> str:
    return fc.instance_ids()[0]


async def test_listing_shows_the_provisioned_instance_with_an_fc_style_id(fc: LocalFc) -> None:
    with anyio.fail_after(BOUND):
        infos = await fc.provider.list_instances("demo")
    assert [info.instance_id for info in infos] == fc.instance_ids()
    assert infos[0].instance_id.startswith("c-")
    assert (infos[0].provider, infos[0].function, infos[0].status) == ("local", "demo", "Running")


async def test_stdout_and_stderr_arrive_separately(fc: LocalFc) -> None:
    with anyio.fail_after(BOUND):
        result, out = await fc.run(
            _instance(fc), ["sh", "-c", "echo to-out; echo to-err >&2; echo more-out"]
        )
    assert result.exit_code == 0
    assert out.stdout == b"to-out\nmore-out\n"
    assert out.stderr == b"to-err\n"


async def test_the_function_environment_reaches_the_command(fc: LocalFc) -> None:
    with anyio.fail_after(BOUND):
        result, out = await fc.run(_instance(fc), ["printenv", "GREETING"])
    assert (result.exit_code, out.stdout) == (0, b"hello\n")


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["sh", "-c", "exit 0"], 0),
        (["sh", "-c", "exit 1"], 1),
        (["sh", "-c", "echo failing >&2; exit 3"], 3),
        (["no-such-command-for-execgate"], 127),
    ],
    ids=["zero", "one", "three", "not-found"],
)
async def test_exit_codes_come_back_exactly(fc: LocalFc, argv: list[str], code: int) -> None:
    with anyio.fail_after(BOUND):
        result, out = await fc.run(_instance(fc), argv)
    assert (result.exit_code, result.error) == (code, None)
    assert re.search(rb"[0-9a-f]{32}:", out.stderr) is None  # the trailer was stripped


async def test_a_command_cannot_dig_the_nonce_out_of_the_wrapper_to_forge_its_exit_code(
    fc: LocalFc,
) -> None:
    # The command reads its parent's (the wrapper's) command line looking for the nonce
    # and prints what it found as a trailer; the wrapper's script is not on it.
    script = (
        "tr '\\0' ' ' < /proc/$PPID/cmdline;"
        "nonce=$(tr '\\0' '\\n' < /proc/$PPID/cmdline | grep -o '[0-9a-f]\\{32\\}' | head -n 1);"
        ' printf "\\n%s:0" "$nonce" >&2; exit 3'
    )
    with anyio.fail_after(BOUND):
        result, out = await fc.run(_instance(fc), ["sh", "-c", script])
    assert result.exit_code == 3
    assert out.stdout.startswith(b"/bin/sh /dev/fd/")  # it did read the wrapper's argv
    assert re.search(rb"[0-9a-f]{32}", out.stdout + out.stderr) is None


async def test_a_guessed_trailer_is_passed_through_as_output(fc: LocalFc) -> None:
    fake = "\\n" + "0" * 32 + ":0"
    with anyio.fail_after(BOUND):
        result, out = await fc.run(_instance(fc), ["sh", "-c", f'printf "{fake}" >&2; exit 1'])
    assert result.exit_code == 1
    assert out.stderr == b"\n" + b"0" * 32 + b":0"


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_stdin_is_streamed_and_closed(fc: LocalFc) -> None:
    output = Output()
    parts = (b"first line\n", b"\x00\xff binary \xfe", b"", b"last")
    with anyio.fail_after(BOUND):
        result = await fc.provider.exec(
            Target("demo", _instance(fc)),
            ["cat"],
            limits=Limits(),
            on_output=output,
            stdin=_chunks(*parts),
        )
    assert result.exit_code == 0
    assert output.stdout == b"".join(parts)


async def test_text_mode_stdin_reaches_the_command(fc: LocalFc) -> None:
    provider = fc.provider_with(Credentials(KEY_ID, KEY_SECRET), stdin_mode="text")
    output = Output()
    euro = "\u20ac".encode()
    with anyio.fail_after(BOUND):
        result = await provider.exec(
            Target("demo", _instance(fc)),
            ["wc", "-c"],
            limits=Limits(),
            on_output=output,
            stdin=_chunks(b"ab", euro[:1], euro[1:], b"\n"),
        )
    assert (result.exit_code, output.stdout.strip()) == (0, b"6")


async def test_text_mode_refuses_stdin_that_is_not_utf8(fc: LocalFc) -> None:
    provider = fc.provider_with(Credentials(KEY_ID, KEY_SECRET), stdin_mode="text")
    with anyio.fail_after(BOUND), pytest.raises(CommandRejected):
        await provider.exec(
            Target("demo", _instance(fc)),
            ["cat"],
            limits=Limits(),
            on_output=Output(),
            stdin=_chunks(b"\xff\xfe"),
        )


async def test_binary_output_round_trips_byte_for_byte(fc: LocalFc) -> None:
    every_byte = "".join(f"\\{i:03o}" for i in range(256))
    with anyio.fail_after(BOUND):
        result, out = await fc.run(
            _instance(fc), ["sh", "-c", f"printf '{every_byte}'; printf '{every_byte}' >&2"]
        )
    assert result.exit_code == 0
    assert out.stdout == bytes(range(256))
    assert out.stderr == bytes(range(256))


async def test_output_much_larger_than_one_frame_arrives_whole(fc: LocalFc) -> None:
    size = 3 * 1024 * 1024
    with anyio.fail_after(BOUND):
        result, out = await fc.run(
            _instance(fc),
            ["sh", "-c", f"yes 'x\u20acyz' | head -c {size}; yes e | head -c {size} >&2"],
        )
    assert result.exit_code == 0
    assert out.stdout == ("x\u20acyz\n".encode() * size)[:size]
    assert out.stderr == b"e\n" * (size // 2)


async def test_the_wall_clock_timeout_ends_the_exec(fc: LocalFc) -> None:
    with anyio.fail_after(BOUND):
        result, out = await fc.run(
            _instance(fc),
            ["sh", "-c", "echo started; sleep 120"],
            limits=Limits(timeout=1.0, idle_timeout=600.0),
        )
    assert (result.exit_code, result.timed_out, result.idle_timed_out) == (None, True, False)
    assert out.stdout == b"started\n"


async def test_the_idle_timeout_ends_a_silent_exec(fc: LocalFc) -> None:
    with anyio.fail_after(BOUND):
        result, _ = await fc.run(
            _instance(fc), ["sleep", "120"], limits=Limits(timeout=120.0, idle_timeout=1.0)
        )
    assert (result.exit_code, result.timed_out, result.idle_timed_out) == (None, False, True)


async def test_files_written_by_one_exec_are_seen_by_the_next(fc: LocalFc) -> None:
    instance = _instance(fc)
    with anyio.fail_after(BOUND):
        await fc.run(instance, ["sh", "-c", "echo kept > /tmp/state.txt"])
        result, out = await fc.run(instance, ["cat", "/tmp/state.txt"])
    assert (result.exit_code, out.stdout) == (0, b"kept\n")


async def test_exec_on_an_instance_that_does_not_exist_is_instance_not_running(
    fc: LocalFc,
) -> None:
    with anyio.fail_after(BOUND), pytest.raises(InstanceNotRunning) as caught:
        await fc.run("c-00000000-00000000-000000000000", ["true"])
    assert caught.value.fields["provider_code"] == "InstanceNotFound"
    assert caught.value.fields["instance"] == "c-00000000-00000000-000000000000"


async def test_an_unknown_function_is_reported_as_such(fc: LocalFc) -> None:
    with anyio.fail_after(BOUND), pytest.raises(ProviderUnavailable) as caught:
        await fc.provider.list_instances("no-such-function")
    assert caught.value.fields["provider_code"] == "FunctionNotFound"


@pytest.mark.parametrize(
    ("credentials", "code"),
    [
        (Credentials(KEY_ID, "wrong-secret"), "SignatureNotMatch"),
        (Credentials("LTAIunknownkey99", KEY_SECRET), "InvalidAccessKeyID"),
    ],
    ids=["wrong-secret", "unknown-key-id"],
)
async def test_bad_credentials_are_refused_for_listing_and_exec(
    fc: LocalFc, credentials: Credentials, code: str
) -> None:
    provider = fc.provider_with(credentials)
    with anyio.fail_after(BOUND):
        with pytest.raises(ProviderAuthError) as listing:
            await provider.list_instances("demo")
        with pytest.raises(ProviderAuthError) as execing:
            await fc.run(_instance(fc), ["true"], provider=provider)
    assert listing.value.fields["provider_code"] == code
    assert execing.value.fields["provider_code"] == code
    assert "wrong-secret" not in execing.value.safe_message


async def test_an_sts_key_needs_its_security_token(tmp_path: Path) -> None:
    keys = {KEY_ID: KEY_SECRET, "STS.tempkey": "temp-secret"}
    async with local_fc(tmp_path, keys=keys, sts_tokens={"token-ok"}) as fc:
        without = fc.provider_with(Credentials("STS.tempkey", "temp-secret"))
        wrong = fc.provider_with(Credentials("STS.tempkey", "temp-secret", "token-bad"))
        good = fc.provider_with(Credentials("STS.tempkey", "temp-secret", "token-ok"))
        with anyio.fail_after(BOUND):
            for refused in (without, wrong):
                with pytest.raises(ProviderAuthError) as caught:
                    await fc.run(_instance(fc), ["true"], provider=refused)
                assert caught.value.fields["provider_code"] == "InvalidSecurityToken"
            result, out = await fc.run(_instance(fc), ["echo", "sts"], provider=good)
    assert (result.exit_code, out.stdout) == (0, b"sts\n")


async def test_a_session_that_ends_without_the_trailer_reports_no_exit_status(
    fc: LocalFc,
) -> None:
    # The command kills the wrapper shell, so nothing reports the exit status. The
    # provider then stops the command, waiting for the dead wrapper for the kill grace
    # (and two seconds more): one second, not five, here.
    with anyio.fail_after(BOUND):
        result, out = await fc.run(
            _instance(fc),
            ["sh", "-c", "echo partial; kill -9 $PPID"],
            provider=fc.provider_with(kill_grace=1),
        )
    assert (result.exit_code, result.timed_out, result.idle_timed_out) == (None, False, False)
    assert result.error == NO_EXIT_STATUS
    assert out.stdout == b"partial\n"
