"""Process-wide asyncio set-up shared by every ExecGate entry point."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

logger = logging.getLogger(__name__)


def install_child_watcher() -> None:
    """Watch child processes through pidfds instead of one thread per child.

    Python 3.11's default watcher starts a ``waitpid`` thread for every subprocess; with
    many concurrent execs on local instances that is most of the cost of a spawn and a
    thread per open exec. Kernels without pidfd_open (before 5.3) keep the default.
    """
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return
    asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
