"""ExecService's conversational sessions: start, run in, end.

A session pins one live instance for one principal and keeps a working directory and an
env overlay between commands. Every command in it goes through the same decide -> audit
-> run path as any exec, recorded under the session id. A session ends on idle timeout,
when its owner ends it, or when its instance is released.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from policies.errors import (
    AccessDenied,
    CommandRejected,
    InstanceNotRunning,
    SessionEnded,
    SessionNotFound,
    UnknownPrincipal,
)
from policies.ports import AuditStore, ExecOutcome, ExecStatus, InstanceProvider, SessionRecord
from policies.rules.engine import may_act_on
from policies.service.pipeline_output import OutputPlan, plan_output
from policies.service.results import ExecResult, TextSink
from policies.service.session_state import (
    CD_SCRIPT,
    Builtin,
    apply_env,
    resolve_dir,
    wrap_in_session,
)
from policies.types import Decision, Principal, SessionId, Target

if TYPE_CHECKING:
    from policies.rules.holder import PolicyHolder
    from policies.types import AuditId


class SessionsMixin:
    """Session methods of ExecService (kept apart to keep each module small)."""

    _audit: AuditStore
    _clock: Callable[[], dt.datetime]
    _session_idle: float
    _providers: Mapping[str, InstanceProvider]
    _policies: PolicyHolder
    _resolve: Callable[[Principal], Awaitable[Principal]]

    if TYPE_CHECKING:

        def resolve_target(self, target: Target) -> Target: ...

        async def _run(
            self,
            base: ExecResult,
            target: Target,
            argv: tuple[str, ...],
            decision: Decision,
            audit_id: AuditId,
            approvers: tuple[str, ...],
            on_output: TextSink | None,
            inline_limit: int,
            plan: OutputPlan | None = None,
        ) -> ExecResult: ...

    async def session_start(
        self, principal: Principal, target: Target, *, reason: str = ""
    ) -> SessionRecord:
        """Open a session on a live instance.

        Raises: UnknownPrincipal, UnknownProvider, InstanceNotRunning, AuditUnavailable.
        """
        principal = await self._resolve(principal)
        policy = self._policies.current()
        if not policy.roles_of(principal):
            raise UnknownPrincipal()
        resolved = self.resolve_target(target)
        if not may_act_on(policy, principal, resolved):
            raise AccessDenied(f"the policy allows {principal} nothing on {resolved}")
        provider = self._providers[resolved.provider or ""]
        live = await provider.list_instances(resolved.function, resolved.qualifier)
        if not any(i.instance_id == resolved.instance for i in live):
            raise InstanceNotRunning(resolved.instance, resolved.function)
        return await self._audit.create_session(
            principal=str(principal), target=str(resolved), reason=reason, cwd=""
        )

    async def session_get(self, session_id: SessionId, principal: Principal) -> SessionRecord:
        """Raises: SessionNotFound (also for someone else's session)."""
        try:
            record = await self._audit.get_session(session_id)
        except KeyError:
            raise SessionNotFound() from None
        if record.principal != str(principal):
            raise SessionNotFound()
        return record

    async def session_end(
        self, session_id: SessionId, principal: Principal, *, reason: str = "ended by its owner"
    ) -> SessionRecord:
        """Raises: SessionNotFound."""
        record = await self.session_get(session_id, principal)
        if record.ended_at is not None:
            return record
        return await self._audit.end_session(session_id, reason)

    async def session_anchor(
        self, session_id: SessionId, principal: Principal, anchor: str
    ) -> SessionRecord:
        """Record where a surface shows the session (e.g. its Slack thread), so that the
        surface finds it again after a restart. Raises: SessionNotFound."""
        await self.session_get(session_id, principal)
        return await self._audit.update_session(session_id, anchor=anchor)

    async def session_at(self, anchor: str) -> SessionRecord | None:
        """The session a surface shows at ``anchor``, unless it has ended. Commands in
        it are still checked against its owner (``exec`` with its session id)."""
        record = await self._audit.find_session(anchor)
        return None if record is None or record.ended_at is not None else record

    async def _live_session(self, session_id: SessionId, principal: Principal) -> SessionRecord:
        record = await self.session_get(session_id, principal)
        if record.ended_at is not None:
            raise SessionEnded(
                f"session {session_id} has ended ({record.end_reason or 'ended'}); start a new one",
                session_id=session_id,
            )
        idle = (self._clock() - record.last_used_at).total_seconds()
        if idle > self._session_idle:
            await self._audit.end_session(session_id, "idle timeout")
            raise SessionEnded(
                f"session {session_id} ended after {self._session_idle:g}s without "
                "commands; start a new one",
                session_id=session_id,
            )
        return record

    async def _run_in_session(
        self,
        base: ExecResult,
        session: SessionRecord,
        builtin: Builtin | None,
        decision: Decision,
        on_output: TextSink | None,
        inline_limit: int,
    ) -> ExecResult:
        assert base.audit_id is not None
        target = self.resolve_target(Target.parse(session.target))
        if builtin is not None and builtin.kind in ("export", "unset"):
            try:
                env = apply_env(session.env, builtin)
            except CommandRejected as exc:
                await self._audit.update_session(session.session_id)
                return dataclasses.replace(
                    base, status=ExecStatus.DENIED, error_code=exc.code, error=exc.safe_message
                )
            await self._audit.update_session(session.session_id, env=env)
            await self._audit.record_outcome(base.audit_id, _builtin_outcome(self._clock()))
            return dataclasses.replace(base, status=ExecStatus.COMPLETED, exit_code=0)
        plan = None
        if builtin is not None:  # cd: check the directory on the instance
            wanted = resolve_dir(session.cwd, builtin.value)
            argv = wrap_in_session(("/bin/sh", "-c", CD_SCRIPT, "sh", wanted), "", session.env)
        else:
            remote, plan = plan_output(base.argv)  # pipeline filters run in ExecGate
            argv = wrap_in_session(remote, session.cwd, session.env)
        try:
            result = await self._run(
                base, target, argv, decision, base.audit_id, (), on_output, inline_limit, plan
            )
        except InstanceNotRunning:
            await self._audit.end_session(session.session_id, "instance released")
            raise SessionEnded(
                f"session {session.session_id} ended: instance {target.instance} is no "
                "longer running (released)",
                session_id=session.session_id,
                audit_id=base.audit_id,
            ) from None
        if builtin is not None and result.exit_code == 0 and result.stdout.strip():
            await self._audit.update_session(session.session_id, cwd=result.stdout.strip())
        else:
            await self._audit.update_session(session.session_id)
        return result


def _builtin_outcome(now: dt.datetime) -> ExecOutcome:
    return ExecOutcome(status=ExecStatus.COMPLETED, exit_code=0, started_at=now, ended_at=now)
