"""Sandbox mode ``none``: an instance command as a plain subprocess on the host.

The explicit opt-out from bubblewrap. Each command runs as the unprivileged user
``nobody`` (root only; see ``unsandboxed``); ``/tmp`` and ``/code`` as working
directories are mapped to the state and code directories, and the command sees the
host's file system (what ``nobody`` may read). A loud ``UNSANDBOXED`` warning is logged
at every start.

What keeps it off ExecGate and off other instances all the same: every command starts
(util-linux ``unshare``, as root) in namespaces of its own, then drops to ``nobody``
(``setpriv``, no new privileges):

- a network namespace with nothing in it: not the host's loopback, where ExecGate's
  HTTP port, its PostgreSQL or Redis listen;
- a pid namespace (with its own ``/proc``) whose init is a root shell that starts the
  command and ends with it: no other process of the host (another instance's command,
  its environment) is visible, and when the command ends, times out or is cancelled,
  the namespace ends and takes every process it started with it, including those that
  went into a session of their own;
- a mount namespace where the instance's directory is mounted at ``/tmp`` (so a
  policy's ``/tmp/**`` paths mean the instance's files, never the host's), the
  directory of all instances' directories is an empty tmpfs (another instance's files
  are not there), and so are ``/run`` and ``/dev/shm``, where services keep their unix
  sockets (PostgreSQL's trusts local connections on many hosts);
- its own IPC and UTS namespaces.

The host must allow root to make namespaces (the probe checks it); otherwise mode
``none`` refuses to start.

The instance's state directory (its ``/tmp``) cannot stay below ExecGate's data
directory, which is mode 0700 so that ``nobody`` cannot read the keys and database
there. It lives under ``TMP_ROOT`` instead (``/var/tmp/execgate-instances``: owned by
ExecGate's user, mode 0711, so it cannot be listed), one directory per instance owned
by ``nobody`` with mode 0700 and a random name; the state directory in the data
directory is a symbolic link to it, so the host side sees the same files. The command
sees it at ``/tmp`` (its ``HOME``), as in a sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import posixpath
import secrets
import shutil
import signal
import stat
import subprocess
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
    split_loader_env,
)
from policies.instances.supervise import Spawned, kill_group, spawn_in_session, supervise
from policies.instances.unsandboxed import Identity, dedicated_identity, refuse_readable
from policies.ports import OutputCallback
from policies.types import Limits, RunResult

logger = logging.getLogger(__name__)

DESCRIPTION = 'UNSANDBOXED (sandbox = "none": commands run on this host as nobody)'
TMP_ROOT = Path("/var/tmp/execgate-instances")  # noqa: S108 - see the module docstring
_NAMESPACES = ("--net", "--ipc", "--uts", "--pid", "--fork", "--kill-child", "--mount")
# The namespaces' init, as root: hide every instance's directory ("$1" the directory of
# all, "$2" this instance's), the host's /run (and a /var/run of its own) and /dev/shm
# (where services put their unix sockets: PostgreSQL's, Redis's) behind empty tmpfs,
# mount the instance's directory at /tmp, enter "$3" (a working directory below /tmp)
# and start the command ("$@" after "--", beginning with setpriv) with the shell's
# stdin, wait for it and exit with its status. Processes of the namespace cannot signal
# this root-owned init; when it exits the kernel kills everything left in it.
_INIT_SCRIPT = (
    'set -e; root=$1; dir=$2; wd=$3; shift 4; exec 4<"$dir"; '
    'mount -t tmpfs -o mode=0711,size=64k execgate-instances "$root"; '
    "for d in /run /var/run /dev/shm; do "
    'if [ -d "$d" ] && [ ! -L "$d" ]; then '
    'mount -t tmpfs -o mode=1777,size=1m execgate-hidden "$d"; fi; done; '
    "mount --no-canonicalize --bind /proc/self/fd/4 /tmp; exec 4<&-; "
    '[ -z "$wd" ] || cd "$wd"; set +e; '
    'exec 3<&0; "$@" <&3 3<&- & wait $!'
)
_PROBE_TIMEOUT = 30.0
_ENV = "/usr/bin/env"
_PROBE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
NAMESPACES_HINT = (
    "sandbox mode 'none' refuses to start: it runs each command in network, pid and "
    "mount namespaces of its own (util-linux unshare and setpriv, as root) so that "
    "commands cannot reach ExecGate's services or other instances, and this host did "
    "not allow it; install bubblewrap (sudo apt-get install -y bubblewrap) and use "
    "sandbox mode 'auto', or run ExecGate where root may create namespaces"
)


class PlainRunner:
    """Runs argv as ``identity`` in plain subprocesses (made by :meth:`probe`)."""

    def __init__(self, identity: Identity, layout: HostLayout, tmp_root: Path) -> None:
        self.identity = identity
        self._layout = layout
        self._tmp_root = tmp_root
        self._unshare = shutil.which("unshare") or "unshare"
        self._setpriv = shutil.which("setpriv") or "setpriv"

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
        runner = cls(identity, layout, tmp_root)
        runner._probe_namespaces()
        return runner

    def _probe_namespaces(self) -> None:
        """Raises: ProviderUnavailable when commands cannot get namespaces of their own."""
        tmp = self.instance_tmp(self._tmp_root / ".probe-state")
        try:
            probe = subprocess.run(  # noqa: S603 - fixed argv, no shell
                self._argv(["true"], tmp),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                env={"PATH": _PROBE_PATH},
                cwd=tmp,
                check=False,
                timeout=_PROBE_TIMEOUT,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ProviderUnavailable(NAMESPACES_HINT) from exc
        finally:
            self.discard(self._tmp_root / ".probe-state")
            (self._tmp_root / ".probe-state").unlink(missing_ok=True)
        if probe.returncode != 0:
            logger.warning(
                "sandbox mode 'none' cannot make namespaces: %s",
                probe.stderr.decode(errors="replace").strip(),
            )
            raise ProviderUnavailable(NAMESPACES_HINT)

    def _argv(self, argv: Sequence[str], tmp: Path, workdir: str = "") -> list[str]:
        """``argv`` in namespaces of its own, as ``identity``; see the module docstring."""
        who = self.identity
        return [
            self._unshare,
            *_NAMESPACES,
            "--mount-proc",
            "--",
            "/bin/sh",
            "-c",
            _INIT_SCRIPT,
            "execgate-init",
            str(self._tmp_root),
            str(tmp),
            workdir,
            "--",
            self._setpriv,
            f"--reuid={who.uid}",
            f"--regid={who.gid}",
            "--clear-groups",
            "--no-new-privs",
            "--",
            *argv,
        ]

    def instance_tmp(self, state_dir: Path) -> Path:
        """The directory behind ``state_dir`` that ``nobody`` can reach, made (and the
        link to it) on first use; what a state directory held before moves into it."""
        if state_dir.is_symlink():
            tmp = Path(os.readlink(state_dir))
            if tmp.parent == self._tmp_root and tmp.is_dir() and not tmp.is_symlink():
                self._own(tmp)
                return tmp
            state_dir.unlink()
        tmp = self._tmp_root / secrets.token_hex(16)
        tmp.mkdir(mode=0o700)
        self._own(tmp)
        if state_dir.is_dir():
            for entry in state_dir.iterdir():
                shutil.move(entry, tmp / entry.name)
            state_dir.rmdir()
        state_dir.parent.mkdir(parents=True, exist_ok=True)
        state_dir.symlink_to(tmp, target_is_directory=True)
        return tmp

    def _own(self, tmp: Path) -> None:
        os.chown(tmp, self.identity.uid, self.identity.gid, follow_symlinks=False)
        tmp.chmod(0o700)

    def discard(self, state_dir: Path) -> None:
        """Remove the directory behind ``state_dir`` (the instance was released)."""
        if state_dir.is_symlink():
            target = Path(os.readlink(state_dir))
            if target.parent == self._tmp_root:  # never follow a link anywhere else
                shutil.rmtree(target, ignore_errors=True)

    def warn(self) -> None:
        logger.warning(
            "UNSANDBOXED: sandbox mode is 'none'; local instances run commands as "
            "plain subprocesses on this host (as uid %d, without network) that can read "
            "every file that user may read. Install bubblewrap and use sandbox mode "
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
        # The instance's directory is the one place of ExecGate's the command may write;
        # it is the command's /tmp (HOME), as in a sandbox.
        tmp = self.instance_tmp(spec.state_dir)
        inside = replace(spec, state_dir=tmp)
        cwd = self._layout.host_path(spec.workdir, inside) or spec.workdir
        # A working directory below /tmp is entered again once /tmp is mounted.
        norm = posixpath.normpath(spec.workdir)
        under_tmp = norm == SANDBOX_TMP or norm.startswith(SANDBOX_TMP + "/")
        workdir = norm if under_tmp else ""
        # The working directory is entered before the identity changes: one below the
        # code directory may lie where the identity cannot traverse.
        # The namespaces are made as root: the function's loader variables (paths
        # that would load code into root's processes) are set only for the command.
        host_env, loader = split_loader_env(env)
        command = [_ENV, "--", *loader, *argv] if loader else list(argv)
        proc = await spawn_in_session(
            self._argv(command, tmp, workdir), env=host_env, cwd=cwd, with_stdin=with_stdin
        )
        # The command's pid namespace ends with it, taking every background process along.
        return Spawned(
            proc,
            kill_tree=lambda: _kill_namespace(proc),
            after_exit=lambda: kill_group(proc),
            close=lambda: None,
        )


def _kill_namespace(proc: asyncio.subprocess.Process) -> None:
    """Kill the pid namespace's init (unshare's child), which takes every process of the
    namespace with it; unshare exits only after its child, so once it is waited for
    nothing is left. Before the init exists, the group is killed instead."""
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(child), signal.SIGKILL)
    if not children:
        kill_group(proc)


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
