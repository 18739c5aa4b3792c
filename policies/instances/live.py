"""A running local instance: one long-lived sandbox whose first process is the function.

FC's instance is a running container with the function's process in it, and exec joins
that container. Locally:

- :meth:`LiveSandbox.start` starts bubblewrap once per instance, with the function's
  command (an HTTP server, FC custom-runtime style) as the sandbox's main process; the
  instance's run directory is mounted at ``/run/fc``, where the function listens on
  ``invoke.sock`` for the host's invocations (the sandbox has its own network
  namespace: the host cannot reach a TCP port in it);
- :meth:`LiveSandbox.enter` runs an exec command inside that same sandbox with
  ``nsenter`` (user, mount, pid, net, ipc, uts and cgroup namespaces, the sandbox's root
  and the working directory asked for), so ``ps`` shows the function's process, ``ss``
  its connections, and capabilities exist only inside the instance's user namespace;
  the command runs as that namespace's root (nsenter sets uid and gid 0 inside and
  clears supplementary groups);
- :meth:`LiveSandbox.stop` kills the sandbox's init, which ends every process in it.

``nsenter`` gets the function's environment as its own (the host-side process exists
only to enter the namespaces); nothing secret is on any command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from policies.errors import ProviderUnavailable
from policies.instances.inline_script import split_inline_script
from policies.instances.supervise import Spawned, kill_group

logger = logging.getLogger(__name__)

RUN_MOUNT = "/run/fc"
INVOKE_SOCKET = f"{RUN_MOUNT}/invoke.sock"
_READY_TIMEOUT = 20.0
# Polled at most this far apart: a function starts in tenths of a second, and a coarser
# poll would add up to one interval to every start.
_READY_POLL_MAX = 0.02
_ENV = "/usr/bin/env"
_STOP_GRACE = 5.0


class LiveSandbox:
    """One instance's running sandbox; see the module docstring."""

    def __init__(
        self, run_dir: Path, log_path: Path, *, owner: tuple[int, int] | None = None
    ) -> None:
        """``owner``: the host uid and gid of the sandbox's root when it is not the
        user running ExecGate (the full id mapping of ``userns``)."""
        self.run_dir = run_dir
        self._owner = owner
        self._log_path = log_path
        self._proc: asyncio.subprocess.Process | None = None
        self._init_pid: int | None = None
        self._run_fd: int | None = None
        self._nsenter = shutil.which("nsenter")

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def invoke_socket(self) -> str:
        """A short host path to the function's socket (long data paths exceed 108 bytes)."""
        if self._run_fd is None:
            raise ProviderUnavailable("the local instance is not running")
        return f"/proc/{os.getpid()}/fd/{self._run_fd}/invoke.sock"

    async def start(
        self,
        launcher: Sequence[str],
        options: Sequence[str],
        command: Sequence[str],
        *,
        bwrap: str,
        wait_socket: bool,
    ) -> None:
        """Start the sandbox running ``command``; with ``wait_socket``, wait until the
        function accepts connections on its invoke socket.

        ``launcher`` is the argv that ends with bubblewrap (``bwrap``): bubblewrap alone,
        or the user-namespace launcher of ``userns`` before it.

        Raises: ProviderUnavailable when the sandbox or the function does not come up.
        """
        if self._nsenter is None:
            raise ProviderUnavailable("nsenter (util-linux) is needed to enter local instances")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._run_fd = os.open(self.run_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        args_fd = memfd_args(options)
        info_r, info_w = os.pipe2(os.O_CLOEXEC)
        log = self._log_path.open("ab")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *launcher,
                "--args",
                str(args_fd),
                "--info-fd",
                str(info_w),
                "--",
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={},
                start_new_session=True,
                pass_fds=(args_fd, info_w),
            )
        except OSError as exc:
            os.close(info_r)
            raise ProviderUnavailable("the local instance could not be started") from exc
        finally:
            log.close()
            os.close(args_fd)
            os.close(info_w)
        try:
            info = await asyncio.to_thread(_read_info, info_r)
        finally:
            os.close(info_r)
        pid = info.get("child-pid")
        if not isinstance(pid, int) or pid <= 1:
            await self.stop()
            raise ProviderUnavailable("the local instance's sandbox did not start")
        self._init_pid = pid
        # bubblewrap reports the init's pid before it has built the sandbox's root; the
        # sandbox is ready to enter once the init has started the function's process.
        await self._wait_until(lambda: _command_started(pid, bwrap), "did not start")
        if wait_socket:
            await self._wait_until(lambda: _connects(self.invoke_socket), "did not listen")

    async def _wait_until(self, ready: Callable[[], bool], what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _READY_TIMEOUT
        delay = 0.002
        while loop.time() < deadline and self.alive:
            if await asyncio.to_thread(ready):
                return
            await asyncio.sleep(delay)  # the sandbox or the function is still starting
            delay = min(delay * 2, _READY_POLL_MAX)
        await self.stop()
        raise ProviderUnavailable(f"the local instance's function {what}")

    async def enter(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        workdir: str,
        *,
        with_stdin: bool,
    ) -> Spawned:
        """Start argv inside the running sandbox.

        Raises: ProviderUnavailable when the sandbox is not running.
        """
        if not self.alive or self._init_pid is None or self._nsenter is None:
            raise ProviderUnavailable("the local instance's sandbox is not running")
        inline = split_inline_script(argv, self._owner)
        try:
            proc = await asyncio.create_subprocess_exec(
                self._nsenter,
                f"--target={self._init_pid}",
                "--user",
                "--mount",
                "--pid",
                "--net",
                "--ipc",
                "--uts",
                "--cgroup",
                "--root",
                "--wd",
                # nsenter opens a --wd=DIR path on the host, before entering: the
                # working directory is changed inside, by env, once the root is the
                # sandbox's.
                "--",
                _ENV,
                "-C",
                workdir,
                "--",
                *inline.argv,
                stdin=asyncio.subprocess.PIPE if with_stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=dict(env),
                start_new_session=True,
                pass_fds=inline.fds,
            )
        except OSError as exc:
            raise ProviderUnavailable("the local instance could not be entered") from exc
        finally:
            inline.close()
        # nsenter and the command share a process group; whatever the command leaves
        # behind ends with it, as FC's exec leaves nothing behind either.
        return Spawned(
            proc,
            kill_tree=lambda: kill_group(proc),
            after_exit=lambda: kill_group(proc),
            close=lambda: None,
        )

    def kill(self) -> None:
        """Kill the sandbox's init (and so every process in it) without waiting."""
        proc = self._proc
        if proc is not None and proc.returncode is None and self._init_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._init_pid, signal.SIGKILL)

    async def stop(self) -> None:
        """Kill the sandbox and wait until it is gone; idempotent."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            self.kill()
            try:
                await asyncio.wait_for(proc.wait(), _STOP_GRACE)
            except TimeoutError:
                kill_group(proc)
                await proc.wait()
        if self._run_fd is not None:
            os.close(self._run_fd)
            self._run_fd = None


def memfd_args(options: Sequence[str]) -> int:
    """An in-memory file holding ``options`` NUL-separated, for bubblewrap's ``--args``."""
    fd = os.memfd_create("execgate-bwrap-args", os.MFD_CLOEXEC)
    try:
        os.write(fd, b"".join(o.encode() + b"\0" for o in options))
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_info(fd: int) -> dict[str, object]:
    """bubblewrap's JSON from ``--info-fd``; empty when it exited before writing it."""
    data = b""
    while True:
        with contextlib.suppress(ValueError):
            parsed = json.loads(data)
            if isinstance(parsed, dict):
                return parsed
        chunk = os.read(fd, 65536)
        if not chunk:
            return {}
        data += chunk


def _command_started(init_pid: int, bwrap: str) -> bool:
    """Whether the sandbox's init has a child that is no longer bubblewrap."""
    try:
        children = Path(f"/proc/{init_pid}/task/{init_pid}/children").read_text().split()
        return any(os.readlink(f"/proc/{child}/exe") != bwrap for child in children)
    except OSError:
        return False


def _connects(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except OSError:
            return False
    return True
