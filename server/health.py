"""``/healthz`` (the process is up) and ``/readyz`` (this replica can serve requests).

A load balancer or Kubernetes sends traffic to a replica only while ``/readyz`` answers
200: the audit database answers within a few seconds, its schema is the one this
release writes (``policies.audit.revision.SCHEMA_HEAD``), and the Ed25519 key that
signs this replica's audit checkpoints is present. Failing checks answer 503 with each
check's code and a safe message; details go to the log.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol, runtime_checkable

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from policies.errors import ExecGateError
from policies.service.core import ExecService
from server.localstate import SIGNING_KEY_FILE
from server.settings import Settings

logger = logging.getLogger(__name__)

READY_TIMEOUT_S = 5.0


@runtime_checkable
class Ready(Protocol):
    async def check_ready(self) -> None: ...


async def _database(service: ExecService) -> dict[str, str]:
    audit = service.audit
    if not isinstance(audit, Ready):
        return {"status": "ok"}
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await audit.check_ready()
    except ExecGateError as exc:
        logger.warning("readyz: database check failed: %s", exc.safe_message, exc_info=True)
        return {"status": "fail", "code": exc.code, "message": exc.safe_message}
    except TimeoutError:
        return {"status": "fail", "code": "timeout", "message": "the database did not answer"}
    return {"status": "ok"}


def _checkpoint_key(settings: Settings) -> dict[str, str]:
    if (settings.data_dir / SIGNING_KEY_FILE).is_file():
        return {"status": "ok"}
    return {
        "status": "fail",
        "code": "checkpoint_key_missing",
        "message": "the audit checkpoint signing key is missing from the data directory",
    }


def health_routes(settings: Settings, service: ExecService) -> list[BaseRoute]:
    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> JSONResponse:
        checks = {"database": await _database(service), "checkpoint_key": _checkpoint_key(settings)}
        ready = all(check["status"] == "ok" for check in checks.values())
        body = {"status": "ready" if ready else "not_ready", "checks": checks}
        return JSONResponse(body, status_code=200 if ready else 503)

    return [Route("/healthz", healthz), Route("/readyz", readyz)]
