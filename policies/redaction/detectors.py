"""Second-pass detectors for lines the fast scan flagged.

After ExecGate's own rules have run on a flagged line, two slower checks look again:

* detect-secrets' regex plugins (keyword assignments in code, AWS secret keys near
  their names, Slack, JWT, basic-auth URLs, Stripe, npm, PyPI), which catch shapes
  the project rules do not spell out;
* a high-entropy check for a token that directly follows a secret-ish word ("api key
  is 4f9a…", "token: Zx9K…"), using detect-secrets' Shannon entropy.

Both only ever see flagged lines, so their cost does not depend on output size.
"""

from __future__ import annotations

import bisect
import functools
import math
import re
from typing import TYPE_CHECKING

from policies.redaction.fastscan import NeedleSet
from policies.redaction.rules import MARKER_PREFIX, MARKER_RE, marker, needle_set

if TYPE_CHECKING:
    from detect_secrets.plugins.base import BasePlugin
    from detect_secrets.plugins.high_entropy_strings import HighEntropyStringsPlugin

# detect-secrets' keyword regexes look ahead to the end of the line; beyond this length
# the project rules alone decide (they are linear in the line length).
MAX_PLUGIN_LINE = 4096

# Secret-ish words, found with str.find on the lower-cased line (much cheaper than a
# case-insensitive alternation tried at every position). "key" counts only after one
# of _KEY_PREFIXES ("api key", "access_key", "signing-key", ...).
_ADJACENT_WORDS = ("secret", "token", "password", "passwd", "credential", "key")
_KEY_PREFIXES = tuple(
    f"{word}{sep}"
    for word in ("api", "access", "private", "auth", "secret", "signing", "encryption")
    for sep in ("", " ", "_", "-")
)
# What may follow the word: the rest of an identifier, a few separators, perhaps "is",
# then the candidate token.
_AFTER_WORD = re.compile(
    r"[A-Za-z0-9_-]{0,20}[^A-Za-z0-9\n]{1,5}(?:(?:is|was|value|of)[^A-Za-z0-9\n]{1,5})?"
    r"(?P<val>[A-Za-z0-9+/=_.~-]{16,})"
)
_HEX = re.compile(r"[0-9a-fA-F]+")
_HAS_DIGIT = re.compile(r"[0-9]")
_HAS_LETTER = re.compile(r"[A-Za-z]")


@functools.cache
def _plugins() -> tuple[tuple[str, tuple[tuple[str, ...], ...], BasePlugin], ...]:
    """(kind, needles, plugin): a plugin runs only on lines whose lower-cased text
    holds one string of each needle group, which its own patterns cannot match
    without."""
    # Imported on first use: detect-secrets pulls in requests, which costs ~0.3 s at
    # start-up for every process that never sees a flagged line. The GitHub and GitLab
    # plugins are left out: they yield only the token prefix (a capture group), and
    # the project rules cover those tokens whole.
    from detect_secrets.plugins.aws import AWSKeyDetector
    from detect_secrets.plugins.basic_auth import BasicAuthDetector
    from detect_secrets.plugins.jwt import JwtTokenDetector
    from detect_secrets.plugins.keyword import KeywordDetector
    from detect_secrets.plugins.npm import NpmDetector
    from detect_secrets.plugins.pypi_token import PypiTokenDetector
    from detect_secrets.plugins.slack import SlackDetector
    from detect_secrets.plugins.stripe import StripeDetector

    return (
        (
            "secret",
            (("key", "pass", "pwd", "secret", "contrase"), ('"', "'", "`")),
            KeywordDetector(),
        ),
        ("aws-key", (("akia", "asia", "abia", "acca", "a3t", "aws"),), AWSKeyDetector()),
        ("slack-token", (("xox", "hooks.slack.com"),), SlackDetector()),
        ("jwt", (("eyj",),), JwtTokenDetector()),
        ("url-password", (("://",), ("@",)), BasicAuthDetector()),
        ("stripe-key", (("k_live_",),), StripeDetector()),
        ("npm-token", (("_authtoken",),), NpmDetector()),
        ("pypi-token", (("pypi-",),), PypiTokenDetector()),
    )


@functools.cache
def _plugin_needles() -> NeedleSet:
    return needle_set([needles for _, needles, _ in _plugins()])


