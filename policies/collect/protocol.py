"""The collect transport: how a file on an instance travels back through the exec channel.

The instance runs a small POSIX ``sh`` script (``transport_argv``) that resolves the
path, refuses what must not be read, and streams the bytes base64-encoded (Function
Compute's exec channel carries TEXT frames, which cannot hold arbitrary bytes). Its
stdout is a line protocol::

    EXECGATE-COLLECT/1 refuse CODE [SIZE]   nothing follows
    EXECGATE-COLLECT/1 resolved B64PATH     the path is (or crosses) a symlink
    EXECGATE-COLLECT/1 ok SIZE              then base64 lines, then one of:
    EXECGATE-COLLECT/1 end                  the whole file was sent
    EXECGATE-COLLECT/1 fail REASON          reading stopped part way

The script only streams a path that is already its own ``realpath``: when the path
names a symlink (or crosses one) it reports where it leads and stops, so that ExecGate
can check the real path against the policy before asking for it. It refuses anything
under ``/proc``, ``/sys`` and ``/dev`` (``/proc/kcore`` is a "regular" file), anything
that is not a regular file (devices, pipes, sockets, directories) and files over the
cap. It reads at most SIZE + 1 bytes, so a file that grows while it is read shows up as
a size mismatch instead of an endless stream.

Everything here is pure: ``CollectDecoder`` turns stdout bytes into events, and the
path helpers work on text. The instance is not trusted: its output is parsed
defensively and only ever decoded, never interpreted.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass

COLLECT_VERB = "execgate-collect"
MAX_PATH_CHARS = 4096
_PREFIX = b"EXECGATE-COLLECT/1 "
# A control line is short; a long line without a newline is data (base64 has no spaces).
_MAX_CONTROL_LINE = 8 * 1024
_B64_LINE = re.compile(rb"[A-Za-z0-9+/=]*")
_CODE = re.compile(r"[a-z_]{1,32}")

COLLECT_SCRIPT = r"""p=$1 n=$2
say() { printf 'EXECGATE-COLLECT/1 %s\n' "$*"; }
if [ ! -e "$p" ] && [ ! -L "$p" ]; then say refuse not_found; exit 0; fi
r=$(realpath "$p" 2>/dev/null) || r=$(readlink -f "$p" 2>/dev/null) || r=
if [ -z "$r" ] || [ ! -e "$r" ]; then say refuse not_found; exit 0; fi
if [ "$r" != "$p" ]; then say resolved "$(printf %s "$r" | base64 | tr -d '\n')"; exit 0; fi
case $r in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) say refuse special_file; exit 0;; esac
if [ ! -f "$r" ]; then say refuse not_regular; exit 0; fi
if [ ! -r "$r" ]; then say refuse unreadable; exit 0; fi
s=$(stat -c %s "$r" 2>/dev/null) || s=$(wc -c <"$r" | tr -d ' ')
case $s in ''|*[!0-9]*) say refuse unreadable; exit 0;; esac
if [ "$s" -gt "$n" ]; then say refuse too_large "$s"; exit 0; fi
say ok "$s"
{ st=$( { { head -c "$((s + 1))" "$r"; echo "$?" >&3; } | base64 >&4; } 3>&1 ); } 4>&1 || st=1
if [ "$st" != 0 ]; then say fail read_error; exit 1; fi
say end
"""


def transport_argv(path: str, max_bytes: int) -> tuple[str, ...]:
    """What the instance runs to send ``path`` (already checked by ``check_path``)."""
    return ("/bin/sh", "-c", COLLECT_SCRIPT, COLLECT_VERB, path, str(max_bytes))


def symbolic_argv(path: str) -> tuple[str, ...]:
    """How a collect is written in the audit log and on approval cards."""
    return (COLLECT_VERB, path)


def collect_path_of(argv: Sequence[str]) -> str | None:
    """The path of a collect's symbolic argv; None for any other command."""
    if len(argv) == 2 and argv[0] == COLLECT_VERB:
        return argv[1]
    return None


# --------------------------------------------------------------------------- paths


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a collect did not happen; ``code`` is stable, ``message`` safe to show."""

    code: str
    message: str


def check_path(text: str) -> str | Refusal:
    """The normalised absolute path, or why it is refused before anything runs.

    ``..`` is refused outright rather than resolved: a lexical ``..`` says nothing about
    where the path leads once symlinks are followed.
    """
    if not text.startswith("/") or len(text) > MAX_PATH_CHARS:
        return Refusal(
            "bad_path", "collect takes an absolute path on the instance, e.g. /tmp/trace.pcap"
        )
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return Refusal("bad_path", "the path contains control characters")
    segments = text.split("/")
    if ".." in segments:
        return Refusal(
            "path_traversal", "'..' is not allowed in a collect path; give the absolute path"
        )
    normal = "/" + "/".join(s for s in segments if s not in ("", "."))
    if normal == "/":
        return Refusal("not_regular", "/ is a directory; collect fetches one regular file")
    return normal


def file_name(path: str) -> str:
    """A safe file name for the artifact key and the download, from the path's basename."""
    base = posixpath.basename(path)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")
    return safe[:128] or "file"


_TYPES = (
    ((".pcap", ".cap", ".pcapng"), "application/vnd.tcpdump.pcap"),
    ((".gz",), "application/gzip"),
    ((".txt", ".log", ".out"), "text/plain; charset=utf-8"),
    ((".json",), "application/json"),
)


