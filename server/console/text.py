"""Output as the console shows it: ANSI escapes and control characters removed, long
output split into pages of lines. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

# CSI and OSC sequences, other two-byte escapes, then C0/C1 controls except tab/newline.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

LINES_PER_PAGE = 400


def plain(text: str) -> str:
    """``text`` without terminal escapes or control characters (tabs, newlines kept)."""
    return _CONTROL.sub("", _ANSI.sub("", text.replace("\r\n", "\n")))


@dataclass(frozen=True, slots=True)
class OutputPage:
    text: str
    page: int  # 1-based
    pages: int
    lines: int


def page_of(text: str, page: int, per_page: int = LINES_PER_PAGE) -> OutputPage:
    """Page ``page`` of ``text`` (clamped to the pages there are)."""
    lines = plain(text).split("\n")
    pages = max(1, -(-len(lines) // per_page))
    page = min(max(page, 1), pages)
    chunk = lines[(page - 1) * per_page : page * per_page]
    return OutputPage("\n".join(chunk), page, pages, len(lines))
