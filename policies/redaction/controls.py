"""Removing terminal control sequences and invisible characters from command output.

Output from an instance is untrusted data. Escape sequences can rewrite what a person
sees in a terminal (clear lines, move the cursor, set the window title, plant OSC 8
hyperlinks whose target differs from their text), and invisible format characters
(bidi overrides, zero-width characters, Unicode tag and variation-selector characters)
can hide text that a model would still read as instructions. ``strip_controls`` keeps
printable text, newlines and tabs, and nothing else.
"""

from __future__ import annotations

import re

from policies.redaction.fastscan import compile_scanner

# Unicode "Cf" (format) characters as of Unicode 14, plus the line/paragraph separators
# and variation selectors (both blocks), which render as nothing but can carry hidden
# data. Written as ranges so one scan covers them.
_INVISIBLE_RANGES: tuple[tuple[int, int], ...] = (
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x13438),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
    (0xE0100, 0xE01EF),
)


def _re_class(ranges: tuple[tuple[int, int], ...]) -> str:
    return "".join(f"\\U{a:08x}-\\U{b:08x}" if a != b else f"\\U{a:08x}" for a, b in ranges)


def _re2_class(ranges: tuple[tuple[int, int], ...]) -> str:
    return "".join(f"\\x{{{a:x}}}-\\x{{{b:x}}}" if a != b else f"\\x{{{a:x}}}" for a, b in ranges)


# Anything strip_controls would change: C0 except \t and \n (ESC and \r included), DEL,
# C1, U+2028/U+2029 and the invisible characters. Most output has none of these, and
# then one RE2 scan is all the work there is. CONTROL_CLASS (RE2 syntax) lets a caller
# fold that scan into one of its own; _CONTROL is the same class for ``re``.
CONTROL_CLASS = (
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\x{2028}\x{2029}" + _re2_class(_INVISIBLE_RANGES) + "]"
)
_NEEDS_WORK = compile_scanner(CONTROL_CLASS)
_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029" + _re_class(_INVISIBLE_RANGES) + "]"
)

# Each pass starts with a literal or a single character class, so ``re`` skips ahead
# to candidates instead of trying an alternation at every position; replacements are
# plain strings (no Python callback per match). Sequences go before single characters
# so that a whole escape sequence is removed, not just its ESC. Unterminated string
# sequences (OSC, DCS, ...) end at a newline: one cut short by the end of the output is
# removed up to there.
_ESC_SEQUENCE = re.compile(
    r"\x1b(?:"
    r"\[[0-?]*[\x20-/]*[@-~]?"  # CSI, incl. SGR colours
    r"|[\]PX^_][^\x07\x1b\n]*(?:\x07|\x1b\\)?"  # OSC (incl. OSC 8), DCS, SOS, PM, APC
    r"|[\x20-/]*[0-~]?"  # other ESC sequences, a lone ESC
    r")"
)
_C1_SEQUENCE = re.compile(
    r"[\x90\x98\x9b\x9d\x9e\x9f](?:"
    r"(?<=\x9b)[0-?]*[\x20-/]*[@-~]?"  # 8-bit CSI
    r"|(?<!\x9b)[^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"  # 8-bit string sequences
    r")"
)
_SINGLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f" + _re_class(_INVISIBLE_RANGES) + "]+")
_C1_STARTS = "\x90\x98\x9b\x9d\x9e\x9f"


def strip_controls(text: str) -> str:
    """Return ``text`` without escape sequences, control and invisible characters.

    Removes ANSI/VT sequences (CSI, OSC including OSC 8 hyperlinks, DCS/SOS/PM/APC,
    single-character escapes, their 8-bit forms), C0 controls except newline and tab,
    DEL, C1 controls, and Unicode format characters (bidi controls, zero-width
    characters, BOM, tag and variation-selector characters). ``\\r\\n`` becomes ``\\n``;
    a lone ``\\r`` (progress bars, overwrite tricks) or U+2028/U+2029 becomes ``\\n``, so
    nothing written earlier on a line can be hidden by what follows it.

    Raises:
        Nothing; any ``str`` is accepted.
    """
    if _NEEDS_WORK.search(text) is None:
        return text
    if "\x1b" in text:
        text = _ESC_SEQUENCE.sub("", text)
    if any(start in text for start in _C1_STARTS):
        text = _C1_SEQUENCE.sub("", text)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\u2028" in text or "\u2029" in text:
        text = text.replace("\u2028", "\n").replace("\u2029", "\n")
    # The character class is large, which makes ``re`` slow on long text: ask RE2
    # first (coloured output usually has nothing left at this point).
    return _SINGLE.sub("", text) if _NEEDS_WORK.search(text) is not None else text


def has_controls(text: str, start: int = 0, end: int | None = None) -> bool:
    """Whether ``strip_controls`` would change anything in ``text[start:end]``.

    Raises:
        Nothing.
    """
    return _CONTROL.search(text, start, len(text) if end is None else end) is not None
