"""Conversational sessions through ExecService: pinned instance, cwd and env kept."""

from __future__ import annotations

import dataclasses

import pytest

from policies.errors import AccessDenied, InstanceNotRunning, SessionEnded, SessionNotFound
from policies.types import Effect, Target
from tests.policies.service.conftest import Rig, local


async def test_session_keeps_the_working_directory_between_commands(rig: Rig) -> None:
    (rig.state_tmp() / "work").mkdir()
    session = await rig.service.session_start(local("alice"), rig.target, reason="debug")
    cd = await rig.service.exec(rig.request("cd /tmp/work", session_id=session.session_id))
    assert cd.rule == "session-builtin"
    assert cd.exit_code == 0
    pwd = await rig.service.exec(rig.request("pwd", session_id=session.session_id))
    assert pwd.stdout.strip() == "/tmp/work"
    record = await rig.store.get_exec(pwd.audit_id)  # type: ignore[arg-type]
    assert record.intent.session_id == session.session_id


async def test_cd_to_a_missing_directory_fails_and_keeps_the_old_one(rig: Rig) -> None:
    session = await rig.service.session_start(local("alice"), rig.target)
    bad = await rig.service.exec(rig.request("cd /tmp/nope", session_id=session.session_id))
    assert bad.exit_code != 0
    current = await rig.service.session_get(session.session_id, local("alice"))
    assert current.cwd == ""


async def test_session_env_overlay_applies_to_later_commands(rig: Rig) -> None:
    session = await rig.service.session_start(local("alice"), rig.target)
    await rig.service.exec(rig.request("export TRACE_ID=abc123", session_id=session.session_id))
    shown = await rig.service.exec(rig.request("printenv TRACE_ID", session_id=session.session_id))
    assert shown.stdout.strip() == "abc123"


@pytest.mark.parametrize(
    "name",
    ["PATH", "LD_PRELOAD", "BASH_ENV", "PYTHONPATH", "GIT_PAGER", "GIT_CONFIG_COUNT", "MANPAGER"],
)
async def test_session_refuses_variables_that_change_how_code_loads(rig: Rig, name: str) -> None:
    session = await rig.service.session_start(local("alice"), rig.target)
    result = await rig.service.exec(
        rig.request(f"export {name}=/tmp/evil", session_id=session.session_id)
    )
    assert result.effect is Effect.DENY


async def test_an_ended_session_refuses_commands(rig: Rig) -> None:
    session = await rig.service.session_start(local("alice"), rig.target)
    ended = await rig.service.session_end(session.session_id, local("alice"))
    assert ended.ended_at is not None
    with pytest.raises(SessionEnded):
        await rig.service.exec(rig.request("pwd", session_id=session.session_id))


async def test_someone_elses_session_is_not_found(rig: Rig) -> None:
    session = await rig.service.session_start(local("alice"), rig.target)
    with pytest.raises(SessionNotFound):
        await rig.service.exec(rig.request("pwd", who="local:bob", session_id=session.session_id))


async def test_a_session_cannot_start_on_an_instance_that_is_not_running(rig: Rig) -> None:
    ghost = dataclasses.replace(rig.target, instance="c-00000000-00000000-000000000000")
    with pytest.raises(InstanceNotRunning):
        await rig.service.session_start(local("alice"), ghost)


async def test_a_session_ends_when_its_instance_is_released(rig: Rig) -> None:
    instance = await rig.manager.invoke("demo-worker")
    rig.manager.release_invocation(instance)
    target = Target("demo-worker", instance)
    session = await rig.service.session_start(local("alice"), target)
    rig.clock.advance(61)  # past the function's idle release period
    assert instance in rig.manager.release_idle()
    with pytest.raises(SessionEnded):
        await rig.service.exec(rig.request("pwd", session_id=session.session_id))
    current = await rig.service.session_get(session.session_id, local("alice"))
    assert current.end_reason == "instance released"


async def test_a_session_cannot_start_where_the_policy_allows_nothing(rig: Rig) -> None:
    instance = rig.manager.list("billing-api")[0].instance_id
    with pytest.raises(AccessDenied):
        await rig.service.session_start(local("alice"), Target("billing-api", instance))


async def test_cd_is_limited_to_directories_the_principal_may_list(rig: Rig) -> None:
    session = await rig.service.session_start(local("alice"), rig.target)
    refused = await rig.service.exec(rig.request("cd /etc", session_id=session.session_id))
    assert refused.effect is Effect.DENY
    escaped = await rig.service.exec(rig.request("cd ../../etc", session_id=session.session_id))
    assert escaped.effect is Effect.DENY
    current = await rig.service.session_get(session.session_id, local("alice"))
    assert current.cwd == ""


