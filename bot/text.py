"""Slack text in and out: undo Slack's formatting of what people type, and escape what
ExecGate posts so command output can neither ping nor link nor break out of a code block.
"""

from __future__ import annotations

import re

from policies.redaction import redact_text
from policies.service.output import truncate_head_tail

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

    Output that does not fit keeps its head and tail around an omitted-count line;
    the service already shortened it, this only makes room for escaping and fences.
    """
    block = _fenced(text)
    budget = limit - (len(block) - limit)
    while len(block) > limit and budget > 0:
        block = _fenced(truncate_head_tail(text, budget).text)
        budget -= max(len(block) - limit, 16)
    return block if len(block) <= limit else _fenced("… output omitted …")


def mention(principal: str) -> str:
    """A principal (``slack:U1``, ``local:alice``) as Slack shows people."""
    kind, _, ident = principal.partition(":")
    if kind == "slack" and ident:
        return f"<@{escape(ident)}>"
    return inline_code(principal)


def shown_command(command: str) -> str:
    """A command as ExecGate shows it: secrets typed into it are redacted, like output."""
    return redact_text(command)
