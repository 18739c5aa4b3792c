"""What every filter is, and GNU-style short option parsing for their argv.

A filter takes lines (each with its ``\\n``, the last one possibly without) and gives
lines back. ``exit_status`` is what the real program would exit with for the input it
saw. ``done`` tells that no later input can change the output (``head`` has its lines).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from policies.errors import CommandRejected


class LineFilter(Protocol):
    @property
    def done(self) -> bool: ...

    def feed(self, line: str) -> list[str]:
        """Take one line; return the lines it releases."""
        ...

    def finish(self) -> list[str]:
        """End of input: return what was held back."""
        ...

    def exit_status(self) -> int: ...

    def notice(self) -> str | None:
        """What the filter had to leave out, if anything (said on stderr)."""
        ...


def refuse(program: str, reason: str) -> CommandRejected:
    """The refusal of a filter stage ExecGate cannot run as asked."""
    return CommandRejected(
        f"{program}: {reason} (ExecGate runs pipeline filters itself and implements "
        "only some options of each)",
        kind="filter",
    )


@dataclass(slots=True)
class Options:
    """Parsed short options (``flags``: in order; ``values``: the last value of each
    option that takes one) and operands."""

    flags: list[str] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)
    operands: list[str] = field(default_factory=list)


def parse_options(
    program: str, args: Sequence[str], *, flags: str, valued: str = "", numeric_flag: bool = False
) -> Options:
    """Parse ``args`` as GNU getopt does (options may follow operands; ``--`` ends them).

    ``flags`` are the letters taken alone, ``valued`` those taking a value (attached or
    the next argument). ``numeric_flag`` accepts the obsolete ``-NUM`` form as ``n``.

    Raises: CommandRejected (kind ``filter``) for a long option, an unknown letter or a
    missing value.
    """
    parsed = Options()
    items = list(args)
    index = 0
    while index < len(items):
        arg = items[index]
        index += 1
        if arg == "--":
            parsed.operands.extend(items[index:])
            break
        if not arg.startswith("-") or arg == "-":
            parsed.operands.append(arg)
            continue
        if arg.startswith("--"):
            raise refuse(program, f"option {arg} is not supported")
        if numeric_flag and arg[1:].isdigit():
            parsed.values["n"] = arg[1:]
            parsed.flags.append("n")
            continue
        pos = 1
        while pos < len(arg):
            letter = arg[pos]
            pos += 1
            if letter in valued:
                value = arg[pos:]
                if not value:
                    if index >= len(items):
                        raise refuse(program, f"option -{letter} needs a value")
                    value = items[index]
                    index += 1
                parsed.values[letter] = value
                parsed.flags.append(letter)
                break
            if letter not in flags:
                raise refuse(program, f"option -{letter} is not supported")
            parsed.flags.append(letter)
    return parsed


def no_files(program: str, operands: Sequence[str]) -> None:
    """A filter reads only the stage before it. Raises: CommandRejected."""
    if operands:
        raise refuse(
            program, "file arguments are not supported; a filter reads the stage before it"
        )


def count_arg(program: str, option: str, value: str, *, plus: bool = False) -> tuple[int, bool]:
    """A line count: ``N`` (or ``+N`` when ``plus``), returned with whether it had ``+``.

    Raises: CommandRejected.
    """
    signed = plus and value.startswith("+")
    digits = value[1:] if signed else value
    if not digits.isascii() or not digits.isdigit() or len(digits) > 12:
        raise refuse(program, f"{option} takes a non-negative line count, not {value!r}")
    return int(digits), signed


def terminated(line: str) -> str:
    """``line`` with a newline at its end (programs that print lines add one)."""
    return line if line.endswith("\n") else line + "\n"


def content(line: str) -> str:
    """``line`` without its newline."""
    return line[:-1] if line.endswith("\n") else line
