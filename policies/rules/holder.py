"""Holds the running policy and reloads it when its file changes.

A file that fails validation is rejected whole: the holder keeps serving the last good
policy and logs the file, line and reason.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from policies.errors import PolicyLoadError
from policies.rules.model import Policy, load_policy

logger = logging.getLogger(__name__)


class PolicyHolder:
    """The current policy, re-read at most every ``check_interval`` seconds on change."""

    def __init__(
        self,
        path: Path,
        *,
        check_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._interval = check_interval
        self._clock = clock
        # Raises PolicyLoadError: a service must not start on a bad policy.
        self._policy = load_policy(path)
        self._mtime = self._stat()
        self._checked = clock()
        self.last_error: PolicyLoadError | None = None

    @classmethod
    def fixed(cls, policy: Policy) -> PolicyHolder:
        """A holder that never reloads (tests, `policy check --policy`)."""
        holder = cls.__new__(cls)
        holder._path = None  # type: ignore[assignment]
        holder._interval = float("inf")
        holder._clock = time.monotonic
        holder._policy = policy
        holder._mtime = None
        holder._checked = 0.0
        holder.last_error = None
        return holder

    @property
    def path(self) -> Path | None:
        return self._path

    def _stat(self) -> float | None:
        try:
            return os.stat(self._path).st_mtime
        except OSError:
            return None

    def current(self) -> Policy:
        """The policy to decide with now; reloads a changed file, keeping the last good."""
        if self._path is None:
            return self._policy
        now = self._clock()
        if now - self._checked < self._interval:
            return self._policy
        self._checked = now
        mtime = self._stat()
        if mtime is not None and mtime != self._mtime:
            self._mtime = mtime
            self.reload()
        return self._policy

    def reload(self) -> bool:
        """Re-read the file now; True when a new policy took effect."""
        if self._path is None:
            return False
        try:
            policy = load_policy(self._path)
        except PolicyLoadError as exc:
            self.last_error = exc
            logger.error(
                "policy reload rejected; keeping the last good policy",
                extra={"policy_file": exc.file, "line": exc.line, "reason": exc.reason},
            )
            return False
        self._policy = policy
        self.last_error = None
        logger.info("policy reloaded", extra={"policy_digest": policy.digest})
        return True
