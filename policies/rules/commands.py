"""Command text and argv: parsing, validation and the shell line ExecGate builds.

Command text (what a person types in Slack or the CLI) is split into words with POSIX
quoting rules: single quotes keep everything, double quotes keep everything but ``$``,
backticks and backslash escapes, a backslash outside quotes escapes the next character.
``|`` between words splits pipeline stages. Everything else the shell would interpret
is refused with a reason, never guessed at:

- command lists and background jobs (``;``, ``&&``, ``||``, ``&``), redirections
  (``<``, ``>``, ``>>``, ``2>&1``, ``<(...)``), subshells and groups (``(``, ``)``);
- expansions: ``$VAR``, ``${...}``, ``$(...)``, backticks, ``$'...'``, ``$"..."``, also
  inside double quotes; globs (unquoted ``*``, ``?``, ``[``), ``~``, brace expansion
  (``{`` or ``}``), history ``!`` and ``#`` comments;
- environment assignments before the program (``VAR=x cmd``);
- newlines, carriage returns, NUL and other control characters; bidi and zero-width
  characters (Unicode "format" characters); non-ASCII program names (look-alikes such as
  a Cyrillic ``е`` in ``env``);
- empty input, empty pipeline stages, unbalanced quotes, over-long input.

An argv given as a list (MCP, ``execgate exec TARGET -- ARGV``) runs without a shell, so
``;`` inside one of its elements is just a character; it is still checked for control and
invisible characters, size, and a program name that would fool a reader.

Refusals are ``CommandRejected(reason, kind=...)`` with kind one of ``empty``,
``too_long``, ``control_char``, ``unicode``, ``quoting``, ``shell_syntax``,
``env_assignment``, ``invalid``.
"""

from __future__ import annotations

import re
import shlex
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from policies.errors import CommandRejected

MAX_LENGTH = 4096
MAX_ARGS = 256

_ASSIGNMENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x85\u2028\u2029")

# Unquoted characters the shell would interpret, and what they would do.
_SPECIAL = {
    ";": "';' (command separator)",
    "&": "'&' (background job or '&&' list)",
    "<": "'<' (input redirection)",
    ">": "'>' (output redirection)",
    "`": "a backtick (command substitution)",
    "(": "'(' (subshell)",
    ")": "')' (subshell)",
    "{": "'{' (brace expansion or command group)",
    "}": "'}' (brace expansion or command group)",
    "*": "'*' (a glob the shell would expand)",
    "?": "'?' (a glob the shell would expand)",
    "[": "'[' (a glob the shell would expand)",
    "~": "'~' (home directory expansion)",
    "!": "'!' (history expansion or negation)",
}
_DOLLAR = {
    "(": "'$(' (command substitution)",
    "{": "'${' (parameter expansion)",
    "'": '"$\'" (ANSI-C quoting)',
    '"': "'$\"' (locale quoting)",
    "[": "'$[' (arithmetic expansion)",
}


@dataclass(frozen=True, slots=True)
class ParsedCommand:
    """Validated stages of a command; ``pipeline`` when there is more than one."""

    stages: tuple[tuple[str, ...], ...]
    pipeline: bool


def _reject(reason: str, kind: str) -> CommandRejected:
    return CommandRejected(reason, kind=kind)


def _check_char(char: str, where: str, *, allow_tab: bool) -> None:
    """Raises: CommandRejected for control, line-break, format and surrogate characters."""
    if char == "\t" and allow_tab:
        return
    if char in _LINE_BREAKS:
        raise _reject(f"{where} contains a line break (U+{ord(char):04X})", "control_char")
    category = unicodedata.category(char)
    if char == "\x00":
        raise _reject(f"{where} contains a NUL character", "control_char")
    if category == "Cc":
        raise _reject(f"{where} contains control character U+{ord(char):04X}", "control_char")
    if category == "Cf":
        raise _reject(f"{where} contains invisible or bidi character U+{ord(char):04X}", "unicode")
    if category == "Cs":
        raise _reject(f"{where} is not valid Unicode text", "unicode")


def _check_text(text: str, where: str, *, allow_tab: bool) -> None:
    if text.isascii() and text.isprintable():
        return
    for char in text:
        if not char.isprintable() or char in _LINE_BREAKS:
            _check_char(char, where, allow_tab=allow_tab)


def validate_argv(
    argv: Sequence[str], *, max_length: int = MAX_LENGTH, max_args: int = MAX_ARGS
) -> tuple[str, ...]:
    """Check an argv that will run without a shell and return it as a tuple.

    Raises: CommandRejected (empty argv, too many or too long arguments, control, bidi
    or zero-width characters, a program name that is not plain ASCII or looks like an
    environment assignment).
    """
    if isinstance(argv, str) or not all(isinstance(arg, str) for arg in argv):
        raise _reject("argv must be a list of strings", "invalid")
    if not argv or not argv[0]:
        raise _reject("the command is empty", "empty")
    if len(argv) > max_args:
        raise _reject(f"the command has more than {max_args} arguments", "too_long")
    total = sum(len(arg) for arg in argv) + len(argv) - 1
    if total > max_length:
        raise _reject(f"the command is longer than {max_length} characters", "too_long")
    program = argv[0]
    _check_text(program, "the program name", allow_tab=False)
    if not program.isascii():
        raise _reject(
            "the program name has non-ASCII characters (look-alike letters are refused)",
            "unicode",
        )
    if any(char.isspace() for char in program):
        raise _reject("the program name contains whitespace", "invalid")
    if _ASSIGNMENT_RE.match(program):
        raise _reject(
            "environment assignments before the program (VAR=value cmd) are not supported",
            "env_assignment",
        )
    for position, arg in enumerate(argv[1:], start=1):
        _check_text(arg, f"argument {position}", allow_tab=True)
    return tuple(argv)


