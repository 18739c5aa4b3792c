"""``wc [-l] [-w] [-c]``: newline, word and byte counts of the (scrubbed) text.

With one count it is printed alone; with several, each right-aligned in 7 columns in the
order lines, words, bytes, as GNU wc does for its standard input. Words are runs of
non-whitespace; bytes are those of the UTF-8 text."""

from __future__ import annotations

from collections.abc import Sequence

from policies.filters.base import no_files, parse_options

NAME = "wc"


class Wc:
    def __init__(self, which: tuple[str, ...]) -> None:
        self._which = which
        self._counts = {"l": 0, "w": 0, "c": 0}

    @property
    def done(self) -> bool:
        return False

    def feed(self, line: str) -> list[str]:
        counts = self._counts
        counts["l"] += line.endswith("\n")
        counts["w"] += len(line.split())
        counts["c"] += len(line.encode())
        return []

    def finish(self) -> list[str]:
        values = [self._counts[letter] for letter in self._which]
        if len(values) == 1:
            return [f"{values[0]}\n"]
        return [" ".join(f"{value:7d}" for value in values) + "\n"]

    def notice(self) -> str | None:
        return None

    def exit_status(self) -> int:
        return 0


def compile_wc(args: Sequence[str]) -> Wc:
    """Raises: CommandRejected (kind ``filter``)."""
    options = parse_options(NAME, args, flags="lwc")
    no_files(NAME, options.operands)
    chosen = set(options.flags) or {"l", "w", "c"}
    return Wc(tuple(letter for letter in "lwc" if letter in chosen))
