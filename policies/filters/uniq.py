"""``uniq [-c]``: adjacent equal lines once, each with a newline; ``-c`` prefixes each
with its count as GNU uniq does (``%7d ``). Holds one line."""

from __future__ import annotations

from collections.abc import Sequence

from policies.filters.base import content, no_files, parse_options

NAME = "uniq"


class Uniq:
    def __init__(self, *, count: bool) -> None:
        self._count = count
        self._current: str | None = None
        self._repeats = 0

    @property
    def done(self) -> bool:
        return False

    def _release(self) -> list[str]:
        if self._current is None:
            return []
        prefix = f"{self._repeats:7d} " if self._count else ""
        return [f"{prefix}{self._current}\n"]

    def feed(self, line: str) -> list[str]:
        text = content(line)
        if text == self._current:
            self._repeats += 1
            return []
        out = self._release()
        self._current, self._repeats = text, 1
        return out

    def finish(self) -> list[str]:
        out = self._release()
        self._current = None
        return out

    def notice(self) -> str | None:
        return None

    def exit_status(self) -> int:
        return 0


def compile_uniq(args: Sequence[str]) -> Uniq:
    """Raises: CommandRejected (kind ``filter``)."""
    options = parse_options(NAME, args, flags="c")
    no_files(NAME, options.operands)
    return Uniq(count="c" in options.flags)
