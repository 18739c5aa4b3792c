"""InstanceExec framing, fed bytes by hand: channels, stdin forms, the exit-status trailer."""

from __future__ import annotations

import asyncio
import random

import pytest

from policies.instances.fc.framing import (
    ClientControl,
    FramingError,
    Message,
    OutputChunk,
    OutputFramer,
    ServerClose,
    ServerError,
    StdinData,
    StdinEncoder,
    StdinEof,
    StdinFrame,
    TrailerStripper,
    UnknownChannel,
    new_nonce,
    parse_client_message,
    parse_server_message,
    stop_argv,
    wrap_argv,
)

NONCE = "0123456789abcdef0123456789abcdef"
TRAILER = f"\n{NONCE}:".encode()


# ------------------------------------------------------------------ server -> client


@pytest.mark.parametrize(
    ("message", "event"),
    [
        ("\x01hello", OutputChunk("stdout", b"hello")),
        ("\x02oops\n", OutputChunk("stderr", b"oops\n")),
        (b"\x01\xff\x00", OutputChunk("stdout", b"\xff\x00")),
        (b"\x02\xfe", OutputChunk("stderr", b"\xfe")),
        ("\x01\u20ac", OutputChunk("stdout", "\u20ac".encode())),
        ("\x03exec failed", ServerError("exec failed")),
        ("\x05", ServerClose()),
        (b"\x09abc", UnknownChannel(9, 3)),
        ("", None),
        ("\x01", None),
    ],
    ids=[
        "text-stdout",
        "text-stderr",
        "binary-stdout",
        "binary-stderr",
        "text-multibyte",
        "server-error",
        "close-notice",
        "unknown-channel",
        "empty",
        "empty-output",
    ],
)
def test_server_messages_dispatch_on_their_first_byte(message: Message, event: object) -> None:
    assert parse_server_message(message) == event


def _decode_all(frames: list[Message]) -> bytes:
    out = b""
    for frame in frames:
        event = parse_server_message(frame)
        assert isinstance(event, OutputChunk)
        out += event.data
    return out


def test_utf8_output_goes_out_as_text_frames() -> None:
    frames = OutputFramer("stdout").feed("h\u00e9llo \u20ac\n".encode())
    assert frames == ["\x01h\u00e9llo \u20ac\n"]


def test_a_character_split_across_reads_is_held_until_complete() -> None:
    framer = OutputFramer("stderr")
    euro = "\u20ac".encode()
    assert framer.feed(b"a" + euro[:2]) == ["\x02a"]
    assert framer.feed(euro[2:]) == ["\x02\u20ac"]


def test_bytes_that_are_not_utf8_go_out_as_binary_frames() -> None:
    frames = OutputFramer("stdout").feed(b"ok\xff\xfe")
    assert frames == [b"\x01ok\xff\xfe"]


def test_an_unfinished_character_at_the_end_is_flushed_as_bytes() -> None:
    framer = OutputFramer("stdout")
    assert framer.feed(b"x\xe2\x82") == ["\x01x"]
    assert framer.flush() == [b"\x01\xe2\x82"]


def test_large_output_is_split_into_bounded_frames_on_character_boundaries() -> None:
    data = "\u20ac".encode() * 10_000
    frames = OutputFramer("stdout", max_payload=1000).feed(data)
    texts = [f for f in frames if isinstance(f, str)]
    assert len(texts) == len(frames)
    assert all(len(f.encode()) <= 1001 for f in texts)
    assert _decode_all(frames) == data


@pytest.mark.parametrize("seed", range(5), ids=lambda s: f"seed-{s}")
def test_any_bytes_round_trip_through_the_framer(seed: int) -> None:
    rng = random.Random(seed)
    pieces = [
        rng.choice([rng.randbytes(rng.randint(0, 50)), "\u20acx\u00e9".encode() * 3])
        for _ in range(200)
    ]
    data = b"".join(pieces)
    framer = OutputFramer("stderr", max_payload=64)
    frames: list[Message] = []
    cut = 0
    while cut < len(data):
        step = rng.randint(1, 40)
        frames += framer.feed(data[cut : cut + step])
        cut += step
    frames += framer.flush()
    assert _decode_all(frames) == data


