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
from collections.abc import Sequence

from mcp_types import CallToolResult, ContentBlock, ResourceLink, TextContent
from pydantic import BaseModel

from policies.ports import ApprovalRecord, ApprovalState, ExecRecord, ExecStatus, SessionRecord
from policies.service.artifact_reads import ArtifactView, artifact_name
from policies.service.output import truncate_head_tail
from policies.service.results import CollectResult, ExecResult, Explanation
from policies.types import Effect, InstanceInfo
from server.mcp.models import (
    UNTRUSTED_NOTICE,
    ApprovalOut,
    ArtifactOut,
    AuditRecordOut,
    CollectOut,
    Counts,
    ErrorOut,
    ExecOut,
    ExplainOut,
    InstanceOut,
    SessionOut,
    Streams,
)

TEXT_TYPE = "text/plain; charset=utf-8"
OUTPUT_NAMES = ("stdout.txt", "stderr.txt")

APPROVE_HINT = (
    "a human approver must approve it (an assistant cannot); call approval_status with "
    "approval_id {id} and wait_seconds up to 300 to follow it"
)
RESOURCE_SCHEME = "execgate"
RESOURCE_TEMPLATE = "execgate://artifacts/{audit_id}/{name}"
# What a recorded failure means when only its code was recorded (an approved command
# that failed after the requester's call returned).
RECORDED_FAILURES = {
    "not_found": "the file does not exist on the instance",
    "special_file": "the file is on a kernel file system (/proc, /sys, /dev)",
    "not_regular": "the path is not a regular file",
    "unreadable": "the file cannot be read on the instance",
    "too_large": "the file is larger than the rule lets you collect",
    "changed": "the file changed while it was being collected",
    "transfer_failed": "the file could not be transferred from the instance",
    "symlink_escape": "the path leads through a symlink to a place the rule does not allow",
    "timeout": "the command hit its timeout and was stopped",
    "instance_not_running": "the instance is not running any more",
    "provider_unavailable": "the provider could not be reached",
    "exec_error": "the instance reported an error running the command",
    "internal": "ExecGate failed internally; the details are in its server log",
}


def resource_uri(audit_id: str, name: str) -> str:
    """The MCP resource URI of artifact ``name`` stored by exec ``audit_id``."""
    return RESOURCE_TEMPLATE.format(audit_id=audit_id, name=name)


def _stream_resources(result: ExecResult) -> dict[str, str]:
    """Full-output artifacts (and a collected file) of a result as resource URIs."""
    if not result.audit_id:
        return {}
    names = {stream: f"{stream}.txt" for stream in ("stdout", "stderr") if stream in result.links}
    return {key: resource_uri(result.audit_id, name) for key, name in names.items()}


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
    message = result.error or RECORDED_FAILURES.get(result.error_code or "", result.reason)
    error = _error(result.error_code, message, result.audit_id)
    next_step = None
    if result.approval_id and result.status is ExecStatus.PENDING_APPROVAL:
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
        dropped_bytes=result.dropped_bytes,
        binary=Streams(stdout=result.stdout_binary, stderr=result.stderr_binary),
        duration_ms=result.duration_ms,
        links=dict(result.links),
        resources=_stream_resources(result),
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
    if out.dropped_bytes:
        lines.append(
            f"{out.dropped_bytes} bytes past the rule's max_output were not kept (not in any link)."
        )
    if out.resources:
        lines.append(
            "Full output as MCP resources (resources/read): "
            + ", ".join(f"{name} {uri}" for name, uri in out.resources.items())
            + "."
        )
    binary = [
        name
        for name, flag in (("stdout", out.binary.stdout), ("stderr", out.binary.stderr))
        if flag
    ]
    if binary:
        lines.append(
            f"Binary output on {' and '.join(binary)}: bytes that are not text were "
            "replaced or dropped in the text below."
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
    out: BaseModel,
    text: str | None = None,
    *,
    is_error: bool = False,
    links: Sequence[ResourceLink] = (),
) -> CallToolResult:
    """A tool result carrying ``out`` as structured content, and ``links`` to resources."""
    data = out.model_dump(mode="json")
    body = text if text is not None else json.dumps(data, indent=2)
    content: list[ContentBlock] = [TextContent(type="text", text=body), *links]
    return CallToolResult(content=content, structured_content=data, is_error=is_error)


def resource_link(uri: str, name: str, *, mime_type: str, size: int | None = None) -> ResourceLink:
    return ResourceLink(type="resource_link", uri=uri, name=name, mime_type=mime_type, size=size)


def _output_links(out: ExecOut) -> list[ResourceLink]:
    return [
        resource_link(uri, f"{stream}.txt", mime_type=TEXT_TYPE)
        for stream, uri in out.resources.items()
        if stream in ("stdout", "stderr")
    ]


