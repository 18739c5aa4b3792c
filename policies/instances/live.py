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
only to enter the namespaces), less the dynamic loader's variables, which name paths of
the instance and are set by ``env`` inside it (see ``sandbox_layout.split_loader_env``);
nothing secret is on any command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import shutil
import signal
import socket
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from policies.errors import ProviderUnavailable
from policies.instances.inline_script import split_inline_script
from policies.instances.sandbox_layout import split_loader_env
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
_SWEEP_ROUNDS = 64


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
        self._function_pid: int | None = None
        self._ended: set[int] = set()  # the host pids of ended execs' nsenter
        # What /proc/PID/exe of an nsenter shows (PATH may reach it through a link).
        self._nsenter_exe = os.path.realpath(self._nsenter) if self._nsenter else None

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
        # The init's one child now is the function's process: the only one of the
        # init's children that an exec's leftovers may not be.
        self._function_pid = next(iter(_children(pid)), None)
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
        host_env, loader = split_loader_env(env)
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
                *loader,
                *inline.argv,
                stdin=asyncio.subprocess.PIPE if with_stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=host_env,
                start_new_session=True,
                pass_fds=inline.fds,
            )
        except OSError as exc:
            raise ProviderUnavailable("the local instance could not be entered") from exc
        finally:
            inline.close()
        # nsenter and the command share a process group; whatever the command leaves
        # behind ends with it, as FC's exec leaves nothing behind either. What left the
        # group (its own session, a double fork, a clone with CLONE_PARENT that made it
        # nsenter's child and then the host's) is still in the sandbox's pid namespace:
        # it is swept from there.
        loop = asyncio.get_running_loop()
        sweeping: list[asyncio.Task[None]] = []

        def end() -> None:
            self._ended.add(proc.pid)
            kill_group(proc)
            # Swept until none is left (which also closes the output pipes): a parent
            # killed with the group may leave children that fork on meanwhile.
            if not sweeping:
                sweeping.append(loop.create_task(self._sweep()))

        async def ended() -> None:
            if not sweeping:  # not seen ending (the watch failed): sweep now
                end()
            await asyncio.gather(*sweeping)

        # The main process's exit is watched here, not through the output pipes (which
        # a leftover would hold open, and asyncio may wait for them before it reports
        # the exit).
        watch = _on_exit(loop, proc.pid, end)

        def close() -> None:
            watch()
            self._ended.discard(proc.pid)

        return Spawned(proc, kill_tree=end, after_exit=end, close=close, after_end=ended)

    def _leftovers(self) -> list[int]:
        """Processes in the sandbox's pid namespace that neither the function nor a
        running exec started: all but the init, the function's process tree and the
        trees below every nsenter of ExecGate's that has not ended (one still being
        started, whose exec is not known here yet, included)."""
        init = self._init_pid
        if init is None:
            return []
        try:
            namespace = os.stat(f"/proc/{init}/ns/pid")
        except OSError:
            return []  # the sandbox is gone, and everything in it
        in_namespace = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                ns = os.stat(f"/proc/{entry}/ns/pid")
            except OSError:
                continue  # gone, or not ours to look at
            if (ns.st_dev, ns.st_ino) == (namespace.st_dev, namespace.st_ino):
                in_namespace.append(int(entry))
        # The trees are walked after the scan: a process a running exec forks during
        # the scan is then found below that exec, never taken for a leftover.
        kept = {init}
        entering = [
            p for p in _children(os.getpid()) if p not in self._ended and self._is_nsenter(p)
        ]
        pending = [p for p in (self._function_pid, *entering) if p is not None]
        while pending:
            pid = pending.pop()
            kept.add(pid)
            pending.extend(_children(pid))
        # A zombie holds nothing.
        return [p for p in in_namespace if p not in kept and not _is_zombie(p)]

    def _is_nsenter(self, pid: int) -> bool:
        try:
            return os.readlink(f"/proc/{pid}/exe") == self._nsenter_exe
        except OSError:
            return False

    def _kill_leftovers(self) -> list[int]:
        """SIGKILL the leftovers; returns a pidfd for each (the caller closes them).

        Each is signalled through a pidfd opened before its namespace is checked again,
        so a pid reused meanwhile by a process of the host is never signalled.
        """
        init = self._init_pid
        pidfds: list[int] = []
        for pid in self._leftovers():
            try:
                fd = os.pidfd_open(pid)
            except OSError:
                continue  # gone already
            try:
                still = os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{init}/ns/pid")
                if still:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
            except OSError:
                still = False
            if still:
                pidfds.append(fd)
            else:
                os.close(fd)
        return pidfds

    async def _sweep(self) -> None:
        """Kill every leftover of ended execs and wait until they are gone (what they
        forked meanwhile is found and killed in the next round)."""
        for _ in range(_SWEEP_ROUNDS):
            pidfds = self._kill_leftovers()
            if not pidfds:
                return
            await all_exited(pidfds)
        logger.warning("processes left by an exec kept appearing in a local instance")

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


def _children(pid: int) -> list[int]:
    """The children of ``pid`` (every thread's); empty once it is gone."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            found += map(int, Path(f"/proc/{pid}/task/{task}/children").read_text().split())
    except OSError:
        pass
    return found


def _on_exit(
    loop: asyncio.AbstractEventLoop, pid: int, callback: Callable[[], None]
) -> Callable[[], None]:
    """Call ``callback`` (once) when process ``pid`` exits; returns what stops watching."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        loop.call_soon(callback)
        return lambda: None
    open_fds = [pidfd]

    def stop() -> None:
        if open_fds:
            loop.remove_reader(pidfd)
            os.close(open_fds.pop())

    def exited() -> None:
        stop()
        callback()

    loop.add_reader(pidfd, exited)
    return stop


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # already reaped
    return stat[stat.rindex(")") + 2 :].startswith("Z")


async def all_exited(pidfds: list[int]) -> None:
    """Wait until every process behind ``pidfds`` has exited; closes them."""
    loop = asyncio.get_running_loop()
    try:
        for fd in pidfds:
            exited = asyncio.Event()
            loop.add_reader(fd, exited.set)
            try:
                await exited.wait()
            finally:
                loop.remove_reader(fd)
    finally:
        for fd in pidfds:
            os.close(fd)


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
            with unix_socket_nofollow(path) as own:
                sock.connect(own)
        except OSError:
            return False
    return True


@contextlib.contextmanager
def unix_socket_nofollow(path: str) -> Iterator[str]:
    """A path to connect to the unix socket at ``path`` (valid inside the block), whose
    last component must be the socket itself, never a symbolic link.

    The instance writes the directory its function's socket is in: a link planted there
    would otherwise make ExecGate connect to whatever host socket it names (a
    database's, a container engine's). The socket is opened with ``O_NOFOLLOW`` and
    reached through that descriptor.

    Raises: OSError (ELOOP for a link, ENOTSOCK for anything else that is not a socket).
    """
    parent, name = os.path.split(path)
    dir_fd = os.open(parent or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            raise OSError(errno.ENOTSOCK, "not a socket", path)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)
