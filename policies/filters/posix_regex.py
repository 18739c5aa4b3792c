"""POSIX basic and extended regular expressions (GNU flavour) as RE2 patterns.

Filters run inside ExecGate on a caller's pattern, so the engine must take time linear
in the text whatever the pattern (``(a*)*b`` makes a backtracking engine such as
Python's ``re`` run for ever): patterns are RE2's (``compile_re2``), and what RE2
cannot match in linear time (back-references, look-around) is refused.

grep needs only whether a line matches, never where, so POSIX's leftmost-longest rule
and RE2's leftmost-first choice agree. What is translated:

- both: literal characters, ``.``, ``*``, ``^`` and ``$`` anchors, bracket expressions
  (ranges, negation, ``]`` first, the classes ``[:alpha:]`` and friends), ``\\w \\W
  \\s \\S \\b \\B``, a backslash before a special character;
- basic (grep's default): ``\\( \\)`` groups, ``\\{m,n\\}``, GNU's ``\\| \\+ \\?``;
  ``+ ? | ( ) { }`` are plain characters, ``*`` is one at the start;
- extended (``-E``): ``( ) | + ? {m,n}``.

Anything else (back-references, ``\\<`` and ``\\>`` (look-around in RE2 terms: use
``\\b`` or ``grep -w``), collating elements ``[. .]`` and ``[= =]``, other escapes, a
quantifier with nothing to repeat, a repeat count over 1000) raises ``ValueError`` with a reason, so
that ExecGate refuses the filter instead of guessing what grep would do.
"""

from __future__ import annotations

import re
from typing import Protocol, cast

import re2  # type: ignore[import-untyped]

_CLASSES = {
    "alpha": "a-zA-Z",
    "digit": "0-9",
    "alnum": "a-zA-Z0-9",
    "upper": "A-Z",
    "lower": "a-z",
    "space": r" \t\n\r\f\v",
    "blank": r" \t",
    "punct": "".join("\\" + c for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    "xdigit": "0-9A-Fa-f",
    "cntrl": r"\x00-\x1f\x7f",
    "print": r"\x20-\x7e",
    "graph": r"\x21-\x7e",
}
_ESCAPES = {
    "w": r"\w",
    "W": r"\W",
    "s": r"\s",
    "S": r"\S",
    "b": r"\b",
    "B": r"\B",
}


def literal(text: str) -> str:
    """``text`` as an RE2 pattern that matches it literally."""
    out: list[str] = []
    for char in text:
        if char.isascii() and not char.isalnum() and char.isprintable() and char != " ":
            out.append("\\" + char)
        elif char.isprintable() or char == " ":
            out.append(char)
        else:
            out.append(f"\\x{{{ord(char):x}}}")
    return "".join(out)


class Matcher(Protocol):
    def search(self, text: str) -> object | None: ...


def compile_re2(source: str, *, ignore_case: bool) -> Matcher:
    """The RE2 program for ``source`` (a translated pattern), matched over text lines.

    Raises: ValueError when RE2 refuses the pattern (too large, a count over 1000).
    """
    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = not ignore_case
    try:
        return cast(Matcher, re2.compile(source, options))
    except re2.error:
        raise ValueError("the pattern is too large or not supported") from None


def _bracket(pattern: str, start: int) -> tuple[str, int]:
    """The bracket expression opening at ``start`` as a Python set; and where it ends."""
    i = start + 1
    negate = i < len(pattern) and pattern[i] == "^"
    if negate:
        i += 1
    items: list[str] = []
    first = True
    while True:
        if i >= len(pattern):
            raise ValueError("unbalanced '['")
        char = pattern[i]
        if char == "]" and not first:
            break
        first = False
        if char == "[" and pattern[i + 1 : i + 2] in (".", "="):
            raise ValueError("collating elements and equivalence classes are not supported")
        if char == "[" and pattern[i + 1 : i + 2] == ":":
            end = pattern.find(":]", i + 2)
            name = pattern[i + 2 : end] if end >= 0 else ""
            if name not in _CLASSES:
                raise ValueError(f"unknown character class [:{name}:]")
            items.append(_CLASSES[name])
            i = end + 2
            continue
        if pattern[i + 1 : i + 2] == "-" and pattern[i + 2 : i + 3] not in ("]", ""):
            low, high = char, pattern[i + 2]
            if ord(low) > ord(high):
                raise ValueError(f"invalid range {low}-{high}")
            items.append(literal(low) + "-" + literal(high))
            i += 3
            continue
        items.append(literal(char))
        i += 1
    return "[" + ("^" if negate else "") + "".join(items) + "]", i + 1


def translate(pattern: str, *, extended: bool) -> str:
    """The RE2 pattern for a GNU grep BRE (or ERE with ``extended``).

    Raises: ValueError for a construct ExecGate does not translate.
    """
    out: list[str] = []
    depth = 0
    # Whether the last item can take a quantifier; at the start (or after an opening
    # group or alternation) a BRE '*' is literal.
    can_repeat = False
    i = 0
    n = len(pattern)
    while i < n:
        char = pattern[i]
        special = char
        if char == "\\":
            if i + 1 >= n:
                raise ValueError("trailing backslash")
            nxt = pattern[i + 1]
            i += 2
            if not extended and nxt in "(){}|+?":
                special = "OP" + nxt
            elif nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                can_repeat = nxt in "wWsS"
                continue
            elif nxt.isalnum() or nxt in "<>":
                raise ValueError(f"'\\{nxt}' is not supported")
            else:
                out.append(literal(nxt))
                can_repeat = True
                continue
        else:
            i += 1
            if extended and char in "(){}|+?":
                special = "OP" + char
        if special == "[":
            text, i = _bracket(pattern, i - 1)
            out.append(text)
            can_repeat = True
        elif special == ".":
            out.append(".")
            can_repeat = True
        elif special == "^":
            at_start = not out or out[-1] in ("(?:", "|")
            out.append("^" if (at_start or extended) else r"\^")
            can_repeat = not (at_start or extended)
        elif special == "$":
            at_end = i >= n or pattern.startswith("\\)" if not extended else ")", i)
            at_end = at_end or pattern.startswith("\\|" if not extended else "|", i)
            # Without multi-line mode RE2's '$' is the end of the text, as '\z'.
            out.append("$" if (at_end or extended) else r"\$")
            can_repeat = not (at_end or extended)
        elif special == "*":
            if not can_repeat:
                if extended:
                    raise ValueError("'*' with nothing to repeat")
                out.append(r"\*")
                can_repeat = True
            else:
                out.append("*")
                can_repeat = False
        elif special in ("OP+", "OP?"):
            if not can_repeat:
                raise ValueError(f"'{special[2]}' with nothing to repeat")
            out.append(special[2])
            can_repeat = False
        elif special == "OP{":
            close = pattern.find("\\}" if not extended else "}", i)
            body = pattern[i:close] if close >= 0 else ""
            if not can_repeat or not re.fullmatch(r"[0-9]{1,4}(,[0-9]{0,4})?|,[0-9]{1,4}", body):
                raise ValueError("an interval needs {m}, {m,}, {,n} or {m,n} after an item")
            # RE2 reads '{,n}' as literal text; POSIX means '{0,n}'.
            out.append("{" + ("0" + body if body.startswith(",") else body) + "}")
            i = close + (2 if not extended else 1)
            can_repeat = False
        elif special == "OP}":
            raise ValueError("unbalanced '}'")
        elif special == "OP(":
            out.append("(?:")
            depth += 1
            can_repeat = False
        elif special == "OP)":
            if depth == 0:
                raise ValueError("unbalanced ')'")
            depth -= 1
            out.append(")")
            can_repeat = True
        elif special == "OP|":
            out.append("|")
            can_repeat = False
        else:
            out.append(literal(char))
            can_repeat = True
    if depth:
        raise ValueError("unbalanced '('")
    return "".join(out)
