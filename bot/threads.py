"""Thread sessions: `/exec session <target>` posts a message that anchors a thread; each
reply in that thread by the session's owner is a command in the session.

The service keeps the session (working directory, env overlay, idle timeout) and checks
and audits every command; this module maps threads to sessions and says in the thread
when a session ends. Other people's replies are conversation and are left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.directory import Directory
from bot.outbox import Outbox, Place
from bot.render import context, error_message, notice, section
from bot.runner import Runner
from bot.text import escape, from_slack, inline_code, mention, unwrap_code
from policies.errors import ExecGateError, SessionError
from policies.ports import SessionRecord
from policies.types import ExecRequest, Principal, PrincipalKind, SessionId, Surface, Target

logger = logging.getLogger(__name__)

END_WORDS = frozenset({"end", "exit", "quit", "logout"})


@dataclass(frozen=True, slots=True)
class ThreadSession:
    session_id: SessionId
    owner: str  # Slack user id
    channel: str
    thread_ts: str
    target: str


def _anchor_of(channel: str, thread_ts: str) -> str:
    return f"slack:{channel}:{thread_ts}"


def _anchor(record: SessionRecord, owner: str, idle_hint: str) -> tuple[str, list[dict[str, Any]]]:
    text = (
        f":thread: {mention(f'slack:{owner}')} opened a session on {inline_code(record.target)}. "
        "Reply in this thread: each reply runs as a command on the instance "
        "(`cd` and `export` are kept between commands). Say `end` to end it."
    )
    blocks = [
        section(text),
        context(
            f"session `{escape(record.session_id)}`", idle_hint, "only the owner's replies run"
        ),
    ]
    return f"Session on {record.target}", blocks


class ThreadSessions:
    """Slack threads bound to ExecGate sessions."""

    def __init__(
        self, runner: Runner, outbox: Outbox, directory: Directory, idle_hint: str = ""
    ) -> None:
        self._runner = runner
        self._directory = directory
        self._service = runner.service
        self._outbox = outbox
        self._idle_hint = idle_hint or "ends after 10 minutes without commands"
        self._threads: dict[tuple[str, str], ThreadSession] = {}

    async def get(self, channel: str, thread_ts: str) -> ThreadSession | None:
        """The session of a thread: known to this process, or recorded with the session
        (a thread opened before a restart)."""
        known = self._threads.get((channel, thread_ts))
        if known is not None:
            return known
        record = await self._service.session_at(_anchor_of(channel, thread_ts))
        if record is None:
            return None
        owner = Principal.parse(record.principal)
        if owner.kind is not PrincipalKind.SLACK:
            return None
        session = ThreadSession(record.session_id, owner.id, channel, thread_ts, record.target)
        self._threads[(channel, thread_ts)] = session
        return session

    async def start(self, place: Place, principal: Principal, target: Target, reason: str) -> None:
        """Open a session and anchor it to a new thread in the place's channel.

        Raises: the service's session_start errors (UnknownPrincipal, InstanceError, ...).
        """
        record = await self._service.session_start(principal, target, reason=reason)
        ts = await self._outbox.message(
            place.channel, *_anchor(record, principal.id, self._idle_hint)
        )
        if ts is None:
            await self._service.session_end(
                record.session_id, principal, reason="the session thread could not be posted"
            )
            await self._outbox.ephemeral(
                place,
                *notice(
                    "ExecGate could not post in this channel, so the session was ended. "
                    "Invite the ExecGate app to the channel and try again."
                ),
            )
            return
        self._threads[(place.channel, ts)] = ThreadSession(
            record.session_id, principal.id, place.channel, ts, record.target
        )
        try:
            await self._service.session_anchor(
                record.session_id, principal, _anchor_of(place.channel, ts)
            )
        except ExecGateError:
            # The thread works in this process; only a restart would lose it.
            logger.exception("could not record the thread of session %s", record.session_id)
        await self._outbox.ephemeral(
            place,
            *notice(f"Session `{escape(record.session_id)}` is open: reply in its thread."),
        )

    async def on_message(self, event: Mapping[str, Any], request_key: str) -> None:
        """A message in a channel; runs it when it is the owner's reply in a session thread."""
        thread_ts = event.get("thread_ts")
        if not thread_ts or event.get("subtype") or event.get("bot_id"):
            return
        channel = str(event.get("channel", ""))
        try:
            session = await self.get(channel, str(thread_ts))
        except ExecGateError:
            logger.exception("could not look up the session of a thread")
            return
        if session is None or event.get("user") != session.owner:
            return
        place = Place(channel, session.owner, thread_ts=session.thread_ts)
        text = unwrap_code(from_slack(str(event.get("text", ""))))
        if not text:
            return
        try:
            principal = await self._directory.principal(session.owner)
            if text.lower() in END_WORDS:
                await self._service.session_end(session.session_id, principal)
                self._forget(session)
                await self._outbox.public(
                    place, *notice(f":checkered_flag: Session ended by {mention(str(principal))}.")
                )
                return
            request = ExecRequest(
                principal=principal,
                surface=Surface.SLACK,
                target=Target.parse(session.target),
                command_text=text,
                session_id=session.session_id,
                request_key=request_key,
                context=place.to_context(),
            )
            await self._runner.execute(place, request, command=text)
        except SessionError as exc:
            self._forget(session)
            # Said in the thread, for everyone following it.
            await self._outbox.public(place, *error_message(exc))
        except ExecGateError as exc:
            await self._outbox.ephemeral(place, *error_message(exc))

    def _forget(self, session: ThreadSession) -> None:
        self._threads.pop((session.channel, session.thread_ts), None)
