"""`/exec` over HTTP: the real bolt app in `execgate serve`, signed requests, a fake Slack."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from policies.types import ExecRequest, Principal, PrincipalKind, Surface, Target
from server.settings import DEMO_ENV, ArtifactSettings
from tests.bot.fake_slack import Call, FakeSlack
from tests.bot.rig import WAR_ROOM, Rig, open_rig, slack_settings

logger = logging.getLogger(__name__)

SECRETS = [
    DEMO_ENV[name]
    for name in (
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        "ALIBABA_CLOUD_SECURITY_TOKEN",
        "DB_PASSWORD",
    )
]


def to(name: str, response_type: str | None = None) -> Callable[[Call], bool]:
    """Calls to the response URL ``name`` (of one response type)."""
    return lambda c: (
        c.data.get("_name") == name
        and (response_type is None or c.data.get("response_type") == response_type)
    )


def context_text(call: Call) -> str:
    return " ".join(
        element.get("text", "")
        for block in call.blocks
        if block.get("type") == "context"
        for element in block["elements"]
    )


async def test_allowed_exec_acks_at_once_then_posts_the_result_with_output_in_channel(
    rig: Rig,
) -> None:
    started = time.perf_counter()
    response, name = await rig.command("UALICE", f"{rig.instance} env")
    ack_ms = (time.perf_counter() - started) * 1000
    logger.warning("slack ack latency: %.1f ms", ack_ms)
    assert response.status_code == 200
    assert response.json()["response_type"] == "ephemeral"

    result = await rig.fake.wait_call("response_url", to(name, "in_channel"))
    assert "APP_ENV=demo" in result.rendered
    assert "<@UALICE>" in result.rendered
    assert rig.instance in result.rendered
    records = await rig.audit()
    assert [r.intent.principal for r in records] == ["slack:UALICE"]
    assert records[0].intent.surface == "slack"
    assert records[0].outcome is not None and records[0].outcome.exit_code == 0
    assert records[0].audit_id in context_text(result)
    assert "exit 0" in context_text(result)


async def test_secrets_in_output_never_reach_slack(rig: Rig) -> None:
    _, name = await rig.command("UALICE", f"{rig.instance} env")
    result = await rig.fake.wait_call("response_url", to(name, "in_channel"))
    assert "ALIBABA_CLOUD_ACCESS_KEY_SECRET=" in result.rendered
    everything = json.dumps([c.data for c in rig.fake.calls]) + "".join(
        c.body.decode(errors="replace") for c in rig.fake.calls
    )
    for secret in SECRETS:
        assert secret not in everything


@pytest.mark.parametrize(
    ("command", "rule", "code"),
    [
        ("touch /tmp/pwned", None, "denied"),
        ("cat /etc/passwd; touch /tmp/pwned", "command-syntax", "command_rejected"),
    ],
    ids=["no-rule-allows-it", "shell-syntax"],
)
async def test_denied_exec_is_ephemeral_and_runs_nothing(
    rig: Rig, command: str, rule: str | None, code: str
) -> None:
    _, name = await rig.command("UALICE", f"{rig.instance} {command}")
    refusal = await rig.fake.wait_call("response_url", to(name))
    assert refusal.data["response_type"] == "ephemeral"
    assert f"code `{code}`" in context_text(refusal)
    if rule:
        assert f"rule `{rule}`" in context_text(refusal)
    assert not (rig.state_tmp() / "pwned").exists()
    assert rig.fake.of("chat.postMessage") == []
    records = await rig.audit()
    assert [r.intent.effect for r in records] == ["deny"]
    assert records[0].audit_id in context_text(refusal)
    # Control: an allowed command on the same instance runs and sees the /tmp the test
    # looked in.
    (rig.state_tmp() / "canary.txt").write_text("canary\n")
    _, shown = await rig.command("UALICE", f"{rig.instance} cat /tmp/canary.txt")
    control = await rig.fake.wait_call("response_url", to(shown, "in_channel"))
    assert "canary" in control.rendered


@pytest.mark.parametrize("user", ["UNOBODY", "UGHOST"], ids=["not-in-policy", "deactivated"])
async def test_unknown_user_gets_an_ephemeral_refusal(rig: Rig, user: str) -> None:
    _, name = await rig.command(user, f"{rig.instance} id")
    refusal = await rig.fake.wait_call("response_url", to(name))
    assert refusal.data["response_type"] == "ephemeral"
    assert "code `unknown_principal`" in context_text(refusal)
    records = await rig.audit()
    assert all(r.outcome is None or r.outcome.exit_code is None for r in records)


async def test_user_group_membership_grants_the_operator_role(fresh_rig: Rig) -> None:
    # A rig of its own: the shared one may hold the groups' members in its directory
    # cache already, and this test counts the look-ups.
    rig = fresh_rig
    _, name = await rig.command("UERIN", f"{rig.instance} id")
    result = await rig.fake.wait_call("response_url", to(name, "in_channel"))
    assert "uid=" in result.rendered
    asked = {c.data.get("usergroup") for c in rig.fake.of("usergroups.users.list")}
    assert asked == {"SOPS", "SAPPROVERS"}


async def test_retried_delivery_is_acknowledged_and_runs_once(rig: Rig) -> None:
    body, name = rig.command_body("UALICE", f"{rig.instance} id")
    first = await rig.post(body, "application/x-www-form-urlencoded")
    retry = await rig.post(
        body,
        "application/x-www-form-urlencoded",
        {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"},
    )
    assert (first.status_code, retry.status_code) == (200, 200)
    await rig.fake.wait_call("response_url", to(name, "in_channel"))
    records = await rig.audit()
    assert len(records) == 1
    assert len([c for c in rig.fake.calls if to(name, "in_channel")(c)]) == 1
    # The delivery's key reached the service, so another ExecGate process would not run
    # it again either.
    key = records[0].intent.request_key
    assert key is not None and key.startswith("slack:cmd:")
    again = await rig.running.service.exec(
        ExecRequest(
            principal=Principal(PrincipalKind.SLACK, "UALICE"),
            surface=Surface.SLACK,
            target=Target.parse(rig.instance),
            command_text="id",
            request_key=key,
        )
    )
    assert again.error_code == "duplicate"


def output_section(call: Call) -> str:
    sections = [str(b["text"]["text"]) for b in call.blocks if b["type"] == "section"]
    assert all(len(s) <= 3000 for s in sections)
    return next(s for s in sections if s.startswith("```"))


async def test_long_output_keeps_head_and_tail_within_slack_limits_and_links_the_rest(
    rig: Rig,
) -> None:
    _, name = await rig.command("UALICE", f"{rig.instance} seq 20000")
    result = await rig.fake.wait_call("response_url", to(name, "in_channel"))
    output = output_section(result)
    assert output.startswith("```\n1\n2\n3\n")
    assert output.rstrip("`\n").endswith("19999\n20000")
    assert "omitted" in output
    notes = context_text(result)
    assert "characters of stdout omitted" in notes
    link = re.search(r"<(http://[^|>]+)\|stdout>", notes)
    assert link is not None
    full = await rig.http.get(link[1])
    assert full.status_code == 200
    assert full.text == "".join(f"{n}\n" for n in range(1, 20001))
    assert rig.fake.of("files.getUploadURLExternal") == []


async def test_long_output_is_attached_as_a_file_when_no_link_can_be_made(
    tmp_path: Path, database_url: str, fake_slack: FakeSlack
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    settings = slack_settings(tmp_path, database_url, fake_slack)
    settings = settings.model_copy(
        update={"artifacts": ArtifactSettings(dir=blocker / "artifacts")}
    )
    async with open_rig(settings, fake_slack) as rig:
        _, name = await rig.command("UALICE", f"{rig.instance} seq 20000")
        result = await rig.fake.wait_call("response_url", to(name, "in_channel"))
        assert "omitted" in output_section(result)
        complete = await rig.fake.wait_call("files.completeUploadExternal")
    assert complete.data["channel_id"] == WAR_ROOM
    (upload,) = fake_slack.of("upload")
    assert upload.body.decode() == "".join(f"{n}\n" for n in range(1, 20001))
