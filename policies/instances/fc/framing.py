"""Function Compute InstanceExec framing, sans I/O: frames in, events out.

Server -> client: every message starts with a channel byte: 1 stdout, 2 stderr, 3 server
error (5 is a close notice in the official SDK's constants). The real service sends TEXT
frames. TEXT cannot carry bytes that are not UTF-8, so the local instance host sends
such chunks as BINARY frames with the same channel byte; this module accepts both.

Client -> server stdin: raw BINARY frames (what the official CLI sends), or TEXT frames
``"\\x00" + data`` (what some SDKs send). The protocol has no stdin EOF; ExecGate sends an
empty frame (zero bytes of stdin, a no-op to a server that does not know it) and the
local host closes the command's stdin on it.

The protocol reports no exit code, and closing the socket does not stop the command.
``wrap_argv`` runs argv under ``/bin/sh`` in its own process group, enforces the timeout
on the instance, and then prints ``"\\n<nonce>:<rc>"`` (or ``"\\n<nonce>:timeout"``) to
stderr; ``TrailerStripper`` removes that trailer and reads it, accepting it only at the
very end of stderr and only with this exec's nonce. ``stop_argv`` is the second exec that
stops a wrapped command whose client gave up on it.
"""

from __future__ import annotations

import codecs
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from policies.types import Stream

CHANNEL_STDIN = 0
CHANNEL_STDOUT = 1
CHANNEL_STDERR = 2
CHANNEL_ERROR = 3
CHANNEL_RESIZE = 4
CHANNEL_CLOSE = 5

_STREAM_CHANNELS: dict[int, Stream] = {CHANNEL_STDOUT: "stdout", CHANNEL_STDERR: "stderr"}
_CHANNEL_OF: dict[Stream, int] = {"stdout": CHANNEL_STDOUT, "stderr": CHANNEL_STDERR}

Message = str | bytes
"""A WebSocket message as ``websockets`` and ASGI hand it over: str is TEXT."""

MAX_FRAME_PAYLOAD = 32 * 1024


class FramingError(ValueError):
    """Bytes that cannot be framed as asked (non-UTF-8 stdin in text mode)."""


# --------------------------------------------------------------------- server -> client


@dataclass(frozen=True, slots=True)
class OutputChunk:
    stream: Stream
    data: bytes


@dataclass(frozen=True, slots=True)
class ServerError:
    message: str


@dataclass(frozen=True, slots=True)
class ServerClose:
    pass


@dataclass(frozen=True, slots=True)
class UnknownChannel:
    channel: int
    size: int


ServerEvent = OutputChunk | ServerError | ServerClose | UnknownChannel


def _payload(message: Message) -> bytes:
    return message.encode("utf-8") if isinstance(message, str) else bytes(message)


def parse_server_message(message: Message) -> ServerEvent | None:
    """One event per message; None for an empty message or an empty output chunk."""
    payload = _payload(message)
    if not payload:
        return None
    channel, data = payload[0], payload[1:]
    stream = _STREAM_CHANNELS.get(channel)
    if stream is not None:
        return OutputChunk(stream, data) if data else None
    if channel == CHANNEL_ERROR:
        return ServerError(data.decode("utf-8", errors="replace"))
    if channel == CHANNEL_CLOSE:
        return ServerClose()
    return UnknownChannel(channel, len(data))


def server_error_message(text: str) -> str:
    return chr(CHANNEL_ERROR) + text


def _utf8_cut(data: bytes, limit: int) -> int:
    """The largest cut <= limit that does not split a UTF-8 sequence."""
    if len(data) <= limit:
        return len(data)
    cut = limit
    # Continuation bytes look like 0b10xxxxxx; at most 3 of them follow a lead byte.
    while cut > limit - 3 and cut > 0 and data[cut] & 0xC0 == 0x80:
        cut -= 1
    return cut if cut > 0 else limit


