"""Helpers for artifact store tests: byte streams and digests."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path


async def stream(chunks: Iterable[bytes], *, fail_after: int | None = None) -> AsyncIterator[bytes]:
    """Yield ``chunks``; raise ConnectionResetError after ``fail_after`` of them (a cut)."""
    for index, chunk in enumerate(chunks):
        if fail_after is not None and index == fail_after:
            raise ConnectionResetError("the transfer was cut")
        yield chunk


def random_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``; return their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        left = size
        while left:
            block = os.urandom(min(left, 1 << 20))
            fh.write(block)
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
