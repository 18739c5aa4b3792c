"""ExecGate results as MCP tool results: structured content plus a text a model reads.

Instance output is untrusted data. It travels in its own structured fields
(``stdout``/``stderr``, with ``output_is_untrusted``), and in the text content only
inside a fence whose delimiters carry a random nonce, so that output cannot close the
fence early and pass itself off as ExecGate speaking.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets

from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel

from policies.ports import ApprovalRecord, ApprovalState, ExecRecord, SessionRecord
from policies.service.output import truncate_head_tail
from policies.service.results import CollectResult, ExecResult, Explanation
from policies.types import Effect, InstanceInfo
from server.mcp.models import (
    UNTRUSTED_NOTICE,
    ApprovalOut,
    AuditRecordOut,
    CollectOut,
    Counts,
    ErrorOut,
    ExecOut,
    ExplainOut,
    InstanceOut,
    SessionOut,
)

APPROVE_HINT = (
    "a human approver must approve it, e.g. `execgate approvals approve {id}`; call "
    "approval_status with approval_id {id} to follow it (an assistant cannot approve)"
)


def _iso(when: dt.datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def _bounded(text: str, limit: int, omitted: int) -> tuple[str, int, bool]:
    """Keep ``text`` within the MCP inline limit (it may come from another surface's
    larger limit); return the text, the total omitted count and whether anything was."""
    cut = truncate_head_tail(text, limit)
    total = omitted + cut.omitted_chars
    return cut.text, total, total > 0


def exec_out(result: ExecResult, *, inline_limit: int, session_id: str | None = None) -> ExecOut:
    """The structured view of a service result."""
    stdout, out_omitted, out_cut = _bounded(result.stdout, inline_limit, result.stdout_omitted)
    stderr, err_omitted, err_cut = _bounded(result.stderr, inline_limit, result.stderr_omitted)
    error = _error(result.error_code, result.error or result.reason, result.audit_id)
    next_step = None
    if result.effect is Effect.APPROVE and result.approval_id and result.exit_code is None:
        next_step = APPROVE_HINT.format(id=result.approval_id)
    return ExecOut(
        error=error,
        effect=result.effect.value,
        status=result.status.value,
        rule=result.rule,
        reason=result.reason,
        target=result.target,
        argv=list(result.argv),
        exit_code=result.exit_code,
        stdout=stdout,
        stderr=stderr,
        truncated=result.truncated or out_cut or err_cut,
        omitted_chars=Counts(stdout=out_omitted, stderr=err_omitted),
        output_bytes=Counts(stdout=result.stdout_bytes, stderr=result.stderr_bytes),
        duration_ms=result.duration_ms,
        links=dict(result.links),
        audit_id=result.audit_id,
        approval_id=result.approval_id,
        approval_expires_at=result.approval_expires_at,
        session_id=session_id,
        next_step=next_step,
    )


def fenced(stream: str, text: str, nonce: str) -> str:
    """``text`` inside delimiters a model can tell apart from everything else."""
    body = text if text.endswith("\n") or not text else text + "\n"
    return (
        f"<<<UNTRUSTED-INSTANCE-OUTPUT {nonce} {stream}\n{body}UNTRUSTED-INSTANCE-OUTPUT {nonce}>>>"
    )


def exec_text(out: ExecOut) -> str:
    """What a model reads: the decision in ExecGate's words, then the fenced output."""
    head = f"ExecGate: effect {out.effect}, rule {out.rule or '-'}, status {out.status}"
    if out.exit_code is not None:
        head += f", exit code {out.exit_code}"
    lines = [head + ".", f"Reason: {out.reason}"]
    if out.error is not None:
        lines.append(f"Error ({out.error.code}): {out.error.message}")
    if out.audit_id:
        lines.append(f"Audit id: {out.audit_id}")
    if out.next_step:
        lines.append(f"Next: {out.next_step}")
    if out.truncated:
        lines.append(
            f"Output truncated: {out.omitted_chars.stdout} stdout and "
            f"{out.omitted_chars.stderr} stderr characters omitted"
            + (
                "; full output: " + ", ".join(f"{name} {url}" for name, url in out.links.items())
                if out.links
                else ""
            )
            + "."
        )
    if out.stdout or out.stderr:
        nonce = secrets.token_hex(8)
        lines.append(f"{UNTRUSTED_NOTICE} It is fenced between markers carrying {nonce}.")
        if out.stdout:
            lines.append(fenced("stdout", out.stdout, nonce))
        if out.stderr:
            lines.append(fenced("stderr", out.stderr, nonce))
    return "\n".join(lines)


def tool_result(
    out: BaseModel, text: str | None = None, *, is_error: bool = False
) -> CallToolResult:
    """A tool result carrying ``out`` as structured content."""
    data = out.model_dump(mode="json")
    body = text if text is not None else json.dumps(data, indent=2)
    return CallToolResult(
        content=[TextContent(type="text", text=body)],
        structured_content=data,
        is_error=is_error,
    )


def exec_result(out: ExecOut) -> CallToolResult:
    """A policy denial is a refusal (an error result); anything else is a result."""
    return tool_result(out, exec_text(out), is_error=out.effect == Effect.DENY.value)


