"""Applying the redaction rules to one flagged line.

The rules (``redact_shapes.KEY_RULES`` then ``redact_tokens.TOKEN_RULES``) are tried in
order, each only on lines that hold its needles; a rule on key names also needs a key
name followed as its ``After`` says. Which rules that leaves depends on a line only
through the set of needles it holds and the ways its key names are followed, so the
choice is computed once per such combination and cached: a line costs one pass over
the needles, one scan for key names, and the regexes of the rules that can match.
"""

from __future__ import annotations

import bisect
import functools
import re

from policies.redaction.fastscan import NeedleSet
from policies.redaction.keys import KEY_NEEDLES
from policies.redaction.rulebase import (
    MARKER_PREFIX,
    MARKER_RE,
    After,
    Begin,
    Rule,
    after_key,
    marker,
)
from policies.redaction.shapes import BLOCK_INDICATOR, KEY_RULES, LINE_LEAD, TRIGGER
from policies.redaction.tokens import TOKEN_RULES

__all__ = [
    "BLOCK_INDICATOR",
    "MARKER_PREFIX",
    "MARKER_RE",
    "RULES",
    "TRIGGER",
    "Rule",
    "apply_rules",
    "is_secret_value",
    "marker",
    "needle_set",
]

# Applied in this order; each sees the previous ones' output.
RULES: tuple[Rule, ...] = KEY_RULES + TOKEN_RULES


def is_secret_value(value: str) -> bool:
    """Whether ``value`` is something to redact: not blank, not already a marker
    (output scrubbed twice, or by an earlier rule)."""
    return not value.startswith(MARKER_PREFIX) and bool(value.strip("\"' \t"))


def needle_set(groups: list[tuple[tuple[str, ...], ...]]) -> NeedleSet:
    """Every string of ``groups`` (as in ``Rule.needles``), ready to be looked for."""
    return NeedleSet(tuple(sorted({n for needles in groups for group in needles for n in group})))


def _holds(present: frozenset[str], needles: tuple[tuple[str, ...], ...]) -> bool:
    return all(not present.isdisjoint(group) for group in needles)


_RULE_NEEDLES = needle_set([rule.needles for rule in RULES])

# A key word, the rest of its identifier run, then what follows: blanks and one
# character, only looked at (it may start the next run). Run on the lower-cased line;
# KEY's lookahead finds the same words.
_KEY_RUN = re.compile(
    "(?:" + "|".join(KEY_NEEDLES) + r")[a-z0-9_.-]*+(?P<blank>[ \t]*+)(?=(?P<next>.?))"
)
# What precedes a position in its identifier run, read backwards (on the reversed line).
_RUN_BEFORE = re.compile(r"[a-z0-9_.-]*")


# What may come before the name a LINE_KEY rule starts from: a line number or count,
# ENV or setenv.
_LINE_KEY_LEAD = re.compile(LINE_LEAD + r"(?:(?:ENV|setenv)[ \t]+)?")


@functools.lru_cache(maxsize=64)
def _after(blank: bool, following: str) -> int:
    return after_key(blank, following)


