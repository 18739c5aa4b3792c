"""Linear-time scanners for the output fast path.

Output handling must keep up with commands that print hundreds of megabytes. Python's
``re`` tries every alternative of a pattern at every position, which makes a scan for
a few dozen trigger words run at tens of MB/s; RE2 compiles the same alternation into a
DFA and scans at hundreds of MB/s. RE2 is used only to find *where* something may need
attention; the detailed work on those few places stays with ``re``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, cast

import re2  # type: ignore[import-untyped]


class ScanMatch(Protocol):
    """The part of an RE2 match the fast path needs (offsets are in characters for
    ``str`` text, in bytes for ``bytes``)."""

    def start(self) -> int: ...

    def end(self) -> int: ...


class Scanner(Protocol):
    """A compiled RE2 pattern, typed for the calls ExecGate makes."""

    def search(self, text: str | bytes, pos: int = ...) -> ScanMatch | None: ...

    def finditer(self, text: str, pos: int = ...) -> Iterator[ScanMatch]: ...


def compile_scanner(pattern: str) -> Scanner:
    """Compile an RE2 pattern (RE2 syntax: no lookaround, no backreferences).

    Raises:
        ValueError: the pattern is not valid RE2 (a programming error, caught by tests).
    """
    try:
        return cast(Scanner, re2.compile(pattern))
    except re2.error as exc:
        raise ValueError(f"invalid RE2 pattern: {exc}") from exc


class HitFinder:
    """Finds the next match of ``scanner`` in ``text`` at or after a position, for a
    caller that skips ahead between searches (past a whole line it has handled).

    The text is encoded once (or not at all: ``data``, when given, must be its UTF-8
    encoding): searching a ``str`` would re-encode all of it on every call. Positions
    only move forward, so converting between character and byte offsets costs time
    linear in the text overall.
    """

    def __init__(self, scanner: Scanner, text: str, data: bytes | None = None) -> None:
        self._scanner = scanner
        self._text = text
        self._data = text.encode("utf-8", "surrogatepass") if data is None else data
        self._ascii = len(self._data) == len(text)
        self._chars = 0  # a character offset and its byte offset, moving forward
        self._bytes = 0

    def next_start(self, pos: int) -> int | None:
        """The character offset where the next match at or after ``pos`` starts.

        Raises:
            ValueError: ``pos`` is before a position given or returned earlier.
        """
        if pos < self._chars:
            raise ValueError("positions must not move backwards")
        if self._ascii:
            self._chars = self._bytes = pos
        else:
            self._bytes += len(self._text[self._chars : pos].encode("utf-8", "surrogatepass"))
            self._chars = pos
        found = self._scanner.search(self._data, self._bytes)
        if found is None:
            return None
        start = found.start()
        if self._ascii:
            self._chars = start
        else:
            self._chars += len(self._data[self._bytes : start].decode("utf-8", "surrogatepass"))
        self._bytes = start
        return self._chars


class NeedleSet:
    """Which of a fixed list of strings occur in a text: one RE2 pass over an ASCII text
    (a set of literal patterns, matched in one automaton), else one substring test each.
    """

    def __init__(self, needles: tuple[str, ...]) -> None:
        self.needles = needles
        self._set = re2.Set.SearchSet()
        for needle in needles:
            if not needle.isascii():
                raise ValueError(f"needles must be ASCII: {needle!r}")
            self._set.Add(re2.escape(needle))
        self._set.Compile()

    def present(self, text: str) -> frozenset[str]:
        """The needles that ``text`` holds.

        Raises:
            Nothing.
        """
        if text.isascii():
            needles = self.needles
            found = self._set.Match(text.encode("ascii")) or ()  # None: no needle
            return frozenset([needles[i] for i in found])
        # ASCII needles in a UTF-8 encoding would do too, but a str may hold lone
        # surrogates, which do not encode.
        return frozenset([needle for needle in self.needles if needle in text])
