"""Helpers for the local-instance tests: output collection, host-side process tracking."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

from policies.instances.live import all_exited
from policies.instances.sandbox import INSTALL_HINT
from policies.types import Stream

# Wait until every process behind a list of pidfds has exited (the instances' own wait).
wait_exited = all_exited


@dataclass
class Output:
    """An ``on_output`` callback that keeps every chunk, in order."""

    chunks: list[tuple[Stream, bytes]] = field(default_factory=list)
    seen: asyncio.Event = field(default_factory=asyncio.Event)
    wait_for: bytes = b"\x00never"

    async def __call__(self, stream: Stream, data: bytes) -> None:
        self.chunks.append((stream, data))
        if self.wait_for in self.data("stdout"):
            self.seen.set()

    def data(self, stream: Stream) -> bytes:
        return b"".join(d for s, d in self.chunks if s == stream)

    def text(self, stream: Stream) -> str:
        return self.data(stream).decode()


def env_of(output: Output) -> dict[str, str]:
    """Parse ``env`` output into a mapping."""
    pairs = (line.partition("=") for line in output.text("stdout").splitlines())
    return {key: value for key, _, value in pairs}


async def feed(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def unique_sleep_seconds() -> str:
    """A sleep duration no other process on the host has on its command line."""
    return f"1000.{secrets.randbelow(10**9):09d}"


def pids_with(marker: str) -> list[int]:
    """Host pids whose command line contains ``marker`` (not this test process)."""
    needle = marker.encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            found.append(int(entry))
    return found


def open_pidfds(pids: list[int]) -> list[int]:
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except ProcessLookupError:
            pass  # already gone
    return fds


@cache
def require_bwrap() -> None:
    """Fail (never skip, never pass vacuously) when the sandbox cannot run here."""
    reason = bwrap_unusable_reason()
    if reason is not None:
        pytest.fail(f"{reason}. {INSTALL_HINT}", pytrace=False)


def bwrap_unusable_reason() -> str | None:
    """Why bubblewrap cannot run sandboxes here, or None when it can."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    probe = subprocess.run(
        [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"],
        capture_output=True,
        check=False,
        timeout=30,
    )
    if probe.returncode != 0:
        return f"bubblewrap is installed but refused to sandbox: {probe.stderr!r}"
    return None
