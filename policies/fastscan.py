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
    """The part of an RE2 match the fast path needs (offsets are in characters)."""

    def start(self) -> int: ...

    def end(self) -> int: ...


class Scanner(Protocol):
    """A compiled RE2 pattern, typed for the calls ExecGate makes."""

    def search(self, text: str) -> ScanMatch | None: ...

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
