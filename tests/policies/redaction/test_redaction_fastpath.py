"""Redaction's shortcuts give what the plain way gives: rules tried only where a match
can begin, needles found in one pass, and a stream's blocks scanned once as bytes."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from policies.redaction import StreamRedactor
from policies.redaction.controls import strip_controls
from policies.redaction.fastscan import NeedleSet
from policies.redaction.keys import KEY, KEY_NEEDLES
from policies.redaction.rules import RULES, Rule, _apply, _Line, _where

_CORPUS: dict[str, list[dict[str, Any]]] = yaml.safe_load(
    Path(__file__).with_name("redaction_corpus.yaml").read_text(encoding="utf-8")
)
_CORPUS_TEXTS = [case["text"] for case in _CORPUS["secrets"] + _CORPUS["benign"]]

# Pieces of key names, their syntax and values; put together at random they make the
# near misses the shortcuts must not get wrong (a key word followed by the wrong thing,
# a name just after a refused one, odd letters that lower-case into key words).
_WORDS = (
    "password token pass pwd key auth secret dsn credential apikey Authorization bearer"
    " cookie Basic db_pass -token --password api-key A_TOKEN PassWord x name value"
    " sort_key PWD AKIAIOSFODNN7EXAMPLE LTAI5tu8jzPde0IgxLd6Gncf ghp_0123456789abcdefghij"
    "klmnopqrstuvwxyz eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln mysql -phunter2 redis-cli"
    " -a hunter2 \u212aey tok\u0130n p\u00e4ss hooks.slack.com/services/T0/B0/x sk_live_"
    "0123456789abcdef npm_ pypi- xoxb-1234-abcdefgh glpat-0123456789abcdefghij AIza"
).split()
_PUNCTUATION = (
    " ",
    "  ",
    "\t",
    "=",
    ":",
    ":=",
    "==",
    "=>",
    "'",
    '"',
    "\\",
    '\\"',
    ">",
    "<",
    "</",
    "-",
    "--",
    ",",
    ";",
    "&",
    "[",
    "]",
    "@",
    "://",
    "|",
    "[REDACTED:password]",
)
_VALUES = ("hunter2", "Zx9Kq2LmN8pR4tV6wY1bC3dF5gH7jK0", "-x", "true", "abc", "")


def _random_line(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 16)):
        roll = rng.random()
        pool = _WORDS if roll < 0.4 else _PUNCTUATION if roll < 0.8 else _VALUES
        parts.append(rng.choice(pool))
    return "".join(parts)


def _lines() -> list[str]:
    rng = random.Random(20261127)
    lines = [line for text in _CORPUS_TEXTS for line in text.splitlines()]
    lines += [_random_line(rng) for _ in range(3000)]
    return lines


_LINES = _lines()


@pytest.mark.parametrize("rule", RULES, ids=[rule.name for rule in RULES])
def test_a_rule_tried_only_where_a_match_can_begin_finds_what_a_search_finds(
    rule: Rule,
) -> None:
    differing = [
        line
        for line in _LINES
        if _apply(rule, line, _where(rule, _Line(line))) != _apply(rule, line, None)
    ]

    assert differing == []


def test_needle_set_finds_exactly_the_needles_a_text_holds() -> None:
    needles = ("\t-p", " -a", '"', ":", "://", "@", "@tcp", "key", "pass", "pwd", "xox")
    found = NeedleSet(needles)
    rng = random.Random(7)
    alphabet = "akeypswdtcx:/@\"' -\t\u212a\u0130\ud800"

    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert found.present(text) == {needle for needle in needles if needle in text}, text


def _stream(prepare: Any, chunks: list[bytes], max_line: int) -> tuple[list[str], int]:
    stream = StreamRedactor(prepare=prepare, max_line=max_line)
    out = [stream.feed(chunk) for chunk in chunks]
    out.append(stream.flush())
    return out, stream.redactions


_STRIPPED_SAMPLES = [
    *_CORPUS_TEXTS,
    "a token=abc\x1b[31mdef\nb\n",  # a control after the trigger, in the same line
    "x\r\nDB_PASSWORD=hunter2\r\n",
    "ok \xff line\n".encode("latin-1").decode("utf-8", "replace"),
    "\u200bapi_key=Zx9Kq2LmN8pR4tV6wY1bC3dF5gH7jK0\n",
    "plain\n" * 50 + "- name: DB_PASSWORD\n  value: hunter2\n" + "tail\n" * 20,
]


@pytest.mark.parametrize("max_line", [7, 64, 65536])
def test_stripping_stream_gives_what_stripping_each_block_before_redaction_gives(
    max_line: int,
) -> None:
    rng = random.Random(max_line)
    for text in _STRIPPED_SAMPLES:
        data = text.encode() + rng.choice([b"", b"\xe6\x97", b"\xff\n", b"\n"])
        cuts = sorted(rng.sample(range(len(data) + 1), min(6, len(data) + 1)))
        chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]

        # A wrapped strip_controls is not recognised: the stream decodes, strips and
        # scans each block as text.
        expected = _stream(lambda block: strip_controls(block), chunks, max_line)

        assert _stream(strip_controls, chunks, max_line) == expected, text


def test_fed_text_comes_with_its_exact_utf8_encoding() -> None:
    stream = StreamRedactor(prepare=strip_controls)
    raw = "é DB_PASSWORD=pässwörd\n日志 ok\nAKIAIOSFODNN7EXAMPLE\npart".encode()

    for cut in range(0, len(raw), 5):
        text, encoded = stream.feed_encoded(raw[cut : cut + 5])
        assert encoded == text.encode()


def test_key_words_looked_for_after_a_key_name_are_those_a_key_name_must_hold() -> None:
    # Rules on key names are skipped unless a run holding one of KEY_NEEDLES is
    # followed as they need; KEY must accept no other word.
    words = re.search(r"\(\?i:([a-z|]+)\)", KEY)

    assert words is not None
    assert set(words[1].split("|")) == set(KEY_NEEDLES)
