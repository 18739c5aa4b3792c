"""ExecService's conversational sessions: start, run in, end.

A session pins one live instance for one principal and keeps a working directory and an
env overlay between commands. Every command in it goes through the same decide -> audit
-> run path as any exec, recorded under the session id. A session ends on idle timeout,
when its owner ends it, or when its instance is released.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from policies.errors import (
    AccessDenied,
    CommandRejected,
    InstanceNotRunning,
    SessionEnded,
    SessionNotFound,
    UnknownPrincipal,
)
from policies.ports import ExecOutcome, ExecStatus, SessionLog, SessionRecord
from policies.rules.engine import may_act_on
from policies.rules.model import Policy
from policies.service.decisions import BUILTIN_RULE, decide
from policies.service.output import CollectedOutput
from policies.service.pipeline import Pipeline
from policies.service.pipeline_output import plan_output
from policies.service.results import ExecResult, TextSink
from policies.service.session_state import (
    CD_SCRIPT,
    Builtin,
    apply_env,
    resolve_dir,
    wrap_in_session,
)
from policies.types import Decision, Effect, Principal, RunResult, SessionId, Target

# The end reason of a session that went unused for longer than the idle limit.
IDLE_TIMEOUT = "idle timeout"


class Sessions:
    """Sessions: a pinned instance, a working directory and an env overlay."""

    def __init__(self, pipeline: Pipeline, sessions: SessionLog, idle_seconds: float) -> None:
        self._pipeline = pipeline
        self._sessions = sessions
        self._idle = idle_seconds

    async def start(
        self, principal: Principal, target: Target, *, reason: str = ""
    ) -> SessionRecord:
        """Open a session on a live instance.

        Raises: UnknownPrincipal, UnknownProvider, AccessDenied, InstanceNotRunning,
        AuditUnavailable.
        """
        pipeline = self._pipeline
        policy = pipeline.policy()
        principal = await pipeline.principal(principal)
        if not policy.roles_of(principal):
            raise UnknownPrincipal()
        resolved = pipeline.resolve_target(target)
        if not may_act_on(policy, principal, resolved):
            raise AccessDenied(f"the policy allows {principal} nothing on {resolved}")
        provider = pipeline.provider(resolved.provider)
        live = await provider.list_instances(resolved.function, resolved.qualifier)
        if not any(i.instance_id == resolved.instance for i in live):
            raise InstanceNotRunning(resolved.instance, resolved.function)
        return await self._sessions.create_session(
            principal=str(principal), target=str(resolved), reason=reason, cwd=""
        )

    async def get(self, session_id: SessionId, principal: Principal) -> SessionRecord:
        """Raises: SessionNotFound (also for someone else's session)."""
        record = await self._sessions.get_session(session_id)
        if record.principal != str(principal):
            raise SessionNotFound()
        return record

    async def end(
        self, session_id: SessionId, principal: Principal, *, reason: str = "ended by its owner"
    ) -> SessionRecord:
        """Raises: SessionNotFound."""
        record = await self.get(session_id, principal)
        if record.ended_at is not None:
            return record
        return await self._sessions.end_session(session_id, reason)

    @property
    def idle_seconds(self) -> float:
        """How long a session may go without commands before it ends."""
        return self._idle

    async def end_if_idle(self, session_id: SessionId, principal: Principal) -> SessionRecord:
        """End the session when it has been idle past the limit, so a surface can say
        so when it happens rather than at the next command. The record comes back
        either way: ``ended_at`` set once it has ended.

        Raises: SessionNotFound.
        """
        record = await self.get(session_id, principal)
        if record.ended_at is not None:
            return record
        idle = (self._pipeline.clock() - record.last_used_at).total_seconds()
        if idle <= self._idle:
            return record
        return await self._sessions.end_session(session_id, IDLE_TIMEOUT)

    async def anchor(
        self, session_id: SessionId, principal: Principal, anchor: str
    ) -> SessionRecord:
        """Record where a surface shows the session (e.g. its Slack thread), so that the
        surface finds it again after a restart. Raises: SessionNotFound."""
        await self.get(session_id, principal)
        return await self._sessions.update_session(session_id, anchor=anchor)

    async def at(self, anchor: str) -> SessionRecord | None:
        """The session a surface shows at ``anchor``, unless it has ended. Commands in
        it are still checked against its owner (``exec`` with its session id)."""
        record = await self._sessions.find_session(anchor)
        return None if record is None or record.ended_at is not None else record

    async def live(self, session_id: SessionId, principal: Principal) -> SessionRecord:
        """The principal's session, unless it ended. Raises: SessionNotFound, SessionEnded."""
        record = await self.get(session_id, principal)
        if record.ended_at is not None:
            raise SessionEnded(
                f"session {session_id} has ended ({record.end_reason or 'ended'}); start a new one",
                session_id=session_id,
            )
        idle = (self._pipeline.clock() - record.last_used_at).total_seconds()
        if idle > self._idle:
            await self._sessions.end_session(session_id, IDLE_TIMEOUT)
            raise SessionEnded(
                f"session {session_id} ended after {self._idle:g}s without "
                "commands; start a new one",
                session_id=session_id,
            )
        return record

    @staticmethod
    def decide_builtin(
        policy: Policy,
        principal: Principal,
        target: Target,
        session: SessionRecord,
        builtin: Builtin,
    ) -> Decision:
        """cd may only enter a directory the principal may list (checked again on the
        directory it really leads to, once the instance resolved it); export/unset
        change only the session's own overlay."""
        if builtin.kind == "cd":
            refused = _refuse_dir(
                policy, principal, target, resolve_dir(session.cwd, builtin.value)
            )
            if refused is not None:
                return refused
        return Decision(Effect.ALLOW, BUILTIN_RULE, f"session builtin {builtin.kind}")

    async def run_in(
        self,
        base: ExecResult,
        session: SessionRecord,
        builtin: Builtin | None,
        decision: Decision,
        policy: Policy,
        principal: Principal,
        on_output: TextSink | None,
        inline_limit: int,
    ) -> ExecResult:
        """Run a recorded request in ``session``. Raises: SessionEnded."""
        assert base.audit_id is not None
        pipeline = self._pipeline
        target = pipeline.resolve_target(Target.parse(session.target))
        if builtin is not None and builtin.kind in ("export", "unset"):
            try:
                env = apply_env(session.env, builtin)
            except CommandRejected as exc:
                await self._sessions.update_session(session.session_id)
                return dataclasses.replace(
                    base, status=ExecStatus.DENIED, error_code=exc.code, error=exc.safe_message
                )
            await self._sessions.update_session(session.session_id, env=env)
            await pipeline.finish(base.audit_id, _builtin_outcome(pipeline.clock()))
            return dataclasses.replace(base, status=ExecStatus.COMPLETED, exit_code=0)
        check = None
        plan = None
        if builtin is not None:  # cd: resolve the directory on the instance
            wanted = resolve_dir(session.cwd, builtin.value)
            argv = wrap_in_session(("/bin/sh", "-c", CD_SCRIPT, "sh", wanted), "", session.env)

            def check(run: RunResult, out: CollectedOutput) -> Decision | None:
                if run.exit_code != 0:
                    return None
                return _refuse_dir(policy, principal, target, out.stdout.strip())

        else:
            remote, plan = plan_output(base.argv)  # pipeline filters run in ExecGate
            argv = wrap_in_session(remote, session.cwd, session.env)
        try:
            result = await pipeline.run(
                base,
                target,
                argv,
                decision,
                on_output=on_output,
                inline_limit=inline_limit,
                check=check,
                plan=plan,
            )
        except InstanceNotRunning:
            await self._sessions.end_session(session.session_id, "instance released")
            raise SessionEnded(
                f"session {session.session_id} ended: instance {target.instance} is no "
                "longer running (released)",
                session_id=session.session_id,
                audit_id=base.audit_id,
            ) from None
        moved = builtin is not None and result.status is ExecStatus.COMPLETED
        if moved and result.exit_code == 0 and result.stdout.strip():
            await self._sessions.update_session(session.session_id, cwd=result.stdout.strip())
        else:
            await self._sessions.update_session(session.session_id)
        return result


def _refuse_dir(
    policy: Policy, principal: Principal, target: Target, directory: str
) -> Decision | None:
    """A refusal unless ``directory`` (absolute, one line) is one the principal may list."""
    if not directory.startswith("/") or "\n" in directory:
        return Decision(Effect.DENY, None, "cd could not tell which directory it leads to")
    listing = decide(policy, principal, target, (("ls", directory),))
    if listing.effect is Effect.ALLOW:
        return None
    return Decision(
        Effect.DENY,
        listing.rule_id,
        f"cd is limited to directories you may list ({directory}); {listing.reason}",
    )


def _builtin_outcome(now: dt.datetime) -> ExecOutcome:
    return ExecOutcome(status=ExecStatus.COMPLETED, exit_code=0, started_at=now, ended_at=now)
