"""Learn of child exits through the event loop, not a thread per child.

Python 3.11's default child watcher (``ThreadedChildWatcher``) starts one thread per
subprocess, blocked in ``waitpid`` until the child exits: a host holding 1,000 long
execs holds 1,000 threads (and their stacks). On Linux 5.3 and later a pidfd becomes
readable when its process exits, so the loop's selector can wait for every child at
once. :func:`use_pidfd_child_watcher` installs such a watcher for the whole process;
it follows whichever loop is running when a child is started (as Python 3.12's does),
so it serves any number of loops, one after the other or in several threads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVarTuple, Unpack

_Ts = TypeVarTuple("_Ts")

log = logging.getLogger(__name__)

_lock = threading.Lock()


class LoopPidfdChildWatcher(asyncio.AbstractChildWatcher):
    """A child watcher that waits on each child's pidfd in the loop that started it."""

    def __enter__(self) -> LoopPidfdChildWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def is_active(self) -> bool:
        return True

    def close(self) -> None:
        return None

    def attach_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        return None

    def add_child_handler(
        self, pid: int, callback: Callable[[int, int, Unpack[_Ts]], object], *args: *_Ts
    ) -> None:
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(pid)
        loop._add_reader(pidfd, self._do_wait, loop, pid, pidfd, callback, args)  # type: ignore[attr-defined]

    def remove_child_handler(self, pid: int) -> bool:
        # The reader goes when the child exits; nothing is kept per child besides it.
        return True

    @staticmethod
    def _do_wait(
        loop: asyncio.AbstractEventLoop, pid: int, pidfd: int, callback: Any, args: Any
    ) -> None:
        loop._remove_reader(pidfd)  # type: ignore[attr-defined]
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            # Reaped by someone else: the exit status is lost.
            returncode = 255
            log.warning("child process pid %d exit status already read", pid)
        else:
            returncode = os.waitstatus_to_exitcode(status)
        os.close(pidfd)
        callback(pid, returncode, *args)


def _pidfd_works() -> bool:
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:  # kernel before 5.3, or a seccomp filter that refuses it
        return False
    return True


def use_pidfd_child_watcher() -> bool:
    """Install the pidfd watcher for this process (once); whether it is in use.

    Where pidfds do not work the default watcher stays (a thread per child).
    """
    if sys.version_info >= (3, 12):
        return True  # asyncio's own default already waits on pidfds in the loop
    with _lock:
        current = asyncio.get_child_watcher()
        if isinstance(current, LoopPidfdChildWatcher):
            return True
        if not _pidfd_works():
            return False
        # Children already started keep their own waiting threads: closing the threaded
        # watcher does not end them.
        asyncio.set_child_watcher(LoopPidfdChildWatcher())
        return True
