"""`execgate slack`: the Slack bot in Socket Mode."""

from __future__ import annotations

import sys

from server.settings import Settings


def run_socket_mode(settings: Settings) -> int:
    print("execgate slack: not available yet", file=sys.stderr)
    return 69
