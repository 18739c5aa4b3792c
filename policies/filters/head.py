"""``head [-n N | -N]``: the first N lines (10 by default), as they are."""

from __future__ import annotations

from collections.abc import Sequence

from policies.filters.base import count_arg, no_files, parse_options

NAME = "head"


class Head:
    def __init__(self, lines: int) -> None:
        self._left = lines

    @property
    def done(self) -> bool:
        return self._left <= 0

    def feed(self, line: str) -> list[str]:
        if self._left <= 0:
            return []
        self._left -= 1
        return [line]

    def finish(self) -> list[str]:
        return []

    def notice(self) -> str | None:
        return None

    def exit_status(self) -> int:
        return 0


def compile_head(args: Sequence[str]) -> Head:
    """Raises: CommandRejected (kind ``filter``)."""
    options = parse_options(NAME, args, flags="", valued="n", numeric_flag=True)
    no_files(NAME, options.operands)
    lines = 10
    if "n" in options.values:
        lines, _ = count_arg(NAME, "-n", options.values["n"])
    return Head(lines)
