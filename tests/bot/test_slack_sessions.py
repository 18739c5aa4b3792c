"""Thread sessions: `/exec session <target>` anchors a thread; the owner's replies run in it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from policies.types import SessionId
from tests.bot.fake_slack import Call, FakeSlack
from tests.bot.rig import WAR_ROOM, Rig, open_rig, slack_settings
from tests.bot.test_slack_exec import context_text, output_section


async def _open(rig: Rig, user: str = "UALICE") -> Call:
    _, name = await rig.command(user, f"session {rig.instance} checking the disk")
    anchor = await rig.fake.wait_call(
        "chat.postMessage",
        lambda c: c.data.get("channel") == WAR_ROOM and "session `se_" in context_text(c),
    )
    # The requester hears the session is open once its thread is bound.
    await rig.fake.wait_call("response_url", lambda c: c.data.get("_name") == name)
    return anchor


def _in_thread(anchor: Call, *, after: int = 0) -> Callable[[list[Call]], list[Call]]:
    def replies(calls: list[Call]) -> list[Call]:
        found = [
            c
            for c in calls
            if c.method == "chat.postMessage" and c.data.get("thread_ts") == anchor.ts
        ]
        return found[after:] if len(found) > after else []

    return replies


async def test_replies_in_the_thread_run_in_the_session_and_keep_the_working_directory(
    rig: Rig,
) -> None:
    anchor = await _open(rig)
    assert rig.instance in anchor.rendered
    await rig.message("UALICE", "cd /tmp", thread_ts=anchor.ts)
    (cd,) = await rig.fake.wait_for(_in_thread(anchor))
    assert "exit 0" in context_text(cd)
    await rig.message("UALICE", "pwd", thread_ts=anchor.ts)
    (pwd,) = await rig.fake.wait_for(_in_thread(anchor, after=1))
    assert output_section(pwd) == "```\n/tmp\n```"
    records = await rig.audit()
    sessions = {r.intent.session_id for r in records}
    assert len(records) == 2 and len(sessions) == 1 and None not in sessions


async def test_end_ends_the_session_and_the_thread_says_so(rig: Rig) -> None:
    anchor = await _open(rig)
    await rig.message("UALICE", "end", thread_ts=anchor.ts)
    (ended,) = await rig.fake.wait_for(_in_thread(anchor))
    assert "Session ended" in ended.rendered
    session_id = next(
        w.strip("`") for w in context_text(anchor).split() if w.strip("`").startswith("se_")
    )
    record = await rig.running.service.audit.get_session(SessionId(session_id))
    assert record.ended_at is not None


async def test_idle_session_ends_and_the_thread_says_so_on_next_use(
    fresh_rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A rig of its own: the test stops every session idle watch in the process and sets
    # the service's idle time to zero.
    rig = fresh_rig
    anchor = await _open(rig)
    # The reply path alone: this process's idle watch is stopped first, so it cannot
    # end the session (and say so) before the reply does.
    watches = [t for t in asyncio.all_tasks() if t.get_name().startswith("slack-session-idle-")]
    assert watches, "the session thread has no idle watch"
    for watch in watches:
        watch.cancel()
    await asyncio.gather(*watches, return_exceptions=True)
    # Every session is idle past a zero timeout by its next command.
    monkeypatch.setattr(rig.running.service._sessions, "_idle", 0.0)
    await rig.message("UALICE", "pwd", thread_ts=anchor.ts)
    (ended,) = await rig.fake.wait_for(_in_thread(anchor))
    assert "code `session_ended`" in context_text(ended)
    assert await rig.audit() == []
    await rig.audited_control()


async def test_replies_from_other_people_in_the_thread_are_not_run(rig: Rig) -> None:
    anchor = await _open(rig)
    await rig.message("UBOB", "id", thread_ts=anchor.ts)
    await rig.message("UALICE", "pwd", thread_ts=anchor.ts)
    (pwd,) = await rig.fake.wait_for(_in_thread(anchor))
    assert "<@UALICE>" in pwd.rendered
    records = await rig.audit()
    assert [r.intent.principal for r in records] == ["slack:UALICE"]


async def test_retried_thread_message_runs_once(rig: Rig) -> None:
    anchor = await _open(rig)
    body = rig.message_body("UALICE", "id", thread_ts=anchor.ts)
    await rig.post(body, "application/json")
    await rig.post(body, "application/json", {"X-Slack-Retry-Num": "1"})
    await rig.fake.wait_for(_in_thread(anchor))
    records = await rig.audit()
    assert len(records) == 1


async def test_session_on_a_missing_instance_is_refused_ephemerally(rig: Rig) -> None:
    _, name = await rig.command("UALICE", "session demo-api/c-gone")
    refusal = await rig.fake.wait_call("response_url", lambda c: c.data.get("_name") == name)
    assert refusal.data["response_type"] == "ephemeral"
    assert "code `instance_not_running`" in context_text(refusal)


async def test_a_session_thread_keeps_working_after_execgate_restarts(
    tmp_path: Path, database_url: str, fake_slack: FakeSlack
) -> None:
    settings = slack_settings(tmp_path, database_url, fake_slack)
    async with open_rig(settings, fake_slack) as first:
        anchor = await _open(first)
        await first.message("UALICE", "cd /tmp", thread_ts=anchor.ts)
        await first.fake.wait_for(_in_thread(anchor))

    async with open_rig(settings, fake_slack) as restarted:
        await restarted.message("UALICE", "pwd", thread_ts=anchor.ts)
        (pwd,) = await restarted.fake.wait_for(_in_thread(anchor, after=1))

    assert output_section(pwd) == "```\n/tmp\n```"


async def test_other_threads_and_other_peoples_replies_run_nothing(rig: Rig) -> None:
    anchor = await _open(rig)
    await rig.message("UBOB", "cd /", thread_ts=anchor.ts)
    # A thread no message of the fake Slack has (its ts are 1700000000.*).
    await rig.message("UALICE", "cd /", thread_ts="1600000000.000100")
    await rig.message("UALICE", "pwd", thread_ts=anchor.ts)

    (reply,) = await rig.fake.wait_for(_in_thread(anchor))
    records = await rig.audit()
    assert [r.intent.command_text for r in records] == ["pwd"]
    assert output_section(reply) == "```\n/tmp\n```"
