"""What every store does with a stream: count, digest, cap, and upload in bounded parts.

``upload_in_parts`` holds at most one part (plus one incoming chunk) in memory. Objects
smaller than a part go up in one request; larger ones as a multipart upload that is
completed only after the last byte arrived and aborted on any failure, so a cut stream
never leaves an object under its key.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import IO, Protocol, TypeVar

from policies.errors import ArtifactError, ArtifactTooLarge
from policies.ports import ArtifactInfo

logger = logging.getLogger(__name__)

FILE_CHUNK = 1 << 20
READ_CHUNK = 64 << 10
MIN_PART_SIZE = 5 << 20  # S3's minimum for every part but the last
DEFAULT_PART_SIZE = 8 << 20
T = TypeVar("T")


class Meter:
    """Counts and digests the bytes of one artifact; refuses more than ``max_bytes``."""

    def __init__(self, max_bytes: int | None) -> None:
        self.size = 0
        self._digest = hashlib.sha256()
        self._max = max_bytes

    def take(self, chunk: bytes) -> None:
        """Raises: ArtifactError past ``max_bytes``."""
        self.size += len(chunk)
        if self._max is not None and self.size > self._max:
            raise ArtifactError(
                f"the artifact is larger than the {self._max} bytes allowed", reason="too_large"
            )
        self._digest.update(chunk)

    def info(self, key: str, content_type: str) -> ArtifactInfo:
        return ArtifactInfo(key, self.size, self._digest.hexdigest(), content_type)


def read_capped(chunks: Iterable[bytes], max_bytes: int) -> bytes:
    """The bytes of ``chunks``, holding at most ``max_bytes`` plus one chunk.

    Raises: ArtifactTooLarge as soon as more than ``max_bytes`` arrived.
    """
    data = bytearray()
    for chunk in chunks:
        data += chunk
        if len(data) > max_bytes:
            raise too_large(max_bytes)
    return bytes(data)


def too_large(max_bytes: int) -> ArtifactTooLarge:
    return ArtifactTooLarge(
        f"the artifact is larger than the {max_bytes} bytes that can be read here",
        max_bytes=max_bytes,
    )


def collect_pages(page: Callable[[str | None], tuple[Iterable[str], str | None]]) -> list[str]:
    """Every key of a paged listing, sorted: ``page(token)`` returns one page's keys and
    the token of the next page (None after the last)."""
    keys: list[str] = []
    token: str | None = None
    while True:
        found, token = page(token)
        keys.extend(found)
        if not token:
            return sorted(keys)


async def file_chunks(path: Path, chunk_size: int = FILE_CHUNK) -> AsyncIterator[bytes]:
    """The bytes of ``path`` in chunks, read in a worker thread.

    Raises: ArtifactError when the file cannot be read.
    """
    try:
        handle: IO[bytes] = await asyncio.to_thread(path.open, "rb")
    except OSError as exc:
        raise ArtifactError("the file to store could not be read") from exc
    try:
        while True:
            try:
                chunk = await asyncio.to_thread(handle.read, chunk_size)
            except OSError as exc:
                raise ArtifactError("the file to store could not be read") from exc
            if not chunk:
                return
            yield chunk
    finally:
        handle.close()


class PartTarget(Protocol):
    """A store's blocking calls, run in worker threads; each raises ArtifactError."""

    def put_whole(self, key: str, data: bytes, content_type: str) -> None: ...

    def start(self, key: str, content_type: str) -> str: ...

    def put_part(self, key: str, upload_id: str, number: int, data: bytes) -> str: ...

    def complete(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None: ...

    def abort(self, key: str, upload_id: str) -> None: ...


async def upload_in_parts(
    target: PartTarget,
    key: str,
    chunks: AsyncIterator[bytes],
    *,
    content_type: str,
    max_bytes: int | None,
    part_size: int = DEFAULT_PART_SIZE,
) -> ArtifactInfo:
    """Stream ``chunks`` to ``key``; see the module docstring.

    Raises: ArtifactError (also when more than ``max_bytes`` arrive); whatever the
    ``chunks`` iterator raises, after the upload was aborted.
    """
    meter = Meter(max_bytes)
    buffer = bytearray()
    upload_id: str | None = None
    parts: list[tuple[int, str]] = []
    try:
        async for chunk in chunks:
            meter.take(chunk)
            buffer += chunk
            while len(buffer) >= part_size:
                if upload_id is None:
                    upload_id = await asyncio.to_thread(target.start, key, content_type)
                part = bytes(buffer[:part_size])
                del buffer[:part_size]
                number = len(parts) + 1
                etag = await asyncio.to_thread(target.put_part, key, upload_id, number, part)
                parts.append((number, etag))
        if upload_id is None:
            await asyncio.to_thread(target.put_whole, key, bytes(buffer), content_type)
        else:
            if buffer or not parts:
                number = len(parts) + 1
                data = bytes(buffer)
                etag = await asyncio.to_thread(target.put_part, key, upload_id, number, data)
                parts.append((number, etag))
            await asyncio.to_thread(target.complete, key, upload_id, parts)
    except BaseException:
        if upload_id is not None:
            # Shielded: the abort must reach the store even when the caller was
            # cancelled, or the parts linger (and are billed) until a lifecycle rule.
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.to_thread(_quiet, target.abort, key, upload_id))
        raise
    return meter.info(key, content_type)


def _quiet(fn: Callable[[str, str], None], key: str, upload_id: str) -> None:
    try:
        fn(key, upload_id)
    except ArtifactError:
        logger.warning("could not abort a multipart upload", extra={"key": key})


class FileUploads(abc.ABC):
    """``put_file`` as ``put_stream`` over the file's chunks (every store does this)."""

    @abc.abstractmethod
    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str,
        max_bytes: int | None = None,
    ) -> ArtifactInfo: ...

    async def put_file(self, key: str, path: Path, *, content_type: str) -> ArtifactInfo:
        """Raises: ArtifactError."""
        return await self.put_stream(key, file_chunks(path), content_type=content_type)


class PartedStore(FileUploads):
    """A bucket store: ``put_stream`` is ``upload_in_parts`` over the store's own calls."""

    part_size: int = DEFAULT_PART_SIZE

    @abc.abstractmethod
    def put_whole(self, key: str, data: bytes, content_type: str) -> None: ...

    @abc.abstractmethod
    def start(self, key: str, content_type: str) -> str: ...

    @abc.abstractmethod
    def put_part(self, key: str, upload_id: str, number: int, data: bytes) -> str: ...

    @abc.abstractmethod
    def complete(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None: ...

    @abc.abstractmethod
    def abort(self, key: str, upload_id: str) -> None: ...

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str,
        max_bytes: int | None = None,
    ) -> ArtifactInfo:
        """Raises: ArtifactError; whatever ``chunks`` raises (after aborting)."""
        return await upload_in_parts(
            self,
            key,
            chunks,
            content_type=content_type,
            max_bytes=max_bytes,
            part_size=self.part_size,
        )
