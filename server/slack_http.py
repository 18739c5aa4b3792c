"""The Slack surface's HTTP mount at /slack/events."""

from __future__ import annotations

from policies.service import ExecService
from server.mounts import Mounted
from server.settings import Settings


def slack_mount(settings: Settings, service: ExecService) -> Mounted | None:
    """Routes for /slack/events; None when Slack is not configured."""
    return None
