"""Signed checkpoints of the chain, kept in a file outside the database.

A hash chain cannot see rows cut from its own tail, nor rows appended by someone who
can recompute hashes. A checkpoint says which runs of events ExecGate itself wrote:

    {"version": 2, "alg": "ed25519", "key_id": ..., "segments": [[first, prev_hash,
     last, hash], ...], "written_at": ..., "sig": base64(Ed25519(canonical(rest)))}

A segment vouches for events ``first..last``: event ``first`` links to ``prev_hash``
and event ``last`` has ``hash`` (the chain binds everything between). A writer adds
only runs it appended itself, whose hashes it computed in its own transaction; it
never reads the database's tail and signs it. Adjacent segments merge when their
hashes link, so several writers on one database (the CLI and `execgate serve`, two
replicas on PostgreSQL) end up with one segment; events no segment covers (rows
appended behind ExecGate's back, or by a writer that died before checkpointing) stay
unvouched and ``verify`` says so.

Only the private key signs; ``verify`` needs only the public key. The file is replaced
atomically under an advisory lock; a checkpoint that is invalid or conflicts with a new
run (the database was rebuilt, the file forged) is left in place as evidence.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from policies.audit.chain import canonical
from policies.errors import AuditIntegrityError

logger = logging.getLogger("policies.audit")

VERSION = 2
LEGACY_VERSION = 1  # HMAC-SHA256 checkpoints of older releases
# Under a stream of commits the file is rewritten at most this often (each rewrite
# syncs the disk); events younger than this may be unvouched for that long.
MIN_INTERVAL_S = 0.5
MAX_SEGMENTS = 10_000


@dataclass(frozen=True, slots=True)
class Segment:
    """Events ``first..last``: ``first`` links to ``prev_hash``, ``last`` has ``hash``."""

    first: int
    prev_hash: str
    last: int
    hash: str


@dataclass(frozen=True, slots=True)
class Checkpoint:
    segments: tuple[Segment, ...]
    key_id: str = ""

    @property
    def last(self) -> int:
        return self.segments[-1].last if self.segments else 0


def key_id(public: Ed25519PublicKey) -> str:
    """A short fingerprint of ``public`` (sha256 of its raw bytes, 16 hex digits)."""
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _body(cp: Checkpoint, written_at: str) -> str:
    return canonical(
        {
            "version": VERSION,
            "alg": "ed25519",
            "key_id": cp.key_id,
            "segments": [[s.first, s.prev_hash, s.last, s.hash] for s in cp.segments],
            "written_at": written_at,
        }
    )


def encode_checkpoint(segments: Sequence[Segment], key: Ed25519PrivateKey) -> str:
    """The signed file content vouching for ``segments``."""
    cp = Checkpoint(tuple(segments), key_id(key.public_key()))
    written_at = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
    body = _body(cp, written_at)
    sig = base64.b64encode(key.sign(body.encode("ascii"))).decode("ascii")
    doc = json.loads(body)
    doc["sig"] = sig
    return canonical(doc) + "\n"


def decode_checkpoint(text: str, public: Ed25519PublicKey) -> Checkpoint:
    """Raises: AuditIntegrityError (kind: malformed, legacy, signature)."""
    try:
        doc: Any = json.loads(text)
        version = int(doc["version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AuditIntegrityError("the audit checkpoint is malformed", kind="malformed") from exc
    if version == LEGACY_VERSION:
        raise AuditIntegrityError(
            "the audit checkpoint is an HMAC checkpoint of an older ExecGate; verify it "
            "with that release, then move it aside to start signed checkpoints",
            kind="legacy",
        )
    try:
        segments = tuple(Segment(int(a), str(b), int(c), str(d)) for a, b, c, d in doc["segments"])
        cp = Checkpoint(segments, str(doc["key_id"]))
        sig = base64.b64decode(str(doc["sig"]), validate=True)
        written_at = str(doc["written_at"])
        alg = str(doc["alg"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AuditIntegrityError("the audit checkpoint is malformed", kind="malformed") from exc
    if version != VERSION or alg != "ed25519" or _disordered(segments):
        raise AuditIntegrityError("the audit checkpoint is malformed", kind="malformed")
    try:
        public.verify(sig, _body(cp, written_at).encode("ascii"))
    except InvalidSignature as exc:
        raise AuditIntegrityError(
            "the audit checkpoint signature is invalid", kind="signature"
        ) from exc
    return cp


def _disordered(segments: Sequence[Segment]) -> bool:
    previous = 0
    for seg in segments:
        if seg.first <= previous or seg.last < seg.first:
            return True
        previous = seg.last
    return False


def read_checkpoint(path: Path, public: Ed25519PublicKey) -> Checkpoint | None:
    """The checkpoint stored at ``path``; None when there is no file.

    Raises: AuditIntegrityError when the file is unreadable, malformed, of the old HMAC
    kind, or not signed by the private half of ``public``.
    """
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditIntegrityError("the audit checkpoint cannot be read", kind="unreadable") from exc
    return decode_checkpoint(text, public)


class Conflict(Exception):
    """A new run overlaps a signed segment, or meets one without linking to it."""


def merge(segments: Sequence[Segment], run: Segment) -> tuple[Segment, ...]:
    """``segments`` with ``run`` added, adjacent linked segments joined.

    Raises: Conflict when ``run`` overlaps a segment (other than repeating it exactly)
    or sits next to one its hashes do not link to (the chain forked).
    """
    if run in segments:
        return tuple(segments)
    out: list[Segment] = []
    for seg in segments:
        if seg.last >= run.first and seg.first <= run.last:
            raise Conflict
        out.append(seg)
    out.append(run)
    out.sort(key=lambda s: s.first)
    joined: list[Segment] = []
    for seg in out:
        if joined and joined[-1].last + 1 == seg.first:
            if joined[-1].hash != seg.prev_hash:
                raise Conflict
            joined[-1] = Segment(joined[-1].first, joined[-1].prev_hash, seg.last, seg.hash)
        else:
            joined.append(seg)
    return tuple(joined)


def join_runs(runs: Sequence[Segment], run: Segment) -> list[Segment]:
    """A writer's own pending runs with ``run`` appended (joined when they link)."""
    out = list(runs)
    if out and out[-1].last + 1 == run.first and out[-1].hash == run.prev_hash:
        out[-1] = Segment(out[-1].first, out[-1].prev_hash, run.last, run.hash)
    else:
        out.append(run)
    return out


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


