"""Command output on its way to a surface: scrubbed, stripped, bounded, digested.

``OutputCollector`` is what the exec path feeds raw stdout/stderr bytes into. Per
stream it redacts secrets and strips control characters (``StreamRedactor`` with
``strip_controls``), hands the scrubbed text back for live display, keeps a bounded
head and tail for the inline view, digests everything it kept, and writes the full
scrubbed output to a spill file once the inline view has to omit something. Memory
stays O(inline_limit) however much a command prints.

``truncate_head_tail`` produces the same head + marker + tail view for text already
in memory.
"""

from __future__ import annotations

import codecs
import hashlib
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from policies.errors import ArtifactError
from policies.redaction import StreamRedactor
from policies.redaction.controls import strip_controls
from policies.types import Stream

__all__ = [
    "MARKER_RESERVE",
    "CollectedOutput",
    "OutputCollector",
    "Truncated",
    "strip_controls",
    "truncate_head_tail",
]

# Room kept for the omitted-count marker line, so that head + marker + tail fits the
# limit a surface asked for (Slack's 3,000-character blocks are a hard limit).
MARKER_RESERVE = 64

_STREAMS: tuple[Stream, ...] = ("stdout", "stderr")
_SPILL_FAILED = "the full output could not be written to local storage"


@dataclass(frozen=True, slots=True)
class Truncated:
    """A possibly shortened text; ``omitted_chars`` counts what the marker stands for."""

    text: str
    truncated: bool
    omitted_chars: int


def _marker_line(omitted: int) -> str:
    noun = "character" if omitted == 1 else "characters"
    return f"… [{omitted} {noun} omitted] …\n"


def _join_head_tail(head: str, tail: str, omitted: int) -> tuple[str, int]:
    """Put ``head``, a marker line and ``tail`` together, moving the cuts to line
    boundaries when that costs at most half of either side. Returns the text and the
    final omitted count."""
    if omitted <= 0:
        return head + tail, 0
    newline = head.rfind("\n")
    if newline >= len(head) // 2:
        omitted += len(head) - (newline + 1)
        head = head[: newline + 1]
    newline = tail.find("\n")
    if 0 <= newline < len(tail) // 2:
        omitted += newline + 1
        tail = tail[newline + 1 :]
    if head and not head.endswith("\n"):
        head += "\n"
    return head + _marker_line(omitted) + tail, omitted


def _split_budget(limit: int) -> tuple[int, int]:
    budget = max(limit - MARKER_RESERVE, 0)
    return budget - budget // 2, budget // 2


def truncate_head_tail(text: str, limit: int) -> Truncated:
    """Shorten ``text`` to about ``limit`` characters, keeping its head and its tail.

    When ``text`` is longer than ``limit``, the result is the head, a marker line
    ``… [N characters omitted] …`` and the tail, cut on line boundaries where that
    loses at most half of either side; it is at most ``limit`` characters long (or
    the marker alone, for limits below ``MARKER_RESERVE``).

    Raises:
        ValueError: ``limit`` is negative.
    """
    if limit < 0:
        raise ValueError("limit must not be negative")
    if len(text) <= limit:
        return Truncated(text, False, 0)
    head_len, tail_len = _split_budget(limit)
    head = text[:head_len]
    tail = text[len(text) - tail_len :] if tail_len else ""
    joined, omitted = _join_head_tail(head, tail, len(text) - head_len - tail_len)
    return Truncated(joined, True, omitted)


@dataclass(frozen=True, slots=True)
class CollectedOutput:
    """What an exec printed, scrubbed and bounded.

    ``stdout``/``stderr`` are the inline views (head, omitted marker, tail);
    ``*_bytes`` count the bytes of each stream's full scrubbed output (UTF-8, what its
    spill file holds): never the raw bytes, whose count would tell a redacted secret's
    length;
    ``*_omitted`` count scrubbed characters the inline view leaves out;
    ``dropped_bytes`` counts raw bytes received past ``max_bytes`` (``capped``): they
    were neither scrubbed nor kept anywhere;
    ``*_sha256`` are hex digests of each stream's full scrubbed output (UTF-8), i.e.
    exactly the bytes of its spill file; ``output_sha256`` is the hex SHA-256 of the
    32-byte stdout digest followed by the 32-byte stderr digest; ``*_binary`` are set
    when a stream printed bytes that are not text (a NUL, or bytes that are not UTF-8),
    which its text view cannot show as they were.
    """

    stdout: str
    stderr: str
    truncated: bool
    stdout_bytes: int
    stderr_bytes: int
    stdout_omitted: int
    stderr_omitted: int
    stdout_sha256: str
    stderr_sha256: str
    output_sha256: str
    redactions: int
    capped: bool
    dropped_bytes: int = 0
    spill_files: dict[str, Path] = field(default_factory=dict)
    stdout_binary: bool = False
    stderr_binary: bool = False


