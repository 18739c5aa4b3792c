"""Large output: the full scrubbed output of a stream, from its spill file to the store."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from policies.artifacts.keys import OUTPUT, artifact_key
from policies.artifacts.local import LocalArtifactStore
from policies.errors import ArtifactError
from policies.ports import ArtifactInfo, ArtifactStore

logger = logging.getLogger(__name__)
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class StoredOutput:
    """Links by stream name (``stdout``/``stderr``) and what the audit log records."""

    links: dict[str, str] = field(default_factory=dict)
    artifacts: tuple[ArtifactInfo, ...] = ()


async def store_spills(
    store: ArtifactStore,
    spill_files: Mapping[str, Path],
    *,
    when: dt.datetime,
    target: str,
    audit_id: str,
    ttl_seconds: float,
    prefix: str = "",
) -> StoredOutput:
    """Upload each spill file, link it, and delete it (always, also on failure).

    A stream whose upload or link fails is left out (and logged): the command already
    ran, so its result stands without that link.
    """
    links: dict[str, str] = {}
    infos: list[ArtifactInfo] = []
    for stream, path in sorted(spill_files.items()):
        key = artifact_key(
            when=when,
            target=target,
            audit_id=audit_id,
            kind=OUTPUT,
            name=f"{stream}.txt",
            prefix=prefix,
        )
        try:
            adopted = None
            if isinstance(store, LocalArtifactStore):
                adopted = await store.adopt_file(key, path, content_type=TEXT)
            info = adopted or await store.put_file(key, path, content_type=TEXT)
            infos.append(info)
            links[stream] = await store.link(key, ttl_seconds=ttl_seconds)
        except ArtifactError as exc:
            logger.warning(
                "the full %s could not be stored: %s",
                stream,
                exc.safe_message,
                extra={"audit_id": audit_id},
            )
        finally:
            with contextlib.suppress(OSError):
                path.unlink()
    for path in spill_files.values():
        with contextlib.suppress(OSError):
            path.parent.rmdir()
    return StoredOutput(links, tuple(infos))
