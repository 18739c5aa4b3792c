"""Conversational sessions: one pinned instance, a working directory and an env overlay
kept between commands. Pure helpers; ExecService does the I/O.

Two builtins are handled by ExecGate itself instead of being sent to the instance:

- ``cd DIR`` changes the session's working directory (checked on the instance);
- ``export NAME=VALUE`` and ``unset NAME`` change the env overlay.

Every other command is policy-checked as usual and then run inside a small wrapper that
ExecGate builds from validated values: ``cd`` to the session directory, export the
overlay, ``exec`` the argv. The overlay cannot set variables that change how programs
load code or find other programs (``PATH``, ``LD_*``, ``BASH_ENV``…).
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from policies.errors import CommandRejected
from policies.redaction import redact_text

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_FORBIDDEN_NAMES = frozenset(
    {
        "PATH",
        "IFS",
        "ENV",
        "BASH_ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "PROMPT_COMMAND",
        "HOME",
        "SHELL",
        "CDPATH",
        "GCONV_PATH",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "RES_OPTIONS",
        "NODE_OPTIONS",
        "RUBYOPT",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "JDK_JAVA_OPTIONS",
        "GIT_SSH_COMMAND",
        "EDITOR",
        "VISUAL",
        "PAGER",
        # Options variables some tools still honour: they change what a command reads.
        "GREP_OPTIONS",
        "TAR_OPTIONS",
        "GZIP",
        "BZIP2",
        "XZ_OPT",
        "ZSTD_CLEVEL",
        "PS_FORMAT",
        "LOCPATH",
        "NLSPATH",
        "TERMINFO",
        "TERMINFO_DIRS",
        "SSLKEYLOGFILE",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "LESSOPEN",
        "LESSCLOSE",
        "TMPDIR",
        # Programs that other programs run, or configuration that names one.
        "MANPAGER",
        "SYSTEMD_PAGER",
        "BROWSER",
        "OPENSSL_CONF",
        "KUBECONFIG",
        "SUDO_ASKPASS",
    }
)
_FORBIDDEN_PREFIXES = (
    "LD_",
    "DYLD_",
    "PYTHON",
    "PERL",
    "BASH_FUNC_",
    "MALLOC_",
    "GLIBC_",
    "GIT_",  # GIT_PAGER, GIT_EXTERNAL_DIFF, GIT_CONFIG_* run programs
    "SSH_",  # SSH_ASKPASS, SSH_AUTH_SOCK
)
MAX_ENV_VALUE = 1024
MAX_ENV_VARS = 32
MAX_CWD = 1024

CD_SCRIPT = 'cd -- "$1" && pwd -P'
# Enter the session directory only where it was when cd checked it ($1, a real path).
ENTER_SCRIPT = (
    'cd -P -- "$1" && [ "$(pwd -P)" = "$1" ] || '
    '{ echo "execgate: the session directory $1 moved; cd to it again" >&2; exit 126; }'
)


@dataclass(frozen=True, slots=True)
class Builtin:
    """A session builtin: ``kind`` is cd, export or unset."""

    kind: str
    name: str = ""
    value: str = ""


def check_env_name(name: str) -> None:
    """Raises: CommandRejected when ``name`` may not be set in a session overlay."""
    if not _NAME_RE.match(name):
        raise CommandRejected(f"{name!r} is not a variable name", kind="invalid")
    upper = name.upper()
    if upper in _FORBIDDEN_NAMES or upper.startswith(_FORBIDDEN_PREFIXES):
        raise CommandRejected(
            f"{name} changes how programs load or find code; sessions cannot set it",
            kind="env_assignment",
        )


def parse_builtin(stages: tuple[tuple[str, ...], ...]) -> Builtin | None:
    """Recognise ``cd``, ``export`` and ``unset`` (alone, not in a pipeline).

    Raises: CommandRejected for a malformed builtin.
    """
    if len(stages) != 1 or not stages[0]:
        return None
    argv = stages[0]
    head = argv[0]
    if head == "cd":
        if len(argv) != 2:
            raise CommandRejected("cd takes exactly one directory", kind="invalid")
        if len(argv[1]) > MAX_CWD:
            raise CommandRejected("directory name too long", kind="too_long")
        return Builtin("cd", value=argv[1])
    if head == "export":
        if len(argv) != 2 or "=" not in argv[1]:
            raise CommandRejected("write export NAME=VALUE", kind="invalid")
        name, _, value = argv[1].partition("=")
        check_env_name(name)
        if redact_text(argv[1]) != argv[1]:
            raise CommandRejected(
                f"{name} looks like it holds a secret; a session's variables are kept in "
                "the audit log, so sessions do not take secrets",
                kind="secret_in_env",
            )
        if len(value) > MAX_ENV_VALUE:
            raise CommandRejected("value too long", kind="too_long")
        return Builtin("export", name=name, value=value)
    if head == "unset":
        if len(argv) != 2:
            raise CommandRejected("write unset NAME", kind="invalid")
        check_env_name(argv[1])
        return Builtin("unset", name=argv[1])
    return None


def recorded_form(
    stages: tuple[tuple[str, ...], ...], argv: tuple[str, ...], command_text: str | None
) -> tuple[tuple[str, ...], str | None]:
    """How a request is written to the audit log. A line with an ``export`` in any stage,
    or one that could not be parsed (``stages`` empty: nothing runs), is scrubbed as
    output is, so a secret that ``parse_builtin`` refuses is not recorded either."""
    exporting = any(stage[:1] == ("export",) for stage in stages)
    if stages and not exporting:
        return argv, command_text
    scrubbed = None if command_text is None else redact_text(command_text)
    return tuple(redact_text(arg) for arg in argv), scrubbed


def resolve_dir(cwd: str, target: str) -> str:
    """The absolute, normalised directory ``cd target`` asks for from ``cwd``."""
    base = cwd or "/"
    joined = target if target.startswith("/") else posixpath.join(base, target)
    return posixpath.normpath(joined) or "/"


def apply_env(env: Mapping[str, str], builtin: Builtin) -> dict[str, str]:
    """The overlay after an export/unset. Raises: CommandRejected when it grows too big."""
    out = dict(env)
    if builtin.kind == "export":
        out[builtin.name] = builtin.value
        if len(out) > MAX_ENV_VARS:
            raise CommandRejected(f"a session keeps at most {MAX_ENV_VARS} variables")
    elif builtin.kind == "unset":
        out.pop(builtin.name, None)
    return out


def wrap_in_session(argv: tuple[str, ...], cwd: str, env: Mapping[str, str]) -> tuple[str, ...]:
    """argv run in the session's directory with its overlay; unchanged when both are empty."""
    if not cwd and not env:
        return argv
    exports = "".join(f"export {name}={shlex.quote(value)}; " for name, value in env.items())
    # The directory was checked where it led when the session entered it; if it now
    # leads elsewhere (swapped for a symlink), the command does not run there.
    change = f"{ENTER_SCRIPT}; " if cwd else ""
    script = f'{exports}{change}shift; exec "$@"'
    return ("/bin/sh", "-c", script, "sh", cwd or "/", *argv)
