"""Reading stored artifacts back through the service: full outputs and collected files.

A surface that cannot hand its user a link (an AI assistant often cannot fetch a URL)
reads an artifact here instead. An artifact is named by the exec that stored it and its
file name (``stdout.txt``, ``stderr.txt``, or the collected file's name), never by its
storage key. Only the principal whose exec stored it, or a member of the auditor role,
may read it; anyone else is told it does not exist. Reads are capped in size and the
bytes are checked against the sha256 the audit log recorded; every read is logged with
the audit id of the exec that stored the artifact.

    ArtifactReads.describe(principal, audit_id) -> [ArtifactView]   what may be read
    ArtifactReads.read(principal, audit_id, name, max_bytes) -> ArtifactContent
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from policies.errors import ArtifactError, ArtifactNotFound, ArtifactTooLarge, UnknownPrincipal
from policies.ports import ArtifactInfo, ArtifactStore, AuditStore, ExecRecord
from policies.types import AuditId, Principal

logger = logging.getLogger(__name__)

PrincipalResolver = Callable[[Principal], Awaitable[Principal]]
RolesOf = Callable[[Principal], frozenset[str]]

_TEXT_TYPES = ("text/", "application/json")


def artifact_name(key: str) -> str:
    """The name an artifact is read by: the last segment of its key."""
    return key.rsplit("/", 1)[-1]


def is_text(content_type: str) -> bool:
    """Whether an artifact of this content type is read as text (logs, JSON)."""
    return content_type.startswith(_TEXT_TYPES)


@dataclass(frozen=True, slots=True)
class ArtifactView:
    """An artifact a principal may read: what the audit log recorded, and a link."""

    audit_id: AuditId
    name: str
    info: ArtifactInfo
    link: str | None


@dataclass(frozen=True, slots=True)
class ArtifactContent:
    """The bytes of one artifact, checked against the recorded sha256."""

    audit_id: AuditId
    name: str
    info: ArtifactInfo
    data: bytes

    @property
    def is_text(self) -> bool:
        return is_text(self.info.content_type)


class ArtifactReads:
    """Reads of stored artifacts, for the principal who stored them or an auditor."""

    def __init__(
        self,
        *,
        audit: AuditStore,
        artifacts: ArtifactStore | None,
        resolve: PrincipalResolver,
        roles_of: RolesOf,
        auditor_role: str,
        link_ttl_seconds: float,
    ) -> None:
        self._audit = audit
        self._artifacts = artifacts
        self._resolve = resolve
        self._roles_of = roles_of
        self._auditor_role = auditor_role
        self._link_ttl = link_ttl_seconds

    async def describe(self, principal: Principal, audit_id: AuditId) -> list[ArtifactView]:
        """The artifacts the exec ``audit_id`` stored, each with a fresh link when the
        store can give one.

        Raises: UnknownPrincipal; ArtifactNotFound when the exec is not one
        ``principal`` may read.
        """
        record = await self._readable(principal, audit_id)
        outcome = record.outcome
        views: list[ArtifactView] = []
        for info in outcome.artifacts if outcome is not None else ():
            views.append(
                ArtifactView(audit_id, artifact_name(info.key), info, await self._link(info))
            )
        return views

    async def read(
        self, principal: Principal, audit_id: AuditId, name: str, *, max_bytes: int
    ) -> ArtifactContent:
        """The bytes of artifact ``name`` of exec ``audit_id``.

        Raises: UnknownPrincipal; ArtifactNotFound (no such artifact, or not readable by
        ``principal``); ArtifactTooLarge when it is larger than ``max_bytes``;
        ArtifactError when the store fails or the bytes do not match the recorded
        sha256.
        """
        record = await self._readable(principal, audit_id)
        outcome = record.outcome
        found = [
            info
            for info in (outcome.artifacts if outcome is not None else ())
            if artifact_name(info.key) == name
        ]
        if not found or self._artifacts is None:
            raise ArtifactNotFound(audit_id=audit_id)
        info = found[0]
        if info.size > max_bytes:
            raise ArtifactTooLarge(
                f"{name} is {info.size} bytes, more than the {max_bytes} bytes that can be "
                "read here; fetch it with its link",
                audit_id=audit_id,
                size=info.size,
                max_bytes=max_bytes,
            )
        data = await self._artifacts.read(info.key, max_bytes=max_bytes)
        if hashlib.sha256(data).hexdigest() != info.sha256:
            logger.error(
                "a stored artifact does not match its recorded sha256",
                extra={"audit_id": audit_id},
            )
            raise ArtifactError(
                "the stored artifact does not match the sha256 in the audit log",
                audit_id=audit_id,
            )
        logger.info("artifact %s read by %s", name, principal, extra={"audit_id": audit_id})
        return ArtifactContent(audit_id, name, info, data)

    async def _readable(self, principal: Principal, audit_id: AuditId) -> ExecRecord:
        principal = await self._resolve(principal)
        roles = self._roles_of(principal)
        if not roles:
            raise UnknownPrincipal()
        try:
            record = await self._audit.get_exec(audit_id)
        except KeyError as exc:
            raise ArtifactNotFound(audit_id=audit_id) from exc
        if record.intent.principal != str(principal) and self._auditor_role not in roles:
            # Someone else's exec reads as missing: its existence is not theirs to learn.
            raise ArtifactNotFound(audit_id=audit_id)
        return record

    async def _link(self, info: ArtifactInfo) -> str | None:
        if self._artifacts is None:
            return None
        try:
            return await self._artifacts.link(info.key, ttl_seconds=self._link_ttl)
        except ArtifactError as exc:
            logger.warning("no link for a stored artifact: %s", exc.safe_message)
            return None