async def test_an_approved_command_asked_in_a_session_runs_as_the_approver_saw_it(
    rig: Rig,
) -> None:
    # The approver sees the command and the target, not the session's directory or
    # variables (which may change while the request waits): it runs without them.
    (rig.state_tmp() / "work").mkdir()
    (rig.state_tmp() / "work" / "marker-file").touch()
    session = await rig.service.session_start(local("alice"), rig.target)
    await rig.service.exec(rig.request("cd /tmp/work", session_id=session.session_id))
    asked = await rig.service.exec(rig.request("ls", session_id=session.session_id))
    assert asked.effect is Effect.APPROVE and asked.approval_id is not None

    vote = await rig.service.vote(asked.approval_id, local("bob"), approve=True)

    assert vote.result is not None and vote.result.exit_code == 0
    assert vote.result.stdout.split() == ["work"]


@pytest.mark.parametrize(
    "assignment",
    [
        "export API_TOKEN=abc123",
        "export DB_PASSWORD=hunter2",
        "export UPSTREAM=AKIAIOSFODNN7EXAMPLE",
        "export DB_PASSWORD=hunter2 | wc -l",
        "export DB_PASSWORD='hunter2",
        "export DB_PASSWORD=hunter2 && ls",
        "export DB_PASSWORD=hunter2; ls",
    ],
    ids=["token-name", "password-name", "key-value", "pipeline", "unclosed", "and", "semicolon"],
)
async def test_a_secret_exported_into_a_session_is_refused_and_not_recorded(
    rig: Rig, assignment: str
) -> None:
    session = await rig.service.session_start(local("alice"), rig.target)
    value = assignment.split("=", 1)[1].split()[0].strip("'")

    result = await rig.service.exec(rig.request(assignment, session_id=session.session_id))

    assert result.effect is Effect.DENY
    assert result.audit_id is not None
    record = await rig.store.get_exec(result.audit_id)
    assert value not in " ".join(record.intent.argv)
    assert value not in (record.intent.command_text or "")
    assert value not in " ".join(result.argv)
    current = await rig.service.session_get(session.session_id, local("alice"))
    assert current.env == {}


async def test_a_plain_value_exported_into_a_session_is_recorded_as_typed(rig: Rig) -> None:
    session = await rig.service.session_start(local("alice"), rig.target)
    result = await rig.service.exec(
        rig.request("export TRACE_ID=abc123", session_id=session.session_id)
    )
    assert result.audit_id is not None
    record = await rig.store.get_exec(result.audit_id)
    assert record.intent.command_text == "export TRACE_ID=abc123"


async def test_a_session_is_found_at_its_anchor_until_it_ends(rig: Rig) -> None:
    session = await rig.service.session_start(local("alice"), rig.target)
    anchor = "slack:C1:1700000000.000100"
    assert await rig.service.session_at(anchor) is None

    await rig.service.session_anchor(session.session_id, local("alice"), anchor)
    found = await rig.service.session_at(anchor)
    assert found is not None and found.session_id == session.session_id
    assert found.anchor == anchor

    await rig.service.session_end(session.session_id, local("alice"))
    assert await rig.service.session_at(anchor) is None
    assert (await rig.service.audit.verify()).ok


async def test_only_the_owner_may_anchor_a_session(rig: Rig) -> None:
    session = await rig.service.session_start(local("alice"), rig.target)
    with pytest.raises(SessionNotFound):
        await rig.service.session_anchor(session.session_id, local("bob"), "slack:C1:1.2")
    assert await rig.service.session_at("slack:C1:1.2") is None


async def test_cd_through_a_symlink_is_decided_on_the_directory_it_leads_to(rig: Rig) -> None:
    # /tmp/work is a real directory the principal may list; /tmp/up leads to / (not).
    (rig.state_tmp() / "work").mkdir()
    (rig.state_tmp() / "up").symlink_to("/")
    (rig.state_tmp() / "in").symlink_to("/tmp/work")
    session = await rig.service.session_start(local("alice"), rig.target)

    escaped = await rig.service.exec(rig.request("cd /tmp/up", session_id=session.session_id))

    assert escaped.effect is Effect.DENY
    assert escaped.error_code == "denied"
    current = await rig.service.session_get(session.session_id, local("alice"))
    assert current.cwd == ""
    assert escaped.audit_id is not None
    record = await rig.store.get_exec(escaped.audit_id)
    assert record.outcome is not None and record.outcome.error == "denied"
    # The same set-up lets a symlink into an allowed directory through.
    inside = await rig.service.exec(rig.request("cd /tmp/in", session_id=session.session_id))
    assert inside.effect is Effect.ALLOW and inside.exit_code == 0
    current = await rig.service.session_get(session.session_id, local("alice"))
    assert current.cwd == "/tmp/work"


async def test_a_session_directory_swapped_for_a_symlink_is_not_entered(rig: Rig) -> None:
    work = rig.state_tmp() / "work"
    work.mkdir()
    session = await rig.service.session_start(local("alice"), rig.target)
    await rig.service.exec(rig.request("cd /tmp/work", session_id=session.session_id))
    inside = await rig.service.exec(rig.request("pwd -P", session_id=session.session_id))
    assert inside.stdout.strip() == "/tmp/work"

    work.rmdir()
    work.symlink_to("/")
    swapped = await rig.service.exec(rig.request("pwd -P", session_id=session.session_id))

    assert swapped.exit_code != 0
    assert swapped.stdout.strip() == ""
