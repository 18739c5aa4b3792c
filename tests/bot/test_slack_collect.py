"""`/exec collect`: a file from the instance becomes an artifact with an expiring link."""

from __future__ import annotations

import re

from bot.cards import APPROVE_ACTION
from tests.bot.rig import Rig
from tests.bot.test_slack_exec import context_text, to


def _link(text: str) -> str:
    found = re.search(r"<(http://[^|>]+)\|", text)
    assert found is not None, text
    return found[1]


async def test_collect_posts_a_link_to_the_file_in_channel(rig: Rig) -> None:
    (rig.state_tmp() / "app.log").write_text("GET /health 200\n")
    _, name = await rig.command("UALICE", f"collect {rig.instance} /tmp/app.log")
    posted = await rig.fake.wait_call("response_url", to(name))
    assert posted.data["response_type"] == "in_channel"
    section = posted.blocks[1]["text"]["text"]
    download = await rig.http.get(_link(section))
    assert download.status_code == 200
    assert download.text == "GET /health 200\n"
    assert "audit `ex_" in context_text(posted)


async def test_collect_outside_the_policy_is_refused_ephemerally(rig: Rig) -> None:
    _, name = await rig.command("UALICE", f"collect {rig.instance} /etc/shadow")
    refusal = await rig.fake.wait_call("response_url", to(name))
    assert refusal.data["response_type"] == "ephemeral"
    assert "code `" in context_text(refusal)
    assert "http://" not in refusal.rendered


async def test_capture_then_collect_each_behind_approval_the_whole_story(rig: Rig) -> None:
    """Capture behind approval, then fetch the capture behind approval."""
    _, name = await rig.command("UALICE", f"{rig.instance} touch /tmp/capture.pcap")
    await rig.fake.wait_call("response_url", to(name, "ephemeral"))
    card = await rig.fake.wait_call("chat.postMessage", lambda c: c.has_action(APPROVE_ACTION))
    await rig.click("UBOB", card, APPROVE_ACTION)
    await rig.fake.wait_call("response_url", to(name, "in_channel"))

    _, name = await rig.command("UALICE", f"collect {rig.instance} /tmp/capture.pcap")
    await rig.fake.wait_call("response_url", to(name, "ephemeral"))
    card = await rig.fake.wait_call(
        "chat.postMessage",
        lambda c: c.has_action(APPROVE_ACTION) and "execgate-collect" in c.rendered,
    )
    await rig.click("UCAROL", card, APPROVE_ACTION)
    result = await rig.fake.wait_call("response_url", to(name, "in_channel"))
    download = await rig.http.get(_link(context_text(result)))
    assert download.status_code == 200
    assert download.content == b""  # touch made an empty capture
