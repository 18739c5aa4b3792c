"""The collect transport: path checks, the decoder fed bytes, and the instance script run
by a real /bin/sh against real files (symlinks, FIFOs, devices, /proc, sizes)."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

import pytest

from policies.collect.protocol import (
    CollectDecoder,
    Data,
    Ended,
    Event,
    Failed,
    Refusal,
    Refused,
    Resolved,
    Started,
    check_path,
    collect_path_of,
    content_type_for,
    file_name,
    symbolic_argv,
    transport_argv,
)

HEADER = b"EXECGATE-COLLECT/1 "


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/tmp/trace.pcap", "/tmp/trace.pcap", id="plain"),
        pytest.param("//tmp/./x.cap", "/tmp/x.cap", id="doubled-slash-and-dot"),
        pytest.param("/tmp/../etc/shadow", "path_traversal", id="dotdot"),
        pytest.param("/tmp/a/..", "path_traversal", id="trailing-dotdot"),
        pytest.param("tmp/x.cap", "bad_path", id="relative"),
        pytest.param("", "bad_path", id="empty"),
        pytest.param("/tmp/x\n.cap", "bad_path", id="newline"),
        pytest.param("/tmp/\x00x", "bad_path", id="nul"),
        pytest.param("/", "not_regular", id="root"),
        pytest.param("/" + "a" * 5000, "bad_path", id="too-long"),
    ],
)
def test_paths_are_normalised_or_refused_before_anything_runs(path: str, expected: str) -> None:
    result = check_path(path)
    assert (result.code if isinstance(result, Refusal) else result) == expected


def test_symbolic_argv_round_trips_and_other_commands_are_not_collects() -> None:
    assert collect_path_of(symbolic_argv("/tmp/x.cap")) == "/tmp/x.cap"
    assert collect_path_of(("cat", "/tmp/x.cap")) is None
    assert collect_path_of(("execgate-collect", "/a", "/b")) is None


@pytest.mark.parametrize(
    ("path", "name", "kind"),
    [
        pytest.param("/tmp/trace.pcap", "trace.pcap", "application/vnd.tcpdump.pcap", id="pcap"),
        pytest.param("/tmp/cpu.pb.gz", "cpu.pb.gz", "application/gzip", id="pprof"),
        pytest.param("/tmp/heap.hprof", "heap.hprof", "application/octet-stream", id="hprof"),
        pytest.param("/tmp/.x y", "x_y", "application/octet-stream", id="odd-name"),
    ],
)
def test_names_and_content_types_come_from_the_path(path: str, name: str, kind: str) -> None:
    assert (file_name(path), content_type_for(path)) == (name, kind)


def encoded(data: bytes, *, width: int = 76) -> bytes:
    text = base64.b64encode(data)
    lines = [text[i : i + width] for i in range(0, len(text), width)] if width else [text]
    return b"".join(line + b"\n" for line in lines)


def decode_all(stdout: bytes, chunk: int) -> list[Event]:
    decoder = CollectDecoder()
    events: list[Event] = []
    for start in range(0, len(stdout), chunk):
        events.extend(decoder.feed(stdout[start : start + chunk]))
    events.extend(decoder.finish())
    return events


def joined(events: list[Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Data))


@pytest.mark.parametrize("chunk", [1, 3, 77, 4096, 1 << 20], ids=lambda c: f"chunk-{c}")
@pytest.mark.parametrize("width", [76, 64, 0], ids=["wrap-76", "wrap-64", "unwrapped"])
def test_decoder_reassembles_the_file_across_any_chunking(chunk: int, width: int) -> None:
    data = os.urandom(20_000) + b"EXECGATE-COLLECT/1 end\n"  # file bytes that look like control
    stdout = HEADER + b"ok %d\n" % len(data) + encoded(data, width=width) + HEADER + b"end\n"
    events = decode_all(stdout, chunk)
    assert events[0] == Started(len(data))
    assert events[-1] == Ended()
    assert joined(events) == data


@pytest.mark.parametrize(
    ("stdout", "last"),
    [
        pytest.param(b"", Failed("empty"), id="nothing"),
        pytest.param(b"aGVsbG8=\n", Failed("protocol"), id="data-before-header"),
        pytest.param(HEADER + b"ok 5\naGVsbG8=\n", Failed("cut"), id="no-end"),
        pytest.param(HEADER + b"ok 5\naGVs*G8=\n", Failed("protocol"), id="not-base64"),
        pytest.param(
            HEADER + b"ok 5\naGVsbG8=\n" + HEADER + b"fail read_error\n",
            Failed("read_error"),
            id="read-error",
        ),
        pytest.param(
            HEADER + b"ok 5\n" + HEADER + b"end\nextra\n", Failed("protocol"), id="output-after-end"
        ),
        pytest.param(HEADER + b"ok five\n", Failed("protocol"), id="bad-size"),
        pytest.param(HEADER + b"refuse too_large 99\n", Refused("too_large", 99), id="refused"),
        pytest.param(
            HEADER + b"resolved L2V0Yy9wYXNzd2Q=\n", Resolved("/etc/passwd"), id="resolved"
        ),
        pytest.param(HEADER + b"x" * 9000, Failed("protocol"), id="endless-control-line"),
    ],
)
def test_decoder_reports_how_the_stream_ended(stdout: bytes, last: Event) -> None:
    assert decode_all(stdout, 5)[-1] == last


async def run_script(path: str, max_bytes: int) -> list[Event]:
    proc = await asyncio.create_subprocess_exec(
        *transport_argv(path, max_bytes),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await proc.communicate()
    return decode_all(out, 4096)


async def test_script_streams_a_regular_file_whole(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    (tmp_path / "trace.pcap").write_bytes(data)
    events = await run_script(str(tmp_path / "trace.pcap"), 1 << 20)
    assert events[0] == Started(len(data)) and events[-1] == Ended()
    assert joined(events) == data


async def test_script_reports_where_a_symlink_leads_instead_of_reading_it(tmp_path: Path) -> None:
    (tmp_path / "real.pcap").write_bytes(b"x")
    (tmp_path / "link.pcap").symlink_to(tmp_path / "real.pcap")
    (tmp_path / "dir").symlink_to(tmp_path)
    real = os.path.realpath(tmp_path / "real.pcap")
    assert await run_script(str(tmp_path / "link.pcap"), 100) == [Resolved(real)]
    assert await run_script(str(tmp_path / "dir" / "real.pcap"), 100) == [Resolved(real)]


@pytest.mark.parametrize(
    ("make", "code"),
    [
        pytest.param(lambda p: os.mkfifo(p), "not_regular", id="fifo"),
        pytest.param(lambda p: p.mkdir(), "not_regular", id="directory"),
        pytest.param(lambda p: None, "not_found", id="missing"),
        pytest.param(lambda p: p.symlink_to(p.parent / "nowhere"), "not_found", id="dangling"),
    ],
)
async def test_script_refuses_what_is_not_a_regular_file(
    tmp_path: Path, make: object, code: str
) -> None:
    target = tmp_path / "thing.cap"
    assert callable(make)
    make(target)
    events = await run_script(str(target), 100)
    assert events == [Refused(code, None)]


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null", "/proc/version", "/sys/kernel"])
async def test_script_refuses_kernel_file_systems(path: str) -> None:
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist here")
    assert await run_script(path, 1 << 20) == [Refused("special_file", None)]


async def test_script_refuses_a_file_over_the_cap_with_its_size(tmp_path: Path) -> None:
    big = tmp_path / "big.hprof"
    with big.open("wb") as fh:
        fh.truncate(5000)  # sparse: the size is what matters
    assert await run_script(str(big), 4999) == [Refused("too_large", 5000)]
    events = await run_script(str(big), 5000)
    assert events[-1] == Ended() and len(joined(events)) == 5000
