"""Secret redaction for command output.

Output is scrubbed before it reaches any surface, the audit store or the artifact
store. The work is split by cost:

1. one RE2 scan over a whole block of lines finds the lines that might hold a secret
   (``redact_rules.TRIGGER``); all other lines pass through untouched;
2. each flagged line gets ExecGate's rules (``redact_rules.RULES``), which keep the key
   name and replace the value with ``[REDACTED:<kind>]``;
3. then detect-secrets' plugins and a keyword-adjacent entropy check look at the same
   line again (``redact_detectors``).

Some secrets span lines, so a line can change how the next ones are read:

* a private key's BEGIN line opens a block that is dropped up to its END line;
* a Kubernetes env entry names the variable on one line and gives its value on the next;
* a YAML block scalar under a secret key (``password: |``) holds its value on the
  following, more indented lines: the first becomes the marker, the rest are dropped.

``StreamRedactor`` applies the same to a byte stream, line by line, carrying that state
from chunk to chunk, so a secret split across chunks is still found.
"""

from __future__ import annotations

import codecs
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

from policies.fastscan import HitFinder, compile_scanner
from policies.redact_detectors import adjacent_entropy_pass, plugin_pass
from policies.redact_keys import KEY, Bare, is_secret_key, kind_for_key
from policies.redact_rules import (
    BLOCK_INDICATOR,
    TRIGGER,
    apply_rules,
    is_secret_value,
    marker,
)

__all__ = ["MAX_LINE", "Redactor", "StreamRedactor", "redact_text"]

# A line longer than this is cut (preferably at a separator) so that one endless line
# cannot make a stream hold unbounded memory.
MAX_LINE = 64 * 1024
_SPLIT_SEPARATORS = " \t,;&"

_TRIGGER = compile_scanner(TRIGGER)

# Private keys span lines. A BEGIN line opens a block that runs to its END line; lines
# in between that look like key material (base64, armour headers, blank) are dropped.
PEM_BEGIN = re.compile(
    r"-{4,5} ?BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)? ?-{4,5}|PuTTY-User-Key-File-[0-9]+:"
)
PEM_END = re.compile(r"-{4,5} ?END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)? ?-{4,5}")
PEM_BODY = re.compile(
    r"[ \t]*(?:[A-Za-z0-9+/=]+|(?:Proc-Type|DEK-Info|Version|Comment|Hash|Charset|Encryption"
    r"|Public-Lines|Private-Lines|Private-MAC|Private-Hash|Key-Derivation|Argon2-[A-Za-z]+)"
    r"[ \t]*:[^\n]*)?[ \t]*\\?"
)

# Kubernetes YAML puts the name and the value of an env entry on separate lines:
#   - name: DB_PASSWORD
#     value: hunter2
ENV_NAME_LINE = re.compile(
    rf"[ \t]*(?:-[ \t]+)?[\"']?name[\"']?[ \t]*:[ \t]*[\"']?(?P<key>{KEY})[\"']?,?[ \t]*"
)
ENV_VALUE_LINE = re.compile(
    r"(?P<keep>[ \t]*[\"']?value[\"']?[ \t]*:[ \t]*)(?P<q>[\"']?)(?P<val>[^\n]+?)(?P=q)"
    r",?[ \t]*"
)
# A secret key whose value is a YAML block scalar on the lines that follow:
#   password: |
#     hunter2
YAML_BLOCK_KEY = re.compile(
    rf"(?P<indent>[ \t]*(?:-[ \t]+)?)(?P<kq>[\"']?)(?P<key>{KEY})(?P=kq)[ \t]*:[ \t]*"
    + BLOCK_INDICATOR.pattern
)


def _indent(body: str) -> int:
    return len(body) - len(body.lstrip(" \t"))


@dataclass(slots=True)
class _LineState:
    """What one line tells about the next: inside a private key, after an env name, or
    inside a YAML block scalar (``block_column``: the key's column; the block goes on
    while lines are blank or indented further)."""

    pem: bool = False
    env_key: str | None = None
    block_column: int | None = None
    block_kind: str = ""
    block_seen: bool = False
    # The previous line ended without a newline: the next one is its continuation
    # (a line longer than MAX_LINE reaches the redactor in pieces).
    open_line: bool = False

    @property
    def active(self) -> bool:
        return self.pem or self.env_key is not None or self.block_column is not None

    def open_block(self, column: int, kind: str) -> None:
        self.block_column, self.block_kind, self.block_seen = column, kind, False


def _block_line(body: str, state: _LineState, column: int) -> tuple[str | None, int] | None:
    """A line inside a YAML block scalar opened at ``column``: the first value line
    becomes the marker, later ones are dropped, blank lines stay. None: the line is
    not part of the block, which has ended."""
    if state.open_line:
        return "", 0  # the rest of a line already replaced or dropped
    if not body.strip():
        return body, 0
    if _indent(body) <= column:
        state.block_column = None
        return None
    if state.block_seen:
        return None, 0
    state.block_seen = True
    if not is_secret_value(body.strip()):
        return body, 0
    return body[: _indent(body)] + marker(state.block_kind), 1


class Redactor:
    """Finds and replaces secrets in text.

    Stateless and safe to share; ``StreamRedactor`` keeps the per-stream state.
    Callers that present output should strip control characters first (the output
    collector does), so that escape sequences cannot split a secret.

    ``second_pass`` turns the detect-secrets and entropy checks on flagged lines on or
    off (on by default).
    """

    def __init__(self, *, second_pass: bool = True) -> None:
        self._second_pass = second_pass

    def redact(self, text: str) -> tuple[str, int]:
        """Return ``text`` with secrets replaced, and the number of replacements.

        Raises:
            Nothing; any ``str`` is accepted.
        """
        return self._redact_block(text, _LineState())

    def _redact_block(self, text: str, state: _LineState) -> tuple[str, int]:
        """Redact ``text`` continuing from ``state`` (updated in place).

        ``text`` should end at a line boundary unless it is the end of the output.

        Raises:
            Nothing.
        """
        out: list[str] = []
        count = 0
        pos, size = 0, len(text)
        while pos < size and state.active:
            pos, n = self._take_line(text, pos, state, out)
            count += n
        hits = HitFinder(_TRIGGER, text)
        while pos < size and (start := hits.next_start(pos)) is not None:
            newline = text.rfind("\n", pos, start)
            line_start = pos if newline < 0 else newline + 1
            out.append(text[pos:line_start])
            pos, n = self._take_line(text, line_start, state, out)
            count += n
            while pos < size and state.active:
                pos, n = self._take_line(text, pos, state, out)
                count += n
        out.append(text[pos:])
        return "".join(out), count

    def _take_line(
        self, text: str, start: int, state: _LineState, out: list[str]
    ) -> tuple[int, int]:
        newline = text.find("\n", start)
        end = len(text) if newline < 0 else newline
        # A CR of a CRLF line ending is not part of the line's content.
        body_end = end - 1 if end > start and text[end - 1] == "\r" else end
        line, count = self._line(text[start:body_end], state)
        state.open_line = newline < 0
        if line is not None:
            out.append(line)
            out.append(text[body_end : end + 1])
        return (end if newline < 0 else newline + 1), count

    def _line(self, body: str, state: _LineState) -> tuple[str | None, int]:
        """One line without its newline; None drops the line (private key material)."""
        if state.block_column is not None:
            kept = _block_line(body, state, state.block_column)
            if kept is not None:
                return kept
        if state.pem:
            closing = PEM_END.search(body)
            if closing is not None:
                state.pem = False
                rest = body[closing.end() :]
                return (None, 0) if not rest.strip() else self._plain(rest, state)
            if PEM_BODY.fullmatch(body):
                return None, 0
            # Not key material: the block ended without an END line.
            state.pem = False
        if state.env_key is not None:
            key, state.env_key = state.env_key, None
            value = ENV_VALUE_LINE.fullmatch(body)
            if value is not None and BLOCK_INDICATOR.fullmatch(value["val"]):
                state.open_block(_indent(body), kind_for_key(key))
                return body, 0
            if (
                value is not None
                and is_secret_value(value["val"])
                and is_secret_key(key, value["val"])
            ):
                start, stop = value.span("val")
                return body[:start] + marker(kind_for_key(key)) + body[stop:], 1
        return self._plain(body, state)

    def _plain(self, body: str, state: _LineState) -> tuple[str, int]:
        begin = PEM_BEGIN.search(body)
        if begin is not None:
            head, count = self._rules(body[: begin.start()])
            end = PEM_END.search(body, begin.end())
            if end is None:
                state.pem = True
                return head + marker("private-key"), count + 1
            tail, more = self._plain(body[end.end() :], state)
            return head + marker("private-key") + tail, count + more + 1
        block = YAML_BLOCK_KEY.fullmatch(body)
        if block is not None and is_secret_key(block["key"], bare=Bare.STRONG):
            state.open_block(len(block["indent"]), kind_for_key(block["key"]))
            return body, 0
        name = ENV_NAME_LINE.fullmatch(body)
        if name is not None and is_secret_key(name["key"]):
            state.env_key = name["key"]
        return self._rules(body)

    def _rules(self, body: str) -> tuple[str, int]:
        if not body:
            return body, 0
        body, count = apply_rules(body)
        if self._second_pass:
            body, found = plugin_pass(body)
            count += found
            body, found = adjacent_entropy_pass(body)
            count += found
        return body, count


