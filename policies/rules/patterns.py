"""Command patterns: one list of argument patterns matched against one argv.

Each element of a pattern list is one of:

``ls``, ``-h``, ``/proc/loadavg``
    a literal: the argument must be exactly this text.
``*.log``, ``--since=*``
    a glob (has ``*``, ``?`` or ``[``): the whole argument must match; ``*`` and ``?``
    stay within one path segment, ``**`` crosses ``/``.
``/[A-Z_][A-Z0-9_]*/``
    a regex between slashes, matched against the whole argument (``re.fullmatch``, ASCII
    classes). An element that starts and ends with ``/`` is always a regex.
``{name:type}``, ``{name:type(args)}``, ``{name:a|b}``, ``{name:/regex/}``, ``{name}``
    a typed placeholder (``{name}`` is ``{name:str}``). Types: ``str`` (any argument not
    starting with ``-``), ``int``/``int(lo..hi)``, ``path(/tmp/**,/code/**)``, ``ip``,
    ``hostname``, ``host`` (ip or hostname), ``oneof(a,b,...)`` (items may be globs),
    ``url(http://127.0.0.1:*/debug/*)``, ``program(rm,mkfs*)`` (by basename, so
    ``/bin/rm`` too), ``wrapper`` (any program that runs arbitrary code). ``a|b`` accepts
    either type. A ``?`` after the closing brace makes the element optional.
``...``
    the rest marker, only as the last element: zero or more further arguments.

Any other use of ``{`` or ``}`` is a load error, so a typo never silently becomes a
literal. How deny rules differ, and the flag-injection guard, are described in
``policies.rules.argtypes``; guarded positions (wrappers) in ``policies.rules.wrappers``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from policies.rules.argtypes import TYPES, Test, glob_test, is_glob, regex_test

REST = "..."
_NONE: frozenset[int] = frozenset()
_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::(.*))?\}(\??)", re.DOTALL)
_TYPE_RE = re.compile(r"([a-z]+)(?:\((.*)\))?", re.DOTALL)


class PatternError(ValueError):
    """A pattern element the policy cannot use; ``index`` is its place in the list."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index


@dataclass(frozen=True, slots=True)
class Element:
    """One compiled argument pattern.

    ``literals`` are the exact values that *name* an argument: a guarded argument
    (see ``policies.rules.wrappers``) is matched in a grant only when it is one of them.
    """

    source: str
    test: Test
    literals: frozenset[str]
    exact: bool  # the test is "the argument is one of literals"
    optional: bool = False

    def accepts(self, arg: str, deny: bool, guarded: bool) -> bool:
        if guarded and not deny:
            return arg in self.literals
        return self.test(arg, deny)


@dataclass(frozen=True, slots=True)
class CommandPattern:
    """A compiled pattern list; ``str()`` gives back the author's spelling."""

    source: tuple[str, ...]
    elements: tuple[Element, ...]
    rest: bool
    min_args: int
    # How many non-optional elements follow each element (prunes the optional walk).
    required_after: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        required = [not element.optional for element in self.elements]
        after = tuple(sum(required[i + 1 :]) for i in range(len(required)))
        object.__setattr__(self, "required_after", after)

    def __str__(self) -> str:
        return "[" + ", ".join(self.source) + "]"

    @property
    def index_keys(self) -> frozenset[str] | None:
        """The argv[0] values this pattern can match, when they are a fixed set."""
        if self.elements and not self.elements[0].optional and self.elements[0].exact:
            return self.elements[0].literals
        return None

    def matches(
        self, argv: Sequence[str], *, deny: bool = False, guarded: frozenset[int] = frozenset()
    ) -> bool:
        """True when ``argv`` matches; ``guarded`` positions need a literal unless ``deny``."""
        count = len(argv)
        elements = self.elements
        if count < self.min_args or (not self.rest and count > len(elements)):
            return False
        if self.min_args != len(elements):
            return self._match_optional(argv, deny, guarded)
        # No optional element: each element takes the argument at its own position.
        literal_only = guarded if not deny else _NONE
        for j, element in enumerate(elements):
            arg = argv[j]
            if j in literal_only or element.exact:
                if arg not in element.literals:
                    return False
            elif not element.test(arg, deny):
                return False
        return self._ends(len(elements), count, deny, guarded)

    def _match_optional(self, argv: Sequence[str], deny: bool, guarded: frozenset[int]) -> bool:
        """Match with optional elements: every way to skip them, each test done once.

        ``reached`` holds the argument positions some assignment of the elements so far
        can stop at (a breadth-first walk instead of backtracking, which would test the
        same element against the same argument again for every way of reaching it).
        Positions from which the remaining elements cannot end the match are dropped
        before anything is tested there.
        """
        count = len(argv)
        last = len(self.elements) - 1
        literal_only = guarded if not deny else _NONE
        reached = [0]  # ascending, no repeats
        for i, element in enumerate(self.elements):
            high = count - self.required_after[i]  # room for the required elements left
            low = 0 if self.rest else count - (last - i)  # what is left can use up argv
            step: list[int] = []
            for j in reached:
                if element.optional and low <= j <= high and j not in step:
                    step.append(j)
                if low <= j + 1 <= high:
                    arg = argv[j]
                    if arg in element.literals if j in literal_only else element.test(arg, deny):
                        step.append(j + 1)
            if not step:
                return False
            reached = step
        for j in reached:
            if self._ends(j, count, deny, guarded):
                return True
        return False

    def _ends(self, j: int, count: int, deny: bool, guarded: frozenset[int]) -> bool:
        """Whether the elements may stop at ``j``: all of ``argv`` used, or the rest marker."""
        if j == count:
            return True
        if not self.rest:
            return False
        # The rest marker never covers a guarded argument in a grant.
        return deny or all(position < j for position in guarded)


