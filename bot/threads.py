"""Thread sessions: `/exec session <target>` posts a message that anchors a thread; each
reply in that thread by the session's owner is a command in the session.

The service keeps the session (working directory, env overlay, idle timeout) and checks
and audits every command; this module maps threads to sessions and says in the thread
when a session ends. Other people's replies are conversation and are left alone.
"""

from __future__ import annotations

import asyncio
import datetime as dt
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
from policies.service.sessions import IDLE_TIMEOUT
from policies.types import ExecRequest, Principal, PrincipalKind, SessionId, Surface, Target

logger = logging.getLogger(__name__)

END_WORDS = frozenset({"end", "exit", "quit", "logout"})
# Checked this long after a session's idle deadline, so the check finds it past.
_IDLE_MARGIN = 0.05


@dataclass(frozen=True, slots=True)
class ThreadSession:
    session_id: SessionId
    owner: str  # Slack user id
    channel: str
    thread_ts: str
    target: str


def _anchor_of(channel: str, thread_ts: str) -> str:
    return f"slack:{channel}:{thread_ts}"


def idle_time(seconds: float) -> str:
    """A configured idle time as people say it: "10 minutes", "90 seconds"."""
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} second{'s' if seconds != 1 else ''}"


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

    def __init__(self, runner: Runner, outbox: Outbox, directory: Directory) -> None:
        self._runner = runner
        self._directory = directory
        self._service = runner.service
        self._outbox = outbox
        self._threads: dict[tuple[str, str], ThreadSession] = {}
        # One idle watch per thread this process knows; replies in flight per thread.
        self._watches: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._busy: dict[tuple[str, str], int] = {}

    @property
    def _idle_hint(self) -> str:
        return f"ends after {idle_time(self._service.session_idle_seconds)} without commands"

    async def aclose(self) -> None:
        """Stop watching for idle sessions (the sessions themselves stay)."""
        watches = list(self._watches.values())
        self._watches.clear()
        for task in watches:
            task.cancel()
        await asyncio.gather(*watches, return_exceptions=True)

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
        self._remember(session)
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
        self._remember(
            ThreadSession(record.session_id, principal.id, place.channel, ts, record.target)
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
                self._forget(session)  # first: its idle watch must not also say it ended
                await self._service.session_end(session.session_id, principal)
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
            key = (session.channel, session.thread_ts)
            self._busy[key] = self._busy.get(key, 0) + 1
            try:
                await self._runner.execute(place, request, command=text)
            finally:
                self._busy[key] -= 1
                if not self._busy[key]:
                    del self._busy[key]
        except SessionError as exc:
            self._forget(session)
            # Said in the thread, for everyone following it.
            await self._outbox.public(place, *error_message(exc))
        except ExecGateError as exc:
            await self._outbox.ephemeral(place, *error_message(exc))

    def _remember(self, session: ThreadSession) -> None:
        key = (session.channel, session.thread_ts)
        self._threads[key] = session
        if key not in self._watches:
            task = asyncio.create_task(
                self._watch_idle(session), name=f"slack-session-idle-{session.session_id}"
            )
            self._watches[key] = task
            task.add_done_callback(lambda done: self._watch_done(key, done))

    def _watch_done(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        if self._watches.get(key) is task:
            del self._watches[key]
        if not task.cancelled() and task.exception() is not None:
            logger.error("session idle watch failed", exc_info=task.exception())

    def _forget(self, session: ThreadSession) -> None:
        key = (session.channel, session.thread_ts)
        self._threads.pop(key, None)
        watch = self._watches.pop(key, None)
        if watch is not None and watch is not asyncio.current_task():
            watch.cancel()

    async def _watch_idle(self, session: ThreadSession) -> None:
        """End the session when the service says it has gone idle, and say so in its
        thread when it happens (not only at the next reply)."""
        key = (session.channel, session.thread_ts)
        owner = Principal(PrincipalKind.SLACK, session.owner)
        while True:
            idle = self._service.session_idle_seconds
            if self._busy.get(key):
                # A command is running in the session: it is not idle.
                await asyncio.sleep(idle)
                continue
            try:
                record = await self._service.session_end_if_idle(session.session_id, owner)
            except SessionError:
                return
            except ExecGateError:
                logger.warning("could not check whether a session is idle", exc_info=True)
                await asyncio.sleep(idle)
                continue
            if record.ended_at is not None:
                break
            used = (dt.datetime.now(dt.UTC) - record.last_used_at).total_seconds()
            await asyncio.sleep(max(idle - used, 0.0) + _IDLE_MARGIN)
        if self._threads.get(key) is not session:
            return  # the thread already said how it ended
        self._forget(session)
        place = Place(session.channel, session.owner, thread_ts=session.thread_ts)
        if record.end_reason == IDLE_TIMEOUT:
            text = f":zzz: Session ended after {idle_time(idle)} idle. Start a new one to go on."
        else:
            text = f":checkered_flag: Session ended ({escape(record.end_reason or 'ended')})."
        await self._outbox.public(place, *notice(text))
