"""Signed checkpoints of the chain head, kept in a file outside the database.

A hash chain cannot see rows cut from its own tail; a checkpoint (last seq, last hash,
row count, HMAC-SHA256 with a key the database does not hold) written after commits
can. The file is replaced atomically (temporary file + rename) under an advisory lock
so several processes appending to one database never move it backwards, and a
checkpoint that no longer matches the database (the tail was cut, the file forged) is
left in place as evidence instead of being overwritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from policies.audit.chain import Head, canonical
from policies.errors import AuditIntegrityError

logger = logging.getLogger("policies.audit")

VERSION = 1
# Under a stream of commits the file is rewritten at most this often (each rewrite
# syncs the disk); a cut of the tail younger than this can go unnoticed by the check.
MIN_INTERVAL_S = 0.5


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    hash: str
    rows: int


def _mac(key: bytes, cp: Checkpoint) -> str:
    body = canonical({"version": VERSION, "seq": cp.seq, "hash": cp.hash, "rows": cp.rows})
    return hmac.new(key, body.encode("ascii"), hashlib.sha256).hexdigest()


def encode_checkpoint(cp: Checkpoint, key: bytes) -> str:
    """The signed file content for ``cp``."""
    doc = {
        "version": VERSION,
        "seq": cp.seq,
        "hash": cp.hash,
        "rows": cp.rows,
        "written_at": dt.datetime.now(dt.UTC),
        "mac": _mac(key, cp),
    }
    return canonical(doc) + "\n"


def read_checkpoint(path: Path, key: bytes) -> Checkpoint | None:
    """The checkpoint stored at ``path``; None when there is no file.

    Raises: AuditIntegrityError when the file is unreadable, malformed or its signature
    does not match ``key``.
    """
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditIntegrityError("the audit checkpoint cannot be read", kind="unreadable") from exc
    try:
        doc: Any = json.loads(text)
        cp = Checkpoint(seq=int(doc["seq"]), hash=str(doc["hash"]), rows=int(doc["rows"]))
        mac = str(doc["mac"])
        version = int(doc["version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AuditIntegrityError("the audit checkpoint is malformed", kind="malformed") from exc
    if version != VERSION or not hmac.compare_digest(mac, _mac(key, cp)):
        raise AuditIntegrityError("the audit checkpoint signature is invalid", kind="signature")
    return cp


def _replace_file(path: Path, content: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


HashAt = Callable[[int], Awaitable[str | None]]


class CheckpointWriter:
    """Writes the newest committed head to the checkpoint file, coalescing bursts.

    ``note()`` is called after each commit and returns at once; one background task
    writes the latest head noted. ``flush()`` (the store calls it before verifying and
    at close) writes the last one without delay.
    """

    def __init__(self, path: Path, key: bytes, hash_at: HashAt) -> None:
        self._path = path
        self._key = key
        self._hash_at = hash_at  # the hash stored at a seq, to check the file's claim
        self._lock_path = path.with_name(path.name + ".lock")
        self._pending: Head | None = None
        self._task: asyncio.Task[None] | None = None
        self._written: Checkpoint | None = None  # the last checkpoint this writer wrote
        self._hurry = asyncio.Event()
        self._last_write = -MIN_INTERVAL_S  # loop time of the last write started
        self._warned = False

    def note(self, head: Head) -> None:
        """Schedule a checkpoint at ``head`` (a committed chain head)."""
        if self._pending is None or head.seq > self._pending.seq:
            self._pending = head
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())

    async def flush(self) -> None:
        """Write the newest head noted so far now (or refuse it, and log why)."""
        self._hurry.set()
        try:
            while self._task is not None and not self._task.done():
                await self._task
        finally:
            self._hurry.clear()

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending is not None:
            # Under a stream of commits, write at most every MIN_INTERVAL_S (each write
            # costs a file sync); the first commit after a quiet spell is written at
            # once. flush() cuts the wait short.
            wait = self._last_write + MIN_INTERVAL_S - loop.time()
            if wait > 0 and not self._hurry.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hurry.wait(), wait)
            head, self._pending = self._pending, None
            self._last_write = loop.time()
            try:
                await self._write(head)
            except Exception:
                # The commit already happened; a missed checkpoint only weakens the tail
                # check, so log it and keep going.
                logger.exception("audit checkpoint: writing %s failed", self._path)

    async def _write(self, head: Head) -> None:
        # The file may hold a checkpoint this writer did not make (another process, or
        # a forger); it is replaced only once the database confirms it as a prefix.
        trusted = self._written
        for _ in range(5):
            status, current = await asyncio.to_thread(self._replace, head, trusted)
            if status == "written":
                self._written = Checkpoint(head.seq, head.hash, head.seq)
                return
            if status == "invalid":
                self._warn("the existing checkpoint is invalid; it is kept for inspection")
                return
            if status == "newer" or current is None:
                return
            if await self._hash_at(current.seq) != current.hash:
                self._warn("the database no longer matches the checkpoint (tail cut?)")
                return
            trusted = current

    def _replace(
        self, head: Head, trusted: Checkpoint | None
    ) -> tuple[Literal["written", "newer", "invalid", "unverified"], Checkpoint | None]:
        """Under the file lock: write ``head`` if the file is missing or holds
        ``trusted``; otherwise say why not."""
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                try:
                    current = read_checkpoint(self._path, self._key)
                except AuditIntegrityError:
                    return "invalid", None
                if current is not None and current.seq >= head.seq:
                    return "newer", current
                if current is not None and current != trusted:
                    return "unverified", current
                cp = Checkpoint(head.seq, head.hash, head.seq)
                _replace_file(self._path, encode_checkpoint(cp, self._key))
                return "written", cp
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _warn(self, what: str) -> None:
        if not self._warned:
            self._warned = True
            logger.error("audit checkpoint %s not updated: %s", self._path, what)
