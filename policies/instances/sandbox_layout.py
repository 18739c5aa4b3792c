"""The file system a sandbox sees, and which host path lies behind a sandbox path.

The runner mounts the host's read-only system directories and a few files of ``/etc``
at the same paths, the instance state directory at ``/tmp`` and the code directory at
``/code``; knowing that,
a sandbox path can be looked up on the host without entering the sandbox.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from policies.errors import ConfigError

SANDBOX_TMP = "/tmp"  # noqa: S108 - the sandbox's own /tmp, backed by the state dir
SANDBOX_CODE = "/code"
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
_RO_ROOTS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What of the host's /etc a command needs: users and groups by name, name resolution,
# the dynamic loader's cache, Debian's alternatives (awk, vi, ...), CA certificates, the
# time zone. Nothing else: a sandbox runs as the host user that runs ExecGate (often
# root), so any file that user owns (shadow, sudoers, SSH host keys, services'
# configuration and credentials) would be readable if it were mounted.
_ETC_ENTRIES = (
    "passwd",
    "group",
    "hosts",
    "hostname",
    "resolv.conf",
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "protocols",
    "services",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "ssl/certs",
    "ca-certificates",
    "ca-certificates.conf",
    "localtime",
    "timezone",
    "os-release",
    "debian_version",
    "mime.types",
    "inputrc",
    "terminfo",
)
_KERNEL_MOUNTS = frozenset({"/proc", "/dev"})


@dataclass(frozen=True)
class SandboxSpec:
    """Where one exec runs: the function's env and the instance's directories.

    ``workdir`` is a path inside the sandbox (default ``/tmp``, the state directory).
    """

    env: Mapping[str, str]
    state_dir: Path
    code_dir: Path | None = None
    workdir: str = SANDBOX_TMP


class HostLayout:
    """The host directories shared read-only with every sandbox (found once)."""

    def __init__(self) -> None:
        args: list[str] = []
        mounts: list[str] = []
        for path in _RO_ROOTS:
            if os.path.islink(path):  # merged /usr: keep the symlink
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
            else:
                continue
            mounts.append(path)
        for entry in _ETC_ENTRIES:
            path = posixpath.join("/etc", entry)
            if os.path.exists(path):  # follows symlinks: the mount shows the target
                args += ["--ro-bind", path, path]
                mounts.append(path)
        # df and mount read the mount table here; the sandbox's own, not the host's.
        args += ["--symlink", "../proc/self/mounts", "/etc/mtab"]
        self.root_args: tuple[str, ...] = tuple(args)
        self.mounts = tuple(mounts)

    def host_path(self, path: str, spec: SandboxSpec) -> str | None:
        """The host path behind a sandbox path, or None when it is not in a mount we made."""
        path = _normalize(path)
        for mount, host in ((SANDBOX_TMP, spec.state_dir), (SANDBOX_CODE, spec.code_dir)):
            if host is not None and (path == mount or path.startswith(mount + "/")):
                return str(host) + path[len(mount) :]
        for mount in self.mounts:
            if path == mount or path.startswith(mount + "/"):
                return path  # mounted at the same path as on the host
        return None

    def missing_command(self, argv0: str, spec: SandboxSpec, search: str) -> int | None:
        """127/126 when argv0 cannot run in the sandbox; None when it can (or may).

        bubblewrap itself reports a failed execvp as exit 1, indistinguishable from
        the command's own exit 1, so the PATH search is done here against the host
        paths behind the sandbox's mounts (a few stat calls).
        """
        if "/" in argv0:
            candidates = [posixpath.join(spec.workdir, argv0)]
        else:
            candidates = [posixpath.join(spec.workdir, d, argv0) for d in search.split(":")]
        seen_unrunnable = False
        for candidate in candidates:
            host = self.host_path(candidate, spec)
            if host is None:
                if _top(candidate) in _KERNEL_MOUNTS:
                    return None  # /proc/..., /dev/...: let the sandbox decide
                continue  # nothing of the host is mounted there
            if _leaves_mount(candidate, host, spec):
                # A link of the instance's that leads out of its directory means
                # another file on the host than in the sandbox: looking there would
                # tell the instance whether a host file exists. The sandbox decides.
                return None
            if not os.path.lexists(host):
                continue
            if os.path.islink(host) or (os.path.isfile(host) and os.access(host, os.X_OK)):
                return None
            seen_unrunnable = True
        return EXIT_NOT_EXECUTABLE if seen_unrunnable else EXIT_NOT_FOUND


def _leaves_mount(path: str, host: str, spec: SandboxSpec) -> bool:
    """Whether ``host`` (behind sandbox ``path`` in /tmp or /code) resolves, on the
    host, to a file outside that directory."""
    path = _normalize(path)
    for mount, root in ((SANDBOX_TMP, spec.state_dir), (SANDBOX_CODE, spec.code_dir)):
        if root is not None and (path == mount or path.startswith(mount + "/")):
            top = os.path.realpath(root)
            real = os.path.realpath(host)
            return real != top and not real.startswith(top + "/")
    return False


def _normalize(path: str) -> str:
    # normpath keeps a leading "//"; the kernel treats it as "/".
    return "/" + posixpath.normpath(path).lstrip("/")


def _top(path: str) -> str:
    """The first component of an absolute path: ``/usr/bin/ls`` -> ``/usr``."""
    return "/" + _normalize(path).split("/")[1]


# What glibc's loader and libc read from the environment to load code or write files
# (its own list of variables it ignores in setuid programs, plus MALLOC_* and LD_*).
_LOADER_NAMES = frozenset(
    {
        "GCONV_PATH",
        "GETCONF_DIR",
        "GLIBC_TUNABLES",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "LOCPATH",
        "NIS_PATH",
        "NLSPATH",
        "RESOLV_HOST_CONF",
        "RES_OPTIONS",
        "TZDIR",
    }
)


def split_loader_env(env: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """``env`` without the variables that steer the dynamic loader, and those as
    ``NAME=VALUE`` assignments.

    Processes that start or enter an instance on the host, as ExecGate's user, get only
    the first part: the function's ``LD_PRELOAD=/tmp/x.so`` names a path of the
    instance, and would load the host's file of that name into them. The command gets
    the assignments back once it is in the instance (``env NAME=VALUE... COMMAND``).
    """
    kept: dict[str, str] = {}
    loader: list[str] = []
    for key, value in env.items():
        if key.startswith(("LD_", "MALLOC_")) or key in _LOADER_NAMES:
            loader.append(f"{key}={value}")
        else:
            kept[key] = value
    return kept, loader


def check_env(env: Mapping[str, str]) -> None:
    """Refuse what no environment can hold; a NUL would also split bubblewrap's arguments.

    Raises: ConfigError.
    """
    for key, value in env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise ConfigError("a function's environment has an invalid variable name or value")
