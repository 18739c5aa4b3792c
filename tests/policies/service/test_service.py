"""ExecService, the one chokepoint, on real parts: audit store, sandboxes, policy file."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from policies.errors import (
    AuditUnavailable,
    NotAnApprover,
    SelfApprovalRefused,
    UnknownProvider,
)
from policies.ports import ApprovalState, AuditFilter, ExecStatus
from policies.types import ApprovalId, Effect, Principal, PrincipalKind, Target
from tests.policies.service.conftest import Rig, local


async def test_allowed_command_runs_and_records_intent_and_outcome(rig: Rig) -> None:
    result = await rig.service.exec(rig.request("env"))
    assert result.effect is Effect.ALLOW
    assert result.rule == "diagnostics"
    assert result.exit_code == 0
    assert "APP_ENV=test" in result.stdout
    assert result.audit_id is not None
    record = await rig.store.get_exec(result.audit_id)
    assert record.intent.argv == ("env",)
    assert record.outcome is not None
    assert record.outcome.status is ExecStatus.COMPLETED
    assert record.outcome.exit_code == 0
    assert record.outcome.output_sha256
    assert "APP_ENV=test" in record.outcome.stdout_text


async def test_output_streams_scrubbed_text_to_the_surface(rig: Rig) -> None:
    chunks: list[tuple[str, str]] = []

    async def sink(stream: str, text: str) -> None:
        chunks.append((stream, text))

    result = await rig.service.exec(rig.request("printenv APP_ENV"), on_output=sink)
    assert result.exit_code == 0
    assert "".join(t for s, t in chunks if s == "stdout") == "test\n"


async def test_audit_store_failure_refuses_and_runs_nothing(rig: Rig, migrated_url: str) -> None:
    # Control: with the store up, the very same request runs and leaves its file.
    control = await rig.service.exec(rig.request(argv=("touch", "/tmp/control")))
    assert control.exit_code == 0
    assert (rig.state_tmp() / "control").exists()
    engine = create_async_engine(migrated_url)
    cascade = "" if migrated_url.startswith("sqlite") else " CASCADE"
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"DROP TABLE exec_sessions{cascade}"))
    await engine.dispose()
    with pytest.raises(AuditUnavailable):
        await rig.service.exec(rig.request(argv=("touch", "/tmp/ran")))
    assert not (rig.state_tmp() / "ran").exists()


async def test_shell_syntax_is_denied_recorded_and_never_run(rig: Rig) -> None:
    result = await rig.service.exec(rig.request("touch /tmp/ran; id"))
    assert result.effect is Effect.DENY
    assert result.rule == "command-syntax"
    assert result.error_code == "command_rejected"
    assert not (rig.state_tmp() / "ran").exists()
    # Control: the same touch without the shell syntax runs and leaves the file.
    control = await rig.service.exec(rig.request(argv=("touch", "/tmp/ran")))
    assert control.exit_code == 0
    assert (rig.state_tmp() / "ran").exists()
    assert result.audit_id is not None
    record = await rig.store.get_exec(result.audit_id)
    assert record.intent.status is ExecStatus.DENIED


async def test_unknown_principal_is_refused_and_recorded(rig: Rig) -> None:
    result = await rig.service.exec(rig.request("env", who="local:mallory"))
    assert result.effect is Effect.DENY
    assert result.error_code == "unknown_principal"
    assert result.audit_id is not None


async def test_unknown_provider_is_a_clear_error(rig: Rig) -> None:
    request = rig.request("env")
    bad = Target("demo-api", rig.target.instance, provider="nowhere")
    with pytest.raises(UnknownProvider):
        await rig.service.exec(type(request)(request.principal, request.surface, bad, None, "env"))


async def test_pipeline_runs_every_stage_as_validated(rig: Rig) -> None:
    result = await rig.service.exec(rig.request("env | grep APP_ENV | wc -l"))
    assert result.effect is Effect.ALLOW
    assert result.stdout.strip() == "1"
    assert result.argv[:2] == ("/bin/sh", "-c")


async def test_pipeline_with_a_stage_no_rule_allows_is_denied(rig: Rig) -> None:
    result = await rig.service.exec(rig.request("env | sort"))
    assert result.effect is Effect.DENY


async def test_rate_limit_denies_after_the_rules_rate(rig: Rig) -> None:
    first = await rig.service.exec(rig.request("uptime"))
    second = await rig.service.exec(rig.request("uptime"))
    third = await rig.service.exec(rig.request("uptime"))
    assert [first.effect, second.effect] == [Effect.ALLOW, Effect.ALLOW]
    assert third.effect is Effect.DENY
    assert third.error_code == "rate_limited"
    other = await rig.service.exec(rig.request("uptime", who="local:bob"))
    assert other.effect is Effect.ALLOW  # the rate is per principal


async def test_concurrent_requests_never_exceed_the_rules_rate(rig: Rig) -> None:
    results = await asyncio.gather(*(rig.service.exec(rig.request("uptime")) for _ in range(8)))

    assert sorted(r.effect.value for r in results) == ["allow"] * 2 + ["deny"] * 6
    assert {r.error_code for r in results if r.effect is Effect.DENY} == {"rate_limited"}


async def test_duplicate_request_key_runs_once(rig: Rig) -> None:
    first = await rig.service.exec(rig.request(argv=("touch", "/tmp/once"), request_key="k-1"))
    again = await rig.service.exec(rig.request(argv=("touch", "/tmp/once"), request_key="k-1"))
    assert first.exit_code == 0
    assert again.error_code == "duplicate"
    assert again.audit_id == first.audit_id
    records = await rig.service.audit_list(AuditFilter())
    assert len(records) == 1


async def test_approval_runs_once_a_second_person_approves(rig: Rig) -> None:
    asked = await rig.service.exec(rig.request("id", reason="check uid"))
    assert asked.effect is Effect.APPROVE
    assert asked.approval_id is not None
    with pytest.raises(SelfApprovalRefused):
        await rig.service.vote(asked.approval_id, local("alice"), approve=True)
    vote = await rig.service.vote(asked.approval_id, local("bob"), approve=True)
    assert vote.result is not None
    assert vote.result.exit_code == 0
    assert vote.approval.state is ApprovalState.EXECUTED
    record, result = await rig.service.approval_result(asked.approval_id, local("alice"))
    assert result is not None
    assert "uid=" in result.stdout
    assert record.approvals == ("local:bob",)


async def test_an_mcp_client_can_never_approve(rig: Rig) -> None:
    asked = await rig.service.exec(rig.request("id"))
    assert asked.approval_id is not None
    with pytest.raises(NotAnApprover):
        await rig.service.vote(
            asked.approval_id, Principal(PrincipalKind.MCP, "assistant"), approve=True
        )


async def test_a_non_approver_cannot_approve(rig: Rig) -> None:
    asked = await rig.service.exec(rig.request("id", who="local:bob"))
    assert asked.approval_id is not None
    with pytest.raises(NotAnApprover):
        await rig.service.vote(asked.approval_id, local("alice"), approve=True)


async def test_policy_change_after_the_request_stops_the_approved_run(rig: Rig) -> None:
    asked = await rig.service.exec(rig.request(argv=("id",)))
    assert asked.approval_id is not None
    text = rig.policy_path.read_text().replace("      - [id]\n", "      - [whoami]\n")
    rig.policy_path.write_text(text)
    assert rig.holder.reload()
    vote = await rig.service.vote(asked.approval_id, local("bob"), approve=True)
    assert vote.result is not None
    assert vote.result.effect is Effect.DENY
    assert vote.result.error_code == "policy_changed"
    assert vote.result.exit_code is None


async def test_a_bad_policy_file_keeps_the_last_good_policy(rig: Rig) -> None:
    rig.policy_path.write_text("version: 1\nrules: [oops\n")
    assert not rig.holder.reload()
    assert rig.holder.last_error is not None
    assert rig.holder.last_error.line is not None
    result = await rig.service.exec(rig.request("env"))
    assert result.effect is Effect.ALLOW


async def test_denied_approval_is_recorded_and_nothing_runs(rig: Rig) -> None:
    asked = await rig.service.exec(rig.request("id"))
    assert asked.approval_id is not None and asked.audit_id is not None
    vote = await rig.service.vote(ApprovalId(asked.approval_id), local("bob"), approve=False)
    assert vote.result is None
    assert vote.approval.state is ApprovalState.DENIED
    record = await rig.store.get_exec(asked.audit_id)
    assert record.outcome is not None
    assert record.outcome.status is ExecStatus.APPROVAL_DENIED


async def test_audit_search_shows_a_principal_only_their_own_records(rig: Rig) -> None:
    await rig.service.exec(rig.request("env"))
    await rig.service.exec(rig.request("env", who="local:bob"))
    mine = await rig.service.audit_search(local("alice"), AuditFilter())
    assert [r.intent.principal for r in mine] == ["local:alice"]
