"""Slack's documented Block Kit limits, checked the way Slack checks a message it is
sent: a message that breaks one is refused whole (``invalid_blocks``) and nobody sees it.

https://docs.slack.dev/reference/block-kit/blocks and .../composition-objects/text-object
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

MAX_BLOCKS = 50
TEXT_OBJECT = 3000
SECTION_FIELD = 2000
SECTION_FIELDS = 10
CONTEXT_ELEMENTS = 10
HEADER_TEXT = 150
ACTIONS_ELEMENTS = 25
BUTTON_TEXT = 75
BUTTON_VALUE = 2000
ID_LENGTH = 255


def _text_errors(where: str, obj: Any, limit: int) -> list[str]:
    if not isinstance(obj, Mapping) or obj.get("type") not in ("mrkdwn", "plain_text"):
        return [f"{where}: not a text object"]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return [f"{where}: empty text"]
    if len(text) > limit:
        return [f"{where}: {len(text)} characters, more than {limit}"]
    return []


def block_errors(blocks: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every way ``blocks`` breaks Slack's limits (empty: Slack accepts it)."""
    blocks = list(blocks)
    errors = [f"{len(blocks)} blocks, more than {MAX_BLOCKS}"] if len(blocks) > MAX_BLOCKS else []
    for index, block in enumerate(blocks):
        kind = block.get("type")
        where = f"blocks[{index}] ({kind})"
        if len(str(block.get("block_id", ""))) > ID_LENGTH:
            errors.append(f"{where}: block_id longer than {ID_LENGTH}")
        if kind == "section":
            if "text" not in block and "fields" not in block:
                errors.append(f"{where}: neither text nor fields")
            if "text" in block:
                errors += _text_errors(f"{where}.text", block["text"], TEXT_OBJECT)
            fields = block.get("fields", [])
            if len(fields) > SECTION_FIELDS:
                errors.append(f"{where}: {len(fields)} fields, more than {SECTION_FIELDS}")
            for n, item in enumerate(fields):
                errors += _text_errors(f"{where}.fields[{n}]", item, SECTION_FIELD)
        elif kind == "context":
            elements = block.get("elements", [])
            if not elements or len(elements) > CONTEXT_ELEMENTS:
                errors.append(f"{where}: {len(elements)} elements, not 1..{CONTEXT_ELEMENTS}")
            for n, item in enumerate(elements):
                errors += _text_errors(f"{where}.elements[{n}]", item, TEXT_OBJECT)
        elif kind == "header":
            text = block.get("text", {})
            if text.get("type") != "plain_text":
                errors.append(f"{where}: header text must be plain_text")
            errors += _text_errors(f"{where}.text", text, HEADER_TEXT)
        elif kind == "actions":
            elements = block.get("elements", [])
            if not elements or len(elements) > ACTIONS_ELEMENTS:
                errors.append(f"{where}: {len(elements)} elements, not 1..{ACTIONS_ELEMENTS}")
            for n, item in enumerate(elements):
                errors += _text_errors(f"{where}.elements[{n}].text", item.get("text"), BUTTON_TEXT)
                if len(str(item.get("value", ""))) > BUTTON_VALUE:
                    errors.append(f"{where}.elements[{n}]: value longer than {BUTTON_VALUE}")
        elif kind not in ("divider", "image", "rich_text", "input", "file", "video"):
            errors.append(f"{where}: unknown block type")
    return errors