def content_type_for(path: str) -> str:
    """A content type from the file extension; octet-stream for profiles and dumps."""
    lower = path.lower()
    for suffixes, kind in _TYPES:
        if lower.endswith(suffixes):
            return kind
    return "application/octet-stream"


def refusal_for(code: str, path: str, *, size: int | None, cap: int, rule: str | None) -> Refusal:
    """The safe message for a refusal the instance reported."""
    messages = {
        "not_found": f"no such file on the instance: {path}",
        "special_file": f"{path} is on a kernel file system (/proc, /sys, /dev); "
        "only regular files can be collected",
        "not_regular": f"{path} is not a regular file (a directory, device, pipe or socket)",
        "unreadable": f"{path} cannot be read on the instance",
        "too_large": f"{path} is {size if size is not None else 'over'} bytes; rule "
        f"{rule or '?'} lets you collect at most {cap} bytes",
    }
    return Refusal(code, messages.get(code, f"the instance refused to send {path}"))


# --------------------------------------------------------------------------- decoding


@dataclass(frozen=True, slots=True)
class Started:
    size: int


@dataclass(frozen=True, slots=True)
class Data:
    data: bytes


@dataclass(frozen=True, slots=True)
class Resolved:
    path: str


@dataclass(frozen=True, slots=True)
class Refused:
    code: str
    size: int | None


@dataclass(frozen=True, slots=True)
class Ended:
    pass


@dataclass(frozen=True, slots=True)
class Failed:
    reason: str  # what the script said, or "protocol" for output it cannot have made


Event = Started | Data | Resolved | Refused | Ended | Failed


def _maybe_control(buffer: bytes) -> bool:
    """Whether ``buffer`` starts with a control line (or could, once more arrives)."""
    head = buffer[: len(_PREFIX)]
    return head == _PREFIX[: len(head)]


class CollectDecoder:
    """Stdout bytes of the transport script in, events out. Holds at most one line.

    After a ``Failed`` event, or once the stream is over (``Refused``, ``Resolved``,
    ``Ended``), any further output is a protocol error.
    """

    def __init__(self) -> None:
        self._pending = b""
        self._carry = b""  # base64 characters not yet a multiple of four
        self._state = "header"  # header -> data -> done | failed
        self.decoded_bytes = 0

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, chunk: bytes) -> list[Event]:
        if self._state == "failed":
            return []
        events: list[Event] = []
        self._pending += chunk
        while self._state != "failed":
            if self._state == "data" and not _maybe_control(self._pending):
                # Bulk path: every complete line before the next control line is data.
                marker = self._pending.find(b"\n" + _PREFIX)
                cut = marker + 1 if marker >= 0 else self._pending.rfind(b"\n") + 1
                if cut <= 0:
                    break
                block, self._pending = self._pending[:cut], self._pending[cut:]
                events.extend(self._data(block.replace(b"\n", b"")))
                continue
            newline = self._pending.find(b"\n")
            if newline < 0:
                break
            line, self._pending = self._pending[:newline], self._pending[newline + 1 :]
            events.extend(self._line(line))
        if len(self._pending) > _MAX_CONTROL_LINE and self._state != "failed":
            if self._state == "data" and not _maybe_control(self._pending):
                # One unwrapped base64 line: decode what is there, keep the rest.
                events.extend(self._data(self._pending))
                self._pending = b""
            else:
                events.append(self._fail("protocol"))
        return events

    def finish(self) -> list[Event]:
        """The stream closed: anything unfinished is a failure."""
        if self._state in ("done", "failed"):
            return []
        if self._pending or self._state == "data":
            return [self._fail("cut")]
        return [self._fail("empty")]

    def _fail(self, reason: str) -> Failed:
        self._state = "failed"
        self._pending = b""
        return Failed(reason)

    def _line(self, line: bytes) -> list[Event]:
        if self._state == "done":
            return [self._fail("protocol")]
        if line.startswith(_PREFIX):
            return [self._control(line[len(_PREFIX) :].decode("ascii", "replace").split())]
        if self._state != "data":
            return [self._fail("protocol")]
        return self._data(line)

    def _data(self, text: bytes) -> list[Event]:
        if _B64_LINE.fullmatch(text) is None:
            return [self._fail("protocol")]
        text = self._carry + text
        usable = len(text) - len(text) % 4
        self._carry = text[usable:]
        if not usable:
            return []
        try:
            data = base64.b64decode(text[:usable], validate=True)
        except binascii.Error:
            return [self._fail("protocol")]
        self.decoded_bytes += len(data)
        return [Data(data)] if data else []

    def _control(self, words: list[str]) -> Event:
        head = words[0] if words else ""
        if self._state == "header":
            if head == "ok" and len(words) == 2 and words[1].isdigit():
                self._state = "data"
                return Started(int(words[1]))
            if head == "refuse" and len(words) in (2, 3) and _CODE.fullmatch(words[1]):
                size = int(words[2]) if len(words) == 3 and words[2].isdigit() else None
                self._state = "done"
                return Refused(words[1], size)
            if head == "resolved" and len(words) == 2:
                try:
                    path = base64.b64decode(words[1], validate=True).decode("utf-8")
                except (binascii.Error, UnicodeDecodeError):
                    return self._fail("protocol")
                self._state = "done"
                return Resolved(path)
            return self._fail("protocol")
        if head == "end" and len(words) == 1 and not self._carry:
            self._state = "done"
            return Ended()
        if head == "fail":
            reason = words[1] if len(words) > 1 and _CODE.fullmatch(words[1]) else "protocol"
            return self._fail(reason)
        return self._fail("protocol")
