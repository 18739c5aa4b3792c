"""Slack text in and out: undo Slack's formatting of what people type, and escape what
ExecGate posts so command output can neither ping nor link nor break out of a code block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from policies.redaction import redact_text

# Slack wraps links and mentions it recognised as <target|label> or <target>.
_ENTITY_RE = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")
# Typing on phones and some desktops turns straight quotes curly; shells mean straight.
_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'", "‚": "'"})
# Section text is capped by Slack at 3,000 characters.
SECTION_LIMIT = 3000
_FENCE = "```"


def _entity(match: re.Match[str]) -> str:
    target, label = match[1], match[2]
    if target.startswith(("@", "#", "!")):
        return match[0]  # a mention stays a mention; it is not command text anyway
    # Slack keeps what was typed as the label of a link it made.
    return label if label is not None else target


def from_slack(text: str) -> str:
    """What a person typed, from the text Slack delivered.

    Links Slack recognised (``<http://x|x>``) become their text, HTML entities are
    decoded and curly quotes become straight ones.
    """
    text = _ENTITY_RE.sub(_entity, text)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return text.translate(_QUOTES).strip()


def unwrap_code(text: str) -> str:
    """A command written as inline code or in a code fence, without the backticks."""
    text = text.strip()
    for fence in (_FENCE, "`"):
        if len(text) > 2 * len(fence) and text.startswith(fence) and text.endswith(fence):
            inner = text[len(fence) : -len(fence)]
            if "`" not in inner:
                return inner.strip()
    return text


def escape(text: str) -> str:
    """Text safe inside mrkdwn: no mentions, links or entities are formed from it."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def inline_code(text: str, limit: int = 300) -> str:
    """``text`` as inline code, shortened to ``limit`` characters."""
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    # A backtick would end the code span early; show it as a similar character.
    return "`" + escape(flat).replace("`", "ˋ") + "`"


def _fenced(text: str) -> str:
    # Three backticks in output would close the block; a zero-width joiner keeps them apart.
    body = escape(text).replace(_FENCE, "`\u200d`\u200d`")
    return f"{_FENCE}\n{body.rstrip(chr(10))}\n{_FENCE}"


def code_block(text: str, limit: int = SECTION_LIMIT) -> str:
    """``text`` as a fenced code block of at most ``limit`` characters, escaped.

    Text that does not fit keeps its head and tail around an omitted-count line.
    """
    return output_block(text, 0, limit).block


@dataclass(frozen=True, slots=True)
class FittedBlock:
    """A code block that fits its section, and how many characters of the whole output
    it leaves out (what the service left out of its inline view plus any further cut
    made here, where escaping made that view too long for Slack)."""

    block: str
    omitted: int


# The marker line the service puts where it cut an inline view (policies.service.output).
_SERVICE_MARKER = re.compile(r"… \[\d+ characters? omitted\] …\n?")


def output_block(text: str, omitted: int, limit: int = SECTION_LIMIT) -> FittedBlock:
    """``text`` (an inline view that already leaves ``omitted`` characters out) as a
    code block of at most ``limit`` characters, with one omitted count for the whole.

    Escaping can make the view longer than Slack allows (``<`` becomes ``&lt;``); then
    more of the middle goes, and the marker in the block and the count returned both
    say how much of the real output is not shown.
    """
    block = _fenced(text)
    if len(block) <= limit:
        return FittedBlock(block, omitted)
    head, tail = text, ""
    marker = _SERVICE_MARKER.search(text) if omitted else None
    if marker is not None:
        head, tail = text[: marker.start()], text[marker.end() :]
    else:
        omitted = 0
    low, high = 0, len(head) + len(tail)
    best_omitted = omitted + len(head) + len(tail)
    best = _fenced(_with_marker("", best_omitted, ""))
    while low <= high:
        keep = (low + high) // 2
        kept_head, kept_tail = _split_keep(head, tail, keep)
        total = omitted + len(head) - len(kept_head) + len(tail) - len(kept_tail)
        candidate = _fenced(_with_marker(kept_head, total, kept_tail))
        if len(candidate) <= limit:
            best, best_omitted = candidate, total
            low = keep + 1
        else:
            high = keep - 1
    return FittedBlock(best, best_omitted)


def _split_keep(head: str, tail: str, keep: int) -> tuple[str, str]:
    """The first and last characters of ``head + tail`` worth ``keep`` in all, half each
    where both sides have enough; cut on a line boundary where that costs little."""
    from_head = min(len(head), keep - min(len(tail), keep // 2))
    from_tail = min(len(tail), keep - from_head)
    kept_head = head[:from_head]
    newline = kept_head.rfind("\n")
    if newline >= len(kept_head) // 2:
        kept_head = kept_head[: newline + 1]
    kept_tail = tail[len(tail) - from_tail :] if from_tail else ""
    newline = kept_tail.find("\n")
    if 0 <= newline < len(kept_tail) // 2:
        kept_tail = kept_tail[newline + 1 :]
    return kept_head, kept_tail


def _with_marker(head: str, omitted: int, tail: str) -> str:
    noun = "character" if omitted == 1 else "characters"
    if head and not head.endswith("\n"):
        head += "\n"
    return f"{head}… [{omitted:,} {noun} omitted] …\n{tail}"


def mention(principal: str) -> str:
    """A principal (``slack:U1``, ``local:alice``) as Slack shows people."""
    kind, _, ident = principal.partition(":")
    if kind == "slack" and ident:
        return f"<@{escape(ident)}>"
    return inline_code(principal)


def shown_command(command: str) -> str:
    """A command as ExecGate shows it: secrets typed into it are redacted, like output."""
    return redact_text(command)


def fit_mrkdwn(text: str, limit: int = SECTION_LIMIT) -> str:
    """``text`` (mrkdwn ExecGate built) cut to at most ``limit`` characters, so Slack
    accepts the block that carries it: never inside an entity (``&lt;``) or a
    mention/link (``<@U1>``), with an open code span or block closed, ending in ``…``."""
    if len(text) <= limit:
        return text
    cut = limit - len(_FENCE) - 3  # room for "\n…\n" and closing a code block
    while cut > 0:
        head = text[:cut]
        amp, semi = head.rfind("&"), head.rfind(";")
        lt, gt = head.rfind("<"), head.rfind(">")
        if amp > semi and cut - amp <= 8:
            cut = amp
        elif lt > gt:
            cut = lt
        else:
            break
    head = text[:cut]
    if head.count(_FENCE) % 2:
        return (
            head.rstrip("\n") + "\n…" + _FENCE if not head.endswith("\n") else head + "…" + _FENCE
        )
    if head.replace(_FENCE, "").count("`") % 2:
        return head + "…`"
    return head + "…"
