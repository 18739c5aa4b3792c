"""The shared Slack rig keeps tests apart: each test's view sees only what it made, and a
test ends only once the work its requests started has finished."""

from __future__ import annotations

from tests.bot.rig import Rig
from tests.bot.test_slack_exec import output_section, to


async def test_a_view_sees_only_the_calls_and_records_made_after_it_began(
    shared_rig: Rig,
) -> None:
    first = await shared_rig.view()
    _, name = await first.command("UALICE", f"{first.instance} id")
    await first.fake.wait_call("response_url", to(name, "in_channel"))
    (earlier,) = await first.audit()

    second = await shared_rig.view()
    assert second.fake.calls == [] and await second.audit() == []
    _, name = await second.command("UALICE", f"{second.instance} pwd")
    await second.fake.wait_call("response_url", to(name, "in_channel"))
    (later,) = await second.audit()
    assert later.audit_id != earlier.audit_id
    assert [r.audit_id for r in await first.audit()] == [later.audit_id, earlier.audit_id]
    assert len(first.fake.calls) > len(second.fake.calls) > 0


async def test_settled_returns_once_the_work_after_the_ack_has_answered(rig: Rig) -> None:
    response, name = await rig.command("UALICE", f"{rig.instance} seq 3")
    assert response.status_code == 200
    await rig.settled()
    (result,) = [c for c in rig.fake.calls if to(name, "in_channel")(c)]
    assert output_section(result) == "```\n1\n2\n3\n```"
