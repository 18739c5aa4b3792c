"""The one path every request takes: decide -> record intent -> run -> record outcome.

Each part of ExecService (plain execs, sessions, approvals, collect) decides on one
policy snapshot, records the intent through ``record`` (nothing runs without it: the
store failing raises AuditUnavailable before a provider is touched), runs inside
``failure_path`` and records the outcome through ``finish``.

``failure_path`` is where a request that does not end normally is still recorded: a
provider error ends ``failed`` with its code; a cancellation (the MCP client went away,
a Slack worker stopped, Ctrl-C on the CLI) ends ``cancelled`` with the output that had
arrived, written even while the task is being cancelled, and then the cancellation goes
on. The provider's exec is cancelled with the task.

Each step is a span of the request's trace (``policies.tracing``): the intent write, the
provider's run and the outcome write.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, replace

import anyio
from anyio.lowlevel import checkpoint

from policies.errors import (
    AuditUnavailable,
    ErrorCode,
    ExecGateError,
    UnknownProvider,
)
from policies.logctx import audit_id_var
from policies.ports import (
    ExecIntent,
    ExecLog,
    ExecOutcome,
    ExecStatus,
    InstanceProvider,
    RateCheck,
)
from policies.rules.holder import PolicyHolder
from policies.rules.model import Policy
from policies.service.intents import STATUS_OF
from policies.service.output import CollectedOutput, OutputCollector
from policies.service.outputs import Outputs, discard_spill
from policies.service.pipeline_output import FEED_CHUNK, OutputPlan, plan_output
from policies.service.results import DEFAULT_INLINE_LIMIT, ExecResult, TextSink
from policies.tracing import (
    AUDIT_INTENT,
    AUDIT_OUTCOME,
    DECIDE,
    NO_TRACING,
    PROVIDER_EXEC,
    Step,
    Tracing,
    command_name,
)
from policies.types import AuditId, Decision, Effect, Principal, RunResult, Stream, Target

logger = logging.getLogger(__name__)

PrincipalResolver = Callable[[Principal], Awaitable[Principal]]
IntentBuilder = Callable[[Decision], ExecIntent]
# A last look at a finished run before its outcome is recorded: a DENY decision refuses
# what the run found (e.g. the directory a session's cd leads to).
RunCheck = Callable[[RunResult, CollectedOutput], Decision | None]
# The output that arrived before a run was cancelled (already scrubbed).
Partial = Callable[[], CollectedOutput | None]


@dataclass(frozen=True, slots=True)
class Recorded:
    """An intent as written: its audit id, the decision recorded (a rate-limit refusal
    replaces the engine's) and the error code that goes with it."""

    audit_id: AuditId
    decision: Decision
    error_code: str | None

    @property
    def status(self) -> ExecStatus:
        return STATUS_OF[self.decision.effect]

    def result(
        self, target: Target, argv: tuple[str, ...], *, status: ExecStatus | None = None
    ) -> ExecResult:
        """The result of this request so far (``status``: the recorded one by default)."""
        decision = self.decision
        return ExecResult(
            effect=decision.effect,
            rule=decision.rule_id,
            reason=decision.reason,
            audit_id=self.audit_id,
            status=status or self.status,
            target=str(target),
            argv=argv,
        )


def _no_partial() -> CollectedOutput | None:
    return None


def _nothing() -> None:
    return None


class Pipeline:
    """Decide, record, run, record: what every part of the service shares."""

    def __init__(
        self,
        *,
        policies: PolicyHolder,
        execs: ExecLog,
        providers: Mapping[str, InstanceProvider],
        default_provider: str,
        outputs: Outputs,
        resolve_principal: PrincipalResolver,
        clock: Callable[[], dt.datetime],
        tracing: Tracing = NO_TRACING,
    ) -> None:
        self._policies = policies
        self.tracing = tracing
        self._execs = execs
        self._providers = dict(providers)
        self._default_provider = default_provider
        self.outputs = outputs
        self._resolve = resolve_principal
        self.clock = clock

    # ------------------------------------------------------------------ inputs

    def policy(self) -> Policy:
        """The policy in force now: take it once per request and decide only on it."""
        return self._policies.current()

    @property
    def provider_names(self) -> list[str]:
        return sorted(self._providers)

    def provider(self, name: str | None) -> InstanceProvider:
        """Raises: UnknownProvider."""
        chosen = name or self._default_provider
        if chosen not in self._providers:
            raise UnknownProvider(
                f"no provider named {chosen!r} is configured "
                f"(configured: {', '.join(self.provider_names)})"
            )
        return self._providers[chosen]

    def resolve_target(self, target: Target) -> Target:
        """Fill in the default provider. Raises: UnknownProvider."""
        resolved = target if target.provider else target.with_provider(self._default_provider)
        self.provider(resolved.provider)
        return resolved

    async def principal(self, principal: Principal) -> Principal:
        """The principal as the surface's resolver completes it (e.g. Slack groups)."""
        return await self._resolve(principal)

    # ------------------------------------------------------------------ intent

    async def record(
        self, kind: str, decision: Decision, build: IntentBuilder, error_code: str | None
    ) -> Recorded:
        """Write the intent of ``decision`` (built by ``build``), or a rate-limit
        refusal when the principal used up the deciding rule's rate.

        Raises: AuditUnavailable (nothing may run).
        """
        with self.tracing.step(AUDIT_INTENT) as step:
            recorded = await self._record(decision, build, error_code)
            step.set(exec_id=recorded.audit_id)
            step.decided(recorded.decision)
        logger.info(
            "%s decided",
            kind,
            extra={
                "audit_id": recorded.audit_id,
                "effect": recorded.decision.effect.value,
                "rule": recorded.decision.rule_id,
            },
        )
        return recorded

    async def _record(
        self, decision: Decision, build: IntentBuilder, error_code: str | None
    ) -> Recorded:
        rate = decision.rate
        if decision.effect is Effect.DENY or rate is None or not decision.rule_id:
            return Recorded(await self._execs.record_intent(build(decision)), decision, error_code)
        refusal = Decision(
            Effect.DENY,
            decision.rule_id,
            f"rate limit of rule {decision.rule_id} reached ({rate.count} per "
            f"{rate.per_seconds:g}s); try again later",
        )
        check = RateCheck(
            since=self.clock() - dt.timedelta(seconds=rate.per_seconds),
            limit=rate.count,
            refusal=build(refusal),
        )
        audit_id, limited = await self._execs.record_rated_intent(build(decision), check)
        if limited:
            return Recorded(audit_id, refusal, ErrorCode.RATE_LIMITED)
        return Recorded(audit_id, decision, error_code)

    @staticmethod
    @contextmanager
    def scope(audit_id: AuditId) -> Iterator[None]:
        """Log lines inside carry ``audit_id``."""
        token = audit_id_var.set(audit_id)
        try:
            yield
        finally:
            audit_id_var.reset(token)

    # ------------------------------------------------------------------ outcome

    async def finish(self, audit_id: AuditId, outcome: ExecOutcome) -> None:
        """Record ``outcome``; completes even while the calling task is being cancelled."""
        await _shielded(self._finish(audit_id, outcome))

    async def _finish(self, audit_id: AuditId, outcome: ExecOutcome) -> None:
        try:
            with self.tracing.step(
                AUDIT_OUTCOME,
                exec_id=audit_id,
                status=outcome.status.value,
                exit_code=outcome.exit_code,
            ):
                # Committed before the caller hears the result, so that any replica
                # reading the log afterwards sees it, and a replica stopping after it
                # answered leaves no row running.
                await self._execs.record_outcome(audit_id, outcome)
        except AuditUnavailable:
            # The command already ran; the intent row stands and will read as
            # interrupted. Say so loudly rather than hide the result.
            logger.error("could not record the outcome", extra={"audit_id": audit_id})

    @asynccontextmanager
    async def failure_path(
        self,
        audit_id: AuditId,
        *,
        approvers: tuple[str, ...] = (),
        partial: Partial = _no_partial,
        cleanup: Callable[[], None] = _nothing,
    ) -> AsyncIterator[dt.datetime]:
        """Run the body (given its start time); record how it ended when it did not end
        normally, then let the error or cancellation go on."""
        started = self.clock()

        def ended(status: ExecStatus, error: str, out: CollectedOutput | None) -> ExecOutcome:
            outcome = ExecOutcome(
                status=status,
                started_at=started,
                ended_at=self.clock(),
                approvers=approvers,
                error=error,
            )
            if out is None:
                return outcome
            return replace(
                outcome,
                stdout_bytes=out.stdout_bytes,
                stderr_bytes=out.stderr_bytes,
                output_sha256=out.output_sha256,
                stdout_text=out.stdout,
                stderr_text=out.stderr,
            )

        try:
            yield started
        except (asyncio.CancelledError, KeyboardInterrupt):
            out = partial()
            cleanup()
            await self.finish(audit_id, ended(ExecStatus.CANCELLED, ErrorCode.CANCELLED, out))
            raise
        except ExecGateError as exc:
            cleanup()
            await self.finish(audit_id, ended(ExecStatus.FAILED, exc.code, None))
            exc.audit_id = audit_id
            exc.fields["audit_id"] = audit_id
            raise
        except Exception:
            logger.exception("the run failed", extra={"audit_id": audit_id})
            cleanup()
            await self.finish(audit_id, ended(ExecStatus.FAILED, ErrorCode.INTERNAL, None))
            raise

    # ------------------------------------------------------------------ run

    async def run(
        self,
        base: ExecResult,
        target: Target,
        argv: tuple[str, ...],
        decision: Decision,
        *,
        approvers: tuple[str, ...] = (),
        on_output: TextSink | None = None,
        inline_limit: int = DEFAULT_INLINE_LIMIT,
        check: RunCheck | None = None,
        plan: OutputPlan | None = None,
    ) -> ExecResult:
        """Run the recorded request ``base`` and record its outcome.

        A pipeline's later stages (filters) and a ``printenv`` value are handled by
        ``plan`` inside ExecGate, over the scrubbed output (``pipeline_output``); the
        instance runs only the first stage.

        Raises: InstanceError (recorded as failed), CancelledError (recorded as
        cancelled).
        """
        audit_id = base.audit_id
        assert audit_id is not None
        provider = self.provider(target.provider)
        spill = self.outputs.spill_dir(audit_id)
        if plan is None:
            argv, plan = plan_output(argv)
        collector = plan.collector(
            OutputCollector(
                inline_limit=inline_limit,
                max_bytes=decision.limits.max_output_bytes,
                spill_dir=spill,
            ),
            max_bytes=decision.limits.max_output_bytes,
            cpu_budget=decision.limits.timeout,
        )
        filters_stopped = anyio.CancelScope()

        async def forward(stream: Stream, data: bytes) -> None:
            # In bounded chunks, yielding between them: filter work never holds the
            # event loop long, and filters past their CPU budget end the exec.
            for start in range(0, max(len(data), 1), FEED_CHUNK):
                if start:
                    await checkpoint()
                text = collector.feed(stream, data[start : start + FEED_CHUNK])
                if collector.over_budget:
                    filters_stopped.cancel()
                if on_output is not None and text:
                    await on_output(stream, text)

        collected: list[CollectedOutput] = []

        def partial() -> CollectedOutput:
            if not collected:
                for stream in ("stdout", "stderr"):
                    collector.end(stream)
                collected.append(collector.finish())
            return collected[0]

        t0 = time.perf_counter()
        async with self.failure_path(
            audit_id, approvers=approvers, partial=partial, cleanup=lambda: discard_spill(spill)
        ) as started:
            run = RunResult(exit_code=None, timed_out=True)
            with self.provider_step(target, argv, decision) as step:
                with filters_stopped:
                    run = await provider.exec(
                        target, argv, limits=decision.limits, on_output=forward
                    )
                step.set(exit_code=run.exit_code, timed_out=run.timed_out or run.idle_timed_out)
            if collector.over_budget:
                run = RunResult(exit_code=None, timed_out=True)
            run = replace(run, exit_code=collector.exit_code(run.exit_code))
            for stream in ("stdout", "stderr"):
                # A last line without a newline is only released at the end of its stream.
                tail = collector.end(stream)
                if on_output is not None and tail:
                    await on_output(stream, tail)
            out = collector.finish()
            collected.append(out)
            stored = await self.outputs.store(out, str(target), audit_id)
        duration_ms = int((time.perf_counter() - t0) * 1000)
        status, error_code, error = _status_of(run, decision)
        if collector.over_budget:
            error = (
                f"the pipeline's filters used their CPU budget of {decision.limits.timeout:g}s "
                "and were stopped"
            )
        refused = check(run, out) if check is not None else None
        if refused is not None:
            status, error_code, error = ExecStatus.DENIED, ErrorCode.DENIED, refused.reason
            base = replace(base, effect=Effect.DENY, rule=refused.rule_id, reason=refused.reason)
        await self.finish(
            audit_id,
            ExecOutcome(
                status=status,
                exit_code=run.exit_code,
                started_at=started,
                ended_at=self.clock(),
                stdout_bytes=out.stdout_bytes,
                stderr_bytes=out.stderr_bytes,
                output_sha256=out.output_sha256,
                artifact_keys=tuple(a.key for a in stored.artifacts),
                approvers=approvers,
                error=error_code,
                stdout_text=out.stdout,
                stderr_text=out.stderr,
                artifacts=stored.artifacts,
            ),
        )
        return replace(
            base,
            status=status,
            exit_code=run.exit_code,
            stdout=out.stdout,
            stderr=out.stderr,
            truncated=out.truncated,
            stdout_omitted=out.stdout_omitted,
            stderr_omitted=out.stderr_omitted,
            stdout_bytes=out.stdout_bytes,
            stderr_bytes=out.stderr_bytes,
            stdout_binary=out.stdout_binary,
            stderr_binary=out.stderr_binary,
            dropped_bytes=out.dropped_bytes,
            duration_ms=duration_ms,
            approvers=approvers,
            links=stored.links,
            error_code=error_code,
            error=error,
        )

    def deciding(self) -> AbstractContextManager[Step]:
        """The span of a decision (the step is told it with ``decided``)."""
        return self.tracing.step(DECIDE)

    def provider_step(
        self, target: Target, argv: tuple[str, ...], decision: Decision
    ) -> AbstractContextManager[Step]:
        """The span of the provider's work on the instance (the command's name only)."""
        return self.tracing.step(
            PROVIDER_EXEC,
            provider=target.provider,
            target=str(target),
            command=command_name(argv, decision),
        )

    async def refuse(
        self, base: ExecResult, approvers: tuple[str, ...], code: ErrorCode, message: str
    ) -> ExecResult:
        """Record that a recorded request will not run after all (nothing ran)."""
        assert base.audit_id is not None
        await self.finish(
            base.audit_id, ExecOutcome(status=ExecStatus.DENIED, approvers=approvers, error=code)
        )
        return replace(
            base, effect=Effect.DENY, status=ExecStatus.DENIED, error_code=code, error=message
        )


def _status_of(run: RunResult, decision: Decision) -> tuple[ExecStatus, str | None, str | None]:
    """The outcome status of a finished run, with its error code and safe message."""
    if run.timed_out or run.idle_timed_out:
        which = "idle timeout" if run.idle_timed_out else "timeout"
        limit = decision.limits.idle_timeout if run.idle_timed_out else decision.limits.timeout
        return (
            ExecStatus.TIMEOUT,
            ErrorCode.TIMEOUT,
            f"the command hit its {which} of {limit:g}s and was stopped",
        )
    status = ExecStatus.FAILED if run.exit_code is None else ExecStatus.COMPLETED
    if run.error:
        return status, ErrorCode.EXEC_ERROR, run.error
    return status, None, None


async def _shielded(work: Awaitable[None]) -> None:
    """Await ``work`` to its end even when the calling task is cancelled meanwhile (by
    asyncio or by an anyio cancel scope); a cancellation that arrives goes on after."""
    task = asyncio.ensure_future(work)
    cancelled = False
    with anyio.CancelScope(shield=True):
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                cancelled = True
    task.result()
    if cancelled:
        raise asyncio.CancelledError
