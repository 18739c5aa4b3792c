"""Pipeline filters as pure line transformers: the real tools' output for the options
ExecGate implements, and refusals for the rest.

The expected outputs and exit statuses are what GNU grep 3 and coreutils 9 print for
the same input with ``LC_ALL=C``."""

from __future__ import annotations

import pytest

from policies.errors import CommandRejected
from policies.filters import compile_filters, compile_stage

LINES = ["b 10\n", "a 2\n", "a 2\n", "C 1K\n", "b 10\n", "x"]


def run(*stages: tuple[str, ...], lines: list[str] = LINES) -> tuple[str, int | None]:
    chain = compile_filters(stages)
    out = chain.feed(lines) + chain.finish()
    return "".join(out), chain.exit_status(None)


@pytest.mark.parametrize(
    ("stages", "expected", "status"),
    [
        pytest.param([("grep", "a")], "a 2\na 2\n", 0, id="grep-bre"),
        pytest.param([("grep", "-c", "a")], "2\n", 0, id="grep-count"),
        pytest.param([("grep", "-c", "zzz")], "0\n", 1, id="grep-count-none-exits-1"),
        pytest.param([("grep", "-v", "a")], "b 10\nC 1K\nb 10\nx\n", 0, id="grep-invert"),
        pytest.param([("grep", "-i", "c")], "C 1K\n", 0, id="grep-ignore-case"),
        pytest.param([("grep", "-E", "^(a|C) ")], "a 2\na 2\nC 1K\n", 0, id="grep-ere"),
        pytest.param([("grep", "a|C")], "", 1, id="grep-bre-bar-is-literal"),
        pytest.param([("grep", "a\\|C")], "a 2\na 2\nC 1K\n", 0, id="grep-bre-gnu-alternation"),
        pytest.param([("grep", "-F", "1.")], "", 1, id="grep-fixed-dot"),
        pytest.param([("grep", "1.")], "b 10\nC 1K\nb 10\n", 0, id="grep-dot"),
        pytest.param([("grep", "-w", "1")], "", 1, id="grep-word"),
        pytest.param([("grep", "-n", "b")], "1:b 10\n5:b 10\n", 0, id="grep-line-numbers"),
        pytest.param([("grep", "[[:upper:]]")], "C 1K\n", 0, id="grep-class"),
        pytest.param([("grep", "*a")], "", 1, id="grep-bre-leading-star-literal"),
        pytest.param([("grep", "-E", "^a {,1}2$")], "a 2\na 2\n", 0, id="grep-ere-up-to-n"),
        pytest.param([("grep", "-w", "b")], "b 10\nb 10\n", 0, id="grep-word-at-start"),
        pytest.param([("grep", "-x", "x")], "x\n", 0, id="grep-whole-line"),
        pytest.param([("grep", "-F", "[ ]")], "", 1, id="grep-fixed-brackets"),
        pytest.param([("grep", "[[:punct:]]")], "", 1, id="grep-punct-class"),
        pytest.param([("head", "-n", "2")], "b 10\na 2\n", 0, id="head"),
        pytest.param([("head", "-2")], "b 10\na 2\n", 0, id="head-obsolete-count"),
        pytest.param([("tail", "-n", "2")], "b 10\nx", 0, id="tail-keeps-last-line-as-is"),
        pytest.param([("tail", "-n", "+5")], "b 10\nx", 0, id="tail-from-line"),
        pytest.param([("sort",)], "C 1K\na 2\na 2\nb 10\nb 10\nx\n", 0, id="sort-c-locale"),
        pytest.param([("sort", "-u")], "C 1K\na 2\nb 10\nx\n", 0, id="sort-unique"),
        pytest.param(
            [("sort", "-k2", "-n")], "x\nC 1K\na 2\na 2\nb 10\nb 10\n", 0, id="sort-key-n"
        ),
        pytest.param(
            [("sort", "-k2", "-h")], "x\na 2\na 2\nb 10\nb 10\nC 1K\n", 0, id="sort-human"
        ),
        pytest.param(
            [("sort", "-rn")], "x\nb 10\nb 10\na 2\na 2\nC 1K\n", 0, id="sort-reverse-numeric"
        ),
        pytest.param(
            [("uniq", "-c")],
            "      1 b 10\n      2 a 2\n      1 C 1K\n      1 b 10\n      1 x\n",
            0,
            id="uniq-count",
        ),
        pytest.param([("wc", "-l")], "5\n", 0, id="wc-lines"),
        pytest.param([("wc",)], "      5      11      24\n", 0, id="wc-all"),
        pytest.param(
            [("sort",), ("uniq", "-c"), ("sort", "-rn"), ("head", "-n", "1")],
            "      2 b 10\n",
            0,
            id="top-counts",
        ),
    ],
)
def test_filters_print_what_the_real_tool_prints(
    stages: list[tuple[str, ...]], expected: str, status: int
) -> None:
    assert run(*stages) == (expected, status)