# ------------------------------------------------------------------ client -> server


def test_binary_stdin_is_sent_raw_and_ends_with_an_empty_frame() -> None:
    encoder = StdinEncoder("binary")
    assert encoder.encode(b"\x00\xffdata") == [StdinFrame(b"\x00\xffdata", text=False)]
    assert encoder.encode(b"") == []
    assert encoder.end() == StdinFrame(b"", text=False)


def test_text_stdin_is_prefixed_with_a_nul_and_keeps_characters_whole() -> None:
    encoder = StdinEncoder("text")
    euro = "\u20ac".encode()
    assert encoder.encode(b"ab" + euro[:1]) == [StdinFrame(b"\x00ab", text=True)]
    assert encoder.encode(euro[1:]) == [StdinFrame(b"\x00" + euro, text=True)]
    assert encoder.end() == StdinFrame(b"\x00", text=True)


def test_text_stdin_refuses_bytes_that_are_not_utf8() -> None:
    with pytest.raises(FramingError):
        StdinEncoder("text").encode(b"\xff")


def test_text_stdin_refuses_to_end_inside_a_character() -> None:
    encoder = StdinEncoder("text")
    encoder.encode(b"\xe2\x82")
    with pytest.raises(FramingError):
        encoder.end()


@pytest.mark.parametrize(
    ("message", "event"),
    [
        (b"raw\x00bytes", StdinData(b"raw\x00bytes")),
        (b"", StdinEof()),
        ("\x00typed", StdinData(b"typed")),
        ("\x00", StdinEof()),
        ("", StdinEof()),
        ('\x04{"Width":80,"Height":24}', ClientControl(4)),
    ],
    ids=["binary", "binary-eof", "text", "text-eof", "empty-text", "resize"],
)
def test_the_host_accepts_both_stdin_forms(message: Message, event: object) -> None:
    assert parse_client_message(message) == event


# ------------------------------------------------------------------ exit-status trailer


def test_the_wrapper_passes_argv_as_positional_parameters() -> None:
    wrapped = wrap_argv(["echo", "a b", "$HOME"], NONCE, run_id=new_nonce(), timeout=7, grace=2)
    assert wrapped[:2] == ["/bin/sh", "-c"]
    assert wrapped[3:] == ["sh", "echo", "a b", "$HOME"]
    assert "$HOME" not in wrapped[2] and "a b" not in wrapped[2]


@pytest.mark.parametrize(
    ("argv", "nonce", "timeout", "grace"),
    [
        ([], NONCE, 1, 1),
        (["true"], "not-hex!", 1, 1),
        (["true"], "abc", 1, 1),
        (["true"], NONCE, 0, 1),
        (["true"], NONCE, 1, 0),
    ],
    ids=["empty-argv", "bad-nonce", "short-nonce", "no-timeout", "no-grace"],
)
def test_the_wrapper_refuses_bad_input(
    argv: list[str], nonce: str, timeout: int, grace: int
) -> None:
    with pytest.raises(ValueError):
        wrap_argv(argv, nonce, run_id=new_nonce(), timeout=timeout, grace=grace)


def test_the_run_file_is_never_named_by_the_nonce() -> None:
    run_id = new_nonce()
    wrapped = wrap_argv(["true"], NONCE, run_id=run_id)
    assert run_id in wrapped[2]
    # The nonce may only appear where the trailer is printed, never in a file name.
    assert f".execgate-{NONCE}" not in wrapped[2] and f"n={NONCE}" not in wrapped[2]
    with pytest.raises(ValueError):
        wrap_argv(["true"], NONCE, run_id=NONCE)


def test_the_stop_exec_refuses_a_nonce_that_is_not_hex() -> None:
    with pytest.raises(ValueError):
        stop_argv("$(reboot)")


