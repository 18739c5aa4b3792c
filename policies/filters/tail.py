"""``tail [-n N | -n +N | -N]``: the last N lines (10 by default), or from line N on
with ``+N``, as they are. Holds at most N lines."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from policies.filters.base import count_arg, no_files, parse_options

NAME = "tail"


class Tail:
    def __init__(self, lines: int, *, from_start: bool) -> None:
        self._from_start = from_start
        self._skip = max(lines - 1, 0) if from_start else 0
        self._kept: deque[str] = deque(maxlen=None if from_start else lines)

    @property
    def done(self) -> bool:
        return False

    def feed(self, line: str) -> list[str]:
        if self._from_start:
            if self._skip > 0:
                self._skip -= 1
                return []
            return [line]
        if self._kept.maxlen:
            self._kept.append(line)
        return []

    def finish(self) -> list[str]:
        kept = list(self._kept)
        self._kept.clear()
        return kept

    def notice(self) -> str | None:
        return None

    def exit_status(self) -> int:
        return 0


def compile_tail(args: Sequence[str]) -> Tail:
    """Raises: CommandRejected (kind ``filter``)."""
    options = parse_options(NAME, args, flags="", valued="n", numeric_flag=True)
    no_files(NAME, options.operands)
    lines, from_start = 10, False
    if "n" in options.values:
        lines, from_start = count_arg(NAME, "-n", options.values["n"], plus=True)
    return Tail(lines, from_start=from_start)
