"""What a redaction rule is: a regex, where in its match the secret is, what kind of
secret it is, and the cheap checks that decide whether a line is worth the regex.

``redact_shapes`` and ``redact_tokens`` define the rules; ``redact_rules`` applies them.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

MARKER_PREFIX = "[REDACTED:"
MARKER_RE = re.compile(r"\[REDACTED:[a-z0-9-]+\]")


def marker(kind: str) -> str:
    """The text that replaces a secret of ``kind``."""
    return f"{MARKER_PREFIX}{kind}]"


Span = tuple[int, int]
Spans = Callable[[re.Match[str]], list[Span]]


class After:
    """What follows a key name's identifier run (``[A-Za-z0-9_.-]+``, taken whole by
    ``KEY``) in a rule's match, as bits. A rule on key names can only match a line in
    which some run holding a key word is followed like this: ``redact_rules`` skips it
    elsewhere. (Plain ints: an ``enum.Flag`` costs a Python call per test.)"""

    NONE: Final = 0  # no such condition: the rule does not start from a key name
    SEP: Final = 1  # blanks, then ':' or '='
    COLON: Final = 2  # blanks, then ':'
    QUOTE: Final = 4  # directly a quote or a backslash (an escaped quote)
    TAG: Final = 8  # a blank or '>' (an XML element's name)
    ARG: Final = 16  # one or more blanks, then something other than '-' (a flag's value)
    EVERY: Final = 31


def after_key(blank: bool, following: str) -> int:
    """The ``After`` conditions a key name's run meets when it is followed by blanks
    (``blank``) and then the character ``following`` ('' at the end of the line)."""
    found = After.NONE
    if following in (":", "="):
        found |= After.SEP
    if following == ":":
        found |= After.COLON
    if not blank and following in ("'", '"', "\\"):
        found |= After.QUOTE
    if blank or following == ">":
        found |= After.TAG
    if blank and following not in ("", "-"):
        found |= After.ARG
    return found


class Begin(enum.Enum):
    """Where a rule's matches can begin. Matching is tried only there (``re`` would try
    every position of the line), with the same result as a search."""

    ANYWHERE = "anywhere"  # a plain search
    LINE = "line"  # only at the start of the line
    # only at the start of a line whose first word (after blanks) is the identifier run
    # of a key name followed as ``after`` says
    LINE_KEY = "line-key"
    KEY_RUN = "key-run"  # where the identifier run of a key name followed as ``after`` begins
    LITERAL = "literal"  # where one of ``starts`` begins (in the lower-cased line if ``fold``)


@dataclass(frozen=True, slots=True)
class Rule:
    """One project rule.

    The rule runs only on lines whose lower-cased text contains, for each group in
    ``needles``, at least one of its strings, and (unless ``after`` is ``NONE``) a key
    name followed as ``after`` says. ``spans`` says where in a match the secrets are
    (none: leave the match alone); ``kind`` is a fixed kind or a function of the match.
    """

    name: str
    regex: re.Pattern[str]
    spans: Spans
    kind: str | Callable[[re.Match[str]], str]
    needles: tuple[tuple[str, ...], ...]
    after: int = After.NONE
    begin: Begin = Begin.ANYWHERE
    starts: tuple[str, ...] = ()
    fold: bool = False


def first(match: re.Match[str], groups: tuple[str, ...]) -> Span | None:
    for group in groups:
        start, end = match.span(group)
        if start >= 0:
            return start, end
    return None


def value(*groups: str) -> Spans:
    """The first of ``groups`` that took part in the match."""

    def spans(match: re.Match[str]) -> list[Span]:
        span = first(match, groups)
        return [] if span is None else [span]

    return spans


def rule(
    name: str,
    pattern: str,
    kind: str | Callable[[re.Match[str]], str],
    needles: tuple[tuple[str, ...], ...],
    spans: Spans | None = None,
    *,
    after: int = After.NONE,
    begin: Begin = Begin.ANYWHERE,
    starts: tuple[str, ...] = (),
    fold: bool = False,
) -> Rule:
    """A rule whose value is in group ``val`` unless ``spans`` says otherwise; with
    ``starts``, every match begins with one of them (lower-cased when ``fold``)."""
    regex = re.compile(pattern, re.MULTILINE)
    if starts:
        begin = Begin.LITERAL
    spans = spans or value("val")
    return Rule(name, regex, spans, kind, needles, after, begin, starts, fold)
