"""The local artifact store: files under the data directory, fetched through `execgate
serve` at ``/artifacts/<token>``.

A token is ``base64url(payload) "." base64url(HMAC-SHA256(key, payload))`` with the
payload ``{"k": artifact key, "x": expiry (unix seconds)}``: anyone holding the link may
fetch the artifact until it expires; a changed byte anywhere fails the signature.

Layout under the root: ``objects/<key>`` (the bytes), ``meta/<key>.json`` (content type,
size, sha256) and ``partial/`` (uploads in progress). An upload is written to
``partial/`` and renamed into ``objects/`` only once complete, so a cut upload is never
served as the whole artifact.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import contextlib
import datetime as dt
import errno
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from policies.artifacts.streaming import READ_CHUNK, FileUploads, Meter, read_capped, too_large
from policies.errors import ArtifactError, ArtifactNotFound, ExecGateError
from policies.ports import ArtifactInfo

LINK_PATH = "/artifacts/"
_CONTEXT = b"execgate-artifact-link/1:"
_SEGMENT = re.compile(r"[A-Za-z0-9_@-][A-Za-z0-9._@-]{0,127}")
_WRITE_BATCH = 1 << 20


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_key(key: str) -> str:
    """Raises: ArtifactError when ``key`` is not a relative path of safe segments."""
    parts = key.split("/")
    if len(key) > 1024 or not all(_SEGMENT.fullmatch(p) for p in parts):
        raise ArtifactError("invalid artifact key", reason="invalid")
    return key


@dataclass(frozen=True, slots=True)
class LocalObject:
    """An artifact a valid link points at."""

    path: Path
    key: str
    content_type: str
    size: int
    sha256: str

    @property
    def filename(self) -> str:
        return self.key.rsplit("/", 1)[-1]


class LocalArtifactStore(FileUploads):
    """Artifacts as files; links signed with ``signing_key`` and served by ``base_url()``.

    ``base_url`` is asked at link time (the server may start after this process and
    listen on a port chosen at start). ``clock`` returns unix seconds. ``folder`` is the
    directory under ``root`` that holds the objects (the audit anchors keep their own,
    ``audit-anchors``, out of reach of the retention sweep).
    """

    name = "local"

    def __init__(
        self,
        root: Path,
        *,
        signing_key: bytes,
        base_url: Callable[[], str],
        default_ttl: float = 3600.0,
        clock: Callable[[], float] = time.time,
        folder: str = "objects",
    ) -> None:
        if len(signing_key) < 16:
            raise ArtifactError("the artifact signing key is too short (16 bytes at least)")
        self.root = root
        self._key = signing_key
        self._base_url = base_url
        self._ttl = default_ttl
        self._clock = clock
        self._objects = root / folder

    # ------------------------------------------------------------------ writing

    def _object(self, key: str) -> Path:
        return self._objects / check_key(key)

    def _meta(self, key: str) -> Path:
        return self.root / "meta" / (check_key(key) + ".json")

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str,
        max_bytes: int | None = None,
    ) -> ArtifactInfo:
        """Raises: ArtifactError (also past ``max_bytes``); whatever ``chunks`` raises.
        Nothing appears under ``key`` unless every byte arrived."""
        final = self._object(key)
        meter = Meter(max_bytes)
        handle, temp = await asyncio.to_thread(self._open_partial)
        try:
            batch = bytearray()
            async for chunk in chunks:
                meter.take(chunk)
                batch += chunk
                if len(batch) >= _WRITE_BATCH:
                    await asyncio.to_thread(_write, handle, bytes(batch))
                    batch.clear()
            await asyncio.to_thread(_write, handle, bytes(batch))
            info = meter.info(key, content_type)
            await asyncio.to_thread(self._publish, handle, temp, final, info)
        except BaseException:
            handle.close()
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        return info

    async def adopt_file(self, key: str, path: Path, *, content_type: str) -> ArtifactInfo | None:
        """Take over a file ExecGate wrote itself (spilled output) under ``key``: on the
        store's file system it is hard-linked in and removed from ``path``, costing one
        read for the digest instead of a copy. None when it cannot be taken over (another
        file system, not a plain file of one link): the caller copies it instead.

        Raises: ArtifactError.
        """
        final = self._object(key)
        return await asyncio.to_thread(self._adopt, key, path, content_type, final)

    def _adopt(self, key: str, path: Path, content_type: str, final: Path) -> ArtifactInfo | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise ArtifactError("the file to store could not be read") from exc
        with os.fdopen(fd, "rb") as handle:
            seen = os.fstat(fd)
            if not stat.S_ISREG(seen.st_mode) or seen.st_nlink != 1:
                return None  # a link to something else: copy what it holds now
            temp = self.root / "partial" / secrets.token_hex(12)
            try:
                temp.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                os.link(path, temp, follow_symlinks=False)
            except OSError as exc:
                if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    return None  # another file system (or no hard links there)
                raise ArtifactError("the local artifact store cannot be written") from exc
            try:
                if os.lstat(temp).st_ino != seen.st_ino:
                    raise ArtifactError("the file to store changed while it was stored")
                os.unlink(path)  # taken over: only the store's name is left
                os.fchmod(fd, 0o600)
                meter = Meter(None)
                while chunk := handle.read(_WRITE_BATCH):
                    meter.take(chunk)
                info = meter.info(key, content_type)
                self._publish(handle, temp, final, info)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    temp.unlink()
                raise ArtifactError("the local artifact store cannot be written") from exc
            except BaseException:
                with contextlib.suppress(OSError):
                    temp.unlink()
                raise
        return info

    def _open_partial(self) -> tuple[IO[bytes], Path]:
        partial = self.root / "partial"
        try:
            partial.mkdir(parents=True, exist_ok=True, mode=0o700)
            temp = partial / secrets.token_hex(12)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise ArtifactError("the local artifact store cannot be written") from exc
        return os.fdopen(fd, "wb"), temp

    def _publish(self, handle: IO[bytes], temp: Path, final: Path, info: ArtifactInfo) -> None:
        meta = {"content_type": info.content_type, "size": info.size, "sha256": info.sha256}
        try:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            meta_path = self._meta(info.key)
            meta_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            meta_temp = meta_path.with_name(meta_path.name + ".tmp")
            meta_temp.write_text(json.dumps(meta))
            meta_temp.replace(meta_path)
            final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            temp.replace(final)  # the artifact exists from this rename on, whole
        except OSError as exc:
            raise ArtifactError("the local artifact store cannot be written") from exc

    def put_object(
        self,
        key: str,
        data: bytes,
        content_type: str,
        retain_until: dt.datetime | None = None,
        lock_mode: str | None = None,
    ) -> None:
        """Store ``data`` at ``key`` as a read-only file, never over an existing one (its
        content is kept); the host has no retention, so ``retain_until`` is not used.

        Raises: ArtifactError."""
        path = self._object(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileExistsError:
            return
        except OSError as exc:
            raise ArtifactError("the local artifact store cannot be written") from exc
        with os.fdopen(fd, "wb") as handle:
            _write(handle, data)
            try:
                handle.flush()
                os.fsync(handle.fileno())
            except OSError as exc:
                raise ArtifactError("the local artifact store cannot be written") from exc

    # ------------------------------------------------------------------ reading

    async def read(self, key: str, *, max_bytes: int) -> bytes:
        """Raises: ArtifactNotFound, ArtifactTooLarge, ArtifactError."""
        return await asyncio.to_thread(self._read, self._object(key), max_bytes)

    def _read(self, path: Path, max_bytes: int) -> bytes:
        try:
            with path.open("rb") as handle:
                if os.fstat(handle.fileno()).st_size > max_bytes:
                    raise too_large(max_bytes)
                return read_capped(iter(lambda: handle.read(READ_CHUNK), b""), max_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ArtifactNotFound("the artifact no longer exists") from exc
        except OSError as exc:
            raise ArtifactError("the local artifact store cannot be read") from exc

    async def list(self, prefix: str) -> builtins.list[str]:
        """Raises: ArtifactError."""
        return await asyncio.to_thread(self._list, prefix)

    def _list(self, prefix: str) -> builtins.list[str]:
        folder = prefix.rpartition("/")[0]
        try:
            start = self._objects / check_key(folder) if folder else self._objects
        except ArtifactError:
            return []  # no key lies under a folder no key could name
        try:
            found = [p for p in start.rglob("*") if p.is_file()] if start.is_dir() else []
        except OSError as exc:
            raise ArtifactError("the local artifact store cannot be listed") from exc
        keys = (p.relative_to(self._objects).as_posix() for p in found)
        return sorted(k for k in keys if k.startswith(prefix))

    # ------------------------------------------------------------------ links

    async def link(self, key: str, *, ttl_seconds: float | None = None) -> str:
        """Raises: ArtifactError (no such artifact; the server's address is unknown)."""
        if not await asyncio.to_thread(self._object(key).is_file):
            raise ArtifactError("no such artifact", reason="missing")
        try:
            base = self._base_url().rstrip("/")
        except ExecGateError as exc:
            raise ArtifactError(
                "links to local artifacts are served by `execgate serve`, which is not "
                "running; start it to fetch the artifact"
            ) from exc
        expires = int(self._clock() + (ttl_seconds if ttl_seconds is not None else self._ttl))
        return base + LINK_PATH + self.sign(key, expires)

    def sign(self, key: str, expires: int) -> str:
        payload = _b64(
            json.dumps({"k": check_key(key), "x": expires}, separators=(",", ":")).encode()
        )
        mac = hmac.new(self._key, _CONTEXT + payload.encode(), hashlib.sha256).digest()
        return f"{payload}.{_b64(mac)}"

    def resolve(self, token: str) -> LocalObject:
        """The artifact a link token points at.

        Raises: ArtifactError with ``fields["reason"]`` ``invalid`` (malformed or
        tampered), ``expired`` or ``missing``.
        """
        payload, _, mac = token.partition(".")
        try:
            given = _unb64(mac)
            expected = hmac.new(self._key, _CONTEXT + payload.encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(given, expected):
                raise ArtifactError("this link is not valid", reason="invalid")
            data = json.loads(_unb64(payload))
            key, expires = check_key(str(data["k"])), int(data["x"])
        except (binascii.Error, ValueError, KeyError, TypeError, UnicodeError) as exc:
            raise ArtifactError("this link is not valid", reason="invalid") from exc
        if self._clock() >= expires:
            raise ArtifactError(
                "this link has expired; ask ExecGate for a new one", reason="expired"
            )
        path = self._object(key)
        try:
            meta = json.loads(self._meta(key).read_text())
            size = path.stat().st_size
        except (OSError, ValueError) as exc:
            raise ArtifactError("the artifact no longer exists", reason="missing") from exc
        return LocalObject(
            path,
            key,
            str(meta.get("content_type", "application/octet-stream")),
            size,
            str(meta.get("sha256", "")),
        )

    # ------------------------------------------------------------------ retention

    async def remove_older_than(self, seconds: float) -> int:
        """Delete artifacts (and stale partial uploads) older than ``seconds``; return
        how many artifacts went."""
        return await asyncio.to_thread(self._sweep, self._clock() - seconds)

    def _sweep(self, cutoff: float) -> int:
        removed = 0
        for base in (self._objects, self.root / "partial"):
            for path in sorted(base.rglob("*"), reverse=True) if base.is_dir() else ():
                with contextlib.suppress(OSError, ArtifactError):
                    if path.is_dir():
                        if not any(path.iterdir()):
                            path.rmdir()
                    elif path.stat().st_mtime < cutoff:
                        path.unlink()
                        if base == self._objects:
                            removed += 1
                            key = path.relative_to(base).as_posix()
                            self._meta(key).unlink(missing_ok=True)
        return removed

    async def aclose(self) -> None:
        return None


def _write(handle: IO[bytes], data: bytes) -> None:
    try:
        handle.write(data)
    except OSError as exc:
        raise ArtifactError("the local artifact store cannot be written") from exc
