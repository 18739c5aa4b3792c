"""``sort [-n | -h] [-r] [-u] [-k FIELD]``: the lines in order, each with a newline.

The order is the C locale's (byte order of the UTF-8 text), as on an instance without a
locale. ``-n`` compares leading numbers (blanks, an optional ``-``, digits, an optional
fraction; no number is 0), ``-h`` such numbers with an SI suffix (K, M, G, ...; by
suffix first), ``-k FIELD`` the text from the start of field FIELD (fields start where
blanks are followed by a non-blank; a field keeps its leading blanks) to the end of the
line. Lines whose keys compare equal are ordered by their whole text (the "last resort"
comparison); ``-r`` reverses both. ``-u`` prints only the first of lines whose keys
compare equal, without the last resort.

Sorting needs every line: at most ``MAX_HELD_CHARS`` characters are held, lines past
that are dropped and ``notice`` says how many.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from policies.filters.base import content, count_arg, no_files, parse_options, refuse

NAME = "sort"
MAX_HELD_CHARS = 32 * 1024 * 1024

_NUMBER = re.compile(r"[ \t]*(-?)([0-9]*)(?:\.([0-9]*))?")
_SUFFIXES = "KMGTPEZYRQ"
_FIELD = re.compile(r"[ \t]*[^ \t]*")

Key = tuple[float, ...] | str


def _number(text: str) -> tuple[float, int, re.Match[str]]:
    found = _NUMBER.match(text)
    assert found is not None  # every part of the pattern is optional
    whole, fraction = found[2], found[3] or ""
    if not whole and not fraction:
        return 0.0, 1, found
    value = float(f"{whole or '0'}.{fraction or '0'}")
    sign = -1 if found[1] and value else 1
    return sign * value, sign, found


def _numeric(text: str) -> tuple[float, ...]:
    return (_number(text)[0],)


def _human(text: str) -> tuple[float, ...]:
    value, sign, found = _number(text)
    suffix = text[found.end() : found.end() + 1]
    rank = _SUFFIXES.index(suffix.upper()) + 1 if suffix and suffix.upper() in _SUFFIXES else 0
    if suffix == "k":
        rank = 1
    if not value:
        return (0.0, 0.0, 0.0)
    return (float(sign), float(sign * rank), value)


def _field_start(text: str, field: int) -> str:
    pos = 0
    for _ in range(field - 1):
        found = _FIELD.match(text, pos)
        assert found is not None
        if found.end() == pos:
            return ""
        pos = found.end()
    return text[pos:]


class Sort:
    def __init__(self, *, mode: str, reverse: bool, unique: bool, field: int) -> None:
        self._mode = mode
        self._reverse = reverse
        self._unique = unique
        self._field = field
        self._lines: list[str] = []
        self._held = 0
        self._dropped = 0

    @property
    def done(self) -> bool:
        return False

    def _key(self, line: str) -> Key:
        text = _field_start(line, self._field) if self._field > 1 else line
        if self._mode == "n":
            return _numeric(text)
        if self._mode == "h":
            return _human(text)
        return text

    def feed(self, line: str) -> list[str]:
        text = content(line)
        if self._held + len(text) > MAX_HELD_CHARS:
            self._dropped += 1
            return []
        self._held += len(text)
        self._lines.append(text)
        return []

    def finish(self) -> list[str]:
        lines, self._lines = self._lines, []
        if self._unique:
            keyed = sorted(((self._key(line), line) for line in lines), key=_first)
            if self._reverse:
                keyed = _reverse_stable(keyed)
            out: list[str] = []
            last: object = object()
            for key, line in keyed:
                if key != last:
                    out.append(line + "\n")
                    last = key
            return out
        ordered = sorted(lines, key=lambda line: (self._key(line), line), reverse=self._reverse)
        return [line + "\n" for line in ordered]

    def exit_status(self) -> int:
        return 0

    def notice(self) -> str | None:
        if not self._dropped:
            return None
        return (
            f"sort: held the first {MAX_HELD_CHARS} characters; {self._dropped} later "
            "lines were dropped"
        )


def _first(item: tuple[Key, str]) -> Key:
    return item[0]


def _reverse_stable(keyed: list[tuple[Key, str]]) -> list[tuple[Key, str]]:
    """Sorted descending, keeping input order among equal keys (as GNU sort -ru)."""
    groups: list[list[tuple[Key, str]]] = []
    for item in keyed:
        if groups and groups[-1][0][0] == item[0]:
            groups[-1].append(item)
        else:
            groups.append([item])
    return [item for group in reversed(groups) for item in group]


def compile_sort(args: Sequence[str]) -> Sort:
    """Raises: CommandRejected (kind ``filter``)."""
    options = parse_options(NAME, args, flags="nrhu", valued="k")
    no_files(NAME, options.operands)
    flags = set(options.flags)
    if {"n", "h"} <= flags:
        raise refuse(NAME, "-n and -h together are not supported")
    field = 1
    if "k" in options.values:
        field, _ = count_arg(NAME, "-k", options.values["k"])
        if field < 1:
            raise refuse(NAME, "-k takes a field number from 1, without a ',END' part")
    mode = "n" if "n" in flags else "h" if "h" in flags else ""
    return Sort(mode=mode, reverse="r" in flags, unique="u" in flags, field=field)
