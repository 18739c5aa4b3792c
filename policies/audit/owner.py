"""Who wrote a RUNNING intent: ``hostname:pid:nonce``.

The nonce is the boot id plus the process start time (from /proc), so another process
can tell a live writer from a dead one whose pid was reused. Where /proc is missing the
nonce is random per process; a live pid is then always taken to be the writer.
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

_PROC = Path("/proc")
# Keyed by pid, so a forked child computes its own.
_own_nonce: dict[int, str] = {}


def _boot_id() -> str:
    try:
        return (_PROC / "sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:12]
    except OSError:
        return "noboot"


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of ``pid``, or None."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or parentheses.
    fields = text[text.rfind(")") + 2 :].split()
    if len(fields) < 20:
        return None
    return fields[0], fields[19]


def process_nonce(pid: int) -> str | None:
    """The nonce of the process ``pid`` as seen now, or None when /proc cannot say."""
    stat = _stat(pid)
    return None if stat is None else f"{_boot_id()}.{stat[1]}"


def own_nonce() -> str:
    pid = os.getpid()
    nonce = _own_nonce.get(pid)
    if nonce is None:
        nonce = process_nonce(pid) or secrets.token_hex(6)
        _own_nonce[pid] = nonce
    return nonce


def hostname() -> str:
    return socket.gethostname()


def current_owner() -> str:
    """The owner tag of this process."""
    return f"{hostname()}:{os.getpid()}:{own_nonce()}"


def owner_is_dead(owner: str) -> bool:
    """True when ``owner`` was a process on this host that no longer runs (gone, a
    zombie, or its pid now belongs to another process). Other hosts' owners and owners
    that cannot be judged count as alive."""
    try:
        host, pid_text, nonce = owner.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != hostname() or pid <= 0:
        return False
    if pid == os.getpid():
        return nonce != own_nonce()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, owned by another user
    except OSError:
        return False
    stat = _stat(pid)
    if stat is None:
        return False
    if stat[0] in ("Z", "X"):
        return True
    return f"{_boot_id()}.{stat[1]}" != nonce