class _BinarySniffer:
    """Notices the first NUL byte or invalid UTF-8 sequence in a stream of chunks."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self.binary = False

    def feed(self, data: bytes, *, final: bool = False) -> None:
        if self.binary:
            return
        if b"\x00" in data:
            self.binary = True
            return
        try:
            self._decoder.decode(data, final=final)
        except UnicodeDecodeError:
            self.binary = True


class _StreamBuffer:
    """One stream's scrubbed text: a fixed head, a ring-buffered tail, a digest, a spill."""

    def __init__(self, name: Stream, head_cap: int, tail_cap: int) -> None:
        self.name = name
        self.redactor = StreamRedactor(prepare=strip_controls)
        self.sniffer = _BinarySniffer()
        self.raw_bytes = 0
        self.scrubbed_bytes = 0
        self.chars = 0
        self.digest = hashlib.sha256()
        self.head_cap = head_cap
        self.tail_cap = tail_cap
        self.head: list[str] = []
        self.head_len = 0
        self.tail: deque[str] = deque()
        self.tail_len = 0
        self.spill: IO[bytes] | None = None
        self.spill_path: Path | None = None
        self.ended = False

    @property
    def held_chars(self) -> int:
        return self.head_len + self.tail_len + self.redactor.buffered_chars

    def store(self, text: str, encoded: bytes, spill_dir: Path | None) -> None:
        """Keep ``text``; ``encoded`` is its UTF-8 encoding, which is digested and
        spilled as it is (the redactor has it already: no second encoding).

        Raises:
            ArtifactError: the spill file could not be opened or written.
        """
        if not text:
            return
        self.digest.update(encoded)
        self.scrubbed_bytes += len(encoded)
        if self.spill is None and spill_dir is not None:
            if self.chars + len(text) > self.head_cap + self.tail_cap:
                # Nothing has been dropped yet: head + tail is all the output so far.
                self._open_spill(spill_dir)
        if self.spill is not None:
            self._write(encoded)
        self.chars += len(text)
        room = self.head_cap - self.head_len
        if room > 0:
            self.head.append(text[:room])
            self.head_len += min(room, len(text))
            text = text[room:]
        if text and self.tail_cap:
            text = text[-self.tail_cap :]
            self.tail.append(text)
            self.tail_len += len(text)
            while self.tail_len - len(self.tail[0]) >= self.tail_cap:
                self.tail_len -= len(self.tail.popleft())

    def _open_spill(self, spill_dir: Path) -> None:
        path = spill_dir / f"{self.name}.txt"
        try:
            spill_dir.mkdir(parents=True, exist_ok=True)
            # Scrubbed output is still the instance's data: owner-only permissions.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)  # the file may have existed with a wider mode
            self.spill = open(fd, "wb")
        except OSError as exc:
            raise ArtifactError(_SPILL_FAILED) from exc
        self.spill_path = path
        self._write(("".join(self.head) + "".join(self.tail)).encode())

    def _write(self, data: bytes) -> None:
        assert self.spill is not None
        try:
            self.spill.write(data)
        except OSError as exc:
            raise ArtifactError(_SPILL_FAILED) from exc

    def close_spill(self) -> None:
        if self.spill is not None:
            try:
                self.spill.close()
            except OSError as exc:
                raise ArtifactError(_SPILL_FAILED) from exc
            self.spill = None

    def view(self) -> tuple[str, int]:
        head = "".join(self.head)
        tail = "".join(self.tail)
        if self.tail_cap:
            tail = tail[-self.tail_cap :]
        return _join_head_tail(head, tail, self.chars - len(head) - len(tail))


