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
- new user, pid, ipc, uts, cgroup and network namespaces: local instances have NO
  network, not even the host's loopback; all capabilities dropped for the command
  bubblewrap starts. The user namespace maps 65,536 ids onto a subordinate range of the
  host (inner root is e.g. host uid 200000; the host's root is not mapped) when the host
  allows it, else only the running user (bubblewrap's ``--unshare-user``, where programs
  that switch users, like tcpdump, fail): see ``userns``.

Every bubblewrap option (mounts with their host paths, the environment) reaches
bubblewrap through an in-memory file (``--args FD``) rather than its command line: the
sandbox's pid 1 is a copy of bubblewrap, and its command line is all ``ps -ef`` shows of
it inside (``bwrap --args 3 -- ...``), just as function secrets never show in the host's
process list. bubblewrap itself runs with an empty environment, so no loader variable
of a function (``LD_PRELOAD`` ...) can touch the host-side bubblewrap process. An inline
shell script (the exit-code wrapper with its nonce) reaches the shell through a pipe,
not its command line (see ``inline_script``).

Modes: ``auto`` and ``bwrap`` both require a working bubblewrap and refuse to run
anything without it (ProviderUnavailable saying how to install it or opt out).
``none`` (``subprocess`` is its old name) is the explicit opt-out: plain subprocesses
with a loud ``UNSANDBOXED`` warning at every start, run as the unprivileged user
``nobody`` (root only; see ``unsandboxed``); ``/tmp`` and ``/code`` as working
directories are mapped to the state and code directories, but the command sees the
host's file system (what ``nobody`` may read) and network.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import shutil
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from policies.errors import CommandRejected, ConfigError, ProviderUnavailable
from policies.instances.inline_script import split_inline_script
from policies.instances.live import LiveSandbox, memfd_args
from policies.instances.sandbox_layout import (
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    SANDBOX_CODE,
    SANDBOX_TMP,
    HostLayout,
    SandboxSpec,
)
from policies.instances.supervise import Spawned, kill_group, supervise
from policies.instances.unsandboxed import Identity, dedicated_identity, refuse_readable
from policies.instances.userns import IdMapping, find_mapping, own_tree, stage, staging_dir
from policies.ports import OutputCallback
from policies.types import Limits, RunResult

__all__ = [
    "DEFAULT_PATH",
    "INSTALL_HINT",
    "Launch",
    "SandboxMode",
    "SandboxRunner",
    "SandboxSpec",
    "check_env",
]

logger = logging.getLogger(__name__)

SandboxMode = Literal["auto", "bwrap", "none", "subprocess"]
UserNamespace = Literal["auto", "single"]
UNSANDBOXED_MODES = frozenset({"none", "subprocess"})
INSTALL_HINT = (
    "local instances need a working bubblewrap sandbox and it is missing or refused on "
    "this host; install it (Debian/Ubuntu: sudo apt-get install -y bubblewrap) or opt "
    'out explicitly with sandbox = "none" under [local_host] (commands then run '
    "unsandboxed on this host as the user nobody; needs root)"
)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_ENV = {"PATH": DEFAULT_PATH, "HOME": SANDBOX_TMP, "LANG": "C.UTF-8"}
_PROBE_TIMEOUT = 10.0
_SINGLE_UNSHARE = ("--unshare-all",)
# Every namespace but the user namespace, which the launcher made with the full mapping.
_MAPPED_UNSHARE = (
    "--unshare-ipc",
    "--unshare-pid",
    "--unshare-net",
    "--unshare-uts",
    "--unshare-cgroup-try",
)


@dataclass(frozen=True)
class Launch:
    """One sandbox's launch: ``argv`` (ending with bubblewrap) and its ``options``."""

    argv: tuple[str, ...]
    options: list[str]


class SandboxRunner:
    """Runs argv in bubblewrap sandboxes, or in plain subprocesses as a loud fallback.

    One runner serves every instance; it probes bubblewrap once (on the first run or an
    explicit :meth:`probe`) and costs nothing extra per exec after that.
    """

    def __init__(
        self,
        mode: SandboxMode = "auto",
        bwrap_path: str | None = None,
        *,
        protected: Sequence[Path] = (),
        user_namespace: UserNamespace = "auto",
    ) -> None:
        self._mode: SandboxMode = mode
        self._user_namespace: UserNamespace = user_namespace
        self._mapping: IdMapping | None = None
        self._stage_dir: str | None = None
        self._single_reason = "the sandbox has not been probed yet"
        self._bwrap = bwrap_path or shutil.which("bwrap")
        self._use_bwrap = False
        self._probed = False
        self._identity: Identity | None = None
        # What an unsandboxed command must not read (keys, database, config); a sandbox
        # never mounts them.
        self._protected = tuple(protected)
        self._probe_lock = asyncio.Lock()
        self._layout = HostLayout()

    @property
    def mode(self) -> SandboxMode:
        return self._mode

    @property
    def sandboxed(self) -> bool:
        """True once a probe confirmed bubblewrap works; False before or unsandboxed."""
        return self._use_bwrap

    @property
    def bwrap_path(self) -> str | None:
        return self._bwrap

    @property
    def id_mapping(self) -> IdMapping | None:
        """The instances' full id mapping; None in bubblewrap's single-id mode."""
        return self._mapping

    @property
    def description(self) -> str:
        """What isolates instances, in a sentence for banners and listings."""
        if self._mode in UNSANDBOXED_MODES:
            return 'UNSANDBOXED (sandbox = "none": commands run on this host as nobody)'
        if self._mapping is not None:
            return (
                f"bubblewrap sandbox, ids 0-{self._mapping.count - 1} mapped to host "
                f"{self._mapping.uid}-{self._mapping.uid + self._mapping.count - 1}"
            )
        return f"bubblewrap sandbox, root only mapped: no packet captures ({self._single_reason})"

    @property
    def identity(self) -> Identity | None:
        """Who unsandboxed commands run as (mode ``none``, after the probe)."""
        return self._identity

    def protect(self, *paths: Path) -> None:
        """Add paths an unsandboxed command must not be able to read (checked at probe)."""
        self._protected += paths

    async def probe(self) -> bool:
        """Check once that the sandbox works here; return whether bubblewrap is used.

        Raises: ProviderUnavailable when bubblewrap does not work (modes ``auto`` and
        ``bwrap``; the message says how to install it or opt out), or in mode ``none``
        when ExecGate is not root or a protected path is readable by ``nobody``.
        """
        async with self._probe_lock:
            if not self._probed:
                if self._mode in UNSANDBOXED_MODES:
                    identity = dedicated_identity()
                    refuse_readable(self._protected, identity)
                    self._identity = identity
                else:
                    self._use_bwrap = await self._bwrap_works()
                    if self._use_bwrap:
                        await self._probe_mapping()
                self._probed = True
            if self._mode in UNSANDBOXED_MODES:
                logger.warning(
                    "UNSANDBOXED: sandbox mode is 'none'; local instances run commands as "
                    "plain subprocesses on this host (as uid %d) with its network and every "
                    "file that user may read. Install bubblewrap and use sandbox mode "
                    "'auto' to sandbox them.",
                    self._identity.uid if self._identity else -1,
                )
            elif not self._use_bwrap:
                raise ProviderUnavailable(INSTALL_HINT)
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
        if not self._probed or not (self._use_bwrap or self._identity):
            await self.probe()  # fails closed without a sandbox
        spec.state_dir.mkdir(parents=True, exist_ok=True)
        env = {**DEFAULT_ENV, **spec.env}
        if self._use_bwrap:
            missing = self._layout.missing_command(argv[0], spec, env["PATH"])
            if missing is not None:
                await on_output("stderr", f"{argv[0]}: command not found\n".encode())
                return RunResult(exit_code=missing)
            mapping = self._mapping
            owner = (mapping.uid, mapping.gid) if mapping is not None else None
            inline = split_inline_script(argv, owner)
            try:
                spawned = await self._spawn_bwrap(
                    inline.argv, spec, env, stdin is not None, extra_fds=inline.fds
                )
            finally:
                inline.close()
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

    async def run_entered(
        self,
        live: LiveSandbox,
        argv: Sequence[str],
        spec: SandboxSpec,
        *,
        limits: Limits,
        on_output: OutputCallback,
        stdin: AsyncIterator[bytes] | None = None,
    ) -> RunResult:
        """Like :meth:`run`, inside the running sandbox ``live`` (same mounts as ``spec``).

        Raises: CommandRejected for an empty argv; ProviderUnavailable when the sandbox
        is not running.
        """
        if not argv:
            raise CommandRejected("the command is empty", kind="empty")
        env = {**DEFAULT_ENV, **spec.env}
        check_env(env)
        missing = self._layout.missing_command(argv[0], spec, env["PATH"])
        if missing is not None:
            await on_output("stderr", f"{argv[0]}: command not found\n".encode())
            return RunResult(exit_code=missing)
        spawned = await live.enter(argv, env, spec.workdir, with_stdin=stdin is not None)
        return await supervise(spawned, limits=limits, on_output=on_output, stdin=stdin)

    # ------------------------------------------------------------------ bubblewrap

    def bwrap_options(self) -> list[str]:
        """The options every sandbox starts with (without the bubblewrap path)."""
        return [
            *(_MAPPED_UNSHARE if self._mapping is not None else _SINGLE_UNSHARE),
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

    async def _probe_mapping(self) -> None:
        """Use the full id mapping when the host allows it and it works here."""
        if self._user_namespace == "single":
            self._single_reason = "the full id mapping is turned off"
            return
        found = find_mapping()
        stage_dir = staging_dir()
        if isinstance(found, str) or stage_dir is None or self._bwrap is None:
            self._single_reason = found if isinstance(found, str) else "no staging directory"
            logger.warning("packet captures are not available in local instances: %s", found)
            return
        self._mapping, self._stage_dir = found, stage_dir
        staged = stage(found, stage_dir, (), self._bwrap)
        argv = [*staged.prefix, *self.bwrap_options(), "--tmpfs", SANDBOX_TMP, "--", "true"]
        if not await self._probe_argv(argv):
            self._mapping = self._stage_dir = None
            self._single_reason = "the user namespace with the full id mapping did not start"
            logger.warning("packet captures are not available in local instances: %s", found)

    async def _bwrap_works(self) -> bool:
        if self._bwrap is None:
            logger.info("bubblewrap not found on PATH")
            return False
        argv = [self._bwrap, *self.bwrap_options(), "--tmpfs", SANDBOX_TMP, "--", "true"]
        return await self._probe_argv(argv)

    async def _probe_argv(self, argv: Sequence[str]) -> bool:
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

    def launch(
        self,
        spec: SandboxSpec,
        env: Mapping[str, str],
        extra_mounts: Sequence[tuple[Path, str]] = (),
    ) -> Launch:
        """How to start one sandbox: the launcher, namespaces, mounts, environment.

        ``extra_mounts`` are (host directory, sandbox path) pairs mounted read-write;
        they and the state directory are handed to the sandbox's root (its inner root's
        host ids with the full mapping).

        Raises: ConfigError for an environment no sandbox can hold; ProviderUnavailable
        before a successful probe.
        """
        check_env(env)
        if self._bwrap is None or not self._use_bwrap:
            raise ProviderUnavailable(INSTALL_HINT)
        writable = [spec.state_dir, *(host for host, _ in extra_mounts)]
        mapping, stage_dir = self._mapping, self._stage_dir
        if mapping is not None and stage_dir is not None:
            for directory in writable:
                own_tree(directory, mapping.uid, mapping.gid)
            code = [spec.code_dir] if spec.code_dir is not None else []
            staged = stage(mapping, stage_dir, [*writable, *code], self._bwrap)
            argv, source = staged.prefix, staged.paths.__getitem__
        else:
            for directory in writable:
                own_tree(directory, os.getuid(), os.getgid())
            argv, source = (self._bwrap,), lambda path: str(path.absolute())
        options = self.bwrap_options()
        options += ["--bind", source(spec.state_dir), SANDBOX_TMP]
        if spec.code_dir is not None:
            options += ["--ro-bind", source(spec.code_dir), SANDBOX_CODE]
        for host, inside in extra_mounts:
            options += ["--bind", source(host), inside]
        # The sandbox's own root (where /etc and the mount points live) is made
        # read-only last: /tmp (the instance's state) and the sandbox's own /dev
        # tmpfs stay writable.
        options += ["--remount-ro", "/", "--chdir", spec.workdir, "--clearenv"]
        for key, value in env.items():
            options += ["--setenv", key, value]
        return Launch(argv, options)

    async def _spawn_bwrap(
        self,
        argv: Sequence[str],
        spec: SandboxSpec,
        env: Mapping[str, str],
        with_stdin: bool,
        *,
        extra_fds: tuple[int, ...] = (),
    ) -> Spawned:
        launch = self.launch(spec, env)
        args_fd = memfd_args(launch.options)
        info_r, info_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            full = [*launch.argv, "--args", str(args_fd), "--info-fd", str(info_w), "--", *argv]
            proc = await _spawn(
                full,
                env={},
                cwd=None,
                with_stdin=with_stdin,
                pass_fds=(args_fd, info_w, *extra_fds),
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
        identity = self._identity
        if identity is None:  # only reachable if the probe was skipped: fail closed
            raise ProviderUnavailable(INSTALL_HINT)
        host_env = dict(env)
        state = str(spec.state_dir)
        # Unsandboxed there is no private /tmp to point HOME at: use the state dir.
        if host_env.get("HOME") == SANDBOX_TMP:
            host_env["HOME"] = state
        host_env.setdefault("TMPDIR", state)
        cwd = self._layout.host_path(spec.workdir, spec) or spec.workdir
        # The instance's directory is the one place of ExecGate's the command may write.
        os.chown(spec.state_dir, identity.uid, identity.gid)
        proc = await _spawn(
            list(argv), env=host_env, cwd=cwd, with_stdin=with_stdin, identity=identity
        )
        # Background processes left behind would hold the output pipes open; they end
        # with the command, as they do in a sandbox whose pid namespace ends.
        return Spawned(
            proc,
            kill_tree=lambda: kill_group(proc),
            after_exit=lambda: kill_group(proc),
            close=lambda: None,
        )


@functools.cache
def _setpriv() -> str | None:
    """util-linux's setpriv, when installed (nsenter, needed with bubblewrap, comes
    with it)."""
    return shutil.which("setpriv")


async def _spawn(
    argv: list[str],
    *,
    env: Mapping[str, str],
    cwd: str | None,
    with_stdin: bool,
    pass_fds: tuple[int, ...] = (),
    identity: Identity | None = None,
) -> asyncio.subprocess.Process:
    # A new session makes the process a group leader, so the group can be killed whole.
    # The working directory is entered before the identity changes: it may lie below a
    # directory (ExecGate's data directory) that the identity cannot traverse.
    setpriv = _setpriv()
    if identity is not None and setpriv is not None:
        # setpriv changes the identity just before the command: Python then starts the
        # child with vfork, not a copy of this whole process (it does not vfork when it
        # is to change the identity itself), a large part of an exec's cost here.
        argv = [
            setpriv,
            f"--reuid={identity.uid}",
            f"--regid={identity.gid}",
            "--clear-groups",
            "--",
            *argv,
        ]
        identity = None
    if identity is not None:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if with_stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            pass_fds=pass_fds,
            user=identity.uid,
            group=identity.gid,
            extra_groups=[],
        )
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
