"""Secret redaction for command output.

Output is scrubbed before it reaches any surface, the audit store or the artifact
store. The work is split by cost:

1. one RE2 scan over a whole block of lines finds the lines that might hold a secret
   (``rules.TRIGGER``); all other lines pass through untouched;
2. each flagged line gets ExecGate's rules (``rules.RULES``), which keep the key
   name and replace the value with ``[REDACTED:<kind>]``;
3. then detect-secrets' plugins and a keyword-adjacent entropy check look at the same
   line again (``detectors``).

Some secrets span lines (private keys, Kubernetes env entries, YAML block scalars):
``lines`` carries what a line tells about the next ones. ``StreamRedactor``
applies all this to a byte stream, line by line, carrying that state from chunk to
chunk, so a secret split across chunks is still found.
"""

from __future__ import annotations

import codecs
import functools
from collections.abc import Callable

from policies.redaction.controls import CONTROL_CLASS, has_controls, strip_controls
from policies.redaction.fastscan import HitFinder, Scanner, compile_scanner
from policies.redaction.lines import LineState, Redactor, could_be_key_tail, key_tail
from policies.redaction.rules import TRIGGER

__all__ = ["StreamRedactor", "redact_text"]

# A line longer than this is cut (preferably at a separator) so that one endless line
# cannot make a stream hold unbounded memory.
MAX_LINE = 64 * 1024
_SPLIT_SEPARATORS = " \t,;&"

# The stream's scan of a block of lines: the trigger, and with strip_controls as the
# stream's preparation also any character strip_controls would remove (no trigger
# starts with one), so that a block without any costs a single pass.
_SCAN = compile_scanner(TRIGGER)
_SCAN_STRIPPING = compile_scanner(CONTROL_CLASS + "|" + TRIGGER)


def _split_point(text: str, limit: int) -> int:
    # Cut an over-long line at the last separator in its second half, so that a
    # key=value pair is less likely to be torn apart; else at the limit.
    best = max(text.rfind(sep, limit // 2, limit) for sep in _SPLIT_SEPARATORS)
    return best + 1 if best > 0 else limit


def _flag_lines(scanner: Scanner, text: str, data: bytes, stripping: bool) -> list[int] | None:
    """Where the trigger first matches in each line of ``text`` (``data``: its UTF-8)
    that it matches. None when ``stripping`` and ``text`` holds a character that
    ``strip_controls`` removes: the scan stops there, since stripping moves lines."""
    hits = HitFinder(scanner, text, data)
    flagged: list[int] = []
    pos, size = 0, len(text)
    while pos < size and (start := hits.next_start(pos)) is not None:
        end = text.find("\n", start)
        end = size if end < 0 else end
        # The scan skips the rest of a flagged line: look there for controls apart.
        if stripping and has_controls(text, start, end):
            return None
        flagged.append(start)
        pos = end + 1
    return flagged


class StreamRedactor:
    """Redacts a byte stream fed in arbitrary chunks.

    Bytes are decoded as UTF-8 incrementally (invalid bytes become U+FFFD); complete
    lines are redacted as they arrive, the incomplete last line is held back (at most
    ``max_line`` characters, then it is cut and flushed). ``prepare``, when given, runs
    on each block of complete lines before redaction (the output collector strips
    control characters there, so escape sequences cannot split a secret).
    ``strip_controls`` as ``prepare`` is recognised: a block with nothing to strip is
    then scanned once for both purposes, and not decoded twice.
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
        self._stripping = prepare is strip_controls
        self._scanner = _SCAN_STRIPPING if self._stripping else _SCAN
        self._max_line = max_line
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        # A redacted line that may be a private key's last body line, until the next.
        self._held = ""
        self._state = LineState()
        self.redactions = 0

    @property
    def buffered_chars(self) -> int:
        """Characters held back waiting for the end of their line (or for the next)."""
        return len(self._pending) + len(self._held)

    def _key_tail(self, text: str, *, final: bool = False) -> str:
        """Redacted lines out, with a key's last body line found by the END line after
        it; a last line that could be one is held back until the next line."""
        if self._held:
            text, self._held = self._held + text, ""
        text, count = key_tail(text)
        self.redactions += count
        if not final and text.endswith("\n"):
            start = text.rfind("\n", 0, len(text) - 1) + 1
            if could_be_key_tail(text[start:]):
                text, self._held = text[:start], text[start:]
        return text

    def feed(self, data: bytes) -> str:
        """Take the next chunk; return the redacted text of the lines it completed.

        Raises:
            Nothing; undecodable bytes are replaced.
        """
        return self._key_tail(self._feed(data)[0])

    def feed_encoded(self, data: bytes) -> tuple[str, bytes]:
        """``feed``, also returning the text's UTF-8 encoding (often the input itself).

        Raises:
            Nothing; undecodable bytes are replaced.
        """
        text, encoded = self._feed(data)
        released = self._key_tail(text)
        if released != text:
            encoded = None
        return released, released.encode() if encoded is None else encoded

    def _feed(self, data: bytes) -> tuple[str, bytes | None]:
        """The text of the lines ``data`` completed, and its UTF-8 if known."""
        newline = data.rfind(b"\n")
        if newline < 0 or (self._prepare is not None and not self._stripping):
            return self._feed_text(self._decoder.decode(data)), None
        # The complete lines as bytes: what is held back (whole characters, re-encoded,
        # and the start of a character cut by the chunk's end) and this chunk up to its
        # last newline, which ends every character. Decoding them in one piece gives
        # what decoding them piece by piece gives.
        block = data[: newline + 1]
        carried = self._decoder.getstate()[0]
        if self._pending or carried:
            block = self._pending.encode() + carried + block
            self._decoder.reset()
            self._pending = ""
        text, encoded = self._process_bytes(block)
        # The rest has no newline: it comes back only if it grew past max_line.
        rest = self._feed_text(self._decoder.decode(data[newline + 1 :]))
        return (text + rest, None) if rest else (text, encoded)

    def flush(self) -> str:
        """End of stream: return the redacted remainder (the last, unterminated line).

        Raises:
            Nothing.
        """
        text = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        return self._key_tail(self._process(text) if text else "", final=True)

    def _feed_text(self, decoded: str) -> str:
        text = self._pending + decoded
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

    def _process_bytes(self, block: bytes) -> tuple[str, bytes]:
        """Redact a block of whole lines given as bytes; return the text and its UTF-8."""
        try:
            text = block.decode("ascii" if block.isascii() else "utf-8")
        except UnicodeDecodeError:
            text = self._process(block.decode("utf-8", "replace"))
            return text, text.encode()
        flagged = _flag_lines(self._scanner, text, block, self._stripping)
        if flagged is None:  # something to strip: the general way
            out = self._process(text)
            return out, out.encode()
        out, count = self._redactor.redact_block(text, self._state, flagged)
        self.redactions += count
        return out, (block if out == text else out.encode())

    def _process(self, block: str) -> str:
        if self._prepare is not None:
            block = self._prepare(block)
        text, count = self._redactor.redact_block(block, self._state)
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
