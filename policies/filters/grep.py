"""``grep [-i] [-v] [-c] [-n] [-w] [-x] [-E|-F] PATTERN``, reading the stage before it.

Lines that match PATTERN (a basic regular expression; ``-E`` extended, ``-F`` a fixed
string; see ``posix_regex``) are printed, each with a newline. ``-i`` ignores case,
``-v`` selects the lines that do not match, ``-w`` needs the match to be a whole word
(no letter, digit or underscore on either side), ``-x`` the whole line, ``-n`` prefixes
``NUMBER:``, ``-c`` prints only the count of selected lines. Exit status 0 when a line
was selected, else 1 (as GNU grep, also with ``-c``).

Every pattern runs on RE2 (``posix_regex``): matching a line takes time linear in its
length whatever the pattern.
"""

from __future__ import annotations

from collections.abc import Sequence

from policies.filters.base import content, no_files, parse_options, refuse
from policies.filters.posix_regex import Matcher, compile_re2, literal, translate

NAME = "grep"


class Grep:
    def __init__(self, regex: Matcher, *, invert: bool, count: bool, number: bool):
        self._regex = regex
        self._invert = invert
        self._count = count
        self._number = number
        self._seen = 0
        self._selected = 0

    @property
    def done(self) -> bool:
        return False

    def feed(self, line: str) -> list[str]:
        self._seen += 1
        text = content(line)
        if (self._regex.search(text) is not None) != self._invert:
            self._selected += 1
            if not self._count:
                prefix = f"{self._seen}:" if self._number else ""
                return [f"{prefix}{text}\n"]
        return []

    def finish(self) -> list[str]:
        return [f"{self._selected}\n"] if self._count else []

    def notice(self) -> str | None:
        return None

    def exit_status(self) -> int:
        return 0 if self._selected else 1


def compile_grep(args: Sequence[str]) -> Grep:
    """Raises: CommandRejected (kind ``filter``)."""
    options = parse_options(NAME, args, flags="ivcnwxEF")
    flags = set(options.flags)
    if {"E", "F"} <= flags:
        raise refuse(NAME, "-E and -F together are not supported")
    if not options.operands:
        raise refuse(NAME, "a pattern is needed")
    pattern, files = options.operands[0], options.operands[1:]
    no_files(NAME, files)
    try:
        source = literal(pattern) if "F" in flags else translate(pattern, extended="E" in flags)
        if "x" in flags:
            source = f"^(?:{source})$"
        elif "w" in flags:
            # Only whether a line matches counts, so consuming the neighbouring
            # non-word characters is as good as looking at them.
            source = rf"(?:^|\W)(?:{source})(?:\W|$)"
        regex = compile_re2(source, ignore_case="i" in flags)
    except ValueError as exc:
        raise refuse(NAME, f"pattern {pattern!r}: {exc}") from None
    return Grep(regex, invert="v" in flags, count="c" in flags, number="n" in flags)
