"""Sandbox mode ``none``: who unsandboxed commands run as, and what they must not read.

Without a sandbox an instance command runs on the host itself. ExecGate's own keys,
database and configuration must still be out of its reach, so mode ``none``:

- needs root, and runs every instance process as the unprivileged user ``nobody``
  (uid/gid 65534, no supplementary groups), never as the user that runs ExecGate;
- refuses to start when a path it must protect (the data directory, the config file,
  the database file) is readable by that user: the fix is a ``chmod`` it names.

Without root there is no other user to run as, so mode ``none`` is refused.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from policies.errors import ProviderUnavailable

NOBODY = 65534


@dataclass(frozen=True)
class Identity:
    """The user and group unsandboxed instance processes run as."""

    uid: int
    gid: int


def dedicated_identity() -> Identity:
    """The identity for mode ``none``.

    Raises: ProviderUnavailable when ExecGate does not run as root.
    """
    if os.geteuid() != 0:
        raise ProviderUnavailable(
            "sandbox mode 'none' needs ExecGate to run as root, so that instance commands "
            "run as the unprivileged user nobody and cannot read ExecGate's keys, database "
            "and config; install bubblewrap (sudo apt-get install -y bubblewrap) and use "
            "sandbox mode 'auto' instead"
        )
    return Identity(NOBODY, NOBODY)


def readable_by(path: Path, who: Identity) -> bool:
    """Whether ``who`` could open ``path`` for reading (or list it, for a directory).

    Every directory on the way must be searchable by ``who`` and the path itself
    readable; owner, group and other bits are taken as the kernel takes them (no ACLs).
    A path that does not exist is not readable.
    """
    path = path.absolute()
    for parent in reversed(path.parents):
        if not _allows(parent, who, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):
            return False
    return _allows(path, who, stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH)


def _allows(path: Path, who: Identity, user_bit: int, group_bit: int, other_bit: int) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_uid == who.uid:
        return bool(st.st_mode & user_bit)
    if st.st_gid == who.gid:
        return bool(st.st_mode & group_bit)
    return bool(st.st_mode & other_bit)


def refuse_readable(paths: Iterable[Path], who: Identity) -> None:
    """Raises: ProviderUnavailable naming the first protected path ``who`` could read."""
    for path in paths:
        if readable_by(path, who):
            raise ProviderUnavailable(
                f"sandbox mode 'none' refuses to start: {path} is readable by the user "
                f"instance commands run as (uid {who.uid}); run: chmod go-rwx {path}",
                path=str(path),
            )
