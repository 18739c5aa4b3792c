"""A Slack `/exec` whose HTTP request carries a W3C ``traceparent`` header is traced in
the caller's trace, though it runs after Slack got its ack."""

from __future__ import annotations

from pathlib import Path

from server.settings import TracingSettings
from tests.bot.fake_slack import FakeSlack
from tests.bot.rig import open_rig, slack_settings
from tests.support.traces import STEPS, TRACEPARENT, Recording, request_and_steps


async def test_a_slack_command_with_a_traceparent_header_is_traced_in_the_callers_trace(
    tmp_path: Path, database_url: str, fake_slack: FakeSlack, spans: Recording
) -> None:
    provider, exporter = spans
    settings = slack_settings(tmp_path, database_url, fake_slack).model_copy(
        update={"tracing": TracingSettings(enabled=True)}
    )
    async with open_rig(settings, fake_slack, tracer_provider=provider) as rig:
        body, name = rig.command_body("UALICE", f"{rig.instance} env")
        acked = await rig.post(
            body, "application/x-www-form-urlencoded", headers={"traceparent": TRACEPARENT}
        )
        await rig.fake.wait_call(
            "response_url",
            lambda c: c.data.get("_name") == name and c.data.get("response_type") == "in_channel",
        )
    assert acked.status_code == 200
    request, children = request_and_steps(exporter.get_finished_spans())
    assert children == STEPS
    attributes = request.attributes or {}
    assert (attributes["execgate.principal"], attributes["execgate.surface"]) == (
        "slack:UALICE",
        "slack",
    )
