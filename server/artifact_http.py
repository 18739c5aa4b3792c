"""Signed, expiring links to artifacts in the local store, served by `execgate serve`."""

from __future__ import annotations

from policies.service import ExecService
from server.mounts import Mounted
from server.settings import Settings


def artifact_mount(settings: Settings, service: ExecService) -> Mounted | None:
    """Routes for /artifacts; None when the artifact store is not the local one."""
    return None