@functools.lru_cache(maxsize=1024)
def _plugins_for(present: frozenset[str]) -> tuple[tuple[str, BasePlugin], ...]:
    """The plugins that ``present`` (the needles a line holds) lets run."""
    return tuple(
        (kind, plugin)
        for kind, needles, plugin in _plugins()
        if all(not present.isdisjoint(group) for group in needles)
    )


@functools.cache
def _entropy() -> tuple[HighEntropyStringsPlugin, HighEntropyStringsPlugin]:
    from detect_secrets.plugins.high_entropy_strings import (
        Base64HighEntropyString,
        HexHighEntropyString,
    )

    return HexHighEntropyString(), Base64HighEntropyString()


def _bounded(value: str) -> re.Pattern[str]:
    return re.compile(r"(?<![A-Za-z0-9])" + re.escape(value) + r"(?![A-Za-z0-9])")


def plugin_pass(line: str) -> tuple[str, int]:
    """Redact what detect-secrets' plugins still find in ``line``.

    Returns the line and the number of replacements.

    Raises:
        Nothing; lines longer than ``MAX_PLUGIN_LINE`` are returned unchanged.
    """
    if len(line) > MAX_PLUGIN_LINE:
        return line, 0
    count = 0
    present = _plugin_needles().present(line.lower())
    for kind, plugin in _plugins_for(present):
        for value in set(plugin.analyze_string(line)):
            if len(value) < 2 or MARKER_PREFIX in value:
                continue
            line, n = _bounded(value).subn(marker(kind), line)
            count += n
    return line, count


def _is_high_entropy(value: str) -> bool:
    if not (_HAS_DIGIT.search(value) and _HAS_LETTER.search(value)):
        return False
    hex_plugin, b64_plugin = _entropy()
    if _HEX.fullmatch(value):
        return hex_plugin.calculate_shannon_entropy(value) > hex_plugin.entropy_limit
    # detect-secrets' base64 limit (4.5) is out of reach for strings shorter than ~23
    # characters (log2 of the length bounds the entropy), so short tokens get a limit
    # scaled to their length.
    limit = min(b64_plugin.entropy_limit, 0.8 * math.log2(len(value)))
    return b64_plugin.calculate_shannon_entropy(value) > limit


def _in_marker(starts: list[int], ends: list[int], pos: int) -> bool:
    # Markers do not overlap and come in order: one bisection per word.
    i = bisect.bisect_right(starts, pos) - 1
    return i >= 0 and pos <= ends[i]


def _word_ends(line: str) -> list[int]:
    lowered = line.lower()
    ends: list[int] = []
    for word in _ADJACENT_WORDS:
        start = lowered.find(word)
        while start >= 0:
            if word != "key" or lowered.endswith(_KEY_PREFIXES, 0, start):
                ends.append(start + len(word))
            start = lowered.find(word, start + 1)
    return ends


def _candidates(line: str) -> list[tuple[int, int]]:
    word_ends = _word_ends(line)
    if not word_ends:
        return []
    markers = [m.span() for m in MARKER_RE.finditer(line)]
    starts, ends = [a for a, _ in markers], [b for _, b in markers]
    found: set[tuple[int, int]] = set()
    for end in word_ends:
        # The kinds in earlier markers ("access-key-id") are not words to act on.
        if _in_marker(starts, ends, end):
            continue
        match = _AFTER_WORD.match(line, end)
        if match is not None and _is_high_entropy(match["val"]):
            found.add(match.span("val"))
    # Overlapping candidates (two words before one token) collapse to the first.
    spans: list[tuple[int, int]] = []
    for start, stop in sorted(found):
        if not spans or start >= spans[-1][1]:
            spans.append((start, stop))
    return spans


def adjacent_entropy_pass(line: str) -> tuple[str, int]:
    """Redact high-entropy tokens that directly follow a secret-ish word.

    Raises:
        Nothing.
    """
    spans = _candidates(line)
    if not spans:
        return line, 0
    parts: list[str] = []
    last = 0
    for start, end in spans:
        parts.append(line[last:start])
        parts.append(marker("high-entropy"))
        last = end
    parts.append(line[last:])
    return "".join(parts), len(spans)
