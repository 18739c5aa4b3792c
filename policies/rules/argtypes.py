"""The value tests behind argument patterns: globs, regexes and placeholder types.

Each builder takes the author's text and returns a ``Test``: ``test(arg, deny) -> bool``.
``deny`` is True when a deny rule is matching: deny rules match "any way", so the
flag-injection guard is off and paths are normalised (``/code/../etc/shadow`` is
``/etc/shadow``) instead of refused. Allow and approve rules use the strict reading.

The flag-injection guard: outside deny rules, a non-literal pattern never matches an
argument that starts with ``-`` unless the pattern itself says so (a glob or regex that
starts with ``-``, a ``oneof`` that lists the flag, an ``int`` range below zero). So
``{file:str}`` cannot become ``--output=/etc/passwd`` and ``{n:int}`` cannot become ``-5``.

Builders raise ``ValueError`` with a message for the policy author.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import warnings
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from policies.rules.wrappers import is_wrapper, program_name

Test = Callable[[str, bool], bool]

GLOB_CHARS = frozenset("*?[")
_INT_RE = re.compile(r"-?[0-9]{1,19}", re.ASCII)
_RANGE_RE = re.compile(r"^(-?[0-9]{1,19})?\.\.(-?[0-9]{1,19})?$", re.ASCII)
_HOSTNAME_RE = re.compile(
    r"(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*",
    re.ASCII,
)
_URL_FORBIDDEN = frozenset(" \t\\\"'<>`{}|^#")


def _flag(arg: str, deny: bool) -> bool:
    """True when the flag-injection guard refuses ``arg``."""
    return not deny and arg.startswith("-")


def is_glob(text: str) -> bool:
    return any(char in GLOB_CHARS for char in text)


def glob_regex(glob: str) -> re.Pattern[str]:
    """``*`` and ``?`` stay within one path segment, ``**`` crosses ``/``; ``[...]`` sets."""
    return _compile_glob(glob, _glob_source(glob))


def _compile_glob(glob: str, source: str) -> re.Pattern[str]:
    try:
        return re.compile(source, re.DOTALL)
    except re.error:
        raise ValueError(f"bad glob {glob!r}") from None


def _glob_source(glob: str, *, segment: bool = False) -> str:
    """The regex text of ``glob``; with ``segment`` a ``[...]`` set never matches ``/``."""
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        char = glob[i]
        if char == "*":
            if glob.startswith("**", i):
                out.append(".*")
                while i < n and glob[i] == "*":
                    i += 1
                continue
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            j = i + 1
            if j < n and glob[j] in "!^":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:
                out.append(re.escape(char))
            else:
                body = glob[i + 1 : j]
                negate = body[:1] in ("!", "^")
                body = "".join("\\" + c if c in "\\[]&~|^" else c for c in body[negate:])
                if negate:
                    out.append(f"[^/{body}]")
                else:
                    out.append(f"(?!/)[{body}]" if segment else f"[{body}]")
                i = j
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def glob_test(glob: str) -> Test:
    regex = glob_regex(glob)
    dashed = glob.startswith("-")

    def test(arg: str, deny: bool) -> bool:
        if not dashed and _flag(arg, deny):
            return False
        return regex.fullmatch(arg) is not None

    return test


def regex_test(source: str) -> Test:
    """``source`` is the text between the slashes; it must match the whole argument."""
    if not source:
        raise ValueError("an empty regex matches nothing useful")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            regex = re.compile(source, re.ASCII)
    except re.error as exc:
        raise ValueError(f"bad regex /{source}/: {exc.msg} at position {exc.pos}") from None
    dashed = source.startswith(("-", "\\-"))

    def test(arg: str, deny: bool) -> bool:
        if not dashed and _flag(arg, deny):
            return False
        return regex.fullmatch(arg) is not None

    return test


def str_test(args: Sequence[str]) -> Test:
    _no_args("str", args)
    return lambda arg, deny: not _flag(arg, deny)


def int_test(args: Sequence[str]) -> Test:
    low: int | None = 0
    high: int | None = None
    if args:
        match = _RANGE_RE.match(args[0]) if len(args) == 1 else None
        if match is None:
            raise ValueError("int takes one range, e.g. int(1..100), int(..10), int(-5..5)")
        low = int(match[1]) if match[1] is not None else 0
        high = int(match[2]) if match[2] is not None else None
        if high is not None and high < low:
            raise ValueError(f"int range {args[0]} is empty")

    def test(arg: str, deny: bool) -> bool:
        if _INT_RE.fullmatch(arg) is None:
            return False
        value = int(arg)
        return (low is None or value >= low) and (high is None or value <= high)

    return test


def _path_segments(value: str, deny: bool) -> list[str] | None:
    """Segments of an absolute path; None when a grant must refuse it."""
    if not value.startswith("/"):
        return None
    segments: list[str] = []
    for segment in value.split("/"):
        if segment in ("", "."):
            if not deny and segment == ".":
                return None
            continue
        if segment == "..":
            if not deny:
                return None
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return segments


def _normal_path(value: str, deny: bool) -> str | None:
    """``value`` as ``/seg/seg``, ``""`` for the root; None when a grant must refuse it."""
    if not value.startswith("/"):
        return None
    if "//" not in value and "/." not in value and (value == "/" or value[-1] != "/"):
        # Already normal (the common case): no empty, "." or ".." segment.
        return "" if value == "/" else value
    segments = _path_segments(value, deny)
    return None if segments is None else "".join("/" + segment for segment in segments)


def path_test(args: Sequence[str]) -> Test:
    """Absolute paths under the listed globs (``/tmp/**``, ``/tmp/*.cap``, ``/proc/loadavg``).

    Matching is lexical: a symlink under an allowed directory is not followed.
    """
    if not args:
        raise ValueError("path needs at least one allowed location, e.g. path(/tmp/**)")
    alternatives: list[str] = []
    for entry in args:
        if not entry.startswith("/"):
            raise ValueError(f"path location {entry!r} must be absolute")
        parts: list[str] = []
        for segment in entry.split("/"):
            if segment in ("", "."):
                continue
            if segment == "..":
                raise ValueError(f"path location {entry!r} must not contain '..'")
            if "**" in segment and segment != "**":
                raise ValueError(f"in path location {entry!r}, '**' must be a whole segment")
            if segment == "**":
                parts.append("(?:/[^/]+)*")  # zero or more whole segments
                continue
            source = _glob_source(segment, segment=True)
            _compile_glob(segment, source)  # a bad glob is reported as itself
            # A segment's pattern cannot match "/": it matches exactly one segment.
            parts.append(f"/(?:{source})")
        alternatives.append("".join(parts))
    # One regex over the normalised path instead of a segment-by-segment walk per glob.
    regex = re.compile("|".join(f"(?:{a})" for a in alternatives), re.DOTALL)

    def test(arg: str, deny: bool) -> bool:
        path = _normal_path(arg, deny)
        return path is not None and regex.fullmatch(path) is not None

    return test


def _is_ip(arg: str) -> bool:
    try:
        ipaddress.ip_address(arg)
    except ValueError:
        return False
    return arg.isascii()


def _is_hostname(arg: str) -> bool:
    return _HOSTNAME_RE.fullmatch(arg) is not None


def ip_test(args: Sequence[str]) -> Test:
    _no_args("ip", args)
    return lambda arg, deny: _is_ip(arg)


def hostname_test(args: Sequence[str]) -> Test:
    _no_args("hostname", args)
    return lambda arg, deny: _is_hostname(arg)


def host_test(args: Sequence[str]) -> Test:
    _no_args("host", args)
    return lambda arg, deny: _is_ip(arg) or _is_hostname(arg)


def url_test(args: Sequence[str]) -> Test:
    """http(s) URLs without user info or fragment that match one of the URL globs."""
    if not args:
        raise ValueError("url needs at least one URL glob, e.g. url(http://127.0.0.1:*/debug/*)")
    regexes = [glob_regex(entry) for entry in args]

    def test(arg: str, deny: bool) -> bool:
        if not deny and not _plain_url(arg):
            return False
        return any(regex.fullmatch(arg) is not None for regex in regexes)

    return test


def _plain_url(arg: str) -> bool:
    if not arg.isascii() or any(char in _URL_FORBIDDEN for char in arg):
        return False
    parts = urlsplit(arg)
    try:
        parts.port  # noqa: B018 - raises ValueError on a non-numeric or out-of-range port
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and "@" not in parts.netloc
        and bool(parts.hostname)
        and not parts.fragment
    )


def program_test(args: Sequence[str]) -> Test:
    """Programs by name: ``program(rm,mkfs*)`` also matches ``/bin/rm`` and ``mkfs.ext4``."""
    if not args:
        raise ValueError("program needs at least one name, e.g. program(rm,dd)")
    names = frozenset(name.lower() for name in args if not is_glob(name))
    globs = [fnmatch.translate(name.lower()) for name in args if is_glob(name)]
    regex = re.compile("|".join(globs)) if globs else None

    def test(arg: str, deny: bool) -> bool:
        if _flag(arg, deny):
            return False
        base = arg.rsplit("/", 1)[-1].strip().lower()
        for candidate in (base, program_name(arg)):
            if candidate in names or (regex is not None and regex.match(candidate)):
                return True
        return False

    return test


def wrapper_test(args: Sequence[str]) -> Test:
    """Any program ExecGate knows to run arbitrary code (see ``policies.rules.wrappers``)."""
    _no_args("wrapper", args)
    return lambda arg, deny: not _flag(arg, deny) and is_wrapper(arg)


def _no_args(name: str, args: Sequence[str]) -> None:
    if args:
        raise ValueError(f"{name} takes no arguments")


TYPES: dict[str, Callable[[Sequence[str]], Test]] = {
    "str": str_test,
    "int": int_test,
    "path": path_test,
    "ip": ip_test,
    "hostname": hostname_test,
    "host": host_test,
    "url": url_test,
    "program": program_test,
    "wrapper": wrapper_test,
}