def compile_command(items: Sequence[str], *, grant: bool) -> CommandPattern:
    """Compile one pattern list; ``grant`` is True for allow and approve rules.

    Raises: PatternError (with the index of the offending element).
    """
    if not items:
        raise PatternError(0, "a command pattern needs at least the program")
    elements: list[Element] = []
    rest = False
    names: set[str] = set()
    for index, item in enumerate(items):
        if item == REST:
            if index != len(items) - 1:
                raise PatternError(index, "'...' may only be the last element")
            if index == 0 and grant:
                raise PatternError(index, "an allow or approve rule must name the program")
            rest = True
            break
        try:
            element, name = _compile_element(item)
        except ValueError as exc:
            raise PatternError(index, str(exc)) from None
        if name is not None:
            if name in names:
                raise PatternError(index, f"placeholder name {name!r} is used twice")
            names.add(name)
        elements.append(element)
    return CommandPattern(
        source=tuple(items),
        elements=tuple(elements),
        rest=rest,
        min_args=sum(1 for element in elements if not element.optional),
    )


def _compile_element(item: str) -> tuple[Element, str | None]:
    if len(item) > 2 and item.startswith("/") and item.endswith("/"):
        return Element(item, regex_test(item[1:-1]), frozenset(), exact=False), None
    if item.startswith("{"):
        return _compile_placeholder(item)
    if "{" in item or "}" in item:
        raise ValueError(
            f"{item!r}: braces are only for placeholders written {{name:type}}; "
            "match a literal brace with a regex"
        )
    if is_glob(item):
        return Element(item, glob_test(item), frozenset(), exact=False), None
    return Element(item, lambda arg, deny: arg == item, frozenset({item}), exact=True), None


def _compile_placeholder(item: str) -> tuple[Element, str]:
    match = _PLACEHOLDER_RE.fullmatch(item)
    if match is None:
        raise ValueError(f"{item!r} is not a placeholder; write {{name:type}} or {{name:type}}?")
    name, spec, optional = match[1], match[2] or "str", match[3] == "?"
    if spec.startswith("/"):
        if len(spec) < 3 or not spec.endswith("/"):
            raise ValueError(f"{item!r}: a regex type is written /regex/")
        test = regex_test(spec[1:-1])
        return Element(item, test, frozenset(), exact=False, optional=optional), name
    tests: list[Test] = []
    literals: set[str] = set()
    exact = True
    for alternative in _split_top(spec, "|"):
        type_match = _TYPE_RE.fullmatch(alternative.strip())
        if type_match is None:
            raise ValueError(f"{item!r}: {alternative.strip()!r} is not a type")
        type_name = type_match[1]
        args = _split_top(type_match[2], ",") if type_match[2] is not None else []
        args = [arg.strip() for arg in args]
        if any(not arg for arg in args):
            raise ValueError(f"{item!r}: empty argument in {type_name}(...)")
        if type_name == "oneof":
            test, values = _oneof(args)
            literals |= values
            exact = exact and len(values) == len(args)
        elif type_name in TYPES:
            test = TYPES[type_name](args)
            exact = False
        else:
            known = ", ".join(sorted([*TYPES, "oneof"]))
            raise ValueError(f"{item!r}: unknown type {type_name!r} (known: {known})")
        tests.append(test)
    if len(tests) == 1:
        combined = tests[0]
    else:

        def combined(arg: str, deny: bool) -> bool:
            return any(test(arg, deny) for test in tests)

    return Element(item, combined, frozenset(literals), exact=exact, optional=optional), name


def _oneof(args: Sequence[str]) -> tuple[Test, frozenset[str]]:
    if not args:
        raise ValueError("oneof needs at least one value, e.g. oneof(-h,-m)")
    values = frozenset(arg for arg in args if not is_glob(arg))
    globs = [glob_test(arg) for arg in args if is_glob(arg)]

    def test(arg: str, deny: bool) -> bool:
        return arg in values or any(glob(arg, deny) for glob in globs)

    return test, values


def _split_top(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside parentheses."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == separator and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts
