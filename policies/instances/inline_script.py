"""Keep an exec's inline shell script off the process list of the instance.

An exec that arrives as ``sh -c SCRIPT NAME ARG...`` (the shape of ExecGate's exit-code
wrapper, whose script holds the per-exec nonce) would show SCRIPT to every process of
the instance in ``ps -ef``. ``sh FILE ARG...`` runs the same script with the same
positional parameters; FILE is ``/dev/fd/N``, the read end of a pipe that already holds
the whole script and whose write end is closed, so after the shell has read it the pipe
is empty: the instance sees ``/bin/sh /dev/fd/N ARG...`` and nothing else. Only ``$0``
differs (the file name instead of NAME); the wrapper does not use it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

_SHELLS = frozenset({"/bin/sh", "sh", "/bin/bash", "bash", "/bin/dash", "dash"})
# A pipe holds 64 KiB before a writer blocks; the script is written before the shell
# starts, so a longer one stays on the command line.
_MAX_SCRIPT = 60 * 1024


@dataclass(frozen=True)
class InlineScript:
    """The argv to run and the pipe fd that carries the script (None: argv unchanged)."""

    argv: tuple[str, ...]
    fd: int | None = None

    @property
    def fds(self) -> tuple[int, ...]:
        return () if self.fd is None else (self.fd,)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)


def split_inline_script(argv: Sequence[str], owner: tuple[int, int] | None = None) -> InlineScript:
    """``sh -c SCRIPT NAME ARG...`` -> ``sh /dev/fd/N ARG...`` with SCRIPT in a pipe.

    Anything else is returned as it is. The returned fd is inheritable (it must reach
    the shell) and belongs to the caller, who closes it once the command has started.
    ``owner`` (host uid, gid) is who the shell runs as when that is not the caller: the
    shell reopens the pipe through ``/dev/fd``, which checks the pipe's owner and mode.
    """
    if len(argv) < 4 or argv[0] not in _SHELLS or argv[1] != "-c":
        return InlineScript(tuple(argv))
    script = argv[2].encode()
    if len(script) > _MAX_SCRIPT or "\0" in argv[2]:
        return InlineScript(tuple(argv))
    read_end, write_end = os.pipe()
    try:
        if owner is not None:
            os.fchown(read_end, *owner)
        os.write(write_end, script)
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return InlineScript((argv[0], f"/dev/fd/{read_end}", *argv[4:]), read_end)
