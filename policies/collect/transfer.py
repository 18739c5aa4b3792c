"""One collect transfer: run the transport script on the instance and stream what it
sends into the artifact store, holding a bounded amount in memory.

The provider pushes output (``on_output``); a store pulls chunks (``put_stream``). A
small bounded queue joins them, so a slow store slows the reading of the exec channel
instead of filling memory. The upload is completed only after the script said ``end``,
exited 0 and exactly the announced number of bytes arrived; in every other case the
upload is aborted and nothing is stored under the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from policies.collect.protocol import (
    CollectDecoder,
    Data,
    Ended,
    Event,
    Failed,
    Refused,
    Resolved,
    Started,
    transport_argv,
)
from policies.errors import ArtifactError
from policies.ports import ArtifactInfo, ArtifactStore, InstanceProvider
from policies.types import Limits, RunResult, Stream, Target

logger = logging.getLogger(__name__)

QUEUE_CHUNKS = 8
_STDERR_KEPT = 2048


class _Stopped(ArtifactError):
    """Ends a transfer early: raised out of the output callback, which closes the exec."""


@dataclass(frozen=True, slots=True)
class Transfer:
    """How one transfer ended. Exactly one of ``info``, ``resolved``, ``refused`` or
    ``failure`` is set (``failure``: ``changed``, ``transfer_failed``, ``timeout``)."""

    run: RunResult | None
    stdout_bytes: int
    stderr_bytes: int
    info: ArtifactInfo | None = None
    resolved: str | None = None
    refused: Refused | None = None
    failure: str | None = None
    expected_size: int | None = None


class _Pipe:
    """A bounded hand-over from the output callback to the store's chunk iterator."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(QUEUE_CHUNKS)

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    async def put(self, item: bytes | BaseException | None, consumer: asyncio.Task[object]) -> None:
        """Hand ``item`` over unless the consumer (the upload) has already stopped.

        Raises: _Stopped when the upload ended first (the store failed).
        """
        if consumer.done():
            raise _Stopped("the artifact store stopped taking data", reason="store")
        put = asyncio.ensure_future(self._queue.put(item))
        done, _ = await asyncio.wait({put, consumer}, return_when=asyncio.FIRST_COMPLETED)
        if put not in done:
            put.cancel()
            raise _Stopped("the artifact store stopped taking data", reason="store")


class _Receiver:
    """The output callback of one transfer and what it learnt."""

    def __init__(self, store: ArtifactStore, key: str, content_type: str) -> None:
        self.decoder = CollectDecoder()
        self.pipe = _Pipe()
        self.upload: asyncio.Task[ArtifactInfo] | None = None
        self.expected: int | None = None
        self.last: Event | None = None
        self.stdout_bytes = 0
        self.stderr_bytes = 0
        self.stderr_head = b""
        self._store = store
        self._key = key
        self._type = content_type

    async def __call__(self, stream: Stream, data: bytes) -> None:
        if stream == "stderr":
            self.stderr_bytes += len(data)
            self.stderr_head = (self.stderr_head + data)[:_STDERR_KEPT]
            return
        self.stdout_bytes += len(data)
        for event in self.decoder.feed(data):
            await self.handle(event)

    async def handle(self, event: Event) -> None:
        if isinstance(event, Started):
            self.expected = event.size
            self.upload = asyncio.create_task(
                self._store.put_stream(
                    self._key, self.pipe.chunks(), content_type=self._type, max_bytes=event.size
                )
            )
        elif isinstance(event, Data):
            assert self.upload is not None and self.expected is not None
            if self.decoder.decoded_bytes > self.expected:
                self.last = Failed("changed")
                raise _Stopped("the file grew while it was read", reason="changed")
            await self.pipe.put(event.data, self.upload)
        else:
            self.last = event

    async def abandon(self) -> None:
        """Abort the upload (if one started) and wait until the store cleaned up."""
        if self.upload is None:
            return
        if not self.upload.done():
            with contextlib.suppress(_Stopped):
                await self.pipe.put(_Stopped("transfer abandoned", reason="abandoned"), self.upload)
        with contextlib.suppress(Exception):
            await self.upload

    async def commit(self) -> ArtifactInfo:
        """Raises: ArtifactError when the store could not complete the upload."""
        assert self.upload is not None
        try:
            await self.pipe.put(None, self.upload)
        except _Stopped:
            raise self.store_error() from None
        return await self.upload

    def store_error(self) -> ArtifactError:
        """What the store raised when it stopped early (safe to show)."""
        upload = self.upload
        finished = upload is not None and upload.done() and not upload.cancelled()
        failed = upload.exception() if upload is not None and finished else None
        if isinstance(failed, ArtifactError):
            return failed
        if failed is not None:
            logger.error("the artifact upload failed", exc_info=failed)
        return ArtifactError("the artifact store failed while the file was stored")


async def transfer(
    provider: InstanceProvider,
    target: Target,
    path: str,
    *,
    max_bytes: int,
    limits: Limits,
    store: ArtifactStore,
    key: str,
    content_type: str,
) -> Transfer:
    """Fetch ``path`` (already checked against the policy) into ``store`` under ``key``.

    Raises: the provider's InstanceError subclasses; ArtifactError when the store
    fails. Refusals by the instance and cut transfers are reported in the Transfer.
    """
    receiver = _Receiver(store, key, content_type)
    argv = transport_argv(path, max_bytes)
    run: RunResult | None = None
    try:
        run = await provider.exec(target, argv, limits=limits, on_output=receiver)
        for event in receiver.decoder.finish():
            await receiver.handle(event)
    except _Stopped as exc:
        await receiver.abandon()
        if exc.fields.get("reason") == "store":
            raise receiver.store_error() from exc
    except BaseException:
        await receiver.abandon()
        raise
    counts = (run, receiver.stdout_bytes, receiver.stderr_bytes)
    last = receiver.last
    if receiver.stderr_head:
        logger.info("collect transport stderr: %r", receiver.stderr_head[:500])
    if isinstance(last, Ended) and run is not None and run.exit_code == 0:
        if receiver.decoder.decoded_bytes == receiver.expected:
            info = await receiver.commit()
            return Transfer(*counts, info=info, expected_size=receiver.expected)
        last = Failed("changed")
    await receiver.abandon()
    if isinstance(last, Refused):
        return Transfer(*counts, refused=last)
    if isinstance(last, Resolved):
        return Transfer(*counts, resolved=last.path)
    failure = "transfer_failed"
    if run is not None and (run.timed_out or run.idle_timed_out):
        failure = "timeout"
    elif isinstance(last, Failed) and last.reason == "changed":
        failure = "changed"
    return Transfer(*counts, failure=failure, expected_size=receiver.expected)
