"""Redaction line by line, with what a line tells about the lines after it.

Each flagged line (``redact_rules.TRIGGER``) gets ExecGate's rules
(``redact_rules.apply_rules``), then detect-secrets' plugins and a keyword-adjacent
entropy check (``redact_detectors``). Some secrets span lines, so a line can change how
the next ones are read:

* a private key's BEGIN line opens a block that is dropped up to its END line;
* a Kubernetes env entry names the variable on one line and gives its value on the next;
* a YAML block scalar under a secret key (``password: |``) holds its value on the
  following, more indented lines: the first becomes the marker, the rest are dropped;
* a secret key with nothing after its colon (YAML ``password:``, pretty-printed JSON
  ``"password":``) has its value on the next line, which is scrubbed when it is a
  plain or quoted scalar.

A private key's last body line is short (its length is the key's modulo 64) and looks
like any word, so it is recognised by the line after it: a short base64 line right
before an END line is key material even when the BEGIN line was cut off (``tail -n 2
key.pem``). ``key_tail`` redacts those pairs in a block of lines; ``StreamRedactor``
holds back a block's last line while it could be one, until the next line is seen.

Some lines need no context: a line that is one long run of base64 (with a count or
line-number prefix such as ``uniq -c`` or ``grep -n`` print) is key material whether or
not the BEGIN line that opened it is in the output (``tail -n 5 key.pem`` starts in the
middle of the key; filters may drop or reorder lines).

``LineState`` carries that from line to line (and, in ``redact.StreamRedactor``, from
chunk to chunk).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass

from policies.redaction.detectors import adjacent_entropy_pass, plugin_pass
from policies.redaction.fastscan import HitFinder, compile_scanner
from policies.redaction.keys import KEY, Bare, is_secret_key, kind_for_key
from policies.redaction.rules import (
    BLOCK_INDICATOR,
    TRIGGER,
    apply_rules,
    is_secret_value,
    marker,
)

__all__ = [
    "ENV_NAME_LINE",
    "ENV_VALUE_LINE",
    "PEM_BEGIN",
    "PEM_BODY",
    "PEM_END",
    "YAML_BLOCK_KEY",
    "LineState",
    "Redactor",
]

_TRIGGER = compile_scanner(TRIGGER)

# Private keys span lines. A BEGIN line opens a block that runs to its END line; lines
# in between that look like key material (base64, armour headers, blank) are dropped.
PEM_BEGIN = re.compile(
    r"-{4,5} ?BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)? ?-{4,5}|PuTTY-User-Key-File-[0-9]+:"
)
# Armour that is not a private key (certificates, public keys): its base64 body is
# left alone, though a body line seen on its own would look like key material.
ARMOUR_BEGIN = re.compile(r"-{4,5} ?BEGIN [A-Z0-9 ]+-{4,5}")
ARMOUR_END = re.compile(r"-{4,5} ?END [A-Z0-9 ]+-{4,5}")
PEM_END = re.compile(r"-{4,5} ?END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)? ?-{4,5}")
PEM_BODY = re.compile(
    r"[ \t]*(?:[A-Za-z0-9+/=]+|(?:Proc-Type|DEK-Info|Version|Comment|Hash|Charset|Encryption"
    r"|Public-Lines|Private-Lines|Private-MAC|Private-Hash|Key-Derivation|Argon2-[A-Za-z]+)"
    r"[ \t]*:[^\n]*)?[ \t]*\\?"
)

# Kubernetes YAML puts the name and the value of an env entry on separate lines:
#   - name: DB_PASSWORD
#     value: hunter2
ENV_NAME_LINE = re.compile(
    rf"[ \t]*(?:-[ \t]+)?[\"']?name[\"']?[ \t]*:[ \t]*[\"']?(?P<key>{KEY})[\"']?,?[ \t]*"
)
ENV_VALUE_LINE = re.compile(
    r"(?P<keep>[ \t]*[\"']?value[\"']?[ \t]*:[ \t]*)(?P<q>[\"']?)(?P<val>[^\n]+?)(?P=q)"
    r",?[ \t]*"
)
# A secret key whose value is a YAML block scalar on the lines that follow:
#   password: |
#     hunter2
YAML_BLOCK_KEY = re.compile(
    rf"(?P<indent>[ \t]*(?:-[ \t]+)?)(?P<kq>[\"']?)(?P<key>{KEY})(?P=kq)[ \t]*:[ \t]*"
    + BLOCK_INDICATOR.pattern
)


# A line that is only a long base64 run, after an optional count or line number: the
# body of a PEM (64 characters a line) or OpenSSH (70) key seen without its BEGIN line.
KEY_MATERIAL_LINE = re.compile(
    r"(?P<prefix>[ \t]*(?:[0-9]+(?::|[ \t]+))?)(?P<run>[A-Za-z0-9+/]{40,}={0,2})[ \t]*\r?"
)
# A secret key with its value on the next line (YAML "password:", JSON "password":).
KEY_ALONE_LINE = re.compile(
    rf"[ \t]*(?:[{{,][ \t]*)?(?:-[ \t]+)?(?P<kq>\\{{0,3}}[\"']?)(?P<key>{KEY})(?P=kq)"
    r"[ \t]*:[ \t]*\r?"
)
SCALAR_LINE = re.compile(
    r"(?P<keep>[ \t]*)(?P<q>[\"']?)(?P<val>[^\n]+?)(?P=q)(?P<end>[,}\]]*[ \t]*\r?)"
)


# The last body line of a PEM key (up to 64 characters), after an optional count or
# line number, with its newline.
KEY_TAIL_LINE = re.compile(
    r"(?P<prefix>[ \t]*(?:[0-9]+(?::|[ \t]+))?)[A-Za-z0-9+/]{1,64}={0,2}[ \t]*\r?\n"
)
_KEY_TAIL = re.compile(
    r"(?m)^" + KEY_TAIL_LINE.pattern + r"(?=[ \t]*(?:[0-9]+(?::|[ \t]+))?" + PEM_END.pattern + ")"
)


def key_tail(text: str) -> tuple[str, int]:
    """``text`` with each short base64 line that is followed by a private key's END
    line replaced by a marker, and how many were.

    Raises:
        Nothing.
    """
    if "PRIVATE KEY" not in text:
        return text, 0
    return _KEY_TAIL.subn(lambda m: m["prefix"] + marker("private-key") + "\n", text)


def could_be_key_tail(line: str) -> bool:
    """Whether ``line`` (with its newline) could be a key's last body line, to be
    judged by the line after it.

    Only lines that look like base64 of binary data are held: with ``+``, ``/`` or
    ``=``, or mixing upper case, lower case and digits. A plain word or number (``OK``,
    ``started``, ``0205``), the common last line of live output, is not held back; a
    key's last line that happens to be one leaks at most those few characters.
    """
    if len(line) > 128:
        return False
    match = KEY_TAIL_LINE.fullmatch(line)
    if match is None:
        return False
    body = line[match.end("prefix") :].strip()
    if any(c in "+/=" for c in body):
        return True
    return (
        any(c.isupper() for c in body)
        and any(c.islower() for c in body)
        and any(c.isdigit() for c in body)
    )


def _key_alone(body: str) -> re.Match[str] | None:
    """A line that ends in a secret key with its value on the next line: the whole line
    (``password:``, ``"password":``), or a quoted key after the last ``{`` or ``,`` of a
    JSON line (``{"db": {"host": "db", "password":``)."""
    alone = KEY_ALONE_LINE.fullmatch(body)
    if alone is not None:
        return alone
    cut = max(body.rfind("{"), body.rfind(","))
    alone = KEY_ALONE_LINE.fullmatch(body, cut + 1) if cut > 0 else None
    return alone if alone is not None and alone["kq"] else None


def _looks_random(run: str) -> bool:
    """Base64 of key material mixes cases and digits; long words and hex digests do not."""
    upper = sum(c.isupper() for c in run)
    digits = sum(c.isdigit() for c in run)
    return upper >= 3 and digits >= 3 and len(run) - upper - digits >= 3


def _after(flagged: list[int]) -> Callable[[int], int | None]:
    """The first of the ``flagged`` positions at or after a position."""

    def next_hit(pos: int) -> int | None:
        index = bisect.bisect_left(flagged, pos)
        return flagged[index] if index < len(flagged) else None

    return next_hit


def _indent(body: str) -> int:
    return len(body) - len(body.lstrip(" \t"))


@dataclass(slots=True)
class LineState:
    """What one line tells about the next: inside a private key, after an env name, or
    inside a YAML block scalar (``block_column``: the key's column; the block goes on
    while lines are blank or indented further)."""

    pem: bool = False
    env_key: str | None = None
    block_column: int | None = None
    block_kind: str = ""
    block_seen: bool = False
    value_key: str | None = None
    armour: bool = False
    # The previous line ended without a newline: the next one is its continuation
    # (a line longer than MAX_LINE reaches the redactor in pieces).
    open_line: bool = False

    @property
    def active(self) -> bool:
        return (
            self.pem
            or self.env_key is not None
            or self.block_column is not None
            or self.value_key is not None
            or self.armour
        )

    def open_block(self, column: int, kind: str) -> None:
        self.block_column, self.block_kind, self.block_seen = column, kind, False


def _block_line(body: str, state: LineState, column: int) -> tuple[str | None, int] | None:
    """A line inside a YAML block scalar opened at ``column``: the first value line
    becomes the marker, later ones are dropped, blank lines stay. None: the line is
    not part of the block, which has ended."""
    if state.open_line:
        return "", 0  # the rest of a line already replaced or dropped
    if not body.strip():
        return body, 0
    if _indent(body) <= column:
        state.block_column = None
        return None
    if state.block_seen:
        return None, 0
    state.block_seen = True
    if not is_secret_value(body.strip()):
        return body, 0
    return body[: _indent(body)] + marker(state.block_kind), 1


def _opens_structure(value: str, *, quoted: bool) -> bool:
    """Whether the line after ``key:`` starts a mapping, list or block, not a scalar."""
    if quoted:
        return False
    return value[:1] in "{[-|>#&*!" or ": " in value or value.endswith(":")


class Redactor:
    """Finds and replaces secrets in text.

    Stateless and safe to share; ``StreamRedactor`` keeps the per-stream state.
    Callers that present output should strip control characters first (the output
    collector does), so that escape sequences cannot split a secret.

    ``second_pass`` turns the detect-secrets and entropy checks on flagged lines on or
    off (on by default).
    """

    def __init__(self, *, second_pass: bool = True) -> None:
        self._second_pass = second_pass

    def redact(self, text: str) -> tuple[str, int]:
        """Return ``text`` with secrets replaced, and the number of replacements.

        Raises:
            Nothing; any ``str`` is accepted.
        """
        out, count = self.redact_block(text, LineState())
        out, more = key_tail(out)
        return out, count + more

    def redact_block(
        self, text: str, state: LineState, flagged: list[int] | None = None
    ) -> tuple[str, int]:
        """Redact ``text`` continuing from ``state`` (updated in place).

        ``text`` should end at a line boundary unless it is the end of the output.
        ``flagged``, when given, lists where ``TRIGGER`` first matches in each line that
        it matches, in order (the caller scanned already); else ``text`` is scanned here.

        Raises:
            Nothing.
        """
        out: list[str] = []
        count = 0
        pos, size = 0, len(text)
        while pos < size and state.active:
            pos, n = self._take_line(text, pos, state, out)
            count += n
        next_hit = HitFinder(_TRIGGER, text).next_start if flagged is None else _after(flagged)
        while pos < size and (start := next_hit(pos)) is not None:
            newline = text.rfind("\n", pos, start)
            line_start = pos if newline < 0 else newline + 1
            out.append(text[pos:line_start])
            pos, n = self._take_line(text, line_start, state, out)
            count += n
            while pos < size and state.active:
                pos, n = self._take_line(text, pos, state, out)
                count += n
        out.append(text[pos:])
        return "".join(out), count

    def _take_line(
        self, text: str, start: int, state: LineState, out: list[str]
    ) -> tuple[int, int]:
        newline = text.find("\n", start)
        end = len(text) if newline < 0 else newline
        # A CR of a CRLF line ending is not part of the line's content.
        body_end = end - 1 if end > start and text[end - 1] == "\r" else end
        line, count = self._line(text[start:body_end], state)
        state.open_line = newline < 0
        if line is not None:
            out.append(line)
            out.append(text[body_end : end + 1])
        return (end if newline < 0 else newline + 1), count

    def _line(self, body: str, state: LineState) -> tuple[str | None, int]:
        """One line without its newline; None drops the line (private key material)."""
        if state.block_column is not None:
            kept = _block_line(body, state, state.block_column)
            if kept is not None:
                return kept
        if state.pem:
            closing = PEM_END.search(body)
            if closing is not None:
                state.pem = False
                rest = body[closing.end() :]
                return (None, 0) if not rest.strip() else self._plain(rest, state)
            if PEM_BODY.fullmatch(body):
                return None, 0
            # Not key material: the block ended without an END line.
            state.pem = False
        if state.armour:
            if ARMOUR_END.search(body) is not None:
                state.armour = False
                return body, 0
            if PEM_BODY.fullmatch(body):
                return body, 0
            state.armour = False
        if state.value_key is not None:
            key, state.value_key = state.value_key, None
            scalar = SCALAR_LINE.fullmatch(body)
            if (
                scalar is not None
                and not _opens_structure(scalar["val"], quoted=bool(scalar["q"]))
                and is_secret_value(scalar["val"])
                and is_secret_key(key, scalar["val"])
            ):
                start, stop = scalar.span("val")
                return body[:start] + marker(kind_for_key(key)) + body[stop:], 1
        if state.env_key is not None:
            key, state.env_key = state.env_key, None
            value = ENV_VALUE_LINE.fullmatch(body)
            if value is not None and BLOCK_INDICATOR.fullmatch(value["val"]):
                state.open_block(_indent(body), kind_for_key(key))
                return body, 0
            if (
                value is not None
                and is_secret_value(value["val"])
                and is_secret_key(key, value["val"])
            ):
                start, stop = value.span("val")
                return body[:start] + marker(kind_for_key(key)) + body[stop:], 1
        return self._plain(body, state)

    def _plain(self, body: str, state: LineState) -> tuple[str, int]:
        # Each multi-line shape is looked for only where its literal part occurs.
        begin = PEM_BEGIN.search(body) if "BEGIN" in body or "PuTTY" in body else None
        if begin is not None:
            head, count = self._rules(body[: begin.start()])
            end = PEM_END.search(body, begin.end())
            if end is None:
                state.pem = True
                return head + marker("private-key"), count + 1
            tail, more = self._plain(body[end.end() :], state)
            return head + marker("private-key") + tail, count + more + 1
        armour = ARMOUR_BEGIN.search(body) if "BEGIN" in body else None
        if armour is not None and ARMOUR_END.search(body, armour.end()) is None:
            state.armour = True
            return self._rules(body)
        block = YAML_BLOCK_KEY.fullmatch(body) if "|" in body or ">" in body else None
        if block is not None and is_secret_key(block["key"], bare=Bare.STRONG):
            state.open_block(len(block["indent"]), kind_for_key(block["key"]))
            return body, 0
        material = KEY_MATERIAL_LINE.fullmatch(body) if len(body) >= 40 else None
        if material is not None and _looks_random(material["run"]):
            return material["prefix"] + marker("private-key"), 1
        alone = _key_alone(body) if body.rstrip().endswith(":") else None
        if alone is not None and is_secret_key(alone["key"], bare=Bare.STRONG):
            state.value_key = alone["key"]
            return body, 0
        name = ENV_NAME_LINE.fullmatch(body) if "name" in body else None
        if name is not None and is_secret_key(name["key"]):
            state.env_key = name["key"]
        return self._rules(body)

    def _rules(self, body: str) -> tuple[str, int]:
        if not body:
            return body, 0
        body, count = apply_rules(body)
        if self._second_pass:
            body, found = plugin_pass(body)
            count += found
            body, found = adjacent_entropy_pass(body)
            count += found
        return body, count
