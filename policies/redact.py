"""Secret redaction for command output.

Output is scrubbed before it reaches any surface, the audit store or the artifact
store. The work is split by cost:

1. one RE2 scan over a whole block of lines finds the lines that might hold a secret
   (``redact_rules.TRIGGER``); all other lines pass through untouched;
2. each flagged line gets ExecGate's rules (``redact_rules.RULES``), which keep the key
   name and replace the value with ``[REDACTED:<kind>]``;
3. then detect-secrets' plugins and a keyword-adjacent entropy check look at the same
   line again (``redact_detectors``).

Private keys span lines: a BEGIN line opens a block that is dropped up to its END
line. ``StreamRedactor`` applies the same to a byte stream, line by line, so a secret
split across chunks is still found.
"""

from __future__ import annotations

import codecs
import functools
from collections.abc import Callable
from dataclasses import dataclass

from policies.fastscan import compile_scanner
from policies.redact_detectors import adjacent_entropy_pass, plugin_pass
from policies.redact_keys import kind_for_key
from policies.redact_rules import (
    ENV_NAME_LINE,
    ENV_VALUE_LINE,
    PEM_BEGIN,
    PEM_BODY,
    PEM_END,
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


@dataclass(slots=True)
class _LineState:
    """What one line tells about the next: inside a private key, or after an env name."""

    pem: bool = False
    env_value_kind: str | None = None

    @property
    def active(self) -> bool:
        return self.pem or self.env_value_kind is not None


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
        if pos < size:
            for match in _TRIGGER.finditer(text, pos):
                start = match.start()
                if start < pos:
                    continue  # inside a line already handled
                line_start = text.rfind("\n", pos, start)
                line_start = pos if line_start < 0 else line_start + 1
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
        if line is not None:
            out.append(line)
            out.append(text[body_end : end + 1])
        return (end if newline < 0 else newline + 1), count

    def _line(self, body: str, state: _LineState) -> tuple[str | None, int]:
        """One line without its newline; None drops the line (private key material)."""
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
        if state.env_value_kind is not None:
            kind, state.env_value_kind = state.env_value_kind, None
            value = ENV_VALUE_LINE.fullmatch(body)
            if value is not None and is_secret_value(value["val"]):
                start, stop = value.span("val")
                return body[:start] + marker(kind) + body[stop:], 1
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
        name = ENV_NAME_LINE.fullmatch(body)
        if name is not None:
            state.env_value_kind = kind_for_key(name["key"])
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
