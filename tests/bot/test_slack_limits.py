"""What Slack shows stays within its Block Kit limits and tells the truth about what it
cut: real `execgate serve`, signed requests, a fake Slack that refuses what Slack refuses."""

from __future__ import annotations

import html
import re

import pytest

from tests.bot.fake_slack import Call
from tests.bot.rig import Rig
from tests.bot.test_slack_exec import context_text, to

_MARKER = re.compile(r"… \[([\d,]+) characters? omitted\] …\n")


def _code(call: Call) -> str:
    """The first code block of a message, as the reader sees it (unescaped)."""
    for block in call.blocks:
        text = block.get("text", {}).get("text", "")
        if text.startswith("```\n"):
            return html.unescape(text[4:-4])
    raise AssertionError("no code block")


async def test_output_slack_must_escape_shows_one_true_omitted_count(rig: Rig) -> None:
    line = "<a href='x'>&amp;</a> `tick`\n"
    output = line * 10_000
    (rig.state_tmp() / "angles.txt").write_text(output)

    _, name = await rig.command("UALICE", f"{rig.instance} cat /tmp/angles.txt")
    result = await rig.fake.wait_call("response_url", to(name, "in_channel"))

    shown = _code(result) + "\n"  # a code block drops the output's last newline
    marker = _MARKER.search(shown)
    assert marker is not None
    in_block = int(marker[1].replace(",", ""))
    in_context = re.search(r"([\d,]+) characters of stdout omitted", context_text(result))
    assert in_context is not None
    assert int(in_context[1].replace(",", "")) == in_block
    visible = len(shown) - len(marker[0])
    assert in_block == len(output) - visible
    assert shown.startswith(line) and shown.endswith(line)


async def test_refusal_of_a_very_long_command_reaches_the_requester(rig: Rig) -> None:
    words = " ".join(f"argument-{n:03}-<x>" for n in range(200))  # ~3,600 characters
    _, name = await rig.command("UALICE", f"{rig.instance} touch {words}")
    refusal = await rig.fake.wait_call("response_url", to(name))
    assert refusal.answer.get("ok") is not False, refusal.answer
    assert "code `denied`" in context_text(refusal)


async def test_explain_of_a_very_long_command_reaches_the_requester(rig: Rig) -> None:
    words = " ".join(f"argument-number-{n:03}" for n in range(180))  # ~3,600 characters
    _, name = await rig.command("UALICE", f"explain {rig.instance} touch {words}")
    explained = await rig.fake.wait_call("response_url", to(name))
    assert explained.answer.get("ok") is not False, explained.answer
    assert "dry run" in context_text(explained)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{instance} id", "Running `id`"),
        ("{instance} touch /tmp/pwned", "is not allowed"),
        ("{instance} uname -a", "needs approval (rule `two-leads`)"),
        ("explain {instance} id", "Working out what would happen"),
        ("session {instance}", "Opening a session"),
        ("audit", "Searching the audit log"),
        ("instances demo-api", "Listing live instances of `demo-api`"),
        ("collect {instance} /tmp/x.log", "Asking to collect `/tmp/x.log`"),
    ],
    ids=["allowed", "denied", "held", "explain", "session", "audit", "instances", "collect"],
)
async def test_the_ack_says_what_will_happen(rig: Rig, text: str, says: str) -> None:
    response, _ = await rig.command("UALICE", text.format(instance=rig.instance))
    assert response.status_code == 200
    ack = response.json()
    assert ack["response_type"] == "ephemeral"
    assert says in ack["text"]
