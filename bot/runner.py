"""One exec from Slack, after the ack: call the service, then answer in the right place.

Results go to the channel (or thread) they were asked in; refusals, pending approvals
and errors go to the requester alone. Output is already scrubbed and shortened by the
service; when the inline view omitted something and there is no link to the full
output, the full scrubbed output seen while streaming is attached as a file.
"""

from __future__ import annotations

import logging

from bot.config import BotConfig
from bot.outbox import Outbox, Place
from bot.render import (
    collected_message,
    error_message,
    internal_error_message,
    pending_message,
    refusal_message,
    result_message,
)
from policies.errors import ExecGateError, InstanceNotRunning, SessionError
from policies.ports import ExecStatus
from policies.service.core import ExecService
from policies.service.results import CollectResult, ExecResult
from policies.types import Effect, ExecRequest, Principal, Stream, Surface, Target

logger = logging.getLogger(__name__)


class OutputCapture:
    """The scrubbed text of both streams as the service streams it, up to a limit."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._parts: dict[Stream, list[str]] = {"stdout": [], "stderr": []}
        self._size = 0
        self.capped = False

    async def feed(self, stream: Stream, text: str) -> None:
        room = self._limit - self._size
        if len(text) > room:
            self.capped = True
            text = text[: max(room, 0)]
        if text:
            self._parts[stream].append(text)
            self._size += len(text)

    def text(self, stream: Stream) -> str:
        return "".join(self._parts[stream])


class Runner:
    """Runs requests through the service and posts what came of them."""

    def __init__(self, service: ExecService, outbox: Outbox, config: BotConfig) -> None:
        self.service = service
        self.outbox = outbox
        self.config = config

    async def execute(self, place: Place, request: ExecRequest, *, command: str) -> None:
        """Run ``request`` and answer in ``place``.

        Raises: SessionError for session requests whose session is gone (the caller
        says so in the thread); every other error is answered to the requester.
        """
        capture = OutputCapture(self.config.full_output_max_chars)
        try:
            result = await self.service.exec(
                request, on_output=capture.feed, inline_limit=self.config.inline_chars
            )
        except SessionError:
            raise
        except ExecGateError as exc:
            await self.report_error(place, exc)
            return
        except Exception:
            logger.exception("slack exec failed")
            await self.outbox.ephemeral(place, *internal_error_message(None))
            return
        await self.deliver(
            place, result, who=str(request.principal), command=command, capture=capture
        )

    async def deliver(
        self,
        place: Place,
        result: ExecResult,
        *,
        who: str,
        command: str,
        capture: OutputCapture | None = None,
    ) -> None:
        """Post ``result`` where it belongs."""
        if result.error_code == "duplicate":
            # A second delivery of a request already handled: its answer was posted.
            logger.info("duplicate slack delivery ignored", extra={"audit_id": result.audit_id})
            return
        if result.effect is Effect.DENY or result.status is ExecStatus.DENIED:
            await self.outbox.ephemeral(place, *refusal_message(result))
            return
        if result.status is ExecStatus.PENDING_APPROVAL:
            channel = self.config.approvals_channel or place.channel
            await self.outbox.ephemeral(place, *pending_message(result, card_channel=channel))
            return
        await self.outbox.public(place, *result_message(result, who=who, command=command))
        if capture is not None and result.truncated and not result.links:
            await self._attach_full_output(place, result, capture)

    async def collect(
        self,
        place: Place,
        principal: Principal,
        target: Target,
        path: str,
        reason: str,
        request_key: str | None = None,
    ) -> None:
        """Fetch a file from the instance as an artifact and post its link.

        Raises: the service's collect errors (ArtifactError, InstanceError, ...).
        """
        result: CollectResult = await self.service.collect(
            principal,
            Surface.SLACK,
            target,
            path,
            reason=reason,
            context=place.to_context(),
            request_key=request_key,
        )
        if result.error_code == "duplicate":
            # A second delivery of a request already handled: its answer was posted.
            logger.info("duplicate slack delivery ignored", extra={"audit_id": result.audit_id})
        elif result.status is ExecStatus.PENDING_APPROVAL:
            channel = self.config.approvals_channel or place.channel
            await self.outbox.ephemeral(place, *pending_message(result, card_channel=channel))
        elif result.ok:
            await self.outbox.public(place, *collected_message(result, who=str(principal)))
        else:
            await self.outbox.ephemeral(place, *refusal_message(result))

    async def _attach_full_output(
        self, place: Place, result: ExecResult, capture: OutputCapture
    ) -> None:
        if not self.config.upload_full_output:
            return
        omitted: dict[Stream, int] = {
            "stdout": result.stdout_omitted,
            "stderr": result.stderr_omitted,
        }
        for stream, count in omitted.items():
            text = capture.text(stream)
            if not count or not text:
                continue
            note = f" (first {len(text)} characters)" if capture.capped else ""
            await self.outbox.upload(
                place,
                filename=f"{result.audit_id or 'output'}-{stream}.txt",
                title=f"{stream} of {result.target}{note}",
                content=text,
            )

    async def report_error(self, place: Place, exc: ExecGateError) -> None:
        """An ExecGate error, to the requester only."""
        if isinstance(exc, InstanceNotRunning) and exc.fields.get("function"):
            instance, function = exc.fields.get("instance"), exc.fields["function"]
            exc = InstanceNotRunning(str(instance), str(function), audit_id=exc.audit_id)
            exc.safe_message = (
                f"instance {instance} is not running (released or never existed); "
                f"list live instances with `/exec instances {function}`"
            )
        await self.outbox.ephemeral(place, *error_message(exc))