class OutputCollector:
    """Scrubs, bounds and digests the output of one exec.

    ``inline_limit`` is the size of the inline view per stream (head and tail of about
    half each, with room for the marker line); ``max_bytes`` caps the raw bytes of both
    streams together that are processed: past it bytes are only counted and
    ``capped`` is set. With ``spill_dir``, a stream whose inline view omits anything
    has its full scrubbed output written to ``spill_dir/<stream>.txt``.

    Raises:
        ValueError: a negative ``inline_limit`` or ``max_bytes``.
    """

    def __init__(self, *, inline_limit: int, max_bytes: int, spill_dir: Path | None) -> None:
        if inline_limit < 0 or max_bytes < 0:
            raise ValueError("inline_limit and max_bytes must not be negative")
        head_cap, tail_cap = _split_budget(inline_limit)
        self._streams = {name: _StreamBuffer(name, head_cap, tail_cap) for name in _STREAMS}
        self._max_bytes = max_bytes
        self._spill_dir = spill_dir
        self._processed = 0
        self._capped = False
        self._result: CollectedOutput | None = None

    @property
    def buffered_chars(self) -> int:
        """Characters held in memory across both streams (bounded by the inline limit)."""
        return sum(buffer.held_chars for buffer in self._streams.values())

    def feed(self, stream: Stream, data: bytes) -> str:
        """Take raw bytes of ``stream``; return their scrubbed, stripped text.

        The text lags by at most one incomplete line; ``end`` returns the rest.

        Raises:
            ArtifactError: the spill file could not be written.
            RuntimeError: the stream was already ended.
        """
        buffer = self._buffer(stream)
        buffer.raw_bytes += len(data)
        allowed = self._max_bytes - self._processed
        if len(data) > allowed:
            self._capped = True
            data = data[: max(allowed, 0)]
        if not data:
            return ""
        self._processed += len(data)
        buffer.sniffer.feed(data)
        text, encoded = buffer.redactor.feed_encoded(data)
        buffer.store(text, encoded, self._spill_dir)
        return text

    def end(self, stream: Stream) -> str:
        """The stream has closed: return its scrubbed last (unterminated) line.

        Raises:
            ArtifactError: the spill file could not be written.
            RuntimeError: the stream was already ended.
        """
        buffer = self._buffer(stream)
        buffer.ended = True
        buffer.sniffer.feed(b"", final=True)  # a cut-off multi-byte sequence at the end
        text = buffer.redactor.flush()
        buffer.store(text, text.encode(), self._spill_dir)
        buffer.close_spill()
        return text

    def finish(self) -> CollectedOutput:
        """End any open stream and return the result (the same one on later calls).

        Raises:
            ArtifactError: the spill file could not be written.
        """
        if self._result is not None:
            return self._result
        for name, buffer in self._streams.items():
            if not buffer.ended:
                self.end(name)
        out, err = self._streams["stdout"], self._streams["stderr"]
        out_view, out_omitted = out.view()
        err_view, err_omitted = err.view()
        combined = hashlib.sha256(out.digest.digest() + err.digest.digest())
        self._result = CollectedOutput(
            stdout=out_view,
            stderr=err_view,
            truncated=bool(out_omitted or err_omitted),
            stdout_bytes=out.scrubbed_bytes,
            stderr_bytes=err.scrubbed_bytes,
            stdout_omitted=out_omitted,
            stderr_omitted=err_omitted,
            stdout_sha256=out.digest.hexdigest(),
            stderr_sha256=err.digest.hexdigest(),
            output_sha256=combined.hexdigest(),
            redactions=out.redactor.redactions + err.redactor.redactions,
            capped=self._capped,
            dropped_bytes=out.raw_bytes + err.raw_bytes - self._processed,
            spill_files={
                buffer.name: buffer.spill_path
                for buffer in self._streams.values()
                if buffer.spill_path is not None
            },
            stdout_binary=out.sniffer.binary,
            stderr_binary=err.sniffer.binary,
        )
        return self._result

    def _buffer(self, stream: Stream) -> _StreamBuffer:
        buffer = self._streams.get(stream)
        if buffer is None:
            raise ValueError(f"unknown stream {stream!r}")
        if buffer.ended:
            raise RuntimeError(f"{stream} has already ended")
        return buffer