def test_every_exec_gets_a_fresh_nonce() -> None:
    assert len({new_nonce() for _ in range(100)}) == 100


def _strip(chunks: list[bytes], nonce: str = NONCE) -> tuple[bytes, int | str | None]:
    """(output, exit code, "timeout", or None without a trailer)."""
    stripper = TrailerStripper(nonce)
    out = b"".join(stripper.feed(chunk) for chunk in chunks)
    rest, status = stripper.finish()
    if status is None:
        return out + rest, None
    return out + rest, "timeout" if status.timed_out else status.code


def test_a_timeout_trailer_is_stripped_and_read_wherever_the_frames_split_it() -> None:
    data = b"partial\n" + TRAILER + b"timeout"
    for cut in range(len(data) + 1):
        assert _strip([data[:cut], data[cut:]]) == (b"partial\n", "timeout"), cut


def test_the_trailer_and_its_leading_newline_are_stripped() -> None:
    assert _strip([b"warning\n" + TRAILER + b"3"]) == (b"warning\n", 3)
    assert _strip([b"no newline" + TRAILER + b"0"]) == (b"no newline", 0)
    assert _strip([TRAILER + b"255"]) == (b"", 255)


def test_the_trailer_is_found_wherever_the_frames_split_it() -> None:
    data = b"some\nerror output" + TRAILER + b"127"
    for cut in range(len(data) + 1):
        for second in range(cut, len(data) + 1):
            chunks = [data[:cut], data[cut:second], data[second:]]
            assert _strip(chunks) == (b"some\nerror output", 127), (cut, second)


def test_a_trailer_printed_by_the_command_is_output_not_an_exit_status() -> None:
    forged = b"\n" + NONCE.encode() + b":0"
    out, code = _strip([b"x" + forged, b"more output", TRAILER + b"3"])
    assert (out, code) == (b"x" + forged + b"more output", 3)


def test_a_forged_trailer_right_before_the_real_one_passes_through() -> None:
    out, code = _strip([TRAILER + b"0", TRAILER + b"1"])
    assert (out, code) == (TRAILER + b"0", 1)


@pytest.mark.parametrize(
    "tail",
    [
        b"\n" + b"f" * 32 + b":0",
        TRAILER,
        TRAILER + b"1234",
        TRAILER + b"256",
        TRAILER + b"1x",
        TRAILER + b"time",
        TRAILER + b"timeouts",
        b"plain end",
    ],
    ids=[
        "wrong-nonce",
        "no-digits",
        "four-digits",
        "out-of-range",
        "not-digits",
        "cut-timeout",
        "longer-than-timeout",
        "none",
    ],
)
def test_without_a_valid_trailer_at_the_end_there_is_no_exit_status(tail: bytes) -> None:
    out, code = _strip([b"err", tail])
    assert code is None
    assert out == b"err" + tail


def test_only_a_possible_trailer_prefix_is_held_back() -> None:
    stripper = TrailerStripper(NONCE)
    assert stripper.feed(b"a" * 10_000) == b"a" * 10_000
    assert stripper.feed(b"line\n" + NONCE[:5].encode()) == b"line"
    assert stripper.feed(b"zz") == b"\n" + NONCE[:5].encode() + b"zz"
    assert stripper.feed(b"\n\n") == b"\n"


@pytest.mark.parametrize(
    ("script", "code"),
    [("exit 0", 0), ("exit 1", 1), ("echo oops >&2; exit 3", 3), ("kill -9 $$", 137)],
    ids=["zero", "one", "three", "killed"],
)
async def test_the_wrapper_under_a_real_shell_reports_the_exit_status(
    script: str, code: int
) -> None:
    nonce = new_nonce()
    proc = await asyncio.create_subprocess_exec(
        *wrap_argv(["sh", "-c", script], nonce, run_id=new_nonce()),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == code
    stripper = TrailerStripper(nonce)
    out = stripper.feed(err)
    rest, reported = stripper.finish()
    assert reported is not None and reported.code == code
    assert nonce.encode() not in out + rest
