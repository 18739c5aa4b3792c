"""The sandbox runner: argv in a per-instance bubblewrap sandbox, streamed.

Inside a bubblewrap sandbox a command sees:

- the host's ``/usr`` and the ``/bin``, ``/sbin``, ``/lib*`` entries (read-only;
  merged-/usr symlinks are recreated as symlinks), the few ``/etc`` files programs need
  to run (users and groups, name resolution, loader cache, alternatives, CA
  certificates, time zone: see ``sandbox_layout``), a fresh ``/proc`` and a minimal
  ``/dev``; nothing else of the host (no ``/home``, ``/root``, ``/var``, ``/sys``, and
  not the rest of ``/etc``: shadow, sudoers, SSH host keys, services' credentials);
- the instance's state directory read-write at ``/tmp``: a private /tmp per instance,
  shared by every exec on that instance;
- the function's code directory read-only at ``/code`` when there is one;
- exactly the function's environment (plus ``PATH``, ``HOME=/tmp`` and ``LANG`` defaults);
- new user, pid, ipc, uts, cgroup and network namespaces (``--unshare-all``): local
  instances have NO network, not even the host's loopback; all capabilities dropped.

The environment reaches bubblewrap through an in-memory file (``--args FD``) rather than
its command line, so function secrets never show in the host's process list, and
bubblewrap itself runs with an empty environment, so no loader variable of a function
(``LD_PRELOAD`` ...) can touch the host-side bubblewrap process.

Where bubblewrap is missing or refused, mode ``auto`` falls back to plain subprocesses
with a loud ``UNSANDBOXED`` warning: same environment rules, ``/tmp`` and ``/code`` as
working directories are mapped to the state and code directories, but the command sees
the whole host file system and network.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Literal

from policies.errors import CommandRejected, ConfigError, ProviderUnavailable
from policies.instances.sandbox_layout import (
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    SANDBOX_CODE,
    SANDBOX_TMP,
    HostLayout,
    SandboxSpec,
)
from policies.instances.supervise import Spawned, kill_group, supervise
from policies.ports import OutputCallback
from policies.types import Limits, RunResult

__all__ = ["DEFAULT_PATH", "SandboxMode", "SandboxRunner", "SandboxSpec", "check_env"]

logger = logging.getLogger(__name__)

SandboxMode = Literal["auto", "bwrap", "subprocess"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_DEFAULT_ENV = {"PATH": DEFAULT_PATH, "HOME": SANDBOX_TMP, "LANG": "C.UTF-8"}
_PROBE_TIMEOUT = 10.0


class SandboxRunner:
    """Runs argv in bubblewrap sandboxes, or in plain subprocesses as a loud fallback.

    One runner serves every instance; it probes bubblewrap once (on the first run or an
    explicit :meth:`probe`) and costs nothing extra per exec after that.
    """

    def __init__(self, mode: SandboxMode = "auto", bwrap_path: str | None = None) -> None:
        self._mode: SandboxMode = mode
        self._bwrap = bwrap_path or shutil.which("bwrap")
        self._use_bwrap = False
        self._probed = False
        self._probe_lock = asyncio.Lock()
        self._layout = HostLayout()

    @property
    def mode(self) -> SandboxMode:
        return self._mode

    @property
    def sandboxed(self) -> bool:
        """True once a probe confirmed bubblewrap works; False before or on fallback."""
        return self._use_bwrap

    async def probe(self) -> bool:
        """Check once that bubblewrap really works here; return whether it is used.

        Raises: ProviderUnavailable in mode ``bwrap`` when bubblewrap does not work.
        """
        async with self._probe_lock:
            if not self._probed:
                self._use_bwrap = self._mode != "subprocess" and await self._bwrap_works()
                self._probed = True
                if not self._use_bwrap and self._mode != "bwrap":
                    why = (
                        "the sandbox mode is 'subprocess'"
                        if self._mode == "subprocess"
                        else "bubblewrap is missing or refused here"
                    )
                    logger.warning(
                        "UNSANDBOXED: %s; local instances run commands as plain subprocesses "
                        "with full access to this host's files and network. Install "
                        "bubblewrap and use sandbox mode 'auto' to sandbox them.",
                        why,
                    )
            if self._mode == "bwrap" and not self._use_bwrap:
                raise ProviderUnavailable(
                    "the sandbox mode is 'bwrap' but bubblewrap does not work on this host; "
                    "install bubblewrap or set the sandbox mode to 'auto'"
                )
            return self._use_bwrap

    async def run(
        self,
        argv: Sequence[str],
        spec: SandboxSpec,
        *,
        limits: Limits,
        on_output: OutputCallback,
        stdin: AsyncIterator[bytes] | None = None,
    ) -> RunResult:
        """Run argv in the sandbox described by ``spec``, streaming output to ``on_output``.

        Output arrives in chunks of at most 64 KiB, per stream in order; a slow
        ``on_output`` slows the command down instead of buffering. ``stdin`` is pumped
        into the command and closed at its end (None: the command reads /dev/null).
        The exit code is the command's, 128+N when signal N killed it, 127 when the
        command does not exist in the sandbox (decided before starting anything, from
        the sandbox's PATH and mounts, so no process starts), 126 when it is not
        executable. On ``limits.timeout`` (wall clock) or ``limits.idle_timeout`` (no
        output and no stdin) the whole process tree is killed and the result has
        ``exit_code=None`` with ``timed_out`` or ``idle_timed_out`` set.

        Raises: CommandRejected for an empty argv; ConfigError when the environment
        holds a NUL or a bad name; ProviderUnavailable when the sandbox cannot be
        started (or, in mode ``bwrap``, when bubblewrap does not work).
        """
        if not argv:
            raise CommandRejected("the command is empty", kind="empty")
        if not self._probed or (self._mode == "bwrap" and not self._use_bwrap):
            await self.probe()  # fails closed in mode "bwrap"
        spec.state_dir.mkdir(parents=True, exist_ok=True)
        env = {**_DEFAULT_ENV, **spec.env}
        if self._use_bwrap:
            missing = self._layout.missing_command(argv[0], spec, env["PATH"])
            if missing is not None:
                await on_output("stderr", f"{argv[0]}: command not found\n".encode())
                return RunResult(exit_code=missing)
            spawned = await self._spawn_bwrap(argv, spec, env, stdin is not None)
        else:
            try:
                spawned = await self._spawn_plain(argv, spec, env, stdin is not None)
            except FileNotFoundError:
                await on_output("stderr", f"{argv[0]}: command not found\n".encode())
                return RunResult(exit_code=EXIT_NOT_FOUND)
            except PermissionError:
                await on_output("stderr", f"{argv[0]}: permission denied\n".encode())
                return RunResult(exit_code=EXIT_NOT_EXECUTABLE)
        return await supervise(spawned, limits=limits, on_output=on_output, stdin=stdin)

    # ------------------------------------------------------------------ bubblewrap

    def _bwrap_base(self) -> list[str]:
        if self._bwrap is None:
            raise ProviderUnavailable("bubblewrap is not installed")
        return [
            self._bwrap,
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            *self._layout.root_args,
            "--proc",
            "/proc",
            "--dev",
            "/dev",
        ]

    async def _bwrap_works(self) -> bool:
        if self._bwrap is None:
            logger.info("bubblewrap not found on PATH")
            return False
        argv = [*self._bwrap_base(), "--tmpfs", SANDBOX_TMP, "--", "true"]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env={"PATH": DEFAULT_PATH},
            )
        except OSError:
            logger.exception("bubblewrap could not be started")
            return False
        try:
            _, err = await asyncio.wait_for(proc.communicate(), _PROBE_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            logger.warning("bubblewrap probe did not finish within %.0f s", _PROBE_TIMEOUT)
            return False
        if proc.returncode != 0:
            logger.warning(
                "bubblewrap probe failed (exit %s): %s",
                proc.returncode,
                err.decode(errors="replace").strip(),
            )
            return False
        return True

    async def _spawn_bwrap(
        self, argv: Sequence[str], spec: SandboxSpec, env: Mapping[str, str], with_stdin: bool
    ) -> Spawned:
        check_env(env)
        base = self._bwrap_base()
        args_fd = os.memfd_create("execgate-bwrap-args", os.MFD_CLOEXEC)
        info_r, info_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            payload = ["--clearenv"]
            for key, value in env.items():
                payload += ["--setenv", key, value]
            os.write(args_fd, b"".join(p.encode() + b"\0" for p in payload))
            os.lseek(args_fd, 0, os.SEEK_SET)
            mounts = ["--bind", str(spec.state_dir.absolute()), SANDBOX_TMP]
            if spec.code_dir is not None:
                mounts += ["--ro-bind", str(spec.code_dir.absolute()), SANDBOX_CODE]
            # The sandbox's own root (where /etc and the mount points live) is made
            # read-only last: /tmp (the instance's state) and the sandbox's own /dev
            # tmpfs stay writable.
            mounts += ["--remount-ro", "/"]
            full = [
                *base,
                *mounts,
                "--chdir",
                spec.workdir,
                "--args",
                str(args_fd),
                "--info-fd",
                str(info_w),
                "--",
                *argv,
            ]
            proc = await _spawn(
                full, env={}, cwd=None, with_stdin=with_stdin, pass_fds=(args_fd, info_w)
            )
        except OSError as exc:
            os.close(info_r)
            logger.exception("bubblewrap could not be started")
            raise ProviderUnavailable("the local sandbox could not be started") from exc
        except BaseException:
            os.close(info_r)
            raise
        finally:
            os.close(args_fd)
            os.close(info_w)
        # When the command exits, bubblewrap's init ends the pid namespace and with it
        # every background process: nothing is left to clean up after a normal exit.
        return Spawned(
            proc,
            kill_tree=lambda: _kill_bwrap(proc, info_r),
            after_exit=lambda: None,
            close=lambda: os.close(info_r),
        )

    # ------------------------------------------------------------------ plain subprocess

    async def _spawn_plain(
        self, argv: Sequence[str], spec: SandboxSpec, env: Mapping[str, str], with_stdin: bool
    ) -> Spawned:
        check_env(env)
        host_env = dict(env)
        state = str(spec.state_dir)
        # Unsandboxed there is no private /tmp to point HOME at: use the state dir.
        if host_env.get("HOME") == SANDBOX_TMP:
            host_env["HOME"] = state
        host_env.setdefault("TMPDIR", state)
        cwd = self._layout.host_path(spec.workdir, spec) or spec.workdir
        proc = await _spawn(list(argv), env=host_env, cwd=cwd, with_stdin=with_stdin)
        # Background processes left behind would hold the output pipes open; they end
        # with the command, as they do in a sandbox whose pid namespace ends.
        return Spawned(
            proc,
            kill_tree=lambda: kill_group(proc),
            after_exit=lambda: kill_group(proc),
            close=lambda: None,
        )


async def _spawn(
    argv: list[str],
    *,
    env: Mapping[str, str],
    cwd: str | None,
    with_stdin: bool,
    pass_fds: tuple[int, ...] = (),
) -> asyncio.subprocess.Process:
    # A new session makes the process a group leader, so the group can be killed whole.
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if with_stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
        pass_fds=pass_fds,
    )


def _kill_bwrap(proc: asyncio.subprocess.Process, info_fd: int) -> None:
    """Kill the sandbox's pid-namespace init, which takes every process inside with it.

    The init only finishes exiting after the kernel killed and reaped the whole
    namespace, and bubblewrap exits only after reaping the init: once the bubblewrap
    process is waited for, no process of the tree is left. Without the init's pid
    (bubblewrap did not report it yet) the outer bubblewrap is killed instead and
    ``--die-with-parent`` takes the namespace down.
    """
    child = _read_child_pid(info_fd)
    if child is not None and proc.returncode is None:
        try:
            os.kill(child, signal.SIGKILL)
            return
        except ProcessLookupError:
            pass
    kill_group(proc)


def _read_child_pid(info_fd: int) -> int | None:
    try:
        data = os.read(info_fd, 65536)
    except OSError:  # not written yet (non-blocking pipe) or already closed
        return None
    try:
        pid = json.loads(data).get("child-pid")
    except (ValueError, AttributeError):
        return None
    return pid if isinstance(pid, int) and pid > 1 else None


def check_env(env: Mapping[str, str]) -> None:
    """Refuse what no environment can hold; a NUL would also split bubblewrap's arguments.

    Raises: ConfigError.
    """
    for key, value in env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise ConfigError("a function's environment has an invalid variable name or value")