def start_checkpoint(path: Path, key: Ed25519PrivateKey) -> bool:
    """Begin a new log's checkpoint: a signed checkpoint vouching for no events yet,
    written at ``path`` unless a checkpoint is already there; True when written.

    Every signed log has a checkpoint from its start, so a missing one always means it
    was deleted (``verify`` fails, writers refuse to start over).
    """
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            if path.exists():
                return False
            _replace_file(path, encode_checkpoint((), key))
            return True
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


# Publishes a written checkpoint outside the database host (see policies.audit.anchors).
Publish = Callable[[int, str], Awaitable[None]]
_Status = Literal["written", "invalid", "conflict", "missing", "full"]


class CheckpointWriter:
    """Adds the runs of events this process appended to the checkpoint file.

    ``note()`` is called after each commit with the run that commit appended (its
    hashes computed here) and returns at once; one background task writes the runs
    noted, at most every MIN_INTERVAL_S. ``flush()`` (the store calls it before
    verifying and at close) writes them without delay. A run is never noted for rows
    this process did not append, so a checkpoint never vouches for them.
    """

    def __init__(
        self,
        path: Path,
        key: Ed25519PrivateKey,
        *,
        publish: Publish | None = None,
        anchor_interval_s: float = 60.0,
    ) -> None:
        self._path = path
        self._key = key
        self._public = key.public_key()
        self._lock_path = path.with_name(path.name + ".lock")
        self._runs: list[Segment] = []  # appended here, not yet in the file
        self._task: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()
        self._last_write = -MIN_INTERVAL_S  # loop time of the last write started
        self._publish = publish
        self._anchor_interval_s = anchor_interval_s
        self._last_anchor: float | None = None
        self._unanchored: tuple[int, str] | None = None
        self._warned: set[str] = set()

    def note(self, run: Segment) -> None:
        """Schedule ``run`` (events this process just committed) for the checkpoint."""
        self._runs.append(run)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())

    @property
    def pending(self) -> tuple[Segment, ...]:
        """Runs noted but not yet in the checkpoint file."""
        return tuple(self._runs)

    async def flush(self) -> None:
        """Write the runs noted so far now (or refuse them, and log why), and publish
        the latest checkpoint written if it is not anchored yet."""
        self._hurry.set()
        try:
            while self._task is not None and not self._task.done():
                await self._task
        finally:
            self._hurry.clear()
        await self._anchor(force=True)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._runs:
            wait = self._last_write + MIN_INTERVAL_S - loop.time()
            if wait > 0 and not self._hurry.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hurry.wait(), wait)
            noted, self._runs = self._runs, []
            runs: list[Segment] = []
            for run in noted:
                runs = join_runs(runs, run)
            self._last_write = loop.time()
            try:
                status, text = await asyncio.to_thread(self._replace, runs)
            except Exception:
                # The commit already happened; a missed checkpoint leaves these events
                # unvouched, which verify reports: log, and try again with the next.
                logger.exception("audit checkpoint: writing %s failed", self._path)
                self._runs[:0] = runs
                return
            if status == "written":
                if text is not None:
                    self._unanchored = (runs[-1].last, text)
                await self._anchor(force=False)
                continue
            self._warn(status)
            self._runs.clear()  # never retried over evidence
            return

    def _replace(self, runs: list[Segment]) -> tuple[_Status, str | None]:
        """Under the file lock: add ``runs`` to the file's segments, or say why not."""
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                try:
                    current = read_checkpoint(self._path, self._public)
                except AuditIntegrityError:
                    return "invalid", None
                if current is None:
                    # A log's checkpoint exists from its start (``start_checkpoint``):
                    # a missing one was deleted. Leave it missing (verify says so)
                    # rather than start a new chain without the older runs.
                    return "missing", None
                segments = current.segments
                try:
                    for run in runs:
                        segments = merge(segments, run)
                except Conflict:
                    return "conflict", None
                if len(segments) > MAX_SEGMENTS:
                    return "full", None
                text = encode_checkpoint(segments, self._key)
                _replace_file(self._path, text)
                return "written", text
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    async def _anchor(self, *, force: bool) -> None:
        if self._publish is None or self._unanchored is None:
            return
        now = asyncio.get_running_loop().time()
        due = self._last_anchor is None or now - self._last_anchor >= self._anchor_interval_s
        if not (force or due):
            return
        last, text = self._unanchored
        try:
            await self._publish(last, text)
        except Exception:
            logger.exception("audit checkpoint: publishing the anchor at event %d failed", last)
            return
        self._unanchored = None
        self._last_anchor = now

    def _warn(self, status: str) -> None:
        reasons = {
            "invalid": "the existing checkpoint is invalid; it is kept for inspection",
            "conflict": "the database no longer matches the checkpoint (rebuilt or cut?)",
            "missing": "the checkpoint file was deleted",
            "full": "the checkpoint has too many unvouched gaps",
        }
        if status not in self._warned:
            self._warned.add(status)
            logger.error("audit checkpoint %s not updated: %s", self._path, reasons[status])
