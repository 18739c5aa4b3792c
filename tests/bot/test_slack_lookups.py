"""`/exec help`, `instances`, `explain`, `audit`, and usage errors: answered to the asker only."""

from __future__ import annotations

import pytest

from tests.bot.rig import Rig
from tests.bot.test_slack_exec import context_text, to


async def test_help_is_answered_in_the_ack(rig: Rig) -> None:
    response, _ = await rig.command("UALICE", "help")
    body = response.json()
    assert body["response_type"] == "ephemeral"
    assert "/exec session" in body["blocks"][0]["text"]["text"]


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("frobnicate now", "command_rejected"),
        ("demo-api/ env", "bad_target"),
        ("audit colour=blue", "command_rejected"),
        ('--reason "unbalanced demo-api/c-1 env', "command_rejected"),
    ],
    ids=["unknown-verb", "bad-target", "bad-audit-filter", "unbalanced-quotes"],
)
async def test_usage_errors_are_answered_in_the_ack_and_run_nothing(
    rig: Rig, text: str, code: str
) -> None:
    response, _ = await rig.command("UALICE", text)
    body = response.json()
    assert body["response_type"] == "ephemeral"
    assert f"code `{code}`" in body["blocks"][1]["elements"][0]["text"]
    assert await rig.audit() == []
    await rig.audited_control()


async def test_instances_lists_live_instances_to_the_asker(rig: Rig) -> None:
    _, name = await rig.command("UALICE", "instances demo-api")
    answer = await rig.fake.wait_call("response_url", to(name))
    assert answer.data["response_type"] == "ephemeral"
    assert rig.instance in answer.rendered


async def test_instances_is_refused_to_users_outside_the_policy(rig: Rig) -> None:
    _, name = await rig.command("UNOBODY", "instances demo-api")
    answer = await rig.fake.wait_call("response_url", to(name))
    assert "code `unknown_principal`" in context_text(answer)
    assert rig.instance not in answer.rendered


async def test_explain_shows_the_decision_and_records_nothing(rig: Rig) -> None:
    _, name = await rig.command("UALICE", f"explain {rig.instance} touch /tmp/x.pcap")
    answer = await rig.fake.wait_call("response_url", to(name))
    assert answer.data["response_type"] == "ephemeral"
    assert "rule `capture`" in context_text(answer)
    assert "would wait for approval" in answer.rendered
    assert await rig.audit() == []
    await rig.audited_control()


async def test_audit_shows_the_asker_their_own_records_and_auditors_everyone_s(rig: Rig) -> None:
    for user in ("UALICE", "UBOB"):
        _, name = await rig.command(user, f"{rig.instance} id")
        await rig.fake.wait_call("response_url", to(name, "in_channel"))
    records = {r.intent.principal: r.audit_id for r in await rig.audit()}

    _, name = await rig.command("UALICE", "audit since=1h limit=5")
    mine = await rig.fake.wait_call("response_url", to(name))
    assert mine.data["response_type"] == "ephemeral"
    assert records["slack:UALICE"] in mine.rendered
    assert records["slack:UBOB"] not in mine.rendered

    _, name = await rig.command("UAUDITOR", "audit user=UBOB")
    theirs = await rig.fake.wait_call("response_url", to(name))
    assert records["slack:UBOB"] in theirs.rendered
    assert records["slack:UALICE"] not in theirs.rendered
