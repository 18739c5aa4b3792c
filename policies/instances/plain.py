"""Sandbox mode ``none``: an instance command as a plain subprocess on the host.

The explicit opt-out from bubblewrap. Each command runs as the unprivileged user
``nobody`` (root only; see ``unsandboxed``) in a new session, so that its whole process
group ends with it; ``/tmp`` and ``/code`` as working directories are mapped to the
state and code directories, but the command sees the host's file system (what
``nobody`` may read) and network. A loud ``UNSANDBOXED`` warning is logged at every
start.

The instance's state directory (its ``/tmp``) cannot stay below ExecGate's data
directory, which is mode 0700 so that ``nobody`` cannot read the keys and database
there. It lives under ``TMP_ROOT`` instead (``/var/tmp/execgate-instances``: owned by
ExecGate's user, mode 0711, so it cannot be listed), one directory per instance owned
by ``nobody`` with mode 0700, named by a hash of the state directory's path; the state
directory in the data directory is a symbolic link to it, so the host side sees the
same files. ``TMPDIR`` and ``HOME`` point at it. Every unsandboxed process runs as
``nobody``, so instances in this mode are not isolated from each other (nor from other
processes of that user).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from policies.errors import ProviderUnavailable
from policies.instances.sandbox_layout import (
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    SANDBOX_TMP,
    HostLayout,
    SandboxSpec,
    check_env,
)
from policies.instances.supervise import Spawned, kill_group, spawn_in_session, supervise
from policies.instances.unsandboxed import Identity, dedicated_identity, refuse_readable
from policies.ports import OutputCallback
from policies.types import Limits, RunResult

logger = logging.getLogger(__name__)

DESCRIPTION = 'UNSANDBOXED (sandbox = "none": commands run on this host as nobody)'
TMP_ROOT = Path("/var/tmp/execgate-instances")  # noqa: S108 - see the module docstring


class PlainRunner:
    """Runs argv as ``identity`` in plain subprocesses (made by :meth:`probe`)."""

    def __init__(self, identity: Identity, layout: HostLayout, tmp_root: Path) -> None:
        self.identity = identity
        self._layout = layout
        self._tmp_root = tmp_root

    @classmethod
    def probe(
        cls, protected: Iterable[Path], layout: HostLayout, tmp_root: Path = TMP_ROOT
    ) -> PlainRunner:
        """Raises: ProviderUnavailable when ExecGate is not root, a protected path is
        readable by ``nobody``, or ``tmp_root`` is not a directory only ExecGate's user
        may write."""
        identity = dedicated_identity()
        refuse_readable(protected, identity)
        _make_root(tmp_root)
        return cls(identity, layout, tmp_root)

    def instance_tmp(self, state_dir: Path) -> Path:
        """The directory behind ``state_dir`` that ``nobody`` can reach, made (and the
        link to it) on first use; what a state directory held before moves into it."""
        digest = hashlib.sha256(str(state_dir.absolute()).encode()).hexdigest()[:32]
        tmp = self._tmp_root / digest
        tmp.mkdir(mode=0o700, exist_ok=True)
        os.chown(tmp, self.identity.uid, self.identity.gid)
        tmp.chmod(0o700)
        if state_dir.is_symlink():
            if os.readlink(state_dir) == str(tmp):
                return tmp
            state_dir.unlink()
        elif state_dir.is_dir():
            for entry in state_dir.iterdir():
                shutil.move(entry, tmp / entry.name)
            state_dir.rmdir()
        state_dir.parent.mkdir(parents=True, exist_ok=True)
        state_dir.symlink_to(tmp, target_is_directory=True)
        return tmp

    def discard(self, state_dir: Path) -> None:
        """Remove the directory behind ``state_dir`` (the instance was released)."""
        if state_dir.is_symlink():
            target = Path(os.readlink(state_dir))
            if target.parent == self._tmp_root:  # never follow a link anywhere else
                shutil.rmtree(target, ignore_errors=True)

    def warn(self) -> None:
        logger.warning(
            "UNSANDBOXED: sandbox mode is 'none'; local instances run commands as "
            "plain subprocesses on this host (as uid %d) with its network and every "
            "file that user may read. Install bubblewrap and use sandbox mode "
            "'auto' to sandbox them.",
            self.identity.uid,
        )

    async def run(
        self,
        argv: Sequence[str],
        spec: SandboxSpec,
        env: Mapping[str, str],
        *,
        limits: Limits,
        on_output: OutputCallback,
        stdin: AsyncIterator[bytes] | None = None,
    ) -> RunResult:
        """See :meth:`SandboxRunner.run`; 127/126 when argv[0] cannot be started.

        Raises: ConfigError when the environment holds a NUL or a bad name.
        """
        try:
            spawned = await self._spawn(argv, spec, env, stdin is not None)
        except FileNotFoundError:
            await on_output("stderr", f"{argv[0]}: command not found\n".encode())
            return RunResult(exit_code=EXIT_NOT_FOUND)
        except PermissionError:
            await on_output("stderr", f"{argv[0]}: permission denied\n".encode())
            return RunResult(exit_code=EXIT_NOT_EXECUTABLE)
        return await supervise(spawned, limits=limits, on_output=on_output, stdin=stdin)

    async def _spawn(
        self, argv: Sequence[str], spec: SandboxSpec, env: Mapping[str, str], with_stdin: bool
    ) -> Spawned:
        check_env(env)
        identity = self.identity
        host_env = dict(env)
        # The instance's directory is the one place of ExecGate's the command may write.
        tmp = self.instance_tmp(spec.state_dir)
        # Unsandboxed there is no private /tmp to point HOME at: use the state dir.
        if host_env.get("HOME") == SANDBOX_TMP:
            host_env["HOME"] = str(tmp)
        host_env.setdefault("TMPDIR", str(tmp))
        cwd = self._layout.host_path(spec.workdir, replace(spec, state_dir=tmp)) or spec.workdir
        # The working directory is entered before the identity changes: one below the
        # code directory may lie where the identity cannot traverse.
        proc = await spawn_in_session(
            list(argv),
            env=host_env,
            cwd=cwd,
            with_stdin=with_stdin,
            user=identity.uid,
            group=identity.gid,
            extra_groups=[],
        )
        # Background processes left behind would hold the output pipes open; they end
        # with the command, as they do in a sandbox whose pid namespace ends.
        return Spawned(
            proc,
            kill_tree=lambda: kill_group(proc),
            after_exit=lambda: kill_group(proc),
            close=lambda: None,
        )


def _make_root(root: Path) -> None:
    """Make ``root`` (mode 0711) or check the one there is ExecGate's user's own.

    Raises: ProviderUnavailable when it is not a directory that user owns, or someone
    else may write to it.
    """
    try:
        root.mkdir(mode=0o711)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ProviderUnavailable(
            f"sandbox mode 'none' cannot create {root} for the instances' /tmp", path=str(root)
        ) from exc
    st = root.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise ProviderUnavailable(
            f"sandbox mode 'none' refuses to start: {root} (the instances' /tmp) is not a "
            f"directory of uid {os.geteuid()} that only it may write; remove it",
            path=str(root),
        )
    root.chmod(0o711)
