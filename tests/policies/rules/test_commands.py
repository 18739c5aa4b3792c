"""Command text parsing, argv validation and the quoted shell line."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from policies.errors import CommandRejected
from policies.rules.commands import (
    MAX_ARGS,
    ParsedCommand,
    build_shell_line,
    parse_command_text,
    validate_argv,
)


@pytest.mark.parametrize(
    ("text", "stages"),
    [
        pytest.param("ps aux", (("ps", "aux"),), id="plain-words"),
        pytest.param("  ps\taux  ", (("ps", "aux"),), id="spaces-and-tabs-separate"),
        pytest.param("grep 'a b'", (("grep", "a b"),), id="single-quotes-keep-spaces"),
        pytest.param("grep 'a;b|c$d'", (("grep", "a;b|c$d"),), id="single-quotes-keep-meta"),
        pytest.param('grep "a b"', (("grep", "a b"),), id="double-quotes"),
        pytest.param('grep "say \\"hi\\""', (("grep", 'say "hi"'),), id="escaped-double-quote"),
        pytest.param('grep "a\\nb"', (("grep", "a\\nb"),), id="backslash-kept-in-dq"),
        pytest.param("grep \\;", (("grep", ";"),), id="escaped-semicolon-is-literal"),
        pytest.param("grep ''", (("grep", ""),), id="empty-quoted-word"),
        pytest.param("grep a''b", (("grep", "ab"),), id="adjacent-quotes-join"),
        pytest.param("grep a#b", (("grep", "a#b"),), id="hash-inside-word"),
        pytest.param("grep 'x*'", (("grep", "x*"),), id="quoted-glob"),
        pytest.param("ls --color=never", (("ls", "--color=never"),), id="equals-in-flag"),
        pytest.param(
            "ps aux | grep x | wc -l",
            (("ps", "aux"), ("grep", "x"), ("wc", "-l")),
            id="pipeline",
        ),
        pytest.param("ps aux|wc", (("ps", "aux"), ("wc",)), id="pipeline-without-spaces"),
        pytest.param("grep 'a|b' | wc", (("grep", "a|b"), ("wc",)), id="quoted-pipe"),
    ],
)
def test_command_text_is_split_with_posix_quoting(
    text: str, stages: tuple[tuple[str, ...], ...]
) -> None:
    assert parse_command_text(text) == ParsedCommand(stages=stages, pipeline=len(stages) > 1)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        pytest.param("ls; id", "shell_syntax", id="semicolon"),
        pytest.param("ls && id", "shell_syntax", id="and-list"),
        pytest.param("ls || id", "shell_syntax", id="or-list"),
        pytest.param("ls |& id", "shell_syntax", id="pipe-stderr"),
        pytest.param("sleep 1 &", "shell_syntax", id="background"),
        pytest.param("echo $(id)", "shell_syntax", id="command-substitution"),
        pytest.param("echo ${HOME}", "shell_syntax", id="parameter-expansion"),
        pytest.param("echo $HOME", "shell_syntax", id="variable"),
        pytest.param("echo `id`", "shell_syntax", id="backticks"),
        pytest.param('echo "$HOME"', "shell_syntax", id="variable-in-double-quotes"),
        pytest.param('echo "`id`"', "shell_syntax", id="backticks-in-double-quotes"),
        pytest.param("echo $'\\x41'", "shell_syntax", id="ansi-c-quoting"),
        pytest.param("ls > /tmp/x", "shell_syntax", id="redirect-out"),
        pytest.param("ls >> /tmp/x", "shell_syntax", id="redirect-append"),
        pytest.param("cat < /etc/passwd", "shell_syntax", id="redirect-in"),
        pytest.param("ls 2>&1", "shell_syntax", id="redirect-stderr"),
        pytest.param("ls *", "shell_syntax", id="glob-star"),
        pytest.param("ls /tm?", "shell_syntax", id="glob-question"),
        pytest.param("ls /[a-z]mp", "shell_syntax", id="glob-bracket"),
        pytest.param("ls ~", "shell_syntax", id="tilde"),
        pytest.param("ls ~root", "shell_syntax", id="tilde-user"),
        pytest.param("ls {a,b}", "shell_syntax", id="brace-expansion"),
        pytest.param("(id)", "shell_syntax", id="subshell"),
        pytest.param("! id", "shell_syntax", id="negation"),
        pytest.param("ls # comment", "shell_syntax", id="comment"),
        pytest.param("ls\nid", "control_char", id="newline"),
        pytest.param("ls\rid", "control_char", id="carriage-return"),
        pytest.param("ls \\\nid", "control_char", id="escaped-newline"),
        pytest.param("ls\x00id", "control_char", id="nul"),
        pytest.param("ls\x1b[31m", "control_char", id="escape"),
        pytest.param("ls\x85", "control_char", id="c1-next-line"),
        pytest.param("ls\u2028id", "control_char", id="line-separator"),
        pytest.param("ls \u202e/tmp", "unicode", id="bidi-override"),
        pytest.param("ls\u200b /tmp", "unicode", id="zero-width-space"),
        pytest.param("ls \ufeff", "unicode", id="byte-order-mark"),
        pytest.param("\u0435nv", "unicode", id="cyrillic-program-name"),
        pytest.param("ls 'unterminated", "quoting", id="single-quote"),
        pytest.param('ls "unterminated', "quoting", id="double-quote"),
        pytest.param("ls \\", "quoting", id="trailing-backslash"),
        pytest.param("", "empty", id="empty"),
        pytest.param("   \t ", "empty", id="blank"),
        pytest.param("| ls", "empty", id="leading-pipe"),
        pytest.param("ls |", "empty", id="trailing-pipe"),
        pytest.param("ls | | wc", "empty", id="empty-middle-stage"),
        pytest.param("'' x", "empty", id="empty-program"),
        pytest.param("LD_PRELOAD=/tmp/x.so ls", "env_assignment", id="env-assignment"),
        pytest.param("ls " + "a" * 4100, "too_long", id="too-long"),
    ],
)
def test_shell_syntax_and_bad_text_are_refused_with_a_kind(text: str, kind: str) -> None:
    with pytest.raises(CommandRejected) as caught:
        parse_command_text(text)
    assert caught.value.kind == kind
    assert caught.value.code == "command_rejected"


def test_the_length_limit_is_configurable() -> None:
    assert parse_command_text("ls /tmp", max_length=7).stages == (("ls", "/tmp"),)
    with pytest.raises(CommandRejected) as caught:
        parse_command_text("ls /tmp", max_length=6)
    assert caught.value.kind == "too_long"


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["ls", ";", "id"], id="semicolon-is-a-literal-argument"),
        pytest.param(["grep", "$(id)"], id="dollar-is-literal"),
        pytest.param(["grep", "a\tb"], id="tab-in-argument"),
        pytest.param(["grep", "привет"], id="non-ascii-argument"),
        pytest.param(["grep", ""], id="empty-argument"),
    ],
)
def test_argv_lists_run_without_a_shell_so_metacharacters_are_literal(argv: list[str]) -> None:
    assert validate_argv(argv) == tuple(argv)


@pytest.mark.parametrize(
    ("argv", "kind"),
    [
        pytest.param([], "empty", id="empty"),
        pytest.param([""], "empty", id="empty-program"),
        pytest.param("ls", "invalid", id="string-not-list"),
        pytest.param(["ls", 3], "invalid", id="non-string"),
        pytest.param(["ls", "a\x00b"], "control_char", id="nul"),
        pytest.param(["ls", "a\nb"], "control_char", id="newline"),
        pytest.param(["ls", "a\rb"], "control_char", id="carriage-return"),
        pytest.param(["ls", "\x9b"], "control_char", id="c1"),
        pytest.param(["ls", "\x7f"], "control_char", id="delete"),
        pytest.param(["l\ts"], "control_char", id="tab-in-program"),
        pytest.param(["ls", "\u202ex"], "unicode", id="bidi"),
        pytest.param(["ls", "\u2066x"], "unicode", id="bidi-isolate"),
        pytest.param(["ls", "\u061c"], "unicode", id="arabic-letter-mark"),
        pytest.param(["ls", "\u200e"], "unicode", id="lrm"),
        pytest.param(["ls", "a\u200db"], "unicode", id="zero-width-joiner"),
        pytest.param(["ls", "\u2060"], "unicode", id="word-joiner"),
        pytest.param(["ls", "\U000e0041"], "unicode", id="tag-character"),
        pytest.param(["ls", "\ud800"], "unicode", id="lone-surrogate"),
        pytest.param(["\uff45nv"], "unicode", id="fullwidth-program"),
        pytest.param(["e\u0578v"], "unicode", id="armenian-lookalike-program"),
        pytest.param(["my prog"], "invalid", id="space-in-program"),
        pytest.param(["FOO=1", "ls"], "env_assignment", id="env-assignment"),
        pytest.param(["ls"] * (MAX_ARGS + 1), "too_long", id="too-many-args"),
        pytest.param(["ls", "a" * 5000], "too_long", id="too-long"),
    ],
)
def test_bad_argv_is_refused_with_a_kind(argv: list[str], kind: str) -> None:
    with pytest.raises(CommandRejected) as caught:
        validate_argv(argv)
    assert caught.value.kind == kind


NASTY_ARGS = [
    "plain",
    "",
    "two words",
    "it's",
    'say "hi"',
    "$(id)",
    "`id`",
    "a;b&&c||d",
    "*",
    "~",
    "{a,b}",
    "!x",
    "#x",
    "back\\slash",
    "tab\there",
    "ünïcödé",
    "--flag=$HOME",
    "|",
]


def test_shell_line_quotes_every_argument_and_joins_stages_with_pipes() -> None:
    line = build_shell_line([["grep", "a b"], ["wc", "-l"]])
    assert line == "grep 'a b' | wc -l"


def test_shell_line_round_trips_through_the_parser() -> None:
    stages = (("printf", "%s\\n", *NASTY_ARGS), ("cat",))
    assert parse_command_text(build_shell_line(stages)).stages == stages


def test_a_real_shell_sees_exactly_the_validated_arguments() -> None:
    line = build_shell_line([["printf", "%s\\0", *NASTY_ARGS]])
    out = subprocess.run(["/bin/sh", "-c", line], capture_output=True, check=True, timeout=30)
    assert out.stdout.decode().split("\0")[:-1] == NASTY_ARGS


def test_shell_line_refuses_invalid_stages() -> None:
    with pytest.raises(CommandRejected) as caught:
        build_shell_line([["ls"], ["cat", "a\nb"]])
    assert caught.value.kind == "control_char"
    with pytest.raises(CommandRejected) as empty:
        build_shell_line([])
    assert empty.value.kind == "empty"


def test_shlex_agrees_with_the_parser_on_plain_words() -> None:
    text = "ls -la /tmp 'a b' \"c d\" e\\ f"
    assert parse_command_text(text).stages == (tuple(shlex.split(text)),)