def error_result(error: ErrorOut) -> CallToolResult:
    """A refusal or failure: only the error, which every output schema allows."""
    text = f"Error ({error.code}): {error.message}"
    if error.audit_id:
        text += f"\nAudit id: {error.audit_id}"
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content={"error": error.model_dump(mode="json")},
        is_error=True,
    )


def collect_out(result: CollectResult) -> CollectOut:
    """The structured view of a collect; the file itself stays behind the link."""
    fields = result.to_dict()
    fields["error"] = _error(result.error_code, result.error or result.reason, result.audit_id)
    if result.effect is Effect.APPROVE and result.approval_id and not result.ok:
        fields["next_step"] = APPROVE_HINT.format(id=result.approval_id)
    return CollectOut.model_validate(fields)


def collect_result(out: CollectOut) -> CallToolResult:
    """A policy denial or a refused path is a refusal; anything else is a result."""
    lines = [
        f"ExecGate: effect {out.effect}, rule {out.rule or '-'}, status {out.status}.",
        f"Reason: {out.reason}",
    ]
    if out.error is not None:
        lines.append(f"Error ({out.error.code}): {out.error.message}")
    if out.artifact is not None and out.link:
        lines.append(
            f"Stored {out.path} ({out.artifact.size} bytes, sha256 {out.artifact.sha256}); "
            f"link (expires {out.link_expires_at}): {out.link}"
        )
    if out.audit_id:
        lines.append(f"Audit id: {out.audit_id}")
    if out.next_step:
        lines.append(f"Next: {out.next_step}")
    refused = out.effect == Effect.DENY.value or (out.error is not None and out.link is None)
    return tool_result(out, "\n".join(lines), is_error=refused)


def _error(code: str | None, message: str, audit_id: str | None) -> ErrorOut | None:
    if not code:
        return None
    return ErrorOut(code=code, message=message, audit_id=audit_id)


def instance_out(info: InstanceInfo, now: dt.datetime) -> InstanceOut:
    created = (
        dt.datetime.fromtimestamp(info.created_ms / 1000, dt.UTC)
        if info.created_ms is not None
        else None
    )
    qualifier = f"@{info.qualifier}" if info.qualifier and info.qualifier != "LATEST" else ""
    return InstanceOut(
        target=f"{info.provider}:{info.function}{qualifier}/{info.instance_id}",
        instance_id=info.instance_id,
        status=info.status,
        qualifier=info.qualifier,
        version_id=info.version_id,
        created_at=_iso(created),
        age_seconds=max(int((now - created).total_seconds()), 0) if created else None,
        sandboxed=info.sandboxed,
    )


def session_out(record: SessionRecord) -> SessionOut:
    return SessionOut(
        session_id=record.session_id,
        target=record.target,
        cwd=record.cwd,
        env_names=sorted(record.env),
        created_at=_iso(record.created_at),
        last_used_at=_iso(record.last_used_at),
        ended=record.ended_at is not None,
        end_reason=record.end_reason,
    )


def approval_out(
    record: ApprovalRecord, result: ExecResult | None, *, inline_limit: int
) -> ApprovalOut:
    next_step = None
    if record.state is ApprovalState.PENDING:
        next_step = APPROVE_HINT.format(id=record.approval_id)
    return ApprovalOut(
        approval_id=record.approval_id,
        state=record.state.value,
        requester=record.requester,
        target=record.target,
        argv=list(record.argv),
        reason=record.reason,
        rule=record.rule_id,
        approvals=list(record.approvals),
        threshold=record.threshold,
        denied_by=record.denied_by,
        expires_at=_iso(record.expires_at),
        result=exec_out(result, inline_limit=inline_limit) if result is not None else None,
        next_step=next_step,
    )


def approval_text(out: ApprovalOut) -> str:
    lines = [
        f"Approval {out.approval_id}: {out.state} ({len(out.approvals)} of {out.threshold} "
        f"approvals) for {' '.join(out.argv)} on {out.target}."
    ]
    if out.next_step:
        lines.append(f"Next: {out.next_step}")
    if out.result is not None:
        lines.append(exec_text(out.result))
    return "\n".join(lines)


def explain_out(explanation: Explanation) -> ExplainOut:
    data = explanation.to_dict()
    return ExplainOut(
        effect=data["effect"],
        rule=data["rule"],
        reason=data["reason"],
        target=data["target"],
        stages=data["stages"],
        code=data["code"],
    )


def audit_record_out(record: ExecRecord) -> AuditRecordOut:
    intent, outcome = record.intent, record.outcome
    return AuditRecordOut(
        audit_id=record.audit_id,
        created_at=record.created_at.isoformat(),
        principal=intent.principal,
        surface=intent.surface,
        target=intent.target,
        argv=list(intent.argv),
        command_text=intent.command_text,
        reason=intent.reason,
        effect=intent.effect,
        rule=intent.rule_id,
        decision_reason=intent.decision_reason,
        status=(outcome.status if outcome else intent.status).value,
        exit_code=outcome.exit_code if outcome else None,
        session_id=intent.session_id,
        approvers=list(outcome.approvers) if outcome else [],
        output_bytes=Counts(
            stdout=outcome.stdout_bytes if outcome else 0,
            stderr=outcome.stderr_bytes if outcome else 0,
        ),
        error=outcome.error if outcome else None,
    )
