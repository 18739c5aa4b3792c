"""Signed, expiring links to artifacts in the local store, served by `execgate serve`.

``GET /artifacts/{token}`` streams the file when the token's signature holds and it has
not expired (403 ``invalid_link``, 410 ``link_expired``, 404 ``artifact_not_found``
otherwise, as JSON ``{"error": {"code", "message"}}``). Text output opens in the
browser as plain text; everything else downloads as an attachment. With
``artifacts.retention_days`` set, older artifacts are deleted hourly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from policies.artifacts.local import LocalArtifactStore
from policies.errors import ArtifactError
from policies.service.core import ExecService
from server.mounts import Mounted
from server.settings import Settings

logger = logging.getLogger(__name__)

SWEEP_SECONDS = 3600.0
_STATUS = {"invalid": 403, "expired": 410, "missing": 404}
_CODES = {"invalid": "invalid_link", "expired": "link_expired", "missing": "artifact_not_found"}
_HEADERS = {
    "Cache-Control": "private, no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Referrer-Policy": "no-referrer",
}


def artifact_routes(store: LocalArtifactStore) -> list[BaseRoute]:
    """The /artifacts route over ``store`` (the HTTP app and tests mount it)."""

    async def fetch(request: Request) -> Response:
        token = str(request.path_params["token"])
        try:
            found = await asyncio.to_thread(store.resolve, token)
        except ArtifactError as exc:
            reason = str(exc.fields.get("reason", "invalid"))
            return JSONResponse(
                {
                    "error": {
                        "code": _CODES.get(reason, "invalid_link"),
                        "message": exc.safe_message,
                    }
                },
                status_code=_STATUS.get(reason, 403),
                headers=_HEADERS,
            )
        inline = found.content_type.startswith("text/plain")
        return FileResponse(
            found.path,
            media_type=found.content_type,
            filename=found.filename,
            content_disposition_type="inline" if inline else "attachment",
            headers=_HEADERS,
        )

    return [Route("/artifacts/{token}", fetch, methods=["GET", "HEAD"])]


def artifact_mount(settings: Settings, service: ExecService) -> Mounted | None:
    """Routes for /artifacts; None when the artifact store is not the local one."""
    store = service.artifacts
    if not isinstance(store, LocalArtifactStore):
        return None
    days = settings.artifacts.retention_days
    if days is None:
        return Mounted(routes=artifact_routes(store))

    @contextlib.asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        task = asyncio.create_task(_sweep_forever(store, days * 86400.0))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return Mounted(routes=artifact_routes(store), lifespan=lifespan)


async def _sweep_forever(store: LocalArtifactStore, max_age: float) -> None:
    while True:
        try:
            removed = await store.remove_older_than(max_age)
            if removed:
                logger.info("artifact retention removed %d artifacts", removed)
        except Exception:
            logger.exception("artifact retention failed")
        await asyncio.sleep(SWEEP_SECONDS)