def _split_point(text: str, limit: int) -> int:
    # Cut an over-long line at the last separator in its second half, so that a
    # key=value pair is less likely to be torn apart; else at the limit.
    best = max(text.rfind(sep, limit // 2, limit) for sep in _SPLIT_SEPARATORS)
    return best + 1 if best > 0 else limit


class StreamRedactor:
    """Redacts a byte stream fed in arbitrary chunks.

    Bytes are decoded as UTF-8 incrementally (invalid bytes become U+FFFD); complete
    lines are redacted as they arrive, the incomplete last line is held back (at most
    ``max_line`` characters, then it is cut and flushed). ``prepare``, when given, runs
    on each block of complete lines before redaction (the output collector strips
    control characters there, so escape sequences cannot split a secret).
    """

    def __init__(
        self,
        redactor: Redactor | None = None,
        *,
        prepare: Callable[[str], str] | None = None,
        max_line: int = MAX_LINE,
    ) -> None:
        if max_line < 2:
            raise ValueError("max_line must be at least 2")
        self._redactor = redactor if redactor is not None else _default_redactor()
        self._prepare = prepare
        self._max_line = max_line
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._state = _LineState()
        self.redactions = 0

    @property
    def buffered_chars(self) -> int:
        """Characters held back waiting for the end of their line."""
        return len(self._pending)

    def feed(self, data: bytes) -> str:
        """Take the next chunk; return the redacted text of the lines it completed.

        Raises:
            Nothing; undecodable bytes are replaced.
        """
        text = self._pending + self._decoder.decode(data)
        parts: list[str] = []
        cut = text.rfind("\n") + 1
        if cut:
            parts.append(self._process(text[:cut]))
            text = text[cut:]
        while len(text) > self._max_line:
            cut = _split_point(text, self._max_line)
            parts.append(self._process(text[:cut]))
            text = text[cut:]
        self._pending = text
        return "".join(parts)

    def flush(self) -> str:
        """End of stream: return the redacted remainder (the last, unterminated line).

        Raises:
            Nothing.
        """
        text = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        return self._process(text) if text else ""

    def _process(self, block: str) -> str:
        if self._prepare is not None:
            block = self._prepare(block)
        text, count = self._redactor._redact_block(block, self._state)
        self.redactions += count
        return text


@functools.cache
def _default_redactor() -> Redactor:
    return Redactor()


def redact_text(text: str) -> str:
    """Return ``text`` with secrets replaced by ``[REDACTED:<kind>]``.

    Raises:
        Nothing.
    """
    return _default_redactor().redact(text)[0]
