"""`execgate collect TARGET PATH`: fetch a file from an instance as an artifact."""

from __future__ import annotations

import argparse
import sys

from server.settings import Settings


async def cmd_collect(args: argparse.Namespace, settings: Settings) -> int:
    print("execgate collect: not available yet", file=sys.stderr)
    return 69