@pytest.mark.parametrize(
    "stage",
    [
        pytest.param(("grep", "-P", "x"), id="perl-regex"),
        pytest.param(("grep", "-r", "x"), id="recursive"),
        pytest.param(("grep", "x", "/etc/passwd"), id="file-operand"),
        pytest.param(("grep", "\\(a\\)\\1"), id="backreference"),
        pytest.param(("grep", "[[.a.]]"), id="collating-element"),
        pytest.param(("grep", "--color", "x"), id="long-option"),
        pytest.param(("grep", "-E", "*x"), id="ere-nothing-to-repeat"),
        pytest.param(("grep", "-E", "(a)\\1"), id="ere-backreference"),
        pytest.param(("grep", "\\<a"), id="word-start-look-around"),
        pytest.param(("grep", "a\\>"), id="word-end-look-around"),
        pytest.param(("grep", "-E", "a{1001}"), id="repeat-count-over-re2-limit"),
        pytest.param(("grep", "-E", "((a{1000}){1000}){1000}"), id="program-too-large"),
        pytest.param(("head", "-c", "5"), id="head-bytes"),
        pytest.param(("head", "-n", "-5"), id="head-negative"),
        pytest.param(("tail", "-f"), id="tail-follow"),
        pytest.param(("sort", "-k2,3"), id="sort-key-end"),
        pytest.param(("sort", "-o", "/tmp/x"), id="sort-output-file"),
        pytest.param(("uniq", "-d"), id="uniq-duplicates"),
        pytest.param(("wc", "-m"), id="wc-chars"),
        pytest.param(("cat", "/code/x"), id="not-a-filter"),
        pytest.param(("/bin/grep", "x"), id="program-by-path"),
        pytest.param(("jq", "."), id="unknown-program"),
    ],
)
def test_a_program_or_option_execgate_does_not_implement_is_refused(
    stage: tuple[str, ...],
) -> None:
    with pytest.raises(CommandRejected) as caught:
        compile_stage(stage)
    assert caught.value.kind == "filter"


def test_head_is_done_once_it_has_its_lines_and_later_lines_change_nothing() -> None:
    chain = compile_filters([("head", "-n", "1"), ("wc", "-l")])
    chain.feed(["a\n"])
    assert chain.done
    assert chain.feed(["b\n"]) == []
    assert chain.finish() == ["1\n"]


def test_the_exit_status_is_the_last_stages_and_grep_counts_only_what_it_sees() -> None:
    # What reaches a filter is already scrubbed: a guess at the secret finds nothing,
    # the key name alone still finds the line (the filter did run).
    scrubbed = ["DB_PASSWORD=[REDACTED:password]\n"]
    assert run(("grep", "-c", "DB_PASSWORD=Wv"), lines=scrubbed) == ("0\n", 1)
    assert run(("grep", "-c", "DB_PASSWORD="), lines=scrubbed) == ("1\n", 0)
    assert run(("grep", "DB_PASSWORD=W"), ("wc", "-l"), lines=scrubbed) == ("0\n", 0)


@pytest.mark.parametrize(
    "pattern",
    [
        pytest.param(("-E", "(a*)*Q"), id="nested-star"),
        pytest.param(("-E", "(.*)*Q"), id="nested-dot-star"),
        pytest.param(("\\(a\\|aa\\)*Q",), id="bre-alternation-star"),
        pytest.param(("-E", "(a|a)*(a|a)*(a|a)*Q"), id="ambiguous-alternation"),
        pytest.param(("-wE", "(a+)+"), id="word-nested-plus"),
    ],
)
def test_a_backtracking_pattern_runs_in_linear_time_over_a_long_line(
    pattern: tuple[str, ...],
) -> None:
    # A backtracking engine takes 2**n steps on these (n = the line's length): the
    # test would not end. The same chain does match a line that has the 'Q'.
    chain = compile_filters([("grep", "-c", *pattern)])
    assert chain.feed(["a" * 100_000 + "\n", "a" * 50 + "Q\n"]) == []
    assert chain.finish() == ["1\n"]