def _incomplete_tail(data: bytes) -> int:
    """How many trailing bytes form a UTF-8 sequence that is started but not finished."""
    for back in range(1, min(3, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:  # a continuation byte: look further back for the lead
            continue
        if byte & 0xE0 == 0xC0:
            need = 2
        elif byte & 0xF0 == 0xE0:
            need = 3
        elif byte & 0xF8 == 0xF0:
            need = 4
        else:  # ASCII, or not a lead byte at all
            return 0
        return back if back < need else 0
    return 0


class OutputFramer:
    """Server side: one stream's bytes -> FC messages.

    UTF-8 output goes out as TEXT frames, as the real service sends them; a multi-byte
    character split across reads is held back until it completes. Chunks that are not
    UTF-8 go out as BINARY frames so every byte round-trips.
    """

    def __init__(self, stream: Stream, max_payload: int = MAX_FRAME_PAYLOAD) -> None:
        self._channel = _CHANNEL_OF[stream]
        self._max = max_payload
        self._pending = b""

    def feed(self, data: bytes) -> list[Message]:
        buf = self._pending + data
        keep = _incomplete_tail(buf)
        head, self._pending = buf[: len(buf) - keep], buf[len(buf) - keep :]
        try:
            head.decode("utf-8")
        except UnicodeDecodeError:
            self._pending = b""
            return self._frames(buf, text=False)
        return self._frames(head, text=True)

    def flush(self) -> list[Message]:
        """Whatever is held back; an unfinished character can only go out as bytes."""
        pending, self._pending = self._pending, b""
        return self._frames(pending, text=False)

    def _frames(self, data: bytes, *, text: bool) -> list[Message]:
        out: list[Message] = []
        prefix = bytes([self._channel])
        while data:
            cut = _utf8_cut(data, self._max) if text else min(len(data), self._max)
            piece, data = data[:cut], data[cut:]
            out.append(chr(self._channel) + piece.decode("utf-8") if text else prefix + piece)
        return out


# --------------------------------------------------------------------- client -> server

StdinMode = Literal["binary", "text"]


@dataclass(frozen=True, slots=True)
class StdinFrame:
    payload: bytes
    text: bool


class StdinEncoder:
    """Client side: stdin bytes -> frames, raw BINARY or ``\\x00``-prefixed TEXT."""

    def __init__(self, mode: StdinMode) -> None:
        self._mode = mode
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")

    def encode(self, data: bytes) -> list[StdinFrame]:
        """Raises: FramingError when text mode meets bytes that are not UTF-8."""
        if self._mode == "binary":
            return [StdinFrame(data, text=False)] if data else []
        try:
            text = self._decoder.decode(data, final=False)
        except UnicodeDecodeError as exc:
            raise FramingError("stdin is not UTF-8 and the provider takes text stdin") from exc
        return [StdinFrame(b"\x00" + text.encode("utf-8"), text=True)] if text else []

    def end(self) -> StdinFrame:
        """The stdin EOF marker: an empty frame.

        Raises: FramingError when text mode ends inside a multi-byte character.
        """
        if self._mode == "binary":
            return StdinFrame(b"", text=False)
        try:
            self._decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise FramingError("stdin ended inside a UTF-8 character") from exc
        return StdinFrame(b"\x00", text=True)


@dataclass(frozen=True, slots=True)
class StdinData:
    data: bytes


@dataclass(frozen=True, slots=True)
class StdinEof:
    pass


@dataclass(frozen=True, slots=True)
class ClientControl:
    """A frame the local host does not act on (resize, unknown channel)."""

    channel: int


ClientEvent = StdinData | StdinEof | ClientControl


def parse_client_message(message: Message) -> ClientEvent:
    """Server side: BINARY is raw stdin; TEXT is ``channel byte + data``."""
    if isinstance(message, bytes):
        return StdinData(message) if message else StdinEof()
    payload = message.encode("utf-8")
    if not payload:
        return StdinEof()
    if payload[0] != CHANNEL_STDIN:
        return ClientControl(payload[0])
    return StdinData(payload[1:]) if len(payload) > 1 else StdinEof()


# --------------------------------------------------------------------- exit-code trailer

_NONCE_RE = re.compile(r"^[0-9a-f]{16,64}$")
_MAX_DIGITS = 3
TIMEOUT_WORD = b"timeout"
EXIT_TIMEOUT = 124
"""What the wrapper exits with when it ended the command at its deadline (as timeout(1))."""
DEFAULT_KILL_GRACE = 5
"""Seconds between the TERM and the KILL sent to a command's process group."""


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """What the trailer said: the command's exit code, or that the wrapper timed it out."""

    code: int | None
    timed_out: bool = False


def new_nonce() -> str:
    """A fresh per-exec nonce (128 random bits, hex)."""
    return secrets.token_hex(16)


def _check_nonce(nonce: str) -> None:
    if not _NONCE_RE.match(nonce):
        raise ValueError("the nonce must be 16-64 lower-case hex digits")


# The watchdog, run by the wrapper in its own process group (when setsid exists) with
# $1 = the wrapper's pid, $2 = the command's kill target ("-PGID", or "PID" without
# setsid), $3 = the timeout, $4 = the grace, $5 = the run file (empty: not stoppable),
# $6 = the path for a stop FIFO (empty: not stoppable). It counts whole seconds,
# noticing each second that another exec renamed the run file away (``stop_argv``).
# A command still running after a second gets a FIFO (where mkfifo works): the rest of
# the timeout is a ``sleep`` holding it open, and the watchdog blocks reading it until
# a stopping exec writes a word (it stays in the FIFO while the timer holds it), or
# the timer, its last writer, exits. A long exec so costs its instance no process start
# per second. Then the watchdog tells the wrapper (USR1), TERMs the command's group,
# and KILLs it after the grace unless the group is gone by then.
_WATCHDOG = (
    "i=0; while [ $i -lt $3 ]; do sleep 1; i=$((i+1));"
    ' if [ -n "$5" ] && [ ! -e "$5" ]; then break; fi;'
    ' if [ -n "$6" ] && [ $i -lt $3 ] && mkfifo -m 600 "$6" 2>/dev/null; then'
    ' sleep $(($3-i)) 1<>"$6" & [ -e "$5" ] && read x <"$6"; break; fi; done;'
    " kill -USR1 $1; kill -TERM $2;"
    " i=0; while [ $i -lt $4 ] && kill -0 $2; do sleep 1; i=$((i+1)); done;"
    " kill -KILL $2"
)


def wrap_argv(
    argv: Sequence[str],
    nonce: str,
    *,
    run_id: str,
    timeout: int = 600,
    grace: int = DEFAULT_KILL_GRACE,
) -> list[str]:
    """argv run under ``/bin/sh`` that enforces ``timeout`` and reports how it ended.

    On the instance, with POSIX sh and ``setsid``/``kill``/``sleep``/``mv`` (busybox is
    enough), the wrapper:

    - starts argv in its own session and process group (``setsid``), stdin passed on;
    - runs a watchdog that, after ``timeout`` seconds or when another exec asks it to
      stop (``stop_argv``), sends TERM to the group and KILL ``grace`` seconds later;
    - when argv's main process ends, KILLs what is left of its group (background
      children), stops the watchdog, and prints the trailer ``"\\n<nonce>:<rc>"``, or
      ``"\\n<nonce>:timeout"`` (exit 124) when the watchdog fired.

    Without ``setsid`` the watchdog can only signal argv's main process: when it fires,
    the wrapper says so on stderr before the trailer. The argv elements are passed as
    positional parameters (``"$@"``), never spliced into the script, so no quoting is
    involved; the nonce and the numbers are checked before they are.

    ``run_id`` names the run file a second exec renames to stop the command: it is its
    own random value, never the nonce, because the file's name shows in ``ls /tmp`` and
    in the watchdog's command line, and the nonce must stay secret from the command.

    Raises: ValueError for an empty argv, a nonce or run id that is not lower-case hex,
    the two being equal, or a timeout or grace below one second.
    """
    if not argv:
        raise ValueError("argv must not be empty")
    _check_nonce(nonce)
    _check_nonce(run_id)
    if run_id == nonce:
        raise ValueError("the run id must not be the nonce")
    if timeout < 1 or grace < 1:
        raise ValueError("the timeout and the grace must be at least one second")
    script = (
        f"n={run_id}; d=${{TMPDIR:-/tmp}}; r=$d/.execgate-$n.run; s=$d/.execgate-$n.stop;"
        " p=$d/.execgate-$n.fifo;"
        # The run file lets a second exec stop this one (``stop_argv``) by renaming it.
        # ``true``, not ``:``: a failed redirection of a special built-in would end the
        # shell (POSIX 2.8.1), and a read-only /tmp must not cost the exit status.
        ' { true >"$r"; } 2>/dev/null || r=; [ -n "$r" ] || p=;'
        " to=; trap 'to=1' USR1;"
        " if command -v setsid >/dev/null 2>&1; then S=setsid; g=-; else S=; g=; fi;"
        # An asynchronous command's stdin is /dev/null unless given explicitly: fd 3.
        ' exec 3<&0; $S "$@" <&3 3<&- & c=$!; exec 3<&-;'
        f' $S /bin/sh -c \'{_WATCHDOG}\' sh $$ $g$c {timeout} {grace} "$r" "$p"'
        " </dev/null >/dev/null 2>&1 & w=$!;"
        # USR1 from the watchdog interrupts wait: wait again until the command is gone.
        # The shell's own job notices ("Killed ...") go to /dev/null, not the output.
        ' { wait $c; rc=$?; while [ -n "$to" ] && kill -0 $c; do wait $c; rc=$?; done;'
        # The watchdog by pid too: it may not have reached its own setsid yet.
        ' [ -n "$g" ] && kill -KILL -$c -$w; kill -KILL $w; wait $w; } 2>/dev/null;'
        ' [ -n "$r" ] && rm -f "$r" "$s" "$p";'
        ' if [ -n "$to" ]; then [ -n "$g" ] || echo "execgate: setsid is missing on this'
        " instance: the timeout stopped the command's main process only\" >&2;"
        f' printf "\\n{nonce}:timeout" >&2; exit {EXIT_TIMEOUT}; fi;'
        f' printf "\\n{nonce}:%d" "$rc" >&2; exit $rc'
    )
    return ["/bin/sh", "-c", script, "sh", *argv]


def stop_argv(run_id: str, *, wait: int = DEFAULT_KILL_GRACE + 2) -> list[str]:
    """argv for a second exec that stops the wrapped command whose run id is ``run_id``.

    It renames the wrapper's run file and wakes the watchdog through its FIFO, if it
    has one (else the watchdog notices the rename within a second); the watchdog TERMs
    then KILLs the command's group, and the wrapper removes the renamed file as it ends.
    This exec waits for that, up to ``wait`` seconds: exit 0 when the command is
    stopped or had already ended, 1 when it still runs. Only the shared ``/tmp`` (or
    ``$TMPDIR``) is needed, not a shared process namespace.

    Raises: ValueError for a run id that is not lower-case hex or a wait below zero.
    """
    _check_nonce(run_id)
    if wait < 0:
        raise ValueError("the wait must not be negative")
    script = (
        f"n={run_id}; d=${{TMPDIR:-/tmp}}; r=$d/.execgate-$n.run; s=$d/.execgate-$n.stop;"
        " p=$d/.execgate-$n.fifo;"
        ' mv -f "$r" "$s" 2>/dev/null || exit 0;'
        # Read-write: the open never blocks, even with no watchdog reading. Said again
        # each second: a word written before the timer holds the FIFO open is lost.
        f' i=0; while [ -e "$s" ] && [ $i -lt {wait} ]; do'
        ' if [ -p "$p" ]; then { echo s 1<>"$p"; } 2>/dev/null; fi; sleep 1; i=$((i+1)); done;'
        ' [ ! -e "$s" ]'
    )
    return ["/bin/sh", "-c", script]


class TrailerStripper:
    """Streams stderr through, removing the ``"\\n<nonce>:<rc|timeout>"`` trailer at its end.

    Only a suffix that could still become the trailer is held back (at most
    ``len(nonce) + 9`` bytes), so output flows with a bounded delay. A trailer printed
    by the command itself is never at the very end, since the wrapper's own trailer
    follows it, so it passes through as ordinary output.
    """

    def __init__(self, nonce: str) -> None:
        self._marker = f"\n{nonce}:".encode("ascii")
        self._window = len(self._marker) + max(_MAX_DIGITS, len(TIMEOUT_WORD))
        self._held = b""

    def _could_be_trailer(self, tail: bytes) -> bool:
        if len(tail) <= len(self._marker):
            return self._marker.startswith(tail)
        if not tail.startswith(self._marker):
            return False
        rest = tail[len(self._marker) :]
        return (len(rest) <= _MAX_DIGITS and rest.isdigit()) or TIMEOUT_WORD.startswith(rest)

    def feed(self, data: bytes) -> bytes:
        """Return the bytes that are certainly output; keep a possible trailer prefix."""
        buf = self._held + data
        # The trailer holds exactly one newline, its first byte, so only the last
        # newline can start it.
        start = buf.rfind(b"\n", max(0, len(buf) - self._window))
        if start >= 0 and self._could_be_trailer(buf[start:]):
            self._held = buf[start:]
            return buf[:start]
        self._held = b""
        return buf

    def finish(self) -> tuple[bytes, ExitStatus | None]:
        """At end of stderr: (remaining output, the status or None without a trailer)."""
        held, self._held = self._held, b""
        if held.startswith(self._marker):
            rest = held[len(self._marker) :]
            if rest == TIMEOUT_WORD:
                return b"", ExitStatus(None, timed_out=True)
            if rest.isdigit() and int(rest) <= 255:
                return b"", ExitStatus(int(rest))
        return held, None