def exec_result(out: ExecOut) -> CallToolResult:
    """A policy denial is a refusal (an error result); anything else is a result."""
    return tool_result(
        out,
        exec_text(out),
        is_error=out.effect == Effect.DENY.value,
        links=_output_links(out),
    )


def error_result(error: ErrorOut) -> CallToolResult:
    """A refusal or failure: only the error, which every output schema allows."""
    text = f"Error ({error.code}): {error.message}"
    if error.fields:
        text += "\n" + "\n".join(f"- {name}: {problem}" for name, problem in error.fields.items())
    if error.next_step:
        text += f"\nNext: {error.next_step}"
    if error.audit_id:
        text += f"\nAudit id: {error.audit_id}"
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content={"error": error.model_dump(mode="json")},
        is_error=True,
    )


def collect_out(result: CollectResult) -> CollectOut:
    """The structured view of a collect; the file itself stays behind the link (and a
    resource URI)."""
    fields = result.to_dict()
    fields["error"] = _error(result.error_code, result.error or result.reason, result.audit_id)
    if result.approval_id and result.status is ExecStatus.PENDING_APPROVAL:
        fields["next_step"] = APPROVE_HINT.format(id=result.approval_id)
    if result.artifact is not None and result.audit_id:
        name = artifact_name(result.artifact.key)
        fields["artifact"] |= {
            "name": name,
            "link": result.link,
            "resource_uri": resource_uri(result.audit_id, name),
        }
    return CollectOut.model_validate(fields)


def _label(name: str) -> str:
    """``stdout``/``stderr`` for full output, ``artifact`` for a collected file."""
    return name.removesuffix(".txt") if name in OUTPUT_NAMES else "artifact"


def artifact_out(view: ArtifactView) -> ArtifactOut:
    info = view.info
    return ArtifactOut(
        key=info.key,
        size=info.size,
        sha256=info.sha256,
        content_type=info.content_type,
        name=view.name,
        link=view.link,
        resource_uri=resource_uri(view.audit_id, view.name),
    )


def _artifact_link(artifact: ArtifactOut | None) -> list[ResourceLink]:
    if artifact is None or artifact.resource_uri is None:
        return []
    return [
        resource_link(
            artifact.resource_uri,
            artifact.name or "artifact",
            mime_type=artifact.content_type,
            size=artifact.size,
        )
    ]


def _artifact_line(artifact: ArtifactOut, path: str) -> str:
    return (
        f"Stored {path} ({artifact.size} bytes, {artifact.content_type}, sha256 "
        f"{artifact.sha256}); link: {artifact.link or '-'}; MCP resource: "
        f"{artifact.resource_uri}"
    )


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
            _artifact_line(out.artifact, out.path) + f" (link expires {out.link_expires_at})"
        )
    if out.audit_id:
        lines.append(f"Audit id: {out.audit_id}")
    if out.next_step:
        lines.append(f"Next: {out.next_step}")
    refused = out.effect == Effect.DENY.value or (out.error is not None and out.link is None)
    return tool_result(out, "\n".join(lines), is_error=refused, links=_artifact_link(out.artifact))


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
        isolation=info.isolation,
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
    record: ApprovalRecord,
    result: ExecResult | None,
    *,
    inline_limit: int,
    artifacts: Sequence[ArtifactView] = (),
) -> ApprovalOut:
    """An approval and its outcome; ``artifacts`` are what its exec stored: the full
    output of a command, or the file of a collect (``artifact``)."""
    next_step = None
    if record.state is ApprovalState.PENDING:
        next_step = APPROVE_HINT.format(id=record.approval_id)
    files = [artifact_out(view) for view in artifacts if view.name not in OUTPUT_NAMES]
    executed = exec_out(result, inline_limit=inline_limit) if result is not None else None
    if executed is not None and artifacts:
        # The recorded result carries no links: give fresh ones, and resource URIs.
        executed = executed.model_copy(
            update={
                "links": {_label(v.name): v.link for v in artifacts if v.link},
                "resources": {_label(v.name): resource_uri(v.audit_id, v.name) for v in artifacts},
            }
        )
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
        result=executed,
        artifact=files[0] if files else None,
        next_step=next_step,
    )


def approval_text(out: ApprovalOut) -> str:
    lines = [
        f"Approval {out.approval_id}: {out.state} ({len(out.approvals)} of {out.threshold} "
        f"approvals) for {' '.join(out.argv)} on {out.target}."
    ]
    if out.next_step:
        lines.append(f"Next: {out.next_step}")
    if out.artifact is not None:
        path = out.argv[-1] if out.argv else out.artifact.name or "the file"
        lines.append(_artifact_line(out.artifact, path) + ".")
    if out.result is not None:
        lines.append(exec_text(out.result))
    return "\n".join(lines)


def approval_result(out: ApprovalOut) -> CallToolResult:
    links = _artifact_link(out.artifact)
    if out.result is not None:
        links += _output_links(out.result)
    return tool_result(out, approval_text(out), links=links)


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
