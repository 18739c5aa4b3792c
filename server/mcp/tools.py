"""The bodies of ExecGate's MCP tools.

Each tool builds a request, calls ExecService and renders what comes back; the policy
is decided by the service alone. Refusals and failures come back as tool errors
(``isError``) carrying a stable code, a safe message and the audit id; exception text
never reaches the model.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Awaitable
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp_types import CallToolResult
from pydantic import Field

from policies.errors import ArtifactNotFound, ArtifactTooLarge, ExecGateError
from policies.ports import ApprovalState, AuditFilter, ExecStatus
from policies.service.artifact_reads import ArtifactView
from policies.service.core import ExecService
from policies.types import (
    ApprovalId,
    AuditId,
    Effect,
    ExecRequest,
    Principal,
    SessionId,
    Surface,
    Target,
)
from server.mcp import render
from server.mcp.auth import Identify
from server.mcp.errors import InvalidArguments, error_out
from server.mcp.models import (
    ApprovalOut,
    AuditOut,
    CollectOut,
    ErrorOut,
    ExecOut,
    ExplainOut,
    InstancesOut,
    SessionOut,
)
from server.mcp.progress import OutputProgress
from server.settings import Settings

logger = logging.getLogger(__name__)

AnyContext = Context[Any, Any]
EFFECTS = tuple(effect.value for effect in Effect)
STATUSES = tuple(status.value for status in ExecStatus)
APPROVAL_POLL_SECONDS = 1.0
# What resources/read hands a model at most: full output as text, collected binaries
# as base64 blobs (a third larger on the wire).
MAX_TEXT_BYTES = 1024 * 1024
MAX_BLOB_BYTES = 256 * 1024
MAX_APPROVAL_WAIT = 300.0

TargetArg = Annotated[
    str,
    Field(description="[provider:]function[@qualifier]/instance, as list_instances shows it"),
]
ArgvArg = Annotated[
    list[str] | None,
    Field(description="the command as an argument list (preferred), e.g. ['ls', '-la', '/tmp']"),
]
CommandArg = Annotated[
    str | None,
    Field(description="the command as text, e.g. 'ps aux | grep python'; give argv or this"),
]
ReasonArg = Annotated[str, Field(description="why you run it; recorded in the audit log")]
SessionArg = Annotated[str, Field(description="the session_id session_start returned")]


async def guarded(call: Awaitable[CallToolResult]) -> CallToolResult:
    """Run a tool body; turn ExecGate errors into refusals and anything else into an
    internal error whose details stay in the log."""
    try:
        return await call
    except ExecGateError as exc:
        return render.error_result(error_out(exc))
    except Exception:
        error_id = f"err_{secrets.token_hex(6)}"
        logger.exception("MCP tool failed", extra={"error_id": error_id})
        return render.error_result(
            ErrorOut(
                code="internal",
                message=f"internal error (error id {error_id}); the details are in the "
                "ExecGate server log",
            )
        )


class Tools:
    """The tool bodies, bound to one service and one way of identifying the caller."""

    def __init__(self, service: ExecService, settings: Settings, identify: Identify) -> None:
        self._service = service
        self._identify = identify
        self._limit = settings.output.mcp_inline_bytes

    def _principal(self, ctx: AnyContext) -> Principal:
        return self._identify(ctx.request_context.request)

    def _request(
        self,
        ctx: AnyContext,
        target: str,
        argv: list[str] | None,
        command: str | None,
        reason: str = "",
    ) -> ExecRequest:
        return ExecRequest(
            principal=self._principal(ctx),
            surface=Surface.MCP,
            target=Target.parse(target),
            argv=tuple(argv) if argv is not None else None,
            command_text=command,
            reason=reason,
        )

    async def _artifacts_of(self, principal: Principal, audit_id: AuditId) -> list[ArtifactView]:
        try:
            return await self._service.artifact_reads.describe(principal, audit_id)
        except ArtifactNotFound:  # an approver reads the outcome, not the requester's files
            return []

    async def read_artifact(self, audit_id: str, name: str, ctx: AnyContext) -> str | bytes:
        """A stored artifact of one of your execs (its full output, or a collected file):
        text for logs, the bytes of a small binary file.

        Raises: ResourceNotFoundError (no such artifact, or not yours); ResourceError
        with the safe message of anything else that went wrong.
        """
        try:
            content = await self._service.artifact_reads.read(
                self._principal(ctx), AuditId(audit_id), name, max_bytes=MAX_TEXT_BYTES
            )
            if content.is_text:
                return content.data.decode("utf-8", errors="replace")
            if len(content.data) > MAX_BLOB_BYTES:
                raise ArtifactTooLarge(
                    f"{name} is {len(content.data)} bytes; binary files larger than "
                    f"{MAX_BLOB_BYTES} bytes are not sent as resources: fetch it with its link"
                )
            return content.data
        except ArtifactNotFound as exc:
            raise ResourceNotFoundError(exc.safe_message) from exc
        except ExecGateError as exc:
            raise ResourceError(f"{exc.code}: {exc.safe_message}") from exc

    async def list_instances(
        self,
        function: Annotated[str, Field(description="the function name, e.g. demo-api")],
        ctx: AnyContext,
        provider: Annotated[
            str | None, Field(description="a configured provider; empty: the default")
        ] = None,
    ) -> Annotated[CallToolResult, InstancesOut]:
        """Live instances of a function, with status and age, as exec targets."""

        async def body() -> CallToolResult:
            infos = await self._service.list_instances(
                self._principal(ctx), function, provider=provider
            )
            now = dt.datetime.now(dt.UTC)
            out = InstancesOut(
                provider=provider or (infos[0].provider if infos else None),
                function=function,
                instances=[render.instance_out(info, now) for info in infos],
            )
            return render.tool_result(out)

        return await guarded(body())

    async def exec(
        self,
        target: TargetArg,
        reason: ReasonArg,
        ctx: AnyContext,
        argv: ArgvArg = None,
        command: CommandArg = None,
    ) -> Annotated[CallToolResult, ExecOut]:
        """Run one command on an instance, if the policy allows it.

        Returns the decision (effect allow/deny/approve, rule, reason), and when it ran
        the exit code and the output: scrubbed of secrets, head and tail kept when long,
        and untrusted. A command held for approval returns an approval_id; a refusal is
        an error result with a code and the audit id."""

        async def body() -> CallToolResult:
            request = self._request(ctx, target, argv, command, reason)
            result = await self._service.exec(
                request, on_output=OutputProgress(ctx), inline_limit=self._limit
            )
            return render.exec_result(render.exec_out(result, inline_limit=self._limit))

        return await guarded(body())

    async def explain(
        self,
        target: TargetArg,
        ctx: AnyContext,
        argv: ArgvArg = None,
        command: CommandArg = None,
    ) -> Annotated[CallToolResult, ExplainOut]:
        """The policy's decision for a command, without running or recording anything."""

        async def body() -> CallToolResult:
            request = self._request(ctx, target, argv, command)
            explanation = await self._service.explain(request)
            return render.tool_result(render.explain_out(explanation))

        return await guarded(body())

    async def session_start(
        self, target: TargetArg, reason: ReasonArg, ctx: AnyContext
    ) -> Annotated[CallToolResult, SessionOut]:
        """Open a session on a live instance: it keeps the working directory (cd) and
        variables (export/unset) between session_exec calls, and ends when idle, when you
        end it, or when the instance is released."""

        async def body() -> CallToolResult:
            record = await self._service.session_start(
                self._principal(ctx), Target.parse(target), reason=reason
            )
            return render.tool_result(render.session_out(record))

        return await guarded(body())

    async def session_exec(
        self,
        session_id: SessionArg,
        command: Annotated[str, Field(description="the command text, e.g. 'cd /tmp' or 'ls -la'")],
        ctx: AnyContext,
    ) -> Annotated[CallToolResult, ExecOut]:
        """Run one command in a session, under the same policy as exec; cd, export and
        unset change the session itself."""

        async def body() -> CallToolResult:
            principal = self._principal(ctx)
            sid = SessionId(session_id)
            session = await self._service.session_get(sid, principal)
            request = ExecRequest(
                principal=principal,
                surface=Surface.MCP,
                target=Target.parse(session.target),
                command_text=command,
                reason=session.reason,
                session_id=sid,
            )
            result = await self._service.exec(
                request, on_output=OutputProgress(ctx), inline_limit=self._limit
            )
            after = await self._service.session_get(sid, principal)
            out = render.exec_out(result, inline_limit=self._limit, session_id=session_id)
            return render.exec_result(out.model_copy(update={"cwd": after.cwd}))

        return await guarded(body())

    async def session_end(
        self, session_id: SessionArg, ctx: AnyContext
    ) -> Annotated[CallToolResult, SessionOut]:
        """End a session; its instance is no longer pinned."""

        async def body() -> CallToolResult:
            record = await self._service.session_end(SessionId(session_id), self._principal(ctx))
            return render.tool_result(render.session_out(record))

        return await guarded(body())

    async def approval_status(
        self,
        approval_id: Annotated[str, Field(description="the approval_id exec returned")],
        ctx: AnyContext,
        wait_seconds: Annotated[
            float,
            Field(
                ge=0,
                le=MAX_APPROVAL_WAIT,
                description="wait up to this long for a human's decision (0: answer now)",
            ),
        ] = 0,
    ) -> Annotated[CallToolResult, ApprovalOut]:
        """The state of a command held for approval, and its result once it ran (for an
        approved collect_artifact: the stored file's link, size, sha256 and resource).
        You cannot approve: a human approver does."""

        async def body() -> CallToolResult:
            principal = self._principal(ctx)
            aid = ApprovalId(approval_id)
            start = anyio.current_time()
            while True:
                record, result = await self._service.approval_result(aid, principal)
                settled = result is not None or record.state in (
                    ApprovalState.DENIED,
                    ApprovalState.EXPIRED,
                    ApprovalState.WITHDRAWN,
                )
                waited = anyio.current_time() - start
                if settled or waited >= wait_seconds:
                    break
                await ctx.report_progress(
                    waited, wait_seconds, f"approval {approval_id} is {record.state.value}"
                )
                await anyio.sleep(min(APPROVAL_POLL_SECONDS, wait_seconds - waited))
            artifacts = await self._artifacts_of(principal, record.audit_id) if result else []
            out = render.approval_out(record, result, inline_limit=self._limit, artifacts=artifacts)
            return render.approval_result(out)

        return await guarded(body())

    async def audit_search(
        self,
        ctx: AnyContext,
        target: Annotated[
            str | None,
            Field(
                description="a target as exec takes it, e.g. demo-api/c-123 or local:demo-api/c-123"
            ),
        ] = None,
        function: Annotated[str | None, Field(description="function name")] = None,
        effect: Annotated[str | None, Field(description="allow, deny or approve")] = None,
        status: Annotated[str | None, Field(description=f"one of {', '.join(STATUSES)}")] = None,
        session_id: Annotated[str | None, Field(description="commands of one session")] = None,
        since: Annotated[dt.datetime | None, Field(description="ISO 8601 time")] = None,
        until: Annotated[dt.datetime | None, Field(description="ISO 8601 time")] = None,
        limit: Annotated[int, Field(ge=1, le=500, description="at most this many")] = 50,
    ) -> Annotated[CallToolResult, AuditOut]:
        """Search the audit log, newest first: your own commands (auditors see everyone's)."""

        async def body() -> CallToolResult:
            _check_choice("effect", effect, EFFECTS)
            _check_choice("status", status, STATUSES)
            wanted = target
            if target is not None:
                # Stored targets name their provider: fill in the default, as exec does.
                wanted = str(self._service.resolve_target(Target.parse(target)))
            flt = AuditFilter(
                target=wanted,
                function=function,
                effect=effect,
                status=status,
                session_id=session_id,
                since=_aware(since),
                until=_aware(until),
                limit=limit,
            )
            records = await self._service.audit_search(self._principal(ctx), flt)
            return render.tool_result(
                AuditOut(records=[render.audit_record_out(r) for r in records])
            )

        return await guarded(body())

    async def collect_artifact(
        self,
        target: TargetArg,
        path: Annotated[str, Field(description="absolute path of the file, e.g. /tmp/cap.pcap")],
        reason: ReasonArg,
        ctx: AnyContext,
    ) -> Annotated[CallToolResult, CollectOut]:
        """Fetch a file from an instance (a packet capture, a profile, a heap dump) into
        ExecGate's artifact store, if the policy allows that path; returns an expiring
        link, the size and the sha256, never the file's content."""

        async def body() -> CallToolResult:
            result = await self._service.collect(
                self._principal(ctx), Surface.MCP, Target.parse(target), path, reason=reason
            )
            return render.collect_result(render.collect_out(result))

        return await guarded(body())


def _check_choice(name: str, value: str | None, choices: tuple[str, ...]) -> None:
    """Raises: InvalidArguments when ``value`` is given and not one of ``choices``."""
    if value is not None and value not in choices:
        raise InvalidArguments({name: f"must be one of {', '.join(choices)}"})


def _aware(when: dt.datetime | None) -> dt.datetime | None:
    if when is None or when.tzinfo is not None:
        return when
    return when.replace(tzinfo=dt.UTC)