class _Line:
    """A line being redacted, with what the rules ask of it, worked out once."""

    __slots__ = ("_keys", "_lowered", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._lowered: str | None = None
        # Each key word's position and how its identifier run is followed.
        self._keys: list[tuple[int, int]] | None = None

    @property
    def lowered(self) -> str:
        if self._lowered is None:
            self._lowered = self.text.lower()
        return self._lowered

    def _key_words(self) -> list[tuple[int, int]]:
        if self._keys is None:
            self._keys = [
                (found.start(), _after(bool(found["blank"]), found["next"]))
                for found in _KEY_RUN.finditer(self.lowered)
            ]
        return self._keys

    def key_after(self) -> int:
        """Every way (``After`` bits) an identifier run holding a key word is followed.

        All of them for a line that is not ASCII: other characters can change length
        when lower-cased, or match a key word's letters case-insensitively (U+212A
        KELVIN SIGN and "k"), so such a line is searched everywhere.
        """
        if not self.text.isascii():
            return After.EVERY
        found = After.NONE
        for _, after in self._key_words():
            found |= after
        return found

    def key_starts(self, after: int) -> list[int] | None:
        """Where each identifier run holding a key word and followed as ``after`` says
        begins, in order; None for a line that is not ASCII (see ``key_after``)."""
        if not self.text.isascii():
            return None
        words = [word for word, followed in self._key_words() if followed & after]
        if not words:
            return words
        size = len(self.lowered)
        backwards = self.lowered[::-1]
        starts = []
        for word in words:
            # The run's characters before the key word, counted backwards.
            before = _RUN_BEFORE.match(backwards, size - word)
            starts.append(word - (before.end() - before.start()) if before else word)
        return starts


def _occurrences(text: str, needles: tuple[str, ...]) -> list[int]:
    found: list[int] = []
    for needle in needles:
        at = text.find(needle)
        while at >= 0:
            found.append(at)
            at = text.find(needle, at + 1)
    return sorted(set(found)) if len(needles) > 1 else found


def _where(rule: Rule, line: _Line) -> list[int] | None:
    """Where in ``line`` a match of ``rule`` may begin, in order; None: anywhere."""
    if rule.after and not line.key_after() & rule.after:
        return []
    if rule.begin is Begin.KEY_RUN:
        return line.key_starts(rule.after)
    if rule.begin is Begin.LINE or rule.begin is Begin.LINE_KEY:
        # "^" also matches after a newline, which a line should not hold.
        if "\n" in line.text:
            return None
        if rule.begin is Begin.LINE_KEY:
            starts = line.key_starts(rule.after)
            lead = _LINE_KEY_LEAD.match(line.text)
            first = lead.end() if lead is not None else 0
            if starts is not None and first not in starts:
                return []
        return [0]
    if rule.begin is Begin.LITERAL:
        if not rule.fold:
            return _occurrences(line.text, rule.starts)
        if line.text.isascii():
            return _occurrences(line.lowered, rule.starts)
    return None


def _next(
    regex: re.Pattern[str], text: str, pos: int, where: list[int] | None
) -> re.Match[str] | None:
    """``regex.search(text, pos)``, trying only the positions in ``where``."""
    if where is None:
        return regex.search(text, pos)
    for index in range(bisect.bisect_left(where, pos), len(where)):
        found = regex.match(text, where[index])
        if found is not None:
            return found
    return None


@functools.lru_cache(maxsize=4096)
def _rules_for(present: frozenset[str]) -> tuple[Rule, ...]:
    return tuple(rule for rule in RULES if _holds(present, rule.needles))


# How many refused names per rule and line are looked past (see _apply): beyond this,
# a line made of refused names costs quadratic time, so the search skips whole matches.
_LOOK_INSIDE = 32


def _apply(rule: Rule, line: str, where: list[int] | None) -> tuple[str, int]:
    parts: list[str] = []
    count = last = pos = 0
    look_inside = _LOOK_INSIDE if "key" in rule.regex.groupindex else 0
    while (match := _next(rule.regex, line, pos, where)) is not None:
        spans = [s for s in rule.spans(match) if is_secret_value(line[s[0] : s[1]])]
        if not spans:
            # A refused name: look again right after it, so that a secret inside what
            # this match took as its value (sort_key=db_password=x) is still found.
            pos = max(match.end(), match.start() + 1)
            if look_inside and match.end("key") > match.start():
                look_inside -= 1
                pos = match.end("key")
            continue
        kind = rule.kind if isinstance(rule.kind, str) else rule.kind(match)
        for start, end in spans:
            parts.append(line[last:start])
            parts.append(marker(kind))
            last = end
        count += len(spans)
        pos = max(match.end(), match.start() + 1)
    if not parts:
        return line, 0
    parts.append(line[last:])
    return "".join(parts), count


def apply_rules(line: str) -> tuple[str, int]:
    """Run every rule over ``line`` (one line, no newline); return it and the count.

    Raises:
        Nothing.
    """
    count = 0
    current = _Line(line)
    # The needles are the original line's for every rule, as they always were.
    for rule in _rules_for(_RULE_NEEDLES.present(current.lowered)):
        where = _where(rule, current)
        if where is not None and not where:
            continue
        text, found = _apply(rule, current.text, where)
        if found:
            count += found
            current = _Line(text)
    return current.text, count
