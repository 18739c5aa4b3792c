"""Output handling: control stripping, head+tail truncation, the streaming collector."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from policies.errors import ArtifactError
from policies.redaction.lines import Redactor
from policies.service.output import (
    MARKER_RESERVE,
    OutputCollector,
    strip_controls,
    truncate_head_tail,
)

# -- strip_controls ---------------------------------------------------------------------

_STRIP_CASES = [
    ("sgr-colours", "\x1b[1;31mERROR\x1b[0m done", "ERROR done"),
    ("cursor-and-erase", "\x1b[2K\x1b[1Gprogress\x1b[?25l", "progress"),
    ("osc8-hyperlink", "\x1b]8;;https://evil.example/\x1b\\click me\x1b]8;;\x1b\\", "click me"),
    ("osc-title-bel", "\x1b]0;you are owned\x07text", "text"),
    ("dcs-string", "\x1bPq#0;2;0;0;0#0~~@@vv\x1b\\after", "after"),
    ("single-char-escapes", "\x1b7\x1b(Bsaved\x1b8\x1bc", "saved"),
    ("c0-controls", "a\x00b\x07c\x08d\x7fe\x0bf\x0cg", "abcdefg"),
    ("tab-and-newline-kept", "a\tb\nc\n", "a\tb\nc\n"),
    ("crlf-becomes-lf", "one\r\ntwo\r\n", "one\ntwo\n"),
    ("lone-cr-becomes-lf", "10%\r20%\rdone", "10%\n20%\ndone"),
    ("c1-controls", "a\x85b\x84c\x8dd", "abcd"),
    ("eight-bit-dcs", "\x90payload\x9cafter", "after"),
    ("eight-bit-csi", "\x9b31mred", "red"),
    ("bidi-override", "invoice\u202egpj.exe", "invoicegpj.exe"),
    ("bidi-isolates-and-marks", "\u2066a\u2069\u200fb\u061c", "ab"),
    ("zero-width-and-bom", "pa\u200bss\u200dwo\u2060rd\ufeff", "password"),
    ("unicode-tag-characters", "ok\U000e0049\U000e0047\U000e004e\U000e004f", "ok"),
    ("variation-selectors", "x\ufe0fy\U000e0100", "xy"),
    ("line-separator", "a\u2028b\u2029c", "a\nb\nc"),
    ("unterminated-csi", "cut \x1b[3", "cut "),
    ("unterminated-osc-stops-at-newline", "a\x1b]8;;http://x\nnext", "a\nnext"),
    ("plain-unicode-unchanged", "日志 café naïve ✓ — ok", "日志 café naïve ✓ — ok"),
]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [pytest.param(raw, expected, id=case_id) for case_id, raw, expected in _STRIP_CASES],
)
def test_control_sequences_and_invisible_characters_are_removed(raw: str, expected: str) -> None:
    assert strip_controls(raw) == expected


def test_escape_sequence_inside_a_secret_cannot_hide_it_from_redaction() -> None:
    collector = OutputCollector(inline_limit=4000, max_bytes=1 << 20, spill_dir=None)

    collector.feed("stdout", b"id LTAI5tu8\x1b[0mjzPde0\xe2\x80\x8bIgxLd6Gncf\n")
    result = collector.finish()

    assert result.stdout == "id [REDACTED:alibaba-access-key-id]\n"
    assert result.redactions == 1


# -- truncate_head_tail -----------------------------------------------------------------


def _numbered_lines(count: int) -> str:
    return "".join(f"line {n:05d} of the output\n" for n in range(count))


def _split_view(view: str) -> tuple[str, str, str]:
    """(head, marker line, tail) of a truncated view."""
    start = view.index("… [")
    end = view.index("\n", start) + 1
    return view[:start], view[start:end], view[end:]


def test_text_within_the_limit_is_returned_unchanged() -> None:
    result = truncate_head_tail("short\noutput\n", 100)

    assert (result.text, result.truncated, result.omitted_chars) == ("short\noutput\n", False, 0)


def test_truncation_keeps_whole_lines_of_head_and_tail_and_counts_what_is_omitted() -> None:
    text = _numbered_lines(1000)

    result = truncate_head_tail(text, 600)

    head, marker, tail = _split_view(result.text)
    assert result.truncated
    assert len(result.text) <= 600
    assert text.startswith(head) and head.endswith("\n")
    assert text.endswith(tail) and text[len(text) - len(tail) - 1] == "\n"
    assert head.startswith("line 00000 ") and tail.endswith("line 00999 of the output\n")
    assert len(head) + result.omitted_chars + len(tail) == len(text)
    assert marker == f"… [{result.omitted_chars} characters omitted] …\n"


def test_one_long_line_is_cut_inside_when_it_has_no_line_breaks() -> None:
    text = "x" * 10_000

    result = truncate_head_tail(text, 1000)

    head, _, tail = _split_view(result.text)
    assert head.rstrip("\n") == "x" * len(head.rstrip("\n"))
    assert len(head.rstrip("\n")) + result.omitted_chars + len(tail) == len(text)
    assert len(result.text) <= 1000


def test_a_limit_below_the_marker_reserve_still_reports_the_omission() -> None:
    result = truncate_head_tail("y" * 500, MARKER_RESERVE // 2)

    assert result.text == "… [500 characters omitted] …\n"
    assert result.omitted_chars == 500


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError):
        truncate_head_tail("x", -1)


# -- OutputCollector --------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_small_output_is_kept_whole_with_digests_and_no_spill(tmp_path: Path) -> None:
    collector = OutputCollector(inline_limit=4000, max_bytes=1 << 20, spill_dir=tmp_path)

    collector.feed("stdout", b"hello\n")
    collector.feed("stderr", b"warning: x\n")
    result = collector.finish()

    assert (result.stdout, result.stderr) == ("hello\n", "warning: x\n")
    assert not result.truncated and not result.capped
    assert (result.stdout_bytes, result.stderr_bytes) == (6, 11)
    assert (result.stdout_omitted, result.stderr_omitted) == (0, 0)
    assert result.stdout_sha256 == _sha256(b"hello\n")
    assert result.stderr_sha256 == _sha256(b"warning: x\n")
    combined = bytes.fromhex(result.stdout_sha256) + bytes.fromhex(result.stderr_sha256)
    assert result.output_sha256 == _sha256(combined)
    assert result.spill_files == {}
    assert list(tmp_path.iterdir()) == []


def test_feed_returns_scrubbed_stripped_text_ready_for_a_terminal() -> None:
    collector = OutputCollector(inline_limit=4000, max_bytes=1 << 20, spill_dir=None)
    raw = b"\x1b[32mok\x1b[0m\nAWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\ntail"

    pieces = [collector.feed("stdout", raw[i : i + 5]) for i in range(0, len(raw), 5)]
    pieces.append(collector.end("stdout"))

    assert "".join(pieces) == "ok\nAWS_SECRET_ACCESS_KEY=[REDACTED:aws-secret]\ntail"
    assert all("wJalr" not in piece and "\x1b" not in piece for piece in pieces)
    assert collector.finish().stdout == "ok\nAWS_SECRET_ACCESS_KEY=[REDACTED:aws-secret]\ntail"


def test_secret_split_at_every_byte_never_reaches_the_caller() -> None:
    raw = b"x\nALIBABA_CLOUD_SECURITY_TOKEN=CAISihA/2O76UMFxFkM/R5Kjp1vRt+1fjORS/6ilI8ihN5KX==\n"

    for split in range(len(raw) + 1):
        collector = OutputCollector(inline_limit=4000, max_bytes=1 << 20, spill_dir=None)
        shown = collector.feed("stderr", raw[:split]) + collector.feed("stderr", raw[split:])
        shown += collector.end("stderr")
        assert shown == "x\nALIBABA_CLOUD_SECURITY_TOKEN=[REDACTED:alibaba-sts-token]\n", split


def test_large_output_is_truncated_inline_and_spilled_in_full(tmp_path: Path) -> None:
    lines = [
        f"row {n:05d} DB_PASSWORD=pw-{n:05d}\n" if n % 100 == 0 else f"row {n:05d} ok\n"
        for n in range(5000)
    ]
    raw = "".join(lines).encode()
    collector = OutputCollector(inline_limit=3000, max_bytes=1 << 20, spill_dir=tmp_path)

    for i in range(0, len(raw), 4096):
        collector.feed("stdout", raw[i : i + 4096])
    result = collector.finish()

    expected, count = Redactor().redact("".join(lines))
    spill = result.spill_files["stdout"]
    assert spill == tmp_path / "stdout.txt"
    assert spill.read_text(encoding="utf-8") == expected
    assert result.stdout_sha256 == _sha256(spill.read_bytes())
    assert stat.S_IMODE(spill.stat().st_mode) == 0o600
    assert result.redactions == count == 50
    assert result.truncated and len(result.stdout) <= 3000
    head, _, tail = _split_view(result.stdout)
    assert expected.startswith(head) and expected.endswith(tail)
    assert len(head) + result.stdout_omitted + len(tail) == len(expected)
    assert "stderr" not in result.spill_files


def test_memory_stays_bounded_while_fifty_megabytes_stream_through(tmp_path: Path) -> None:
    inline_limit = 16_000
    collector = OutputCollector(inline_limit=inline_limit, max_bytes=1 << 30, spill_dir=tmp_path)
    line = b"2026-11-27T09:41:02Z INFO [req-fe200fe1-e21b-410a] GET /items status=200 n=%08d\n"
    chunk = b"".join(line % n for n in range(800))  # about 64 KiB
    digest = hashlib.sha256()
    fed = 0

    while fed < 50_000_000:
        collector.feed("stdout", chunk)
        digest.update(chunk)
        fed += len(chunk)
        assert collector.buffered_chars <= 3 * inline_limit
    result = collector.finish()

    assert result.stdout_bytes == fed
    assert result.stdout_sha256 == digest.hexdigest()
    spill_digest = hashlib.sha256()
    with result.spill_files["stdout"].open("rb") as spilled:
        for block in iter(lambda: spilled.read(1 << 20), b""):
            spill_digest.update(block)
    assert spill_digest.hexdigest() == digest.hexdigest()
    assert result.stdout_omitted == fed - len(result.stdout) + len(_split_view(result.stdout)[1])


def test_output_past_max_bytes_is_counted_but_neither_kept_nor_shown(tmp_path: Path) -> None:
    collector = OutputCollector(inline_limit=4000, max_bytes=100, spill_dir=tmp_path)

    shown = collector.feed("stdout", b"a" * 60 + b"\n")
    shown += collector.feed("stderr", b"b" * 60 + b"\n")
    shown += collector.feed("stdout", b"c" * 1000)
    # A short base64-looking last line is released by the next line or the end.
    shown += collector.end("stdout")
    result = collector.finish()

    assert result.capped
    # The counts are of the scrubbed output kept; what was not kept is dropped_bytes.
    assert (result.stdout_bytes, result.stderr_bytes) == (61, 39)
    assert result.dropped_bytes == 1061 + 61 - 100
    assert result.stdout == "a" * 60 + "\n"
    assert result.stderr == "b" * 39
    assert shown == "a" * 60 + "\n"
    assert result.stderr_sha256 == _sha256(b"b" * 39)


def test_without_a_spill_dir_truncated_output_writes_no_file(tmp_path: Path) -> None:
    collector = OutputCollector(inline_limit=200, max_bytes=1 << 20, spill_dir=None)

    collector.feed("stdout", _numbered_lines(100).encode())
    result = collector.finish()

    assert result.truncated
    assert result.spill_files == {}
    assert len(result.stdout) <= 200


def test_finish_returns_the_same_result_and_an_ended_stream_refuses_more() -> None:
    collector = OutputCollector(inline_limit=100, max_bytes=1000, spill_dir=None)
    collector.feed("stdout", b"no newline at the end")

    assert collector.end("stdout") == "no newline at the end"
    with pytest.raises(RuntimeError):
        collector.feed("stdout", b"more")
    assert collector.finish() is collector.finish()


def test_an_unwritable_spill_dir_raises_an_artifact_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    collector = OutputCollector(inline_limit=100, max_bytes=1 << 20, spill_dir=blocker / "spill")

    with pytest.raises(ArtifactError) as caught:
        collector.feed("stdout", _numbered_lines(50).encode())

    assert caught.value.code == "artifact_error"


def test_negative_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        OutputCollector(inline_limit=-1, max_bytes=10, spill_dir=None)