def parse_command_text(text: str, *, max_length: int = MAX_LENGTH) -> ParsedCommand:
    """Split command text into validated pipeline stages.

    Raises: CommandRejected for anything a shell would interpret other than ``|``, for
    control and invisible characters, unbalanced quotes, empty input or stages, and
    input longer than ``max_length`` characters.
    """
    if not isinstance(text, str):
        raise _reject("the command must be text", "invalid")
    if len(text) > max_length:
        raise _reject(f"the command is longer than {max_length} characters", "too_long")
    _check_text(text, "the command", allow_tab=True)
    if not text.strip(" \t"):
        raise _reject("the command is empty", "empty")
    stages = _Tokenizer(text).run()
    checked = tuple(validate_argv(stage, max_length=max_length) for stage in stages)
    return ParsedCommand(stages=checked, pipeline=len(checked) > 1)


class _Tokenizer:
    """A POSIX word splitter that knows one operator, ``|``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.stages: list[list[str]] = []
        self.words: list[str] = []
        self.word: list[str] = []
        self.in_word = False

    def _flush(self) -> None:
        if self.in_word:
            self.words.append("".join(self.word))
        self.word = []
        self.in_word = False

    def _end_stage(self, at: int) -> None:
        self._flush()
        if not self.words:
            where = "before" if at < len(self.text) else "after"
            raise _reject(f"empty pipeline stage {where} '|' at position {at + 1}", "empty")
        self.stages.append(self.words)
        self.words = []

    def run(self) -> list[list[str]]:
        text, i, n = self.text, 0, len(self.text)
        last_pipe = -1
        while i < n:
            char = text[i]
            if char in " \t":
                self._flush()
                i += 1
            elif char == "|":
                if text.startswith(("||", "|&"), i):
                    raise _reject(
                        f"'{text[i : i + 2]}' at position {i + 1} is shell syntax; "
                        "only a plain '|' pipeline is supported",
                        "shell_syntax",
                    )
                self._end_stage(i)
                last_pipe = i
                i += 1
            elif char == "'":
                end = text.find("'", i + 1)
                if end < 0:
                    raise _reject(f"unbalanced single quote at position {i + 1}", "quoting")
                self.word.append(text[i + 1 : end])
                self.in_word = True
                i = end + 1
            elif char == '"':
                i = self._double_quoted(i)
            elif char == "\\":
                if i + 1 >= n:
                    raise _reject("the command ends with a backslash", "quoting")
                self.word.append(text[i + 1])
                self.in_word = True
                i += 2
            elif char == "$":
                what = _DOLLAR.get(text[i + 1 : i + 2], "'$' (variable expansion)")
                raise _shell(what, i)
            elif char in _SPECIAL or (char == "#" and not self.in_word):
                what = _SPECIAL.get(char, "'#' (a comment)")
                raise _shell(what, i)
            else:
                self.word.append(char)
                self.in_word = True
                i += 1
        self._flush()
        if not self.words:
            raise _reject(f"empty pipeline stage after '|' at position {last_pipe + 1}", "empty")
        self.stages.append(self.words)
        return self.stages

    def _double_quoted(self, start: int) -> int:
        text, i, n = self.text, start + 1, len(self.text)
        self.in_word = True
        while i < n:
            char = text[i]
            if char == '"':
                return i + 1
            if char == "$":
                what = _DOLLAR.get(text[i + 1 : i + 2], "'$' (variable expansion)")
                raise _shell(what + " inside double quotes", i)
            if char == "`":
                raise _shell("a backtick (command substitution) inside double quotes", i)
            if char == "\\" and i + 1 < n and text[i + 1] in '$`"\\':
                self.word.append(text[i + 1])
                i += 2
                continue
            self.word.append(char)
            i += 1
        raise _reject(f"unbalanced double quote at position {start + 1}", "quoting")


def _shell(what: str, at: int) -> CommandRejected:
    return _reject(
        f"{what} at position {at + 1} is shell syntax, which ExecGate does not run; "
        "quote it to pass it as text",
        "shell_syntax",
    )


def build_shell_line(stages: Sequence[Sequence[str]]) -> str:
    """The shell line for validated stages: every argument quoted, stages joined by ``|``.

    Raises: CommandRejected when there is no stage or a stage fails ``validate_argv``.
    """
    if not stages:
        raise _reject("the command is empty", "empty")
    return " | ".join(shlex.join(validate_argv(stage)) for stage in stages)
