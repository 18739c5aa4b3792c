"""Sandbox mode ``none``: an instance command as a plain subprocess on the host.

The explicit opt-out from bubblewrap. Each command runs as the unprivileged user
``nobody`` (root only; see ``unsandboxed``) in a new session, so that its whole process
group ends with it; ``/tmp`` and ``/code`` as working directories are mapped to the
state and code directories, but the command sees the host's file system (what
``nobody`` may read) and network. A loud ``UNSANDBOXED`` warning is logged at every
start.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path

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


class PlainRunner:
    """Runs argv as ``identity`` in plain subprocesses (made by :meth:`probe`)."""

    def __init__(self, identity: Identity, layout: HostLayout) -> None:
        self.identity = identity
        self._layout = layout

    @classmethod
    def probe(cls, protected: Iterable[Path], layout: HostLayout) -> PlainRunner:
        """Raises: ProviderUnavailable when ExecGate is not root or a protected path is
        readable by ``nobody``."""
        identity = dedicated_identity()
        refuse_readable(protected, identity)
        return cls(identity, layout)

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
        state = str(spec.state_dir)
        # Unsandboxed there is no private /tmp to point HOME at: use the state dir.
        if host_env.get("HOME") == SANDBOX_TMP:
            host_env["HOME"] = state
        host_env.setdefault("TMPDIR", state)
        cwd = self._layout.host_path(spec.workdir, spec) or spec.workdir
        # The instance's directory is the one place of ExecGate's the command may write.
        os.chown(spec.state_dir, identity.uid, identity.gid)
        # The working directory is entered before the identity changes: it may lie below
        # a directory (ExecGate's data directory) that the identity cannot traverse.
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
